"""PatchGen's patch sampling (inside the image, centred in the FOV, seeded per image, lossless) and its
files, one per image."""
import fractions
import os
import re

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
from apache_beam.testing.test_pipeline import TestPipeline

from conftest import gzip_records, write_patches
from components.patch_gen.executor import (WriteImagePatches, check_patch_count, extract_patches,
                                           image_file_name, patches_per_dataset)
from models import constants, patches, transform


def _transformed_example(image_id=b'21', height=40, width=50, fov_box=(10, 30, 12, 40),
                         dataset=b'DRIVE'):
  """A transformed example as Transform writes it, and its maps as uint8 levels."""
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (height, width)).astype(np.uint8)
  label = (rng.random((height, width)) > 0.7).astype(np.uint8)
  fov = np.zeros((height, width), np.uint8)
  top, bottom, left, right = fov_box
  fov[top:bottom, left:right] = 1
  feature = {
      constants.DATASET_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[dataset])),
      constants.IMAGE_ID_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image_id])),
      constants.HEIGHT_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[height])),
      constants.WIDTH_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[width])),
  }
  for key, levels in ((constants.IMAGE_KEY, image), (constants.LABEL_KEY, label),
                      (constants.FOV_KEY, fov)):
    values = levels / 255.0 if key == constants.IMAGE_KEY else levels.astype(np.float32)
    encoded = transform.encode_map(tf.constant(values, tf.float32), key).numpy()
    feature[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded]))
  serialized = tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
  return serialized, image, label, fov


def _patches(serialized, per_image, size, seed=0):
  return list(extract_patches(serialized, per_image, size, seed)[1])


def test_patches_are_exact_windows_centred_inside_the_fov():
  serialized, image, label, fov = _transformed_example()
  size = 8
  parsed = patches.parse(tf.constant(_patches(serialized, {b'DRIVE': 200}, size)), size)
  assert parsed[constants.IMAGE_KEY].shape == (200, size, size, 1)
  for i in range(200):
    row, col = int(parsed[patches.ROW_KEY][i]), int(parsed[patches.COL_KEY][i])
    assert 0 <= row <= image.shape[0] - size and 0 <= col <= image.shape[1] - size
    assert fov[row + size // 2, col + size // 2] == 1
    window = np.s_[row:row + size, col:col + size]
    np.testing.assert_allclose(parsed[constants.IMAGE_KEY][i, ..., 0], image[window] / 255,
                               rtol=0, atol=1e-7)
    np.testing.assert_array_equal(parsed[constants.LABEL_KEY][i, ..., 0], label[window])
    np.testing.assert_array_equal(parsed[constants.FOV_KEY][i, ..., 0], fov[window])


def test_sampling_is_seeded_per_image_and_seed():
  serialized, *_ = _transformed_example()
  first = _patches(serialized, {b'DRIVE': 20}, 8, seed=0)
  assert first == _patches(serialized, {b'DRIVE': 20}, 8, seed=0)
  assert first != _patches(serialized, {b'DRIVE': 20}, 8, seed=1)
  other_image, *_ = _transformed_example(image_id=b'22')
  rows = lambda records: patches.parse(tf.constant(records), 8)[patches.ROW_KEY].numpy().tolist()
  assert rows(first) != rows(_patches(other_image, {b'DRIVE': 20}, 8, seed=0))


def test_an_image_without_room_for_a_patch_in_its_fov_is_an_error():
  serialized, *_ = _transformed_example(fov_box=(0, 2, 0, 2))
  with pytest.raises(ValueError, match="image 21: no 8x8 patch has its centre inside the FOV"):
    extract_patches(serialized, {b'DRIVE': 5}, 8, seed=0)


def test_each_image_s_patches_go_to_a_file_of_its_own_and_nothing_partial_is_left(tmp_path):
  examples = {image_id: _transformed_example(image_id=image_id)[0]
              for image_id in (b'21', b'22', b'im0001')}
  split_dir, partial_dir = tmp_path / 'Split-train', tmp_path / '.partial'
  split_dir.mkdir()
  partial_dir.mkdir()
  with TestPipeline() as pipeline:
    _ = (pipeline | beam.Create(list(examples.values()))
         | beam.ParDo(WriteImagePatches(str(split_dir), str(partial_dir), {b'DRIVE': 30}, 8, 0)))
  assert sorted(os.listdir(split_dir)) == sorted(image_file_name(i) for i in examples)
  assert not os.listdir(partial_dir)
  for image_id, serialized in examples.items():
    written = gzip_records(str(split_dir / image_file_name(image_id)))
    assert written == _patches(serialized, {b'DRIVE': 30}, 8)


def test_image_file_names_are_safe_and_distinct():
  names = [image_file_name(i) for i in (b'a/b', b'a_b', b'..', 'é'.encode())]
  assert len(set(names)) == len(names)
  assert all(re.fullmatch(r'patches-[A-Za-z0-9_.-]+-[0-9a-f]{8}\.gz', n) for n in names), names


def _read(records, count):
  parsed = patches.parse(tf.constant([r.numpy() for r in records.take(count)]), 2)
  return [(image_id.decode(), int(row)) for image_id, row in
          zip(parsed[constants.IMAGE_ID_KEY].numpy(), parsed[patches.ROW_KEY].numpy())]


def test_mixed_records_draw_from_every_image_file_in_turn_and_start_again(tmp_path):
  files = [write_patches(tmp_path / f'{image}.gz', 10, 2, str(image).encode(), b'DRIVE')
           for image in range(5)]
  in_name_order = _read(patches.mixed_records(files), 100)
  assert in_name_order[:5] == [(str(image), 0) for image in range(5)]
  every_patch = sorted((str(image), row) for image in range(5) for row in range(10))
  assert sorted(in_name_order[:50]) == sorted(in_name_order[50:]) == every_patch
  seeded = lambda seed: _read(patches.mixed_records(files, seed=seed), 5)
  assert sorted(seeded(0)) == sorted(in_name_order[:5])   # still one of each image first
  assert seeded(0) == seeded(0) and any(seeded(0) != seeded(s) for s in range(1, 5))


def test_every_dataset_has_an_equal_share_of_any_stretch_of_the_stream(tmp_path):
  """As PatchGen cuts them: equal totals per dataset, from 1, 2 and 4 images. Drawing from every
  file in turn instead gave the one-image dataset a seventh of the stream until the others ran out,
  and then all of it."""
  files = [write_patches(tmp_path / 'a0.gz', 40, 2, b'a0', b'A')]
  files += [write_patches(tmp_path / f'b{i}.gz', 20, 2, f'b{i}'.encode(), b'B') for i in range(2)]
  files += [write_patches(tmp_path / f'c{i}.gz', 10, 2, f'c{i}'.encode(), b'C') for i in range(4)]
  stream = [image_id[0] for image_id, _ in _read(patches.mixed_records(files, seed=3), 360)]
  for start in range(0, len(stream), 12):
    window = stream[start:start + 12]
    assert {d: window.count(d) for d in 'abc'} == {'a': 4, 'b': 4, 'c': 4}, (start, window)


def test_a_dataset_given_a_share_has_it_in_every_cycle_of_the_stream(tmp_path):
  """Fine-tuning to a new camera (b) with the old cameras (a, c) listed too: half the stream is b's,
  spread out, and a and c share the rest alike."""
  files = [write_patches(tmp_path / 'a0.gz', 40, 2, b'a0', b'A')]
  files += [write_patches(tmp_path / f'b{i}.gz', 20, 2, f'b{i}'.encode(), b'B') for i in range(2)]
  files += [write_patches(tmp_path / f'c{i}.gz', 10, 2, f'c{i}'.encode(), b'C') for i in range(4)]
  stream = [image_id[0] for image_id, _ in
            _read(patches.mixed_records(files, seed=3, shares={'B': 0.5}), 240)]
  for start in range(0, len(stream), 4):
    window = stream[start:start + 4]
    assert {d: window.count(d) for d in 'abc'} == {'a': 1, 'b': 2, 'c': 1}, (start, window)
    assert window[0] != window[1] or window[2] != window[3]   # b's turns spread out


def test_stream_shares_give_the_rest_to_the_datasets_not_named_and_refuse_what_cannot_be():
  datasets = [b'CHASE_DB1', b'DRIVE', b'HRF', b'STARE']
  assert patches.stream_shares(datasets) == dict.fromkeys(datasets, fractions.Fraction(1, 4))
  shares = patches.stream_shares(datasets, {'CHASE_DB1': 0.4, 'HRF': 0.3})
  assert shares == {b'CHASE_DB1': fractions.Fraction(2, 5), b'DRIVE': fractions.Fraction(3, 20),
                    b'HRF': fractions.Fraction(3, 10), b'STARE': fractions.Fraction(3, 20)}
  assert patches.stream_shares(datasets[:2], {'CHASE_DB1': 0.7, 'DRIVE': 0.3})[b'DRIVE'] == (
      fractions.Fraction(3, 10))
  with pytest.raises(ValueError, match='name CHASE, not among the datasets .CHASE_DB1'):
    patches.stream_shares(datasets, {'CHASE': 0.5})
  for impossible in ({'CHASE_DB1': 0.6, 'DRIVE': 0.6}, {'CHASE_DB1': 0.5, 'DRIVE': 0.5},
                     {'CHASE_DB1': 0.001}, {name.decode(): 0.2 for name in datasets}):
    with pytest.raises(ValueError, match='must each be above 0 and leave a share to every dataset'):
      patches.stream_shares(datasets, impossible)


def test_patch_files_are_grouped_by_the_dataset_their_patches_name(tmp_path, caplog):
  drive = [write_patches(tmp_path / f'd{i}.gz', 2, 2, b'21', b'DRIVE') for i in range(2)]
  stare = write_patches(tmp_path / 's.gz', 2, 2, b'im0001', b'STARE')
  empty = write_patches(tmp_path / 'e.gz', 0, 2, b'e', b'HRF')
  with tf.io.TFRecordWriter(str(tmp_path / 'older.gz'), options='GZIP') as writer:
    writer.write(tf.train.Example().SerializeToString())   # before patches named their dataset
  older = str(tmp_path / 'older.gz')
  assert patches.files_by_dataset([stare, empty, older, *drive]) == {
      b'': [older], b'DRIVE': drive, b'STARE': [stare]}
  assert f'1 patch files in {tmp_path} do not name their dataset' in caplog.text
  assert '--no-cache' in caplog.text


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
  assert len(_patches(serialized, {b'DRIVE': 3, b'STARE': 7}, 8)) == 7
