"""Transform's preprocessing_fn: one row per image, of any size, at the training scale.

Each image is decoded on its own, so a batch may mix datasets and sizes. It is resampled so that
its field of view is as wide as the median training image's FOV (a TFT analyzer over the train
split, so the width is part of the transform graph), then preprocessed with the dataset-level
FOV statistics (models/preprocessing.py). A warm start keeps its base model's values of these
instead (settings.BASE_STATISTICS_KEY). Images already within SCALE_TOLERANCE of that width are
left as they are: DRIVE's own FOV widths differ by ~2 %, and resampling would only blur them. The
exported model runs this same graph, so a photo of any resolution reaches the network at the scale
it was trained at, and serving resamples the map back to the photo's size (models/serving.py).

Maps leave Transform as one string per map: a serialized uint8 tensor [H, W] (see `encode_map`),
with the map's height and width and the source image's size. One byte per pixel and map is
lossless: the preprocessed image takes only the 256 values k/255 of the recipe's gamma LUT, label
and FOV are 0/1. (As float32 they took 12 bytes per pixel for the three.)
"""
from typing import Any, Dict, Optional

import tensorflow as tf
import tensorflow_transform as tft

from models import constants, patches, preprocessing
from models.settings import BASE_STATISTICS_KEY, PreprocessingConfig

FOV_GRAY_MEAN_KEY = 'fov_gray_mean'
FOV_GRAY_STD_KEY = 'fov_gray_std'
REFERENCE_FOV_WIDTH_KEY = 'reference_fov_width'   # pixels, after the analyzer
# The analyzers' results: what a warm start keeps of its base model (settings.BASE_STATISTICS_KEY).
STATISTICS_KEYS = (REFERENCE_FOV_WIDTH_KEY, FOV_GRAY_MEAN_KEY, FOV_GRAY_STD_KEY)
SOURCE_HEIGHT_KEY = 'source_height'
SOURCE_WIDTH_KEY = 'source_width'
SCALE_TOLERANCE = 0.1
MIN_FOV_WIDTH = 16.0   # a narrower FOV (a crop, a failed FOV) is not resampled
REFERENCE_EPSILON = 1e-3   # rank error of the median: none on a few thousand training images
_RAGGED = tf.RaggedTensorSpec([None], tf.float32, ragged_rank=0)
_ENCODED = tf.TensorSpec([], tf.string)


def fov_width(fov: tf.Tensor) -> tf.Tensor:
  """Columns holding FOV pixels: the FOV's diameter, also where the frame clips it top and bottom."""
  return tf.reduce_sum(tf.cast(tf.reduce_any(fov > 0.5, axis=0), tf.float32))


def scale_to(width: tf.Tensor, reference: tf.Tensor) -> tf.Tensor:
  """The factor that brings a FOV `width` pixels wide to `reference`; 1 within the tolerance."""
  scale = reference / tf.maximum(width, 1.0)
  resample = (width >= MIN_FOV_WIDTH) & (tf.abs(scale - 1.0) > SCALE_TOLERANCE)
  return tf.where(resample, scale, 1.0)


def resample(maps: tf.Tensor, scale: tf.Tensor) -> tf.Tensor:
  """[H, W, C] -> [round(H * scale), round(W * scale), C], area-averaged when shrinking."""
  size = tf.maximum(tf.cast(tf.round(tf.cast(tf.shape(maps)[:2], tf.float32) * scale), tf.int32), 1)
  return tf.cond(tf.equal(scale, 1.0), lambda: maps,
                 lambda: tf.image.resize(maps, size, method='bilinear', antialias=True))


def raw_features(images: tf.Tensor, fovs: Optional[tf.Tensor] = None) -> Dict[str, tf.Tensor]:
  """[batch] encoded images (and FOV masks, optional) -> the raw features the transform graph takes.

  The graph needs every raw feature it was traced with: what serving lacks goes in as empty strings.
  """
  as_column = lambda values: tf.reshape(values, [-1, 1])
  empty = tf.fill(tf.shape(as_column(images)), '')
  return {constants.IMAGE_KEY: as_column(images),
          constants.FOV_KEY: empty if fovs is None else as_column(fovs),
          constants.LABEL_KEY: empty, constants.IMAGE_ID_KEY: empty, constants.DATASET_KEY: empty}


def encode_map(values: tf.Tensor, key: str) -> tf.Tensor:
  """float32 map [H, W] -> a serialized uint8 tensor [H, W]: the preprocessed image (in [0, 1], on
  the k/255 grid) as its level k, exactly; a label or FOV (0/1) as 0/1."""
  levels = tf.round(values * 255.0) if key == constants.IMAGE_KEY else tf.cast(values > 0.5,
                                                                              tf.float32)
  return tf.io.serialize_tensor(tf.cast(levels, tf.uint8))


def decode_map(encoded: tf.Tensor, key: str) -> tf.Tensor:
  """One map of Transform's output -> float32 [H, W]: the image in [0, 1], label and FOV 0/1."""
  levels = tf.cast(tf.io.parse_tensor(encoded, tf.uint8), tf.float32)
  levels = tf.ensure_shape(levels, [None, None])
  return levels / 255.0 if key == constants.IMAGE_KEY else levels


def row_map(transformed: Dict[str, Any], key: str, row: tf.Tensor) -> tf.Tensor:
  """Row `row`'s map `key` of Transform's output -> float32 [H, W]."""
  return decode_map(tf.reshape(transformed[key], [-1])[row], key)


def preprocessing_fn(inputs: Dict[str, tf.Tensor], custom_config=None) -> Dict[str, Any]:
  """tf.Transform entry point: one output row per input image, so the graph serves images too."""
  config = PreprocessingConfig.from_custom_config(custom_config)
  base_statistics = (custom_config or {}).get(BASE_STATISTICS_KEY)

  def statistic(key, analyze):
    """The base model's value of an analyzer's result, or the analyzer over this run's data."""
    return tf.constant(base_statistics[key], tf.float32) if base_statistics else analyze()

  encoded = tuple(tf.reshape(inputs[key], [-1])
                  for key in (constants.IMAGE_KEY, constants.FOV_KEY, constants.LABEL_KEY))

  def decode(example):
    gray, fov, label = preprocessing.decode_example(*example)
    return tf.reshape(tf.stack([gray, fov, label], axis=-1), [-1]), tf.shape(gray), fov_width(fov)

  size_spec = tf.TensorSpec([2], tf.int32)
  maps, source, widths = tf.map_fn(decode, encoded,
                                   fn_output_signature=(_RAGGED, size_spec, tf.float32))
  # Pass 1: the median FOV width of the training images is the training scale. Not the mean: one
  # dataset of much larger photos would drag the others to its scale (DRIVE + STARE + CHASE_DB1 +
  # HRF: mean 1,516 px, DRIVE upscaled 2.8x; median 919 px, CHASE_DB1's, HRF shrunk 3.5x).
  reference = statistic(REFERENCE_FOV_WIDTH_KEY, lambda: tf.reshape(tft.quantiles(
      widths, num_buckets=2, epsilon=REFERENCE_EPSILON, name='reference_fov_width'), []))

  def normalise(row):
    flat, shape, width = row
    resampled = resample(tf.reshape(flat, tf.concat([shape, [3]], 0)), scale_to(width, reference))
    gray, fov, label = (resampled[..., 0], tf.cast(resampled[..., 1] > 0.5, tf.float32),
                        tf.cast(resampled[..., 2] > 0.5, tf.float32))
    return tuple(tf.reshape(m, [-1]) for m in (gray, fov, label)) + (tf.shape(gray),)

  gray, fov, label, size = tf.map_fn(normalise, (maps, source, widths),
                                     fn_output_signature=(_RAGGED, _RAGGED, _RAGGED, size_spec))
  # Pass 2: dataset-level standardisation statistics of FOV pixels, at the training scale.
  fov_pixels = tf.boolean_mask(gray.flat_values, fov.flat_values > 0.5)
  mean = statistic(FOV_GRAY_MEAN_KEY, lambda: tft.mean(fov_pixels, name='fov_gray_mean'))
  std = statistic(FOV_GRAY_STD_KEY, lambda: tf.sqrt(tft.var(fov_pixels, name='fov_gray_var')))

  def preprocess_and_encode(row):
    flat_gray, flat_label, flat_fov, shape = row
    image = preprocessing.preprocess_image(tf.reshape(flat_gray, shape), mean, std, config)
    maps = (image, tf.reshape(flat_label, shape), tf.reshape(flat_fov, shape))
    return tuple(encode_map(m, key) for m, key in zip(maps, patches.MAP_KEYS))

  encoded_maps = tf.map_fn(preprocess_and_encode, (gray, label, fov, size),
                           fn_output_signature=(_ENCODED,) * 3)
  per_image = lambda value: tf.fill(tf.shape(widths), value)
  as_int64 = lambda sizes, axis: tf.cast(sizes[:, axis], tf.int64)
  return {
      constants.DATASET_KEY: inputs[constants.DATASET_KEY],   # PatchGen balances the datasets
      constants.IMAGE_ID_KEY: inputs[constants.IMAGE_ID_KEY],
      **dict(zip(patches.MAP_KEYS, encoded_maps)),
      constants.HEIGHT_KEY: as_int64(size, 0),
      constants.WIDTH_KEY: as_int64(size, 1),
      SOURCE_HEIGHT_KEY: as_int64(source, 0),
      SOURCE_WIDTH_KEY: as_int64(source, 1),
      # The analyzers' results, so tools can show the steps exactly as the pipeline ran them.
      REFERENCE_FOV_WIDTH_KEY: per_image(reference),
      FOV_GRAY_MEAN_KEY: per_image(mean),
      FOV_GRAY_STD_KEY: per_image(std),
  }
