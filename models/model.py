"""Fully-convolutional vessel models (tf_keras, Keras 2): a residual U-Net and a Sine-Net-style net.

Both map a preprocessed gray image [B, H, W, 1] (H and W multiples of
`settings.model_stride(config)`) to per-pixel vessel probabilities [B, H, W, 1], so a model trained
on patches runs on whole images.
"""
import tf_keras as keras
from tf_keras import layers

from models.settings import SINE_NET, UNET, ModelConfig


def _conv_block(x, filters: int, dropout: float, name: str):
  """Two 3x3 conv-BN-ReLU with a residual shortcut: trains faster and deeper than plain convs."""
  shortcut = x if x.shape[-1] == filters else layers.Conv2D(filters, 1, name=f'{name}_proj')(x)
  for i in range(2):
    x = layers.Conv2D(filters, 3, padding='same', use_bias=False, name=f'{name}_conv{i}')(x)
    # Momentum 0.9, not Keras' 0.99: the inference statistics must keep up with weights that move
    # fast in short CPU trainings, or the exported model scores far below the training metrics.
    x = layers.BatchNormalization(momentum=0.9, name=f'{name}_bn{i}')(x)
    x = layers.Activation('relu', name=f'{name}_relu{i}')(x)
    if i == 0 and dropout:
      x = layers.SpatialDropout2D(dropout, name=f'{name}_drop')(x)
  return layers.Add(name=f'{name}_add')([x, shortcut])


def _up(x, filters: int, name: str):
  return layers.Conv2DTranspose(filters, 2, strides=2, padding='same', name=name)(x)


def _decoder(x, skips, config: ModelConfig):
  """Upsamples level by level, merging the skip of equal resolution each time."""
  for level in reversed(range(config.depth)):
    filters = config.base_filters * 2 ** level
    x = _up(x, filters, f'up{level}')
    x = layers.Concatenate(name=f'skip{level}')([x, skips[level]])
    x = _conv_block(x, filters, config.dropout, f'dec{level}')
  return x


def _head(x):
  # Logits in float32 even under mixed precision, so the sigmoid and the loss stay accurate.
  logits = layers.Conv2D(1, 1, name='logits', dtype='float32')(x)
  return layers.Activation('sigmoid', name='probabilities', dtype='float32')(logits)


def build_unet(config: ModelConfig) -> keras.Model:
  inputs = keras.Input([None, None, 1], name='image')
  x, skips = inputs, []
  for level in range(config.depth):
    x = _conv_block(x, config.base_filters * 2 ** level, config.dropout, f'down{level}')
    skips.append(x)
    x = layers.MaxPooling2D(2, name=f'pool{level}')(x)
  x = _conv_block(x, config.base_filters * 2 ** config.depth, config.dropout, 'bottom')
  x = _decoder(x, skips, config)
  return keras.Model(inputs, _head(x), name=UNET)


def build_sine_net(config: ModelConfig) -> keras.Model:
  """The recipe's family: upsample first (thin vessels get more pixels), then down, then up again,
  with residual blocks and skips between equal resolutions - a 'triangular wave' of scales."""
  inputs = keras.Input([None, None, 1], name='image')
  stem = _conv_block(inputs, config.base_filters, config.dropout, 'stem')
  # Half-wave above full resolution.
  fine = _conv_block(_up(stem, config.base_filters // 2, 'fine_up'), config.base_filters // 2,
                     config.dropout, 'fine')
  x = layers.MaxPooling2D(2, name='fine_pool')(fine)
  x = layers.Concatenate(name='fine_merge')([x, stem])
  x = _conv_block(x, config.base_filters, config.dropout, 'full')
  # Half-wave below full resolution.
  skips = [x]
  for level in range(1, config.depth + 1):
    x = layers.MaxPooling2D(2, name=f'pool{level}')(x)
    x = _conv_block(x, config.base_filters * 2 ** level, config.dropout, f'down{level}')
    skips.append(x)
  x = _decoder(x, skips, config)
  return keras.Model(inputs, _head(x), name=SINE_NET)


_BUILDERS = {UNET: build_unet, SINE_NET: build_sine_net}


def build_model(config: ModelConfig) -> keras.Model:
  if config.architecture not in _BUILDERS:
    raise ValueError(f'unknown architecture {config.architecture!r}; choose one of {sorted(_BUILDERS)}')
  return _BUILDERS[config.architecture](config)
