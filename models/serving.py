"""The exported SavedModel: encoded fundus images in, per-pixel vessel probabilities out.

The transform graph is inside, so serving preprocesses exactly as training did, at the training
scale (models/transform.py resamples each image so its FOV is as wide as the training images'),
and the model runs fully-convolutionally on a window around the field of view (see `fov_window`),
padded to the model's stride; the map is resampled back to the input's size and is 0 outside the
window (no retina there).

Signatures:
  serving_default(images)              [B] PNG/JPEG/BMP/GIF bytes -> probabilities [B, H, W], fov
  serving_with_fov(images, fovs)       the same with FOV mask bytes ('' = compute from the image)
  predict_examples(examples)           serialized raw tf.Examples -> probabilities [B, H*W] (TFMA)
  transform_features(examples)         serialized raw tf.Examples -> their label and FOV [B, H*W]
Images of one serving call must share a size; examples may differ (rows padded with FOV 0). An
image may have at most constants.MAX_IMAGE_PIXELS pixels. TIFF is not decodable by TensorFlow's own ops (DRIVE's are
LZW-compressed), so clients such as `retina-tfx predict` convert it losslessly first (predict sends
every image as an uncompressed BMP of the pixels it decoded: the fastest to encode and decode).
"""
import dataclasses
import json
import os
from typing import Dict, Optional

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from models import constants, preprocessing, transform
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
_RAGGED = tf.RaggedTensorSpec([None], tf.float32, ragged_rank=0)
_MAP = tf.TensorSpec([None, None], tf.float32)
# Raw features the transform graph reads; the rest of the raw schema is not needed to serve.
_TRANSFORM_INPUTS = (constants.DATASET_KEY, constants.IMAGE_ID_KEY, constants.IMAGE_KEY,
                     constants.LABEL_KEY, constants.FOV_KEY)
# In the SavedModel's folder for files that serving ignores: the model's settings, which a warm
# start from this model names when they do not fit (models/warm_start.py), and its transform
# graph's analyzer results, which a warm start keeps (settings.BASE_STATISTICS_KEY).
MODEL_CONFIG_FILE = os.path.join('assets.extra', 'model_config.json')
TRANSFORM_STATISTICS_FILE = os.path.join('assets.extra', 'transform_statistics.json')


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


# The network runs on tiles of at most TILE_SIDE pixels a side, each with a margin of context
# around it that is cut off afterwards: the activations of a whole HRF-scale window (8 M pixels)
# took several GB. The margin, TILE_MARGIN_STRIDES model strides (96 pixels at depth 3), is more
# than the network's reach (~50 pixels at depth 3; the reach grows with the stride) and keeps the
# pooling grid, so a tiled map equals the whole window's (tests/test_serving.py). A DRIVE-scale
# window is one tile.
TILE_SIDE = 1024
TILE_MARGIN_STRIDES = 12


def predict_in_tiles(predict, image: tf.Tensor, margin: int,
                     tile_side: int = TILE_SIDE) -> tf.Tensor:
  """predict([h, w] -> [h, w]) applied to `image` [H, W] tile by tile, each tile with `margin` of
  context (within the image) that is cut off again. tile_side and margin must be multiples of the
  model's stride, and so must H and W."""
  height, width = tf.shape(image)[0], tf.shape(image)[1]

  def tile(top, bottom, left, right):
    y0, x0 = tf.maximum(top - margin, 0), tf.maximum(left - margin, 0)
    context = image[y0:tf.minimum(bottom + margin, height), x0:tf.minimum(right + margin, width)]
    return predict(context)[top - y0:bottom - y0, left - x0:right - x0]

  def strip(top):
    bottom = tf.minimum(top + tile_side, height)
    _, row = tf.while_loop(
        lambda left, _: left < width,
        lambda left, row: (left + tile_side, tf.concat(
            [row, tile(top, bottom, left, tf.minimum(left + tile_side, width))], axis=1)),
        (tf.constant(0), tf.zeros([bottom - top, 0])),
        shape_invariants=(tf.TensorShape([]), tf.TensorShape([None, None])), parallel_iterations=1)
    return row

  _, result = tf.while_loop(
      lambda top, _: top < height,
      lambda top, rows: (top + tile_side, tf.concat([rows, strip(top)], axis=0)),
      (tf.constant(0), tf.zeros([0, width])),
      shape_invariants=(tf.TensorShape([]), tf.TensorShape([None, None])), parallel_iterations=1)
  return result


def to_size(maps: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
  """[h, w, C] -> [size[0], size[1], C] (bilinear), unchanged when it has that size already."""
  return tf.cond(tf.reduce_all(tf.equal(tf.shape(maps)[:2], size)), lambda: maps,
                 lambda: tf.image.resize(maps, size, method='bilinear'))


def export(model: keras.Model, transform_output_dir: str, serving_model_dir: str,
           model_config: ModelConfig, flip_average: bool = False) -> None:
  tft_output = tft.TFTransformOutput(transform_output_dir)
  model.tft_layer = tft_output.transform_features_layer()  # attribute: saved with the model
  stride = model_stride(model_config)
  raw_spec = {k: v for k, v in tft_output.raw_feature_spec().items() if k in _TRANSFORM_INPUTS}

  # One function for the three signatures that run the model: traced into each of them, the
  # network and its tiling loops tripled the SavedModel, and every export and load (TFMA loads
  # each model three times) paid for the copies.
  @tf.function(input_signature=[_MAP, _MAP], autograph=False)
  def probability_map(image, fov):
    """One preprocessed image and its FOV [h, w] (training scale) -> vessel probabilities [h, w],
    from the model on the FOV's window."""
    top, bottom, left, right = fov_window(fov, stride)
    height, width = bottom - top, right - left
    padded = tf.pad(image[top:bottom, left:right], [[0, -height % stride], [0, -width % stride]])
    maps = predict_in_tiles(network, padded, margin=TILE_MARGIN_STRIDES * stride)
    full_height, full_width = tf.shape(image)[0], tf.shape(image)[1]
    return tf.pad(maps[:height, :width], [[top, full_height - bottom], [left, full_width - right]])

  def network(tile):
    """The model on one tile [h, w] -> probabilities [h, w]."""
    tile = tile[tf.newaxis, ..., tf.newaxis]
    maps = model(tile, training=False)
    if flip_average:
      # Mean with the prediction of the mirrored image: vessels have no handedness, and the two
      # views' errors are partly independent (costs one more forward pass).
      mirrored = tf.reverse(model(tf.reverse(tile, axis=[2]), training=False), axis=[2])
      maps = (maps + mirrored) / 2.0
    return maps[0, ..., 0]

  def source_maps(transformed):
    """Every row's probabilities and FOV at its source image's size, flattened: [B, None] each.
    Image by image (one at a time: the activations dominate memory), each on its own window, so a
    map never depends on the other images of a call."""
    def one(row):
      image, fov = (transform.row_map(transformed, key, row)
                    for key in (constants.IMAGE_KEY, constants.FOV_KEY))
      source = tf.cast(tf.stack([transformed[transform.SOURCE_HEIGHT_KEY][row],
                                 transformed[transform.SOURCE_WIDTH_KEY][row]]), tf.int32)
      maps = to_size(tf.stack([probability_map(image, fov), fov], axis=-1), source)
      return tf.reshape(maps[..., 0], [-1]), tf.reshape(tf.cast(maps[..., 1] > 0.5, tf.float32), [-1])
    rows = tf.range(tf.shape(transformed[constants.HEIGHT_KEY])[0])
    return tf.map_fn(one, rows, fn_output_signature=(_RAGGED, _RAGGED), parallel_iterations=1)

  def serve_images(images, fovs: Optional[tf.Tensor]):
    transformed = model.tft_layer(transform.raw_features(images, fovs))
    probabilities, fov = source_maps(transformed)
    shape = tf.cast(tf.stack([-1, transformed[transform.SOURCE_HEIGHT_KEY][0],
                              transformed[transform.SOURCE_WIDTH_KEY][0]]), tf.int32)
    return {PROBABILITIES_KEY: tf.reshape(probabilities.to_tensor(), shape),
            constants.FOV_KEY: tf.reshape(fov.to_tensor(), shape)}

  # No AutoGraph: the control flow here is explicit (tf.cond, tf.while_loop, tf.map_fn), and
  # converting the tf_keras code the signatures call costs seconds per export.
  @tf.function(input_signature=[_IMAGES], autograph=False)
  def serve(images):
    return serve_images(images, None)

  @tf.function(input_signature=[_IMAGES, _FOVS], autograph=False)
  def serve_with_fov(images, fovs):
    return serve_images(images, fovs)

  @tf.function(input_signature=[_EXAMPLES], autograph=False)
  def predict_examples(examples):
    probabilities, _ = source_maps(model.tft_layer(tf.io.parse_example(examples, raw_spec)))
    return {PROBABILITIES_KEY: probabilities.to_tensor()}

  @tf.function(input_signature=[_EXAMPLES], autograph=False)
  def transform_features(examples):
    """The examples' own label and FOV maps, flattened: what TFMA scores predict_examples against
    (rows of a batch may differ in size: padded with FOV 0, which weighs nothing)."""
    raw = tf.io.parse_example(examples, raw_spec)

    def one(example):
      _, fov, label = preprocessing.decode_example(*example)
      return tf.reshape(label, [-1]), tf.reshape(fov, [-1])
    encoded = tuple(tf.reshape(raw[key], [-1])
                    for key in (constants.IMAGE_KEY, constants.FOV_KEY, constants.LABEL_KEY))
    label, fov = tf.map_fn(one, encoded, fn_output_signature=(_RAGGED, _RAGGED))
    return {constants.LABEL_KEY: label.to_tensor(), constants.FOV_KEY: fov.to_tensor()}

  # Without Keras's traces of every layer's call (save_traces): serving, TFMA and warm starts use
  # the signatures and the variables only, and the traces took ~10 of an export's ~14 s.
  model.save(serving_model_dir, save_format='tf', save_traces=False, signatures={
      SERVE: serve, SERVE_WITH_FOV: serve_with_fov,
      PREDICT_EXAMPLES: predict_examples, TRANSFORM_FEATURES: transform_features})
  write_model_config(serving_model_dir, model_config)
  _write_extra(serving_model_dir, TRANSFORM_STATISTICS_FILE, transform_statistics(model.tft_layer))


def transform_statistics(tft_layer) -> Dict[str, float]:
  """The analyzer results a transform graph holds (transform.STATISTICS_KEYS), read off its output
  for a small gray image (every output row carries them), narrower than transform.MIN_FOV_WIDTH so
  that it is never resampled, whatever the training scale."""
  side = int(transform.MIN_FOV_WIDTH) - 1
  gray = tf.io.encode_png(tf.fill([side, side, 3], tf.constant(128, tf.uint8)))
  transformed = tft_layer(transform.raw_features(tf.reshape(gray, [1])))
  return {key: float(tf.reshape(transformed[key], [-1])[0]) for key in transform.STATISTICS_KEYS}


def _write_extra(saved_model: str, name: str, values: Dict) -> None:
  path = os.path.join(saved_model, name)
  tf.io.gfile.makedirs(os.path.dirname(path))
  with tf.io.gfile.GFile(path, 'w') as f:
    json.dump(values, f, indent=2)


def _read_extra(saved_model: str, name: str) -> Optional[Dict]:
  """None for a model exported before the file was written."""
  path = os.path.join(saved_model, name)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def write_model_config(saved_model: str, config: ModelConfig) -> None:
  _write_extra(saved_model, MODEL_CONFIG_FILE, dataclasses.asdict(config))


def read_model_config(saved_model: str) -> Optional[ModelConfig]:
  """The settings of an exported model; None for one exported before they were recorded."""
  values = _read_extra(saved_model, MODEL_CONFIG_FILE)
  return ModelConfig(**values) if values is not None else None


def read_transform_statistics(saved_model: str) -> Optional[Dict[str, float]]:
  """An exported model's transform statistics (transform.STATISTICS_KEYS); None for one exported
  before they were recorded. Raises ValueError, naming the file, if it holds anything else."""
  try:
    values = _read_extra(saved_model, TRANSFORM_STATISTICS_FILE)
    return None if values is None else {
        key: float(values[key]) for key in transform.STATISTICS_KEYS}
  except (ValueError, KeyError, TypeError) as error:   # bad JSON, a value missing or not a number
    path = os.path.join(saved_model, TRANSFORM_STATISTICS_FILE)
    raise ValueError(
        f'{path}: not the transform statistics an export writes ({error!r})') from error
