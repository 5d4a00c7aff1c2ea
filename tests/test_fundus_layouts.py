"""Every published layout the reader knows (STARE, CHASE_DB1, HRF), the generic one, several
datasets at once, and the checks that hold for all of them, on generated files in each layout (the
published datasets themselves: test_published_datasets.py)."""
import gzip
import shutil

import cv2
import numpy as np
import pytest
from PIL import Image

from components.fundus_example_gen import files, layouts, source
from conftest import zip_folder
from models import constants, preprocessing
from synthetic_drive import dataset as synthetic

SIZE = dict(height=96, width=100)


@pytest.fixture(scope='module')
def published(tmp_path_factory):
  """STARE (6 images), CHASE_DB1 (all 28) and HRF (6), small, in their published layouts."""
  root = tmp_path_factory.mktemp('published')
  for layout, count in (('stare', 6), ('chase_db1', 28), ('hrf', 6)):
    synthetic.generate(str(root / layout), seed=2, layout=layout, count=count, **SIZE)
  return root


def _records(path):
  return layouts.list_datasets([str(path)])


def test_published_layouts_are_recognised_paired_and_split(published):
  stare, chase, hrf = (_records(published / name) for name in ('stare', 'chase_db1', 'hrf'))
  assert {r.dataset for r in stare} == {'STARE'} and len(stare) == 6
  assert [r.image_id for r in stare] == ['im0001', 'im0002', 'im0003', 'im0004', 'im0005', 'im0044']
  assert stare[0].image.rel_path == 'stare-images/im0001.ppm.gz'
  assert stare[0].label.rel_path == 'labels-ah/im0001.ah.ppm.gz'   # Hoover: the usual truth
  assert stare[0].label2.rel_path == 'labels-vk/im0001.vk.ppm.gz'
  # CHASE_DB1: the literature's split, children 01-10 (20 images) train, 11-14 (8) test.
  assert [r.image_id for r in chase if r.split == layouts.TRAIN] == [
      f'{child:02d}{eye}' for child in range(1, 11) for eye in 'LR']
  assert [r.image_id for r in chase if r.split == layouts.TEST] == [
      f'{child:02d}{eye}' for child in range(11, 15) for eye in 'LR']
  assert chase[0].label.rel_path == 'Image_01L_1stHO.png'
  assert {r.dataset for r in hrf} == {'HRF'} and hrf[0].fov.rel_path.startswith('mask/')
  assert {r.image_id for r in hrf} == {'01_h', '01_g', '01_dr', '02_h', '02_g', '02_dr'}
  # No FOV masks published: computed at decoding. Hashed halves for STARE and HRF.
  assert all(r.fov is None for r in stare + chase) and all(r.label2 is None for r in hrf)
  for records in (stare, hrf):
    assert sum(r.split == layouts.TEST for r in records) == 3


def test_generated_hrf_is_read_like_the_published_one(published, caplog):
  """Its FOV masks RGB TIFFs of equal channels and its first labels with a few gray edge pixels, as
  HRF publishes them: read as 0/255 maps, the gray pixels counted in the log."""
  record = next(r for r in _records(published / 'hrf') if r.image_id == '01_h')
  decoded = source.decode_record(record)
  with Image.open(published / 'hrf/manual1/01_h.tif') as label:
    gray = np.asarray(label)
  assert np.count_nonzero((gray != 0) & (gray != 255)) > 0
  np.testing.assert_array_equal(decoded[constants.LABEL_KEY], np.where(gray >= 128, 255, 0))
  assert f'{published}/hrf/manual1/01_h.tif: ' in caplog.text
  with Image.open(published / 'hrf/mask/01_h_mask.tif') as mask:
    assert mask.mode == 'RGB'
    np.testing.assert_array_equal(decoded[constants.FOV_KEY], np.asarray(mask)[..., 0])


def test_hashed_split_is_stable_whatever_the_listing_order():
  is_test = layouts.STARE.is_test
  ids = [f'im{i:04d}' for i in range(1, 21)]
  test = {i for i in ids if is_test(i, '', ids)}
  assert len(test) == 10 and test == {i for i in ids if is_test(i, '', list(reversed(ids)))}


def test_maskless_examples_carry_the_fov_computed_as_serving_computes_it(published):
  record = _records(published / 'stare')[0]
  decoded = source.decode_record(record)
  expected = preprocessing.fov_from_image(decoded[constants.IMAGE_KEY]).numpy() * 255
  np.testing.assert_array_equal(decoded[constants.FOV_KEY], expected)
  example = source.to_example(record).features.feature
  assert example[constants.DATASET_KEY].bytes_list.value == [b'STARE']
  assert example[constants.IMAGE_ID_KEY].bytes_list.value == [b'im0001']
  with gzip.open(published / 'stare/labels-ah/im0001.ah.ppm.gz') as f, Image.open(f) as label:
    np.testing.assert_array_equal(decoded[constants.LABEL_KEY],
                                  np.where(np.asarray(label) >= 128, 255, 0))


def test_a_zipped_dataset_reads_like_its_folder(published, tmp_path):
  archive = zip_folder(published / 'chase_db1', tmp_path / 'CHASEDB1.zip', prefix='')
  from_zip, from_folder = _records(archive), _records(published / 'chase_db1')
  assert [r.image.rel_path for r in from_zip] == [r.image.rel_path for r in from_folder]
  assert (source.to_example(from_zip[-1]).SerializeToString()
          == source.to_example(from_folder[-1]).SerializeToString())


def _generic_from(tiny_drive, root, with_masks):
  """images/ + labels/ (+ masks/) by file stem, from the tiny DRIVE's training images."""
  for folder in ('images', 'labels') + (('masks',) if with_masks else ()):
    (root / folder).mkdir(parents=True)
  for i, image in enumerate(sorted((tiny_drive / 'training/images').iterdir())):
    number = image.name.split('_')[0]
    stem = f'eye-{i}'
    Image.open(image).save(root / 'images' / f'{stem}.png')
    Image.open(tiny_drive / f'training/1st_manual/{number}_manual1.gif').save(
        root / 'labels' / f'{stem}.png')
    if with_masks:
      shutil.copy(tiny_drive / f'training/mask/{number}_training_mask.gif',
                  root / 'masks' / f'{stem}.gif')
  return root


@pytest.mark.parametrize('with_masks', [True, False])
def test_generic_layout_pairs_by_file_stem_and_names_the_dataset_after_its_folder(
    tiny_drive, tmp_path, with_masks):
  records = _records(_generic_from(tiny_drive, tmp_path / 'my-clinic', with_masks))
  assert {r.dataset for r in records} == {'my-clinic'}
  assert [r.image_id for r in records] == ['eye-0', 'eye-1', 'eye-2']
  assert [r.label.rel_path for r in records][0] == 'labels/eye-0.png'
  assert all((r.fov is not None) == with_masks for r in records)
  assert sum(r.split == layouts.TEST for r in records) == 1   # a quarter, at least one


def test_several_datasets_at_once_each_with_its_own_hold_out(published, tiny_drive):
  records = layouts.list_datasets([str(tiny_drive), str(published / 'stare'),
                                   str(published / 'chase_db1')])
  assert {r.dataset for r in records} == {'DRIVE', 'STARE', 'CHASE_DB1'}
  splits = source.assign_splits(records, eval_count=1, seed=0)
  assert sorted(r.dataset for r in splits[constants.EVAL_SPLIT]) == ['CHASE_DB1', 'DRIVE', 'STARE']
  assert sorted({r.dataset for r in splits[constants.TEST_SPLIT]}) == ['CHASE_DB1', 'DRIVE', 'STARE']
  assert len(splits[constants.TRAIN_SPLIT]) == (3 - 1) + (3 - 1) + (20 - 1)


def _raises(paths, *words):
  with pytest.raises(files.FundusInputError) as error:
    for record in layouts.list_datasets([str(p) for p in paths]):
      source.to_example(record)
  for word in words:
    assert str(word) in str(error.value)


def test_every_layout_names_the_file_that_is_wrong(published, tiny_drive, tmp_path):
  stare = tmp_path / 'stare'
  shutil.copytree(published / 'stare', stare)
  (stare / 'labels-ah/im0003.ah.ppm.gz').unlink()
  _raises([stare], stare / 'stare-images/im0003.ppm.gz', 'no matching labels-ah/im0003.ah.ppm.gz')
  chase = tmp_path / 'chase'
  shutil.copytree(published / 'chase_db1', chase)
  (chase / 'notes.txt').write_text('hello')
  _raises([chase], chase / 'notes.txt', 'unexpected file')
  hrf = tmp_path / 'hrf'
  shutil.copytree(published / 'hrf', hrf)
  Image.new('L', (50, 40), 255).save(hrf / 'mask/01_h_mask.tif')
  _raises([hrf], hrf / 'mask/01_h_mask.tif', 'size 50x40 does not match')
  # Two datasets in one --data path, an unknown layout, one image id in two datasets.
  both = tmp_path / 'both'
  shutil.copytree(tiny_drive, both / 'a')
  shutil.copytree(tiny_drive, both / 'b')
  _raises([both], both, 'more than one DRIVE dataset')
  (tmp_path / 'photos').mkdir()
  (tmp_path / 'photos/beach.jpg').write_bytes(b'jpeg')
  _raises([tmp_path / 'photos'], tmp_path / 'photos', 'unknown layout: expected DRIVE')
  clinic = tmp_path / 'clinic'
  (clinic / 'images').mkdir(parents=True)
  (clinic / 'labels').mkdir()
  shutil.copy(tiny_drive / 'test/images/01_test.tif', clinic / 'images/01.tif')
  Image.open(tiny_drive / 'test/1st_manual/01_manual1.gif').save(clinic / 'labels/01.png')
  shutil.copy(tiny_drive / 'test/images/02_test.tif', clinic / 'images/x.tif')
  Image.open(tiny_drive / 'test/1st_manual/02_manual1.gif').save(clinic / 'labels/x.png')
  _raises([tiny_drive, clinic], 'image id 01 is also in DRIVE')


def test_16_bit_images_are_scaled_by_their_range_and_oversized_ones_refused(tiny_drive, tmp_path):
  clinic = _generic_from(tiny_drive, tmp_path / 'clinic', with_masks=False)
  rgb8 = np.asarray(Image.open(clinic / 'images/eye-1.png'))
  cv2.imwrite(str(clinic / 'images/eye-1.png'), (rgb8.astype(np.uint16) * 257)[..., ::-1])
  [record] = [r for r in _records(clinic) if r.image_id == 'eye-1']
  ingested = source.decode_record(record)[constants.IMAGE_KEY]
  np.testing.assert_array_equal(ingested, np.round(rgb8 * (255 / rgb8.max())).astype(np.uint8))
  Image.new('1', (8000, 6000)).save(clinic / 'images/eye-1.png')   # 48 M pixels, a tiny file
  _raises([clinic], clinic / 'images/eye-1.png', 'more than the 40,000,000')
