"""Parity of models.clahe with OpenCV's CLAHE: every case asserts equality, pixel for pixel.

Measured with TF 2.16.2 and opencv-python-headless 4.10.0.84: every case below matches OpenCV
exactly, and so do all 40 real DRIVE images (green and BT.601 gray, clip limits 2 and 4, grids 8x8
and 10x10: 320 images, 105,587,200 pixels, 0 differ).
"""
import glob

import cv2
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import real_data
from models.clahe import clahe


def _opencv_clahe(image, clip_limit, tile_grid_size):
  return cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=tile_grid_size).apply(image)


def _assert_matches_opencv(image, clip_limit=2.0, tile_grid_size=(8, 8)):
  image = np.ascontiguousarray(image, dtype=np.uint8)
  actual = clahe(tf.constant(image), clip_limit, tile_grid_size)
  np.testing.assert_array_equal(actual, _opencv_clahe(image, clip_limit, tile_grid_size))


@pytest.fixture(scope='module')
def drive_rgb_images():
  paths = sorted(glob.glob(real_data.path('DRIVE', 'training', 'images', '*.tif')))[:3]
  assert len(paths) == 3
  return [np.asarray(Image.open(path).convert('RGB')) for path in paths]


@pytest.mark.real_data('DRIVE')
@pytest.mark.parametrize('tile_grid_size', [(8, 8), (10, 10)])
@pytest.mark.parametrize('clip_limit', [2.0, 4.0])
@pytest.mark.parametrize('gray_version', ['green', 'weighted'])
def test_matches_opencv_on_drive(drive_rgb_images, gray_version, clip_limit, tile_grid_size):
  for rgb in drive_rgb_images:
    if gray_version == 'green':
      gray = rgb[..., 1]
    else:
      gray = np.asarray(Image.fromarray(rgb).convert('L'))  # ITU-R 601 luma
    _assert_matches_opencv(gray, clip_limit, tile_grid_size)


@pytest.mark.parametrize('value', [0, 1, 128, 254, 255])
@pytest.mark.parametrize('shape', [(64, 64), (50, 61)])
def test_matches_opencv_on_constant_image(value, shape):
  _assert_matches_opencv(np.full(shape, value, np.uint8))


# Smaller than the grid: OpenCV pads to one pixel per tile (1x1 is padded from a single pixel).
@pytest.mark.parametrize('shape', [(1, 1), (2, 3), (5, 7), (1, 20), (8, 8)])
@pytest.mark.parametrize('tile_grid_size', [(8, 8), (10, 10)])
def test_matches_opencv_on_tiny_image(shape, tile_grid_size):
  image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
  _assert_matches_opencv(image, 2.0, tile_grid_size)


# 37x53 is divisible by neither grid side; 64x60 by one side only, where OpenCV still pads the
# divisible side by a whole grid of pixels (tile height 9, not 8) - the DRIVE 584x565 case.
@pytest.mark.parametrize('shape', [(37, 53), (64, 60), (60, 64)])
def test_matches_opencv_on_image_not_divisible_by_grid(shape):
  image = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
  _assert_matches_opencv(image)


# Clip limit 0 disables clipping; 1.0 and 40.0 make the residual spreading hit many bins / none.
@pytest.mark.parametrize('clip_limit', [0.0, 1.0, 2.0, 40.0])
@pytest.mark.parametrize('tile_grid_size', [(8, 8), (3, 5), (1, 1)])
def test_matches_opencv_on_noise(clip_limit, tile_grid_size):
  rng = np.random.default_rng(2)
  _assert_matches_opencv(rng.integers(0, 256, (128, 96), dtype=np.uint8), clip_limit,
                         tile_grid_size)
  # Narrow range: few bins hold everything, so most pixels are clipped and redistributed.
  _assert_matches_opencv(rng.integers(100, 110, (123, 321), dtype=np.uint8), clip_limit,
                         tile_grid_size)


def test_matches_opencv_on_gradient():
  horizontal = np.tile(np.arange(256, dtype=np.uint8), (100, 1))
  diagonal = (np.add.outer(np.arange(150), np.arange(170)) * 255 // 318).astype(np.uint8)
  _assert_matches_opencv(horizontal)
  _assert_matches_opencv(diagonal, 4.0, (10, 10))


def test_float_input_matches_uint8_input():
  image = np.random.default_rng(3).integers(0, 256, (45, 70), dtype=np.uint8)
  np.testing.assert_array_equal(clahe(tf.constant(image, tf.float32)),
                                _opencv_clahe(image, 2.0, (8, 8)))


def test_works_in_tf_function_with_unknown_size():
  traced = tf.function(lambda image: clahe(image, 2.0, (8, 8)),
                       input_signature=[tf.TensorSpec([None, None], tf.uint8)])
  assert traced.get_concrete_function().structured_outputs.shape.as_list() == [None, None]
  rng = np.random.default_rng(4)
  for shape in [(37, 53), (64, 64), (584, 565)]:
    image = rng.integers(0, 256, shape, dtype=np.uint8)
    np.testing.assert_array_equal(traced(image), _opencv_clahe(image, 2.0, (8, 8)))


def test_works_in_tf1_graph():
  # tf.Transform may trace preprocessing_fn as a TF1 graph (force_tf_compat_v1).
  image = np.random.default_rng(5).integers(0, 256, (37, 53), dtype=np.uint8)
  with tf.Graph().as_default():
    placeholder = tf.compat.v1.placeholder(tf.uint8, [None, None])
    output = clahe(placeholder)
    with tf.compat.v1.Session() as session:
      actual = session.run(output, {placeholder: image})
  np.testing.assert_array_equal(actual, _opencv_clahe(image, 2.0, (8, 8)))


@pytest.mark.parametrize('dtype', [tf.uint8, tf.float32])
def test_output_dtype_and_shape(dtype):
  image = tf.constant(np.random.default_rng(6).integers(0, 256, (33, 47)), dtype)
  output = clahe(image).numpy()
  assert output.dtype == np.float32
  assert output.shape == (33, 47)
  assert output.min() >= 0 and output.max() <= 255
  np.testing.assert_array_equal(output, np.round(output))
