"""CLAHE written with TensorFlow ops only, so it runs inside tf.Transform and serving graphs.

It reproduces OpenCV's `cv2.createCLAHE(clip_limit, tile_grid_size).apply(image)` for 8-bit gray
images (imgproc/src/clahe.cpp), including its quirks:

* If either side is not a multiple of the grid, *both* sides are padded with BORDER_REFLECT_101 by
  `tiles - size % tiles`, so a side that was already divisible gains a whole extra row (column) of
  pixels per tile. E.g. DRIVE's 584x565 with an 8x8 grid gets 74x71-pixel tiles, not 73x71.
* Histograms are computed on the padded image, but interpolation runs over the original pixels
  with the padded tile size.
* Arithmetic is done in the same float32 order as OpenCV and rounded half-to-even like cvRound.
  tests/test_clahe.py allows a mean difference of 1 gray level and a maximum of 4 (float order
  may differ between CPUs); on the machines measured every case matched exactly.
"""

import tensorflow as tf

_HIST_SIZE = 256  # 8-bit gray levels


def clahe(image, clip_limit=2.0, tile_grid_size=(8, 8)):
  """Contrast limited adaptive histogram equalisation of one gray image.

  Args:
    image: uint8 or float tensor with values in [0, 255], shape [H, W]; H and W may be unknown at
      trace time. Float values are rounded to the nearest gray level first.
    clip_limit: Python number, OpenCV's clipLimit (<= 0 disables clipping).
    tile_grid_size: (tiles_x, tiles_y), i.e. (columns, rows) as in OpenCV's tileGridSize.

  Returns:
    float32 tensor [H, W] holding whole gray levels in [0, 255].
  """
  tiles_x, tiles_y = (int(n) for n in tile_grid_size)
  if tiles_x < 1 or tiles_y < 1:
    raise ValueError(f'tile_grid_size must be positive, got {tile_grid_size}')
  clip_limit = float(clip_limit)

  image = tf.convert_to_tensor(image)
  image.shape.assert_has_rank(2)
  if not image.dtype.is_integer:
    image = tf.round(image)
  gray = tf.cast(tf.clip_by_value(tf.cast(image, tf.float32), 0.0, 255.0), tf.int32)

  height, width = tf.shape(gray)[0], tf.shape(gray)[1]
  # tf.not_equal / tf.equal rather than != / ==, which compare identity in TF1-style graphs.
  needs_padding = tf.logical_or(tf.not_equal(height % tiles_y, 0), tf.not_equal(width % tiles_x, 0))
  padded_height = tf.where(needs_padding, height + tiles_y - height % tiles_y, height)
  padded_width = tf.where(needs_padding, width + tiles_x - width % tiles_x, width)
  tile_height = padded_height // tiles_y
  tile_width = padded_width // tiles_x

  luts = _tile_luts(gray, padded_height, padded_width, tile_height, tile_width,
                    tiles_x, tiles_y, clip_limit)
  return _interpolate(gray, luts, tile_height, tile_width, tiles_x, tiles_y)


def _reflect_101(index, size):
  """Maps indices past the end of [0, size) back inside like BORDER_REFLECT_101.

  For size 4: 0 1 2 3 | 2 1 0 1 2 3 2 ... (the edge pixel is not repeated; reflects again and again
  when the padding is longer than the image, as OpenCV's borderInterpolate does).
  """
  period = tf.maximum(2 * (size - 1), 1)  # size 1 has period 1: everything maps to 0
  index = index % period
  return tf.where(index >= size, period - index, index)


def _tile_luts(gray, padded_height, padded_width, tile_height, tile_width,
               tiles_x, tiles_y, clip_limit):
  """Returns the clipped-histogram-equalisation LUT of each tile: int32 [tiles_y * tiles_x, 256]."""
  height, width = tf.shape(gray)[0], tf.shape(gray)[1]
  rows = _reflect_101(tf.range(padded_height), height)
  cols = _reflect_101(tf.range(padded_width), width)
  padded = tf.gather(tf.gather(gray, rows, axis=0), cols, axis=1)

  # One bincount over "tile * 256 + gray level" builds all tile histograms at once.
  row_offsets = (tf.range(padded_height) // tile_height) * (tiles_x * _HIST_SIZE)
  col_offsets = (tf.range(padded_width) // tile_width) * _HIST_SIZE
  bins = padded + row_offsets[:, None] + col_offsets[None, :]
  num_tiles = tiles_x * tiles_y
  hist = tf.math.bincount(tf.reshape(bins, [-1]), minlength=num_tiles * _HIST_SIZE,
                          maxlength=num_tiles * _HIST_SIZE, dtype=tf.int32)
  hist = tf.reshape(hist, [num_tiles, _HIST_SIZE])

  tile_area = tile_height * tile_width
  if clip_limit > 0:
    hist = _clip_and_redistribute(hist, clip_limit, tile_area)

  # OpenCV: saturate_cast<uchar>(float(cdf) * (255.f / area)), i.e. float32 and round half to even.
  lut_scale = tf.constant(_HIST_SIZE - 1, tf.float32) / tf.cast(tile_area, tf.float32)
  cdf = tf.cast(tf.cumsum(hist, axis=1), tf.float32)
  return tf.cast(tf.clip_by_value(tf.round(cdf * lut_scale), 0.0, 255.0), tf.int32)


def _clip_and_redistribute(hist, clip_limit, tile_area):
  """Clips every bin at the pixel limit and hands the excess back out the way OpenCV does."""
  # int(clip_limit * area / 256) computed in double precision, at least 1 pixel.
  limit = tf.cast(clip_limit * tf.cast(tile_area, tf.float64) / _HIST_SIZE, tf.int32)
  limit = tf.maximum(limit, 1)
  excess = tf.reduce_sum(tf.maximum(hist - limit, 0), axis=1, keepdims=True)
  hist = tf.minimum(hist, limit)

  # Every bin gets excess // 256; the remaining `residual` pixels go one each to bins
  # 0, step, 2*step, ... with step = max(256 // residual, 1).
  batch = excess // _HIST_SIZE
  residual = excess % _HIST_SIZE
  step = tf.maximum(_HIST_SIZE // tf.maximum(residual, 1), 1)
  bin_index = tf.range(_HIST_SIZE)[None, :]
  gets_residual = tf.logical_and(tf.equal(bin_index % step, 0), bin_index // step < residual)
  return hist + batch + tf.cast(gets_residual, tf.int32)


def _interpolation_coords(length, tile_size, num_tiles):
  """Neighbouring tile indices and weights along one axis, in OpenCV's float32 arithmetic."""
  inv_tile_size = tf.constant(1.0, tf.float32) / tf.cast(tile_size, tf.float32)
  position = tf.cast(tf.range(length), tf.float32) * inv_tile_size - 0.5
  lower = tf.floor(position)
  weight = position - lower
  lower = tf.cast(lower, tf.int32)
  # Clamping after the weights are taken makes border pixels use one tile with full weight.
  upper = tf.minimum(lower + 1, num_tiles - 1)
  lower = tf.maximum(lower, 0)
  return lower, upper, weight, 1.0 - weight


def _interpolate(gray, luts, tile_height, tile_width, tiles_x, tiles_y):
  """Bilinearly blends the LUTs of the four tiles around each pixel (OpenCV's evaluation order)."""
  height, width = tf.shape(gray)[0], tf.shape(gray)[1]
  y1, y2, ya, ya1 = _interpolation_coords(height, tile_height, tiles_y)
  x1, x2, xa, xa1 = _interpolation_coords(width, tile_width, tiles_x)
  flat_luts = tf.reshape(tf.cast(luts, tf.float32), [-1])

  def lookup(tile_row, tile_col):
    tile = tile_row[:, None] * tiles_x + tile_col[None, :]
    return tf.gather(flat_luts, tile * _HIST_SIZE + gray)

  xa, xa1 = xa[None, :], xa1[None, :]
  ya, ya1 = ya[:, None], ya1[:, None]
  blended = ((lookup(y1, x1) * xa1 + lookup(y1, x2) * xa) * ya1 +
             (lookup(y2, x1) * xa1 + lookup(y2, x2) * xa) * ya)
  return tf.clip_by_value(tf.round(blended), 0.0, 255.0)
