"""PatchGen's patch sampling (inside the image, centred in the FOV, seeded per image, lossless) and its
mixing of all images' patches."""
import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from components.patch_gen.executor import (MIX_GROUP_SIZE, MixPatches, _mix_key, check_patch_count,
                                           extract_patches, group_count, patches_per_dataset)
from models import constants, patches


def _transformed_example(image_id=b'21', height=40, width=50, fov_box=(10, 30, 12, 40),
                         dataset=b'DRIVE'):
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (height, width)) / 255.0
  label = (rng.random((height, width)) > 0.7).astype(np.float32)
  fov = np.zeros((height, width), np.float32)
  top, bottom, left, right = fov_box
  fov[top:bottom, left:right] = 1
  feature = {
      constants.DATASET_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[dataset])),
      constants.IMAGE_ID_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image_id])),
      constants.HEIGHT_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[height])),
      constants.WIDTH_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[width])),
  }
  for key, values in ((constants.IMAGE_KEY, image), (constants.LABEL_KEY, label),
                      (constants.FOV_KEY, fov)):
    feature[key] = tf.train.Feature(float_list=tf.train.FloatList(value=values.ravel()))
  serialized = tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
  return serialized, image.astype(np.float32), label, fov


def test_patches_are_exact_windows_centred_inside_the_fov():
  serialized, image, label, fov = _transformed_example()
  size = 8
  parsed = patches.parse(tf.constant(list(extract_patches(serialized, {b'DRIVE': 200}, size, seed=0))), size)
  assert parsed[constants.IMAGE_KEY].shape == (200, size, size, 1)
  for i in range(200):
    row, col = int(parsed[patches.ROW_KEY][i]), int(parsed[patches.COL_KEY][i])
    assert 0 <= row <= image.shape[0] - size and 0 <= col <= image.shape[1] - size
    assert fov[row + size // 2, col + size // 2] == 1
    window = np.s_[row:row + size, col:col + size]
    np.testing.assert_allclose(parsed[constants.IMAGE_KEY][i, ..., 0], image[window], atol=1e-7)
    np.testing.assert_array_equal(parsed[constants.LABEL_KEY][i, ..., 0], label[window])
    np.testing.assert_array_equal(parsed[constants.FOV_KEY][i, ..., 0], fov[window])


def test_sampling_is_seeded_per_image_and_seed():
  serialized, *_ = _transformed_example()
  first = list(extract_patches(serialized, {b'DRIVE': 20}, 8, seed=0))
  assert first == list(extract_patches(serialized, {b'DRIVE': 20}, 8, seed=0))
  assert first != list(extract_patches(serialized, {b'DRIVE': 20}, 8, seed=1))
  other_image, *_ = _transformed_example(image_id=b'22')
  rows = lambda records: patches.parse(tf.constant(records), 8)[patches.ROW_KEY].numpy().tolist()
  assert rows(first) != rows(list(extract_patches(other_image, {b'DRIVE': 20}, 8, seed=0)))


def test_an_image_without_room_for_a_patch_in_its_fov_is_an_error():
  serialized, *_ = _transformed_example(fov_box=(0, 2, 0, 2))
  with pytest.raises(ValueError, match="image 21: no 8x8 patch has its centre inside the FOV"):
    list(extract_patches(serialized, {b'DRIVE': 5}, 8, seed=0))


def test_mixing_keeps_every_patch_and_depends_on_the_seed():
  records = [f'{image}-{i}'.encode() for image in 'abc' for i in range(30)]
  for seed, groups in ((0, 1), (1, 4)):
    with TestPipeline() as pipeline:
      mixed = pipeline | beam.Create(records) | MixPatches(seed, groups)
      assert_that(mixed, equal_to(records))
  keys = lambda seed: sorted(records, key=lambda record: _mix_key(seed, record))
  assert keys(0) != keys(1) and keys(0) != records


def test_a_patch_count_other_than_the_planned_one_stops_the_run():
  images, per_image = {b'DRIVE': 16, b'STARE': 6}, {b'DRIVE': 6000, b'STARE': 16000}
  check_patch_count('train', images, per_image, written=96000 + 96000)
  with pytest.raises(RuntimeError, match=r"split 'train': 183340 patches written, expected 192000 "
                                         r"\(DRIVE: 16 images x 6000, STARE: 6 images x 16000\): "
                                         r"the Beam runner lost"):
    check_patch_count('train', images, per_image, written=183340)


def test_every_dataset_gets_an_equal_share_of_the_patches():
  assert patches_per_dataset({b'DRIVE': 16}, 6000) == {b'DRIVE': 6000}
  per_image = patches_per_dataset({b'CHASE_DB1': 16, b'DRIVE': 16, b'STARE': 6}, 6000)
  assert per_image == {b'CHASE_DB1': 4750, b'DRIVE': 4750, b'STARE': 12667}
  totals = [count * per_image[d] for d, count in {b'CHASE_DB1': 16, b'DRIVE': 16, b'STARE': 6}.items()]
  assert max(totals) - min(totals) <= 6   # equal up to rounding
  # An image's count follows its dataset.
  serialized, *_ = _transformed_example(dataset=b'STARE')
  assert len(list(extract_patches(serialized, {b'DRIVE': 3, b'STARE': 7}, 8, seed=0))) == 7


def test_groups_hold_about_mix_group_size_patches():
  assert group_count(1) == 1
  assert group_count(MIX_GROUP_SIZE) == 1
  assert group_count(MIX_GROUP_SIZE + 1) == 2
  assert group_count(16 * 6000) == 96000 // MIX_GROUP_SIZE
