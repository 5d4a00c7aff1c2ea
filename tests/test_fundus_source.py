"""Listing, pairing, splitting and decoding of DRIVE (and every layout the reader knows): strict
about every way the input can be wrong."""
import io
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from components.fundus_example_gen import files, layouts, source
from models import constants
import bad_inputs
from conftest import tree_digest, zip_folder


def _decoded(example, key):
  return tf.io.decode_png(example.features.feature[key].bytes_list.value[0]).numpy().squeeze()


def test_lists_every_image_with_its_files(tiny_drive):
  records = layouts.list_datasets([str(tiny_drive)])
  assert [(r.dataset, r.split, r.image_id) for r in records] == [
      ('DRIVE', 'train', '21'), ('DRIVE', 'train', '22'), ('DRIVE', 'train', '23'),
      ('DRIVE', 'test', '01'), ('DRIVE', 'test', '02')]
  test01 = records[3]
  assert test01.image.rel_path == 'test/images/01_test.tif'
  assert test01.label.rel_path == 'test/1st_manual/01_manual1.gif'
  assert test01.fov.rel_path == 'test/mask/01_test_mask.gif'
  assert test01.label2.rel_path == 'test/2nd_manual/01_manual2.gif'
  assert records[0].label2 is None


def test_example_holds_the_source_pixels_losslessly(tiny_drive):
  record = layouts.list_datasets([str(tiny_drive)])[3]
  example = source.to_example(record)
  features = example.features.feature
  rgb = np.asarray(Image.open(tiny_drive / 'test/images/01_test.tif'))
  np.testing.assert_array_equal(_decoded(example, constants.IMAGE_KEY), rgb)
  for key, rel in [(constants.LABEL_KEY, 'test/1st_manual/01_manual1.gif'),
                   (constants.FOV_KEY, 'test/mask/01_test_mask.gif'),
                   (constants.LABEL2_KEY, 'test/2nd_manual/01_manual2.gif')]:
    np.testing.assert_array_equal(_decoded(example, key),
                                  np.asarray(Image.open(tiny_drive / rel).convert('L')))
  assert features[constants.HEIGHT_KEY].int64_list.value == [60]
  assert features[constants.WIDTH_KEY].int64_list.value == [64]
  assert features[constants.IMAGE_ID_KEY].bytes_list.value == [b'01']
  assert features[constants.DATASET_KEY].bytes_list.value == [b'DRIVE']
  assert features[constants.SOURCE_FILE_KEY].bytes_list.value == [b'test/images/01_test.tif']


def test_zip_archive_is_read_in_place_like_the_folder(tiny_drive, tmp_path):
  archive = zip_folder(tiny_drive, tmp_path / 'DRIVE.zip')
  from_zip = layouts.list_datasets([str(archive)])
  from_folder = layouts.list_datasets([str(tiny_drive)])
  assert [r.image.rel_path for r in from_zip] == [r.image.rel_path for r in from_folder]
  assert from_zip[0].image.member == 'DRIVE/training/images/21_training.tif'
  assert (source.to_example(from_zip[0]).SerializeToString()
          == source.to_example(from_folder[0]).SerializeToString())
  assert not (tmp_path / 'DRIVE').exists()  # nothing extracted


def test_official_split_archives_training_and_test_zip(tiny_drive, tmp_path):
  zips = tmp_path / 'zips'
  zips.mkdir()
  zip_folder(tiny_drive / 'training', zips / 'training.zip', prefix='training/')
  zip_folder(tiny_drive / 'test', zips / 'test.zip', prefix='test/')
  records = layouts.list_datasets([str(zips / 'training.zip'), str(zips / 'test.zip')])
  assert len(records) == 5
  assert len(layouts.list_datasets([str(zips)])) == 5  # a folder holding the archives works too


def test_hold_out_is_deterministic_configurable_and_order_independent(tiny_drive):
  records = layouts.list_datasets([str(tiny_drive)])
  splits = source.assign_splits(records, eval_count=1, seed=0)
  assert [len(splits[s]) for s in constants.SPLITS] == [2, 1, 2]
  again = source.assign_splits(list(reversed(records)), eval_count=1, seed=0)
  assert {r.image_id for r in again['eval']} == {r.image_id for r in splits['eval']}
  held_out = {tuple(r.image_id for r in source.assign_splits(records, 1, seed)['eval'])
              for seed in range(10)}
  assert len(held_out) > 1  # the seed really chooses
  with pytest.raises(files.FundusInputError, match='--eval-count'):
    source.assign_splits(records, eval_count=3, seed=0)


@pytest.mark.parametrize('case', sorted(bad_inputs.CASES))
def test_bad_input_raises_one_error_naming_the_file(case, tiny_drive, tmp_path):
  data, culprit, problem = bad_inputs.CASES[case](tiny_drive, tmp_path)
  before = tree_digest(data) if os.path.exists(data) else None
  with pytest.raises(files.FundusInputError) as error:
    for record in layouts.list_datasets([str(data)]):
      source.to_example(record)
  assert str(culprit) in str(error.value)
  assert problem in str(error.value)
  if before is not None:
    assert tree_digest(data) == before  # the user's data is only read


def test_image_in_the_wrong_folder_is_refused(drive_copy):
  (drive_copy / 'test/images/24_training.tif').write_bytes(b'x')
  with pytest.raises(files.FundusInputError, match='unexpected file in test/images/'):
    layouts.list_datasets([str(drive_copy)])


def test_test_folder_is_required(drive_copy):
  shutil.rmtree(drive_copy / 'test')
  with pytest.raises(files.FundusInputError, match='DRIVE: no test images found'):
    layouts.list_datasets([str(drive_copy)])


def test_png_roundtrip_is_lossless():
  pixels = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
  np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(files.encode_png(pixels)))), pixels)
