"""The Trainer's input: PatchGen's patches as (image, y_true) batches, each training patch changed
at random (AugmentationConfig), drawn anew every epoch; validation patches as they are."""
import math
from typing import Sequence

import tensorflow as tf

from models import constants, patches
from models.settings import AugmentationConfig, TrainingConfig

SHUFFLE_BUFFER = 4096


def _zoom(stacked: tf.Tensor, factor: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """[P, P, C] seen `factor` times larger (a random P x P crop of the enlarged patch) or smaller
  (the shrunk patch at a random place in a border of zeros: FOV 0 there, so never trained on)."""
  side = tf.shape(stacked)[0]
  new_side = tf.maximum(tf.cast(tf.round(tf.cast(side, tf.float32) * factor), tf.int32), 1)
  resized = tf.image.resize(stacked, [new_side, new_side], antialias=True)
  offset = tf.random.stateless_uniform([2], seed, 0, tf.abs(new_side - side) + 1, dtype=tf.int32)
  zoomed = tf.cond(
      new_side >= side,
      lambda: tf.slice(resized, tf.concat([offset, [0]], 0), tf.stack([side, side, -1])),
      lambda: tf.image.pad_to_bounding_box(resized, offset[0], offset[1], side, side))
  zoomed.set_shape(stacked.shape)
  return zoomed


def _blur(image: tf.Tensor, sigma: tf.Tensor, radius: int = 3) -> tf.Tensor:
  """Separable Gaussian blur of [P, P, 1], mirrored at the borders; sigma ~0 leaves it as it is."""
  taps = tf.range(-radius, radius + 1, dtype=tf.float32)
  kernel = tf.exp(-0.5 * tf.square(taps / tf.maximum(sigma, 1e-3)))
  kernel /= tf.reduce_sum(kernel)
  padded = tf.pad(image[tf.newaxis], [[0, 0], [radius, radius], [radius, radius], [0, 0]], 'REFLECT')
  blurred = tf.nn.conv2d(padded, tf.reshape(kernel, [-1, 1, 1, 1]), 1, 'VALID')
  return tf.nn.conv2d(blurred, tf.reshape(kernel, [1, -1, 1, 1]), 1, 'VALID')[0]


def _log_uniform(seed: tf.Tensor, largest: float) -> tf.Tensor:
  """A factor in [1/largest, largest], uniform in its logarithm."""
  return tf.exp(tf.random.stateless_uniform([], seed, -math.log(largest), math.log(largest)))


def augment(image: tf.Tensor, label: tf.Tensor, fov: tf.Tensor, seed: tf.Tensor,
            config: AugmentationConfig = AugmentationConfig()):
  """One training patch changed at random (see AugmentationConfig). All [P, P, 1]; `seed` is a
  stateless [2] seed. Label and FOV stay 0/1 and the image stays in [0, 1]."""
  stacked = tf.concat([image, label, fov], axis=-1)
  seeds = iter(tf.unstack(tf.random.experimental.stateless_split(seed, num=11)))
  stacked = tf.image.stateless_random_flip_left_right(stacked, next(seeds))
  stacked = tf.image.stateless_random_flip_up_down(stacked, next(seeds))
  stacked = tf.image.rot90(stacked, tf.random.stateless_uniform([], next(seeds), 0, 4, tf.int32))
  if config.max_zoom > 1.0:
    stacked = _zoom(stacked, _log_uniform(next(seeds), config.max_zoom), next(seeds))
  image, label, fov = tf.split(stacked, 3, axis=-1)
  label, fov = tf.cast(label > 0.5, tf.float32), tf.cast(fov > 0.5, tf.float32)
  if config.max_gamma > 1.0:
    image = tf.pow(tf.clip_by_value(image, 0.0, 1.0), _log_uniform(next(seeds), config.max_gamma))
  if config.contrast > 0:
    image = tf.image.stateless_random_contrast(
        image, 1.0 - config.contrast, 1.0 + config.contrast, next(seeds))
  if config.brightness > 0:
    image = tf.image.stateless_random_brightness(image, config.brightness, next(seeds))
  if config.max_blur_sigma > 0:
    image = _blur(image, tf.random.stateless_uniform([], next(seeds), 0, config.max_blur_sigma))
  if config.max_noise_sigma > 0:
    sigma = tf.random.stateless_uniform([], next(seeds), 0, config.max_noise_sigma)
    image += sigma * tf.random.stateless_normal(tf.shape(image), next(seeds))
  return tf.clip_by_value(image, 0.0, 1.0), label, fov


def _targets(label: tf.Tensor, fov: tf.Tensor) -> tf.Tensor:
  """Label and FOV travel together as y_true [.., 2] so loss and metrics can mask by the FOV."""
  return tf.concat([label, fov], axis=-1)


def make_dataset(file_patterns: Sequence[str], config: TrainingConfig,
                 training: bool) -> tf.data.Dataset:
  """(image, y_true) batches of patches, endlessly (`patches.mixed_records`): shuffled and augmented
  when training; validation starts at the same patches every time it is read."""
  files = sorted(f for pattern in file_patterns for f in tf.io.gfile.glob(pattern))
  if not files:
    raise ValueError(f'no patch files match {file_patterns}')
  # Validation weighs every dataset alike, whatever the training stream's shares.
  records = (patches.mixed_records(files, seed=config.seed, shares=dict(config.dataset_shares))
             if training else patches.mixed_records(files))
  if training:
    records = records.shuffle(SHUFFLE_BUFFER, seed=config.seed)
  size = patches.patch_size(files)
  parsed = records.batch(config.batch_size, drop_remainder=training).map(
      lambda serialized: patches.parse(serialized, size),
      num_parallel_calls=tf.data.AUTOTUNE)
  maps = lambda p: (p[constants.IMAGE_KEY], p[constants.LABEL_KEY], p[constants.FOV_KEY])
  if training:
    seeds = tf.data.Dataset.random(seed=config.seed).batch(2)
    batches = tf.data.Dataset.zip((parsed.unbatch().map(maps), seeds)).map(
        lambda patch, seed: augment(*patch, seed, config.augmentation),
        num_parallel_calls=tf.data.AUTOTUNE
    ).batch(config.batch_size, drop_remainder=True)
  else:
    batches = parsed.map(maps)
  return batches.map(lambda image, label, fov: (image, _targets(label, fov))).prefetch(
      tf.data.AUTOTUNE)
