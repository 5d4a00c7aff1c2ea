"""The recipe's preprocessing in TF: parity with the recipe's numpy/OpenCV, analyzers, FOV, serving."""
import glob
import os
import tempfile

import cv2
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform.beam as tft_beam
from PIL import Image
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from conftest import REAL_DRIVE
from models import constants, preprocessing, settings

CONFIG = settings.PreprocessingConfig()
_DRIVE_TRAINING = sorted(glob.glob(os.path.join(REAL_DRIVE, 'training', 'images', '*.tif')))


def _recipe_numpy(rgb, mean, std, config=CONFIG):
  """The recipe as its authors wrote it: numpy, uint8 casts, cv2 CLAHE and cv2.LUT gamma."""
  gray = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
  standardised = (gray - mean) / std
  rescaled = (standardised - standardised.min()) / (standardised.max() - standardised.min()) * 255
  equalised = cv2.createCLAHE(clipLimit=config.clahe_clip_limit,
                              tileGridSize=(config.clahe_tile_grid,) * 2).apply(rescaled.astype(np.uint8))
  table = np.array([((i / 255.0) ** (1.0 / config.gamma)) * 255 for i in range(256)]).astype(np.uint8)
  return cv2.LUT(equalised, table) / 255.0


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
  expected = _recipe_numpy(rgb.astype(np.float64), pixels.mean(), pixels.std())
  # float32 vs float64 can move a pixel across a uint8 truncation boundary; CLAHE then spreads it.
  assert np.abs(final - expected).mean() < 0.5 / 255
  assert np.abs(final - expected).max() <= 3 / 255
  assert final.min() >= 0 and final.max() <= 1
  assert np.allclose(final * 255, np.round(final * 255), atol=1e-4)  # on the k/255 grid


@pytest.mark.skipif(not _DRIVE_TRAINING, reason='real DRIVE not present')
def test_steps_match_the_recipe_on_drive():
  rgb = np.asarray(Image.open(_DRIVE_TRAINING[0]))
  gray = preprocessing.to_gray(rgb)
  final = preprocessing.preprocess_image(gray, 120.0, 30.0, CONFIG).numpy()
  expected = _recipe_numpy(rgb.astype(np.float64), 120.0, 30.0)
  assert np.abs(final - expected).mean() < 0.1 / 255
  assert np.abs(final - expected).max() <= 4 / 255


@pytest.mark.skipif(not _DRIVE_TRAINING, reason='real DRIVE not present')
def test_fov_from_image_matches_drive_masks():
  for path in _DRIVE_TRAINING[:6]:
    image_id = os.path.basename(path).split('_')[0]
    truth = np.asarray(Image.open(
        os.path.join(REAL_DRIVE, 'training', 'mask', f'{image_id}_training_mask.gif')).convert('L')) > 127
    found = preprocessing.fov_from_image(np.asarray(Image.open(path))).numpy() > 0.5
    assert (truth & found).sum() / (truth | found).sum() > 0.98, path


def _transform(rows):
  spec = {key: tf.io.FixedLenFeature([1], tf.string) for key in (
      constants.IMAGE_ID_KEY, constants.IMAGE_KEY, constants.LABEL_KEY, constants.FOV_KEY)}
  metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(spec))
  with tft_beam.Context(temp_dir=tempfile.mkdtemp()):
    (transformed, _), transform_fn = ((rows, metadata) | tft_beam.AnalyzeAndTransformDataset(
        preprocessing.preprocessing_fn))
  return transformed


def _png(pixels):
  return tf.io.encode_png(pixels if pixels.ndim == 3 else pixels[..., None]).numpy()


def test_preprocessing_fn_uses_dataset_level_fov_statistics_one_row_per_image():
  images = [_synthetic_fundus(seed) for seed in range(3)]
  labels = [(np.random.default_rng(9).random(fov.shape) > 0.8).astype(np.uint8) * 255
            for _, fov in images]
  rows = [{constants.IMAGE_ID_KEY: [str(i).encode()], constants.IMAGE_KEY: [_png(rgb)],
           constants.FOV_KEY: [_png(fov)], constants.LABEL_KEY: [_png(label)]}
          for i, ((rgb, fov), label) in enumerate(zip(images, labels))]
  transformed = _transform(rows)
  assert len(transformed) == len(rows)

  fov_gray = np.concatenate([preprocessing.to_gray(rgb).numpy()[fov > 0] for rgb, fov in images])
  for row, (rgb, fov), label in zip(transformed, images, labels):
    assert row[preprocessing.FOV_GRAY_MEAN_KEY] == pytest.approx(fov_gray.mean(), rel=1e-5)
    assert row[preprocessing.FOV_GRAY_STD_KEY] == pytest.approx(fov_gray.std(), rel=1e-4)
    assert (row[constants.HEIGHT_KEY], row[constants.WIDTH_KEY]) == fov.shape
    expected = preprocessing.preprocess_image(preprocessing.to_gray(rgb), fov_gray.mean(),
                                              fov_gray.std(), CONFIG).numpy()
    np.testing.assert_allclose(row[constants.IMAGE_KEY].reshape(fov.shape), expected, atol=1e-5)
    np.testing.assert_array_equal(row[constants.LABEL_KEY].reshape(fov.shape), label / 255)
    np.testing.assert_array_equal(row[constants.FOV_KEY].reshape(fov.shape), fov / 255)


def test_raw_features_for_serving_fill_what_serving_lacks():
  features = preprocessing.raw_features(tf.constant([b'a', b'b']))
  assert features[constants.IMAGE_KEY].shape == (2, 1)
  assert features[constants.FOV_KEY].numpy().tolist() == [[b''], [b'']]
  given = preprocessing.raw_features(tf.constant([b'a']), tf.constant([b'm']))
  assert given[constants.FOV_KEY].numpy().tolist() == [[b'm']]
