"""The exported SavedModel: encoded fundus images in, per-pixel vessel probabilities out.

The transform graph is inside, so serving preprocesses exactly as training did, and the model runs
fully-convolutionally on a window around the field of view (see `fov_window`), padded to the
model's stride; the map has the input's size and is 0 outside the window (no retina there).

Signatures:
  serving_default(images)              [B] PNG/JPEG/BMP/GIF bytes -> probabilities [B, H, W], fov
  serving_with_fov(images, fovs)       the same with FOV mask bytes ('' = compute from the image)
  predict_examples(examples)           serialized raw tf.Examples -> probabilities [B, H*W] (TFMA)
  transform_features(examples)         serialized raw tf.Examples -> transformed features (dense)
Images of one call must share a size. TIFF is not decodable by TensorFlow's own ops (DRIVE's are
LZW-compressed), so clients such as `retina-tfx predict` convert it to PNG, losslessly, first.
"""
from typing import Dict, Optional

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from models import constants, preprocessing
from models.settings import ModelConfig, model_stride

PROBABILITIES_KEY = 'probabilities'
# Signatures of the exported model.
SERVE = 'serving_default'                   # encoded images -> maps (FOV computed from each image)
SERVE_WITH_FOV = 'serving_with_fov'         # encoded images and FOV masks -> maps
PREDICT_EXAMPLES = 'predict_examples'       # serialized raw examples -> flat maps (TFMA)
TRANSFORM_FEATURES = 'transform_features'   # serialized raw examples -> flat label and FOV (TFMA)
_IMAGES = tf.TensorSpec([None], tf.string, name='images')
_FOVS = tf.TensorSpec([None], tf.string, name='fovs')
_EXAMPLES = tf.TensorSpec([None], tf.string, name='examples')
# Raw features the transform graph reads; the rest of the raw schema is not needed to serve.
_TRANSFORM_INPUTS = (constants.IMAGE_ID_KEY, constants.IMAGE_KEY, constants.LABEL_KEY,
                     constants.FOV_KEY)


def fov_window(fov: tf.Tensor, align: int):
  """One FOV map [H, W] -> (top, bottom, left, right): the bounding box of its FOV pixels, its top
  and left moved back to multiples of `align` (the model's stride), so the model's pooling grid
  lies where it does on the whole image; without FOV pixels, the whole image.

  The model runs on this window only: a DRIVE frame's dark corners are ~13 % of it, and the forward
  pass is most of predict's time. Outside the FOV the preprocessed image is dark (~0.1 against ~0.6
  inside), near the zero padding that replaces it: on DRIVE the FOV scores did not change
  (BENCHMARKS.md)."""
  def extent(inside: tf.Tensor, size: tf.Tensor):
    where = tf.cast(tf.where(inside)[:, 0], tf.int32)   # ascending
    return tf.cond(tf.size(where) > 0, lambda: (where[0] - where[0] % align, where[-1] + 1),
                   lambda: (tf.constant(0), size))
  inside = fov > 0.5
  top, bottom = extent(tf.reduce_any(inside, axis=1), tf.shape(fov)[0])
  left, right = extent(tf.reduce_any(inside, axis=0), tf.shape(fov)[1])
  return top, bottom, left, right


def _dense(transformed: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
  return {k: tf.sparse.to_dense(v) if isinstance(v, tf.SparseTensor) else v
          for k, v in transformed.items()}


def export(model: keras.Model, transform_output_dir: str, serving_model_dir: str,
           model_config: ModelConfig, flip_average: bool = False) -> None:
  tft_output = tft.TFTransformOutput(transform_output_dir)
  model.tft_layer = tft_output.transform_features_layer()  # attribute: saved with the model
  stride = model_stride(model_config)
  raw_spec = {k: v for k, v in tft_output.raw_feature_spec().items() if k in _TRANSFORM_INPUTS}

  def image_and_fov(transformed):
    return tuple(preprocessing.unflatten(transformed, key)
                 for key in (constants.IMAGE_KEY, constants.FOV_KEY))

  def probabilities(image, fov):
    """Preprocessed images and their FOVs [B, H, W] -> vessel probabilities [B, H, W]. Image by
    image, each on its own window: a map never depends on the other images of a call."""
    # One image at a time (parallel_iterations=1): the network's activations dominate memory.
    return tf.map_fn(lambda pair: probability_map(*pair), (image, fov),
                     fn_output_signature=tf.float32, parallel_iterations=1)

  def probability_map(image, fov):
    top, bottom, left, right = fov_window(fov, stride)
    window = image[tf.newaxis, top:bottom, left:right, tf.newaxis]
    height, width = bottom - top, right - left
    padded = tf.pad(window, [[0, 0], [0, -height % stride], [0, -width % stride], [0, 0]])
    maps = model(padded, training=False)
    if flip_average:
      # Mean with the prediction of the mirrored image: vessels have no handedness, and the two
      # views' errors are partly independent (costs one more forward pass).
      mirrored = tf.reverse(model(tf.reverse(padded, axis=[2]), training=False), axis=[2])
      maps = (maps + mirrored) / 2.0
    full_height, full_width = tf.shape(image)[0], tf.shape(image)[1]
    return tf.pad(maps[0, :height, :width, 0],
                  [[top, full_height - bottom], [left, full_width - right]])

  def serve_images(images, fovs: Optional[tf.Tensor]):
    image, fov = image_and_fov(model.tft_layer(preprocessing.raw_features(images, fovs)))
    return {PROBABILITIES_KEY: probabilities(image, fov), constants.FOV_KEY: fov}

  def transform_examples(examples):
    return model.tft_layer(tf.io.parse_example(examples, raw_spec))

  @tf.function(input_signature=[_IMAGES])
  def serve(images):
    return serve_images(images, None)

  @tf.function(input_signature=[_IMAGES, _FOVS])
  def serve_with_fov(images, fovs):
    return serve_images(images, fovs)

  @tf.function(input_signature=[_EXAMPLES])
  def predict_examples(examples):
    maps = probabilities(*image_and_fov(transform_examples(examples)))
    return {PROBABILITIES_KEY: tf.reshape(maps, [tf.shape(maps)[0], -1])}

  @tf.function(input_signature=[_EXAMPLES])
  def transform_features(examples):
    return _dense(transform_examples(examples))

  model.save(serving_model_dir, save_format='tf', signatures={
      SERVE: serve, SERVE_WITH_FOV: serve_with_fov,
      PREDICT_EXAMPLES: predict_examples, TRANSFORM_FEATURES: transform_features})
