"""The recipe's preprocessing in TF: parity with the recipe's numpy/OpenCV, and the FOV rule."""
import glob
import io
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import real_data
from conftest import recipe_gray, recipe_steps
from models import preprocessing, settings

CONFIG = settings.PreprocessingConfig()
_DRIVE_TRAINING = sorted(glob.glob(real_data.path('DRIVE', 'training', 'images', '*.tif')))


def _recipe_numpy(rgb, mean, std):
  return recipe_steps(recipe_gray(rgb.astype(np.float64)), mean, std, CONFIG)['gamma'] / 255.0


def _synthetic_fundus(seed, height=64, width=72):
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:height, :width]
  disc = ((yy - height / 2) ** 2 + (xx - width / 2) ** 2) < (min(height, width) / 2 - 2) ** 2
  rgb = rng.integers(90, 220, (height, width, 3)) * disc[..., None]
  return rgb.astype(np.uint8), disc.astype(np.uint8) * 255


def test_gamma_table_is_the_recipes():
  expected = np.array([((i / 255.0) ** (1 / 1.2)) * 255 for i in range(256)]).astype(np.uint8)
  np.testing.assert_array_equal(preprocessing.gamma_table(1.2).numpy(), expected)


@pytest.mark.parametrize('seed', [0, 1])
def test_steps_match_the_recipe_on_synthetic_images(seed):
  rgb, fov = _synthetic_fundus(seed)
  gray = preprocessing.to_gray(rgb)
  pixels = gray.numpy()[fov > 0]
  final = preprocessing.preprocess_image(gray, pixels.mean(), pixels.std(), CONFIG).numpy()
  expected = _recipe_numpy(rgb, pixels.mean(), pixels.std())
  # float32 vs float64 can move a pixel across a uint8 truncation boundary; CLAHE then spreads it.
  assert np.abs(final - expected).mean() < 0.5 / 255
  assert np.abs(final - expected).max() <= 3 / 255
  assert final.min() >= 0 and final.max() <= 1
  assert np.allclose(final * 255, np.round(final * 255), atol=1e-4)  # on the k/255 grid


@pytest.mark.real_data('DRIVE')
def test_steps_match_the_recipe_on_drive():
  rgb = np.asarray(Image.open(_DRIVE_TRAINING[0]))
  gray = preprocessing.to_gray(rgb)
  final = preprocessing.preprocess_image(gray, 120.0, 30.0, CONFIG).numpy()
  expected = _recipe_numpy(rgb, 120.0, 30.0)
  assert np.abs(final - expected).mean() < 0.1 / 255
  assert np.abs(final - expected).max() <= 4 / 255


@pytest.mark.real_data('DRIVE')
def test_fov_from_image_matches_drive_masks():
  assert len(_DRIVE_TRAINING) == 20
  for path in _DRIVE_TRAINING[:6]:
    image_id = os.path.basename(path).split('_')[0]
    truth = np.asarray(Image.open(
        real_data.path('DRIVE', 'training', 'mask', f'{image_id}_training_mask.gif')).convert('L')) > 127
    found = preprocessing.fov_from_image(np.asarray(Image.open(path))).numpy() > 0.5
    assert (truth & found).sum() / (truth | found).sum() > 0.98, path


@pytest.mark.parametrize('fmt', ['PNG', 'JPEG', 'GIF', 'BMP'])
def test_the_image_size_is_read_from_the_header_of_every_format_the_graph_decodes(fmt):
  pixels = np.random.default_rng(0).integers(0, 256, (77, 123, 3), dtype=np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format=fmt)
  encoded = tf.constant(buffer.getvalue())
  np.testing.assert_array_equal(preprocessing.encoded_size(encoded), [77, 123])
  assert preprocessing.decode_rgb(encoded).shape == (77, 123, 3)
  # Anything else has no size to read; decoding then says what it is not.
  np.testing.assert_array_equal(preprocessing.encoded_size(tf.constant(b'GIF')), [-1, -1])
  with pytest.raises(tf.errors.InvalidArgumentError, match='Unknown image file format'):
    preprocessing.decode_rgb(tf.constant(b'not an image at all'))
