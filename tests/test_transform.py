"""Transform's preprocessing_fn: one row per image of any size, resampled to the training scale
(the train split's median FOV width), standardised with dataset-level FOV statistics."""
import functools
import tempfile

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform.beam as tft_beam
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils
from tfx.components.transform import executor as tfx_transform
from tfx.proto import example_gen_pb2

from models import constants, preprocessing, settings, transform
from pipeline import configs, pipeline

CONFIG = settings.PreprocessingConfig()


def _fundus(seed, height=64, width=72, radius=None):
  """A bright noisy disc (the FOV) on black; its diameter is 2 * radius."""
  rng = np.random.default_rng(seed)
  radius = radius or min(height, width) / 2 - 2
  yy, xx = np.mgrid[:height, :width]
  disc = ((yy - height / 2 + 0.5) ** 2 + (xx - width / 2 + 0.5) ** 2) < radius ** 2
  rgb = rng.integers(90, 220, (height, width, 3)) * disc[..., None]
  return rgb.astype(np.uint8), disc.astype(np.uint8) * 255


def _png(pixels):
  return tf.io.encode_png(pixels if pixels.ndim == 3 else pixels[..., None]).numpy()


def _rows(images, labels):
  return [{constants.DATASET_KEY: [b'test'], constants.IMAGE_ID_KEY: [str(i).encode()],
           constants.IMAGE_KEY: [_png(rgb)],
           constants.FOV_KEY: [_png(fov)], constants.LABEL_KEY: [_png(label)]}
          for i, ((rgb, fov), label) in enumerate(zip(images, labels))]


def _transform(rows, custom_config=None):
  spec = {key: tf.io.FixedLenFeature([1], tf.string) for key in (
      constants.DATASET_KEY, constants.IMAGE_ID_KEY, constants.IMAGE_KEY, constants.LABEL_KEY,
      constants.FOV_KEY)}
  metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(spec))
  with tft_beam.Context(temp_dir=tempfile.mkdtemp(), desired_batch_size=len(rows)):
    (transformed, _), _ = ((rows, metadata) | tft_beam.AnalyzeAndTransformDataset(
        functools.partial(transform.preprocessing_fn, custom_config=custom_config)))
  return transformed


def _decoded(row, key):
  return transform.decode_map(tf.constant(row[key]), key).numpy()


def _labels(images):
  return [(np.random.default_rng(9).random(fov.shape) > 0.8).astype(np.uint8) * 255
          for _, fov in images]


def test_images_at_the_training_scale_keep_their_pixels_and_share_dataset_statistics():
  images = [_fundus(seed) for seed in range(3)]
  labels = _labels(images)
  transformed = _transform(_rows(images, labels))
  assert len(transformed) == len(images)
  fov_gray = np.concatenate([preprocessing.to_gray(rgb).numpy()[fov > 0] for rgb, fov in images])
  for row, (rgb, fov), label in zip(transformed, images, labels):
    assert row[transform.FOV_GRAY_MEAN_KEY] == pytest.approx(fov_gray.mean(), rel=1e-5)
    assert row[transform.FOV_GRAY_STD_KEY] == pytest.approx(fov_gray.std(), rel=1e-4)
    assert (row[constants.HEIGHT_KEY], row[constants.WIDTH_KEY]) == fov.shape
    assert (row[transform.SOURCE_HEIGHT_KEY], row[transform.SOURCE_WIDTH_KEY]) == fov.shape
    expected = preprocessing.preprocess_image(preprocessing.to_gray(rgb), fov_gray.mean(),
                                              fov_gray.std(), CONFIG).numpy()
    # Stored as one byte per pixel, the preprocessed image is still exactly the float result.
    np.testing.assert_allclose(_decoded(row, constants.IMAGE_KEY), expected, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(_decoded(row, constants.LABEL_KEY), label / 255)
    np.testing.assert_array_equal(_decoded(row, constants.FOV_KEY), fov / 255)


def test_images_of_other_scales_and_sizes_in_one_batch_are_resampled_to_the_median_fov_width():
  # FOV widths ~46 (the median), ~44 (within 10 %: kept), ~40 (resampled up), ~120 and ~124
  # (resampled down), of five different sizes. The mean, ~75, would resample every image.
  images = [_fundus(0, 48, 52, radius=20), _fundus(1, 50, 46, radius=22),
            _fundus(3, 52, 56, radius=23), _fundus(2, 130, 150, radius=60),
            _fundus(4, 134, 140, radius=62)]
  transformed = _transform(_rows(images, _labels(images)))
  widths = [float((fov > 0).any(axis=0).sum()) for _, fov in images]
  reference = float(np.median(widths))
  assert sum(abs(reference / width - 1) <= transform.SCALE_TOLERANCE for width in widths) == 2
  for row, (rgb, fov), width in zip(transformed, images, widths):
    assert row[transform.REFERENCE_FOV_WIDTH_KEY] == pytest.approx(reference)
    assert (row[transform.SOURCE_HEIGHT_KEY], row[transform.SOURCE_WIDTH_KEY]) == fov.shape
    scale = reference / width if abs(reference / width - 1) > transform.SCALE_TOLERANCE else 1.0
    size = (row[constants.HEIGHT_KEY], row[constants.WIDTH_KEY])
    assert size == tuple(round(side * scale) for side in fov.shape)
    for key in (constants.IMAGE_KEY, constants.LABEL_KEY, constants.FOV_KEY):
      assert _decoded(row, key).shape == size, key
    resampled_fov = _decoded(row, constants.FOV_KEY)
    assert set(np.unique(resampled_fov)) <= {0.0, 1.0}
    assert abs(resampled_fov.any(axis=0).sum() - width * scale) <= 2


def test_a_warm_start_keeps_its_base_model_s_statistics_whatever_its_own_images_say():
  # FOV widths ~40 and ~46, gray mean ~150: the base model's scale (60 px) and statistics stay.
  images = [_fundus(0, 48, 52, radius=20), _fundus(1, 50, 56, radius=23)]
  labels = _labels(images)
  base = {transform.REFERENCE_FOV_WIDTH_KEY: 60.0, transform.FOV_GRAY_MEAN_KEY: 100.0,
          transform.FOV_GRAY_STD_KEY: 30.0}
  transformed = _transform(_rows(images, labels), {settings.BASE_STATISTICS_KEY: base})
  for row, (rgb, fov) in zip(transformed, images):
    assert {key: row[key] for key in transform.STATISTICS_KEYS} == base
    scale = 60.0 / (fov > 0).any(axis=0).sum()
    gray = transform.resample(preprocessing.to_gray(rgb)[..., tf.newaxis], scale)[..., 0]
    expected = preprocessing.preprocess_image(gray, 100.0, 30.0, CONFIG).numpy()
    np.testing.assert_allclose(_decoded(row, constants.IMAGE_KEY), expected, rtol=0, atol=1e-7)


@pytest.mark.parametrize('width, reference, scale', [
    (540, 540, 1.0), (500, 540, 1.0), (590, 540, 1.0),   # within 10 %: left alone
    (1620, 540, 1 / 3), (270, 540, 2.0),
    (10, 540, 1.0),                                       # no usable FOV: left alone
])
def test_scale_to_the_reference_width(width, reference, scale):
  assert float(transform.scale_to(tf.constant(float(width)), tf.constant(float(reference)))) == \
      pytest.approx(scale)


def test_raw_features_for_serving_fill_what_serving_lacks():
  features = transform.raw_features(tf.constant([b'a', b'b']))
  assert features[constants.IMAGE_KEY].shape == (2, 1)
  assert features[constants.FOV_KEY].numpy().tolist() == [[b''], [b'']]
  given = transform.raw_features(tf.constant([b'a']), tf.constant([b'm']))
  assert given[constants.FOV_KEY].numpy().tolist() == [[b'm']]


def test_the_pipeline_s_transform_hands_preprocessing_fn_one_image_at_a_time(tmp_path):
  """TFT would let Beam grow batches to 1,000 images; the pipeline's Transform asks for a bound."""
  built = pipeline.create_pipeline('p', str(tmp_path), [str(tmp_path)], configs.PROFILES['smoke'],
                                   str(tmp_path / 'serving'))
  transform_component = next(c for c in built.components if c.id == configs.TRANSFORM)
  executor_class = transform_component.executor_spec.executor_class
  assert issubclass(executor_class, tfx_transform.Executor)
  assert executor_class()._GetDesiredBatchSize(  # pylint: disable=protected-access
      example_gen_pb2.FORMAT_TF_EXAMPLE, schema_pb2.Schema()) == 1
