"""The recipe's preprocessing as TF ops, one image at a time, and the FOV of images without a mask.

Per image: gray conversion -> standardisation with the dataset-level mean/std of FOV pixels (TFT
analyzers over the train split, models/transform.py) -> per-image rescale to 0..255 -> CLAHE ->
gamma correction -> /255. Everything after the analyzers is a plain TF function of one image, so
the transform graph that the exported model embeds computes exactly what the Trainer was fed (no
training/serving skew).
"""
from typing import Dict

import tensorflow as tf

from models import constants
from models.clahe import clahe
from models.settings import PreprocessingConfig

# ITU-R BT.601 luma weights, as the recipe's rgb2gray uses: green dominates (0.587), which is where
# vessel contrast lives, while red and blue still damp sensor noise of the green channel.
GRAY_WEIGHTS = (0.299, 0.587, 0.114)



_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def _header_field(encoded: tf.Tensor, offset: int, dtype, little_endian: bool) -> tf.Tensor:
  """Two consecutive integers of `dtype` at byte `offset`, as int64 [2]."""
  length = 2 * tf.as_dtype(dtype).size
  return tf.cast(tf.io.decode_raw(tf.strings.substr(encoded, offset, length), dtype,
                                  little_endian=little_endian), tf.int64)


def encoded_size(encoded: tf.Tensor) -> tf.Tensor:
  """[height, width] of a PNG, JPEG, GIF or BMP (the formats decode_image reads) from its header,
  without decoding it; [-1, -1] for anything else, which decode_image then refuses."""
  magic = tf.strings.substr(encoded, 0, 8)
  length = tf.strings.length(encoded)
  starts_with = lambda prefix: tf.equal(tf.strings.substr(magic, 0, len(prefix)), prefix)
  return tf.case([
      # PNG IHDR: big-endian 32-bit width, height at byte 16.
      (tf.equal(magic, _PNG_SIGNATURE) & (length >= 24),
       lambda: tf.reverse(_header_field(encoded, 16, tf.int32, False), [0])),
      (starts_with(b'\xff\xd8\xff'),
       lambda: tf.cast(tf.image.extract_jpeg_shape(encoded)[:2], tf.int64)),
      # GIF logical screen: little-endian 16-bit width, height at byte 6.
      (starts_with(b'GIF') & (length >= 10),
       lambda: tf.reverse(_header_field(encoded, 6, tf.uint16, True), [0])),
      # BMP info header: little-endian 32-bit width, height (negative: stored top-down) at byte 18.
      (starts_with(b'BM') & (length >= 26),
       lambda: tf.abs(tf.reverse(_header_field(encoded, 18, tf.int32, True), [0]))),
  ], default=lambda: tf.constant([-1, -1], tf.int64))


def decode_rgb(encoded: tf.Tensor) -> tf.Tensor:
  """PNG, JPEG, GIF or BMP bytes -> uint8 [H, W, 3]. An image of more than
  constants.MAX_IMAGE_PIXELS pixels is refused from its header, before a byte is decoded: a
  compressed file of a few hundred KB can hold billions of pixels."""
  size = encoded_size(encoded)
  with tf.control_dependencies([tf.debugging.Assert(
      size[0] * size[1] <= constants.MAX_IMAGE_PIXELS,
      [f'image has more than {constants.MAX_IMAGE_PIXELS:,} pixels; its height and width:', size])]):
    return tf.io.decode_image(encoded, channels=3, expand_animations=False)


def decode_mask(encoded: tf.Tensor) -> tf.Tensor:
  """0/255 PNG -> float32 [H, W] of 0/1."""
  return tf.cast(tf.io.decode_png(encoded, channels=1)[..., 0] > 127, tf.float32)


# A fundus photo is dark outside its field of view (FOV), but how dark differs: DRIVE's surround is
# ~8, CHASE_DB1's 0, STARE's a grey-green (red ~15-30, up to ~60 in a halo by the aperture), while
# the FOV's own periphery can be as dark as ~25 (CHASE_DB1) or ~45 (STARE). So the threshold is set
# per image, in the red channel (where retina and surround differ most), between two levels:
# - the surround: red in the image's corners, which a round FOV leaves out (the FOV_CORNER_QUANTILE
#   of each FOV_CORNER_FRACTION-sized corner square; the second highest of the four, so one corner
#   with a caption or a FOV reaching into it cannot raise it). Corners brighter than
#   FOV_SURROUND_CEILING are retina, not surround (an image cropped inside its FOV): capped there,
#   such an image comes out (nearly) all FOV;
# - a dark-FOV level: the FOV_LEVEL_QUANTILE of red over the pixels brighter than the surround by
#   FOV_LEVEL_MARGIN.
# The threshold lies FOV_THRESHOLD_FRACTION of the way from the first to the second. The FOV is one
# convex-ish region, so runs shorter than FOV_MIN_RUN pixels (noise, JPEG blocks) are dropped and
# every pixel between the first and last FOV pixel of its row, and of its column, is FOV: dark
# patches inside the FOV (haemorrhages, a dim macula, underexposed areas) leave no holes.
# Measured IoU (mean / min) against DRIVE's 40 published masks: 0.9957 / 0.9893; against masks
# fitted to the aperture edge of all 20 STARE and 28 CHASE_DB1 images: 0.9936 / 0.9909 and
# 0.9958 / 0.9942 (tests/test_fov.py).
FOV_CORNER_FRACTION = 0.05
FOV_CORNER_QUANTILE = 0.9
FOV_SURROUND_CEILING = 60.0
FOV_LEVEL_MARGIN = 10.0
FOV_LEVEL_QUANTILE = 0.2
FOV_THRESHOLD_FRACTION = 0.2
FOV_MIN_RUN = 5


def _red_histogram(red: tf.Tensor) -> tf.Tensor:
  """int32 levels 0..255 (any shape) -> float32 [256] counts."""
  return tf.math.bincount(tf.reshape(red, [-1]), minlength=256, maxlength=256, dtype=tf.float32)


def _histogram_quantile(histogram: tf.Tensor, q: float) -> tf.Tensor:
  """The smallest level with at least a fraction q of the histogram's counts at or below it."""
  cumulative = tf.cumsum(histogram)
  return tf.cast(tf.argmax(tf.cast(cumulative >= q * cumulative[-1], tf.int32)), tf.float32)


def _runs_at_least(mask: tf.Tensor, axis: int) -> tf.Tensor:
  """bool [H, W] -> the pixels centred in a run of FOV_MIN_RUN along `axis` (an erosion)."""
  reach = FOV_MIN_RUN // 2
  length = tf.shape(mask)[axis]
  padded = tf.pad(mask, [[reach, reach], [0, 0]] if axis == 0 else [[0, 0], [reach, reach]])
  eroded = mask
  for shift in range(FOV_MIN_RUN):
    window = slice(shift, shift + length)
    eroded = eroded & (padded[window] if axis == 0 else padded[:, window])
  return eroded


def fov_from_image(rgb: tf.Tensor) -> tf.Tensor:
  """uint8 [H, W, 3] -> float32 [H, W] of 0/1, for images that come without a mask."""
  red = tf.cast(tf.convert_to_tensor(rgb)[:, :, 0], tf.int32)
  height, width = tf.shape(red)[0], tf.shape(red)[1]
  side = tf.maximum(1, tf.cast(tf.round(
      FOV_CORNER_FRACTION * tf.cast(tf.minimum(height, width), tf.float32)), tf.int32))
  first, last = slice(None, side), slice(-side, None)
  corners = tf.stack([_histogram_quantile(_red_histogram(red[rows, columns]), FOV_CORNER_QUANTILE)
                      for rows in (first, last) for columns in (first, last)])
  surround = tf.minimum(tf.math.top_k(corners, 2).values[1], FOV_SURROUND_CEILING)
  histogram = _red_histogram(red)
  brighter = histogram * tf.cast(tf.range(256, dtype=tf.float32) > surround + FOV_LEVEL_MARGIN,
                                 tf.float32)
  # An image with nothing clearly brighter than its corners has no FOV to find: the level is then
  # the surround's, and so is the threshold.
  level = tf.where(tf.reduce_sum(brighter) > 0,
                   _histogram_quantile(brighter, FOV_LEVEL_QUANTILE), surround)
  threshold = surround + FOV_THRESHOLD_FRACTION * (level - surround)
  fov = tf.cast(red, tf.float32) > threshold

  # Each row's FOV spans its first to last pixel of a long enough run (the erosion undone by
  # `reach`), each column's likewise; the FOV is where both spans cover a pixel.
  reach = float(FOV_MIN_RUN // 2)
  far = tf.cast(height + width + FOV_MIN_RUN, tf.float32)
  xs = tf.range(width, dtype=tf.float32)[tf.newaxis, :]
  ys = tf.range(height, dtype=tf.float32)[:, tf.newaxis]
  outside_runs = 1.0 - tf.cast(_runs_at_least(fov, axis=1), tf.float32)
  row_first = tf.reduce_min(xs + far * outside_runs, axis=1, keepdims=True) - reach
  row_last = tf.reduce_max(xs - far * outside_runs, axis=1, keepdims=True) + reach
  outside_runs = 1.0 - tf.cast(_runs_at_least(fov, axis=0), tf.float32)
  column_first = tf.reduce_min(ys + far * outside_runs, axis=0, keepdims=True) - reach
  column_last = tf.reduce_max(ys - far * outside_runs, axis=0, keepdims=True) + reach
  inside = (xs >= row_first) & (xs <= row_last) & (ys >= column_first) & (ys <= column_last)
  return tf.cast(inside, tf.float32)


def to_gray(rgb: tf.Tensor) -> tf.Tensor:
  return tf.tensordot(tf.cast(rgb, tf.float32), tf.constant(GRAY_WEIGHTS, tf.float32), axes=1)


def gamma_table(gamma: float) -> tf.Tensor:
  """The recipe's 256-entry gamma LUT, truncated to whole gray levels as its uint8 cast does."""
  levels = tf.range(256, dtype=tf.float32) / 255.0
  return tf.floor(tf.pow(levels, 1.0 / gamma) * 255.0)


def preprocessing_steps(gray: tf.Tensor, mean: tf.Tensor, std: tf.Tensor,
                        config: PreprocessingConfig) -> Dict[str, tf.Tensor]:
  """Every step of the recipe for one gray image [H, W], each as float32 [H, W].

  The final step, 'image', is in [0, 1] and takes only the 256 values k/255, which lets patches be
  stored as uint8 without loss.
  """
  standardised = (gray - mean) / std
  low, high = tf.reduce_min(standardised), tf.reduce_max(standardised)
  rescaled = (standardised - low) / tf.maximum(high - low, 1e-6) * 255.0
  # The recipe casts to uint8 (truncation) before CLAHE.
  equalised = clahe(tf.floor(rescaled), config.clahe_clip_limit,
                    (config.clahe_tile_grid, config.clahe_tile_grid))
  corrected = tf.gather(gamma_table(config.gamma), tf.cast(equalised, tf.int32))
  return {'gray': gray, 'standardised': standardised, 'rescaled': rescaled,
          'clahe': equalised, 'gamma': corrected, 'image': corrected / 255.0}


def preprocess_image(gray: tf.Tensor, mean: tf.Tensor, std: tf.Tensor,
                     config: PreprocessingConfig) -> tf.Tensor:
  return preprocessing_steps(gray, mean, std, config)['image']


def decode_example(image: tf.Tensor, fov: tf.Tensor, label: tf.Tensor):
  """Encoded image, FOV and label of one example -> gray, fov, label as float32 [H, W].

  Serving gives only the image (TFT then feeds empty strings for the rest): the FOV is then computed
  from the image and the label, which serving does not use, is all zeros.
  """
  rgb = decode_rgb(image)
  fov = tf.cond(tf.strings.length(fov) > 0, lambda: decode_mask(fov), lambda: fov_from_image(rgb))
  label = tf.cond(tf.strings.length(label) > 0, lambda: decode_mask(label),
                  lambda: tf.zeros_like(fov))
  return to_gray(rgb), fov, label
