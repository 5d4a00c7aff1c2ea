"""DRIVE, STARE, CHASE_DB1 and HRF as published (tests/real_data.py), through the listing the
pipeline uses: what each holds, how it splits, and every file read as OpenCV reads it."""
import collections
import gzip
import hashlib
import os

import cv2
import numpy as np
import pytest

from components.fundus_example_gen import files, layouts, source
import real_data
from models import constants

# What each holds, counted from its files: images, test images, second observer's labels and
# published FOV masks (README, "Use real data"; docs/design.md, "Splits").
PUBLISHED = {'DRIVE': (40, 20, 20, 40), 'STARE': (20, 10, 20, 0), 'CHASE_DB1': (28, 8, 28, 0),
             'HRF': (45, 22, 0, 45)}
IMAGE_SIZE = {'DRIVE': (584, 565), 'STARE': (605, 700), 'CHASE_DB1': (960, 999),
              'HRF': (2336, 3504)}
# HRF's labels with gray vessel edges, and how many such pixels each has (files.py, docs/design.md).
HRF_GRAY_EDGES = {'11_h': 599, '12_h': 1584, '13_h': 1119}
EACH_PUBLISHED = [pytest.param(name, marks=pytest.mark.real_data(name)) for name in PUBLISHED]


def _opencv(path, flags=cv2.IMREAD_UNCHANGED):
  """A file as OpenCV decodes it, a second decoder beside the reader's PIL: GIFs by its FFmpeg
  reader (as BGR), STARE's gzip members unpacked first."""
  if path.endswith('.gif'):
    ok, frame = cv2.VideoCapture(path).read()
    assert ok, path
    return frame
  with open(path, 'rb') as f:
    data = f.read()
  if path.endswith('.gz'):
    data = gzip.decompress(data)
  return cv2.imdecode(np.frombuffer(data, np.uint8), flags)


def _opencv_map(path):
  pixels = _opencv(path)
  gray = pixels if pixels.ndim == 2 else cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY)
  return np.where(gray >= 128, 255, 0)


def _by_hash(ids):
  return sorted(ids, key=lambda i: hashlib.sha256(i.encode()).hexdigest())


@pytest.mark.parametrize('name', EACH_PUBLISHED)
def test_published_dataset_is_listed_paired_and_split_as_documented(name):
  records = layouts.list_datasets([real_data.path(name)])
  images, test, second, masks = PUBLISHED[name]
  assert {r.dataset for r in records} == {name}
  assert len({r.image_id for r in records}) == len(records) == images
  assert sum(r.label2 is not None for r in records) == second
  assert sum(r.fov is not None for r in records) == masks
  # Every file of the folder belongs to exactly one image: none ignored, none shared.
  listed = [ref.path for r in records for ref in (r.image, r.label, r.label2, r.fov) if ref]
  assert sorted(listed) == sorted(os.path.join(folder, file) for folder, _, names
                                  in os.walk(real_data.path(name)) for file in names)
  ids = [r.image_id for r in records]
  expected_test = {
      'DRIVE': {f'{i:02d}' for i in range(1, 21)},                      # its test/ folder
      'STARE': set(_by_hash(ids)[:10]),                                 # 10 of 20, SHA-256 order
      'CHASE_DB1': {f'{child}{eye}' for child in range(11, 15) for eye in 'LR'},  # children 11-14
      'HRF': set(_by_hash(ids)[:22]),                                   # half, SHA-256 order
  }[name]
  assert {r.image_id for r in records if r.split == layouts.TEST} == expected_test
  assert len(expected_test) == test
  if name == 'DRIVE':   # the second observer labelled the test images only
    assert all((r.split == layouts.TEST) == r.image.rel_path.startswith('test/') ==
               (r.label2 is not None) for r in records)


@pytest.mark.real_data(*PUBLISHED)
def test_the_four_published_datasets_in_one_run_each_hold_out_their_own():
  records = layouts.list_datasets([real_data.path(name) for name in PUBLISHED])
  splits = source.assign_splits(records, constants.DEFAULT_EVAL_COUNT, seed=0)
  counts = {split: collections.Counter(r.dataset for r in splits[split]) for split in splits}
  assert counts == {
      constants.TRAIN_SPLIT: {'DRIVE': 16, 'STARE': 6, 'CHASE_DB1': 16, 'HRF': 19},
      constants.EVAL_SPLIT: {name: constants.DEFAULT_EVAL_COUNT for name in PUBLISHED},
      constants.TEST_SPLIT: {name: PUBLISHED[name][1] for name in PUBLISHED}}


def _published_maps(record):
  return [(key, ref) for key, ref in ((constants.LABEL_KEY, record.label),
                                      (constants.LABEL2_KEY, record.label2),
                                      (constants.FOV_KEY, record.fov)) if ref is not None]


@pytest.mark.parametrize('name', EACH_PUBLISHED)
def test_published_files_are_read_as_opencv_reads_them(name):
  """Every label, second label and FOV mask as the reader reads it equals OpenCV's reading
  thresholded at 128; the first training and test photos, decoded as ingestion decodes them, equal
  OpenCV's pixel for pixel (as all 133 photos do, measured)."""
  records = layouts.list_datasets([real_data.path(name)])
  first = [next(r for r in records if r.split == split) for split in (layouts.TRAIN, layouts.TEST)]
  for record in records:
    if record in first:
      decoded = source.decode_record(record)
      image = decoded[constants.IMAGE_KEY]
      assert image.shape == (*IMAGE_SIZE[name], 3)
      np.testing.assert_array_equal(image, _opencv(record.image.path, cv2.IMREAD_COLOR)[..., ::-1],
                                    err_msg=record.image.path)
    elif name == 'HRF':   # 8 M pixels a map: the first two here, seven more in the next test
      continue
    else:
      decoded = {key: files.decode_file(ref, expect_binary=True)
                 for key, ref in _published_maps(record)}
    for key, ref in _published_maps(record):
      np.testing.assert_array_equal(decoded[key], _opencv_map(ref.path), err_msg=ref.path)


@pytest.mark.real_data('HRF')
def test_hrf_masks_are_rgb_and_three_labels_have_gray_edges(caplog):
  """As HRF publishes them: its FOV masks RGB TIFFs of three equal channels, read as one; the gray
  vessel edges of three labels counted in the log and thresholded at 128."""
  records = {r.image_id: r for r in layouts.list_datasets([real_data.path('HRF')])}
  for image_id in ('07_g', *HRF_GRAY_EDGES):
    mask = _opencv(records[image_id].fov.path)
    assert mask.shape == (*IMAGE_SIZE['HRF'], 3) and (mask == mask[..., :1]).all()
    np.testing.assert_array_equal(files.decode_file(records[image_id].fov, expect_binary=True),
                                  mask[..., 0])
  for image_id, count in HRF_GRAY_EDGES.items():
    label = records[image_id].label
    gray = _opencv(label.path)
    assert np.count_nonzero((gray != 0) & (gray != 255)) == count
    np.testing.assert_array_equal(files.decode_file(label, expect_binary=True),
                                  np.where(gray >= 128, 255, 0))
    assert f'{label.path}: {count} of {gray.size} pixels' in caplog.text
