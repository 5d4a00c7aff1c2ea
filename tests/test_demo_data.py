"""Tests for synthetic_drive (make-demo-data): layout, formats, determinism and realism of the synthetic
DRIVE (its STARE, CHASE_DB1 and HRF layouts: test_demo_layouts.py)."""
import os

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score

from cli.main import main
from components.fundus_example_gen import layouts as reader_layouts
from conftest import relative_files
from synthetic_drive import dataset as synthetic

# Half DRIVE's size keeps the suite fast; the generator scales its geometry to the image.
HEIGHT, WIDTH = 292, 282
N_TRAIN, N_TEST = 3, 2


def _generate(out_dir, seed=0, **kwargs):
  return synthetic.generate(str(out_dir), seed=seed, n_train=kwargs.pop('n_train', N_TRAIN),
                            n_test=kwargs.pop('n_test', N_TEST), height=HEIGHT, width=WIDTH, **kwargs)


def _gray(path):
  with Image.open(path) as image:
    return np.asarray(image.convert('L'))


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
  out_dir = tmp_path_factory.mktemp('demo') / 'drive'
  calls = []
  summary = _generate(out_dir, progress=lambda done, total: calls.append((done, total)))
  return out_dir, summary, calls


def _records(out_dir):
  """(image, 1st label, FOV mask) of every generated image."""
  for folder, ids in (('training', range(21, 21 + N_TRAIN)), ('test', range(1, 1 + N_TEST))):
    for image_id in ids:
      name = f'{image_id:02d}'
      with Image.open(out_dir / folder / 'images' / f'{name}_{folder}.tif') as image:
        pixels = np.asarray(image)
      yield (pixels, _gray(out_dir / folder / '1st_manual' / f'{name}_manual1.gif'),
             _gray(out_dir / folder / 'mask' / f'{name}_{folder}_mask.gif'))


def test_layout_and_names_are_drives(dataset):
  out_dir, summary, _ = dataset
  assert relative_files(out_dir) == [
      'test/1st_manual/01_manual1.gif', 'test/1st_manual/02_manual1.gif',
      'test/2nd_manual/01_manual2.gif', 'test/2nd_manual/02_manual2.gif',
      'test/images/01_test.tif', 'test/images/02_test.tif',
      'test/mask/01_test_mask.gif', 'test/mask/02_test_mask.gif',
      'training/1st_manual/21_manual1.gif', 'training/1st_manual/22_manual1.gif',
      'training/1st_manual/23_manual1.gif',
      'training/images/21_training.tif', 'training/images/22_training.tif',
      'training/images/23_training.tif',
      'training/mask/21_training_mask.gif', 'training/mask/22_training_mask.gif',
      'training/mask/23_training_mask.gif',
  ]
  assert summary['n_train'] == N_TRAIN and summary['n_test'] == N_TEST
  # Nothing is left behind next to the dataset (the staging folder was renamed into place).
  assert os.listdir(out_dir.parent) == [out_dir.name]


def test_progress_is_reported_per_image(dataset):
  _, _, calls = dataset
  total = N_TRAIN + N_TEST
  assert calls == [(done, total) for done in range(1, total + 1)]


def test_formats_sizes_and_binary_maps(dataset):
  out_dir, _, _ = dataset
  for path in relative_files(out_dir):
    with Image.open(out_dir / path) as image:
      assert image.size == (WIDTH, HEIGHT), path
      if path.endswith('.tif'):
        assert (image.format, image.mode) == ('TIFF', 'RGB'), path
      else:
        assert (image.format, image.mode) == ('GIF', 'L'), path
        assert set(np.unique(np.asarray(image.convert('L')))) <= {0, 255}, path


def test_labels_lie_inside_the_circular_field_of_view(dataset):
  out_dir, _, _ = dataset
  for folder, manual in (('training', '1st_manual'), ('test', '1st_manual'), ('test', '2nd_manual')):
    for name in os.listdir(out_dir / folder / manual):
      image_id = name.split('_')[0]
      label = _gray(out_dir / folder / manual / name)
      fov = _gray(out_dir / folder / 'mask' / f'{image_id}_{folder}_mask.gif')
      assert not np.any(label[fov == 0]), name
      # The FOV is a disc about 0.95 of the width across.
      assert 0.6 < np.mean(fov > 0) < 0.8


def test_second_observer_differs_slightly_from_the_first(dataset):
  out_dir, _, _ = dataset
  first = _gray(out_dir / 'test' / '1st_manual' / '01_manual1.gif') > 0
  second = _gray(out_dir / 'test' / '2nd_manual' / '01_manual2.gif') > 0
  assert np.any(first != second)
  assert np.sum(first & second) / np.sum(first | second) > 0.7


def test_vessel_fraction_is_drive_like(dataset):
  out_dir, summary, _ = dataset
  for _, label, fov in _records(out_dir):
    assert 0.07 <= np.mean(label[fov > 0] > 0) <= 0.18
  assert 0.07 <= summary['vessel_fraction'] <= 0.18


def test_green_channel_has_signal_but_does_not_solve_it(dataset):
  out_dir, _, _ = dataset
  darkness, vessel = [], []
  for image, label, fov in _records(out_dir):
    inside = fov > 0
    darkness.append(255 - image[..., 1][inside].astype(int))
    vessel.append(label[inside] > 0)
  auc = roc_auc_score(np.concatenate(vessel), np.concatenate(darkness))
  assert 0.6 < auc < 0.95


def test_same_seed_gives_identical_files(dataset, tmp_path):
  out_dir, _, _ = dataset
  _generate(tmp_path / 'again')
  assert relative_files(tmp_path / 'again') == relative_files(out_dir)
  for path in relative_files(out_dir):
    assert (tmp_path / 'again' / path).read_bytes() == (out_dir / path).read_bytes(), path


def test_an_image_depends_only_on_seed_and_id(dataset, tmp_path):
  out_dir, _, _ = dataset
  _generate(tmp_path / 'fewer', n_train=1, n_test=1)
  for path in relative_files(tmp_path / 'fewer'):
    assert (tmp_path / 'fewer' / path).read_bytes() == (out_dir / path).read_bytes(), path


def test_different_seed_gives_different_images(dataset, tmp_path):
  out_dir, _, _ = dataset
  _generate(tmp_path / 'other', seed=1, n_train=1, n_test=0)
  for path in ('training/images/21_training.tif', 'training/1st_manual/21_manual1.gif'):
    assert (tmp_path / 'other' / path).read_bytes() != (out_dir / path).read_bytes(), path


def test_writes_into_an_existing_empty_folder(tmp_path):
  (tmp_path / 'empty').mkdir()
  _generate(tmp_path / 'empty', n_train=1, n_test=0)
  assert 'training/images/21_training.tif' in relative_files(tmp_path / 'empty')


def test_refuses_a_non_empty_folder_and_leaves_it_alone(tmp_path):
  (tmp_path / 'taken').mkdir()
  (tmp_path / 'taken' / 'keep.txt').write_text('mine')
  with pytest.raises(FileExistsError, match='not an empty folder'):
    _generate(tmp_path / 'taken')
  assert relative_files(tmp_path / 'taken') == ['keep.txt']
  (tmp_path / 'file').write_text('mine')
  with pytest.raises(FileExistsError, match='not an empty folder'):
    _generate(tmp_path / 'file')
  assert sorted(os.listdir(tmp_path)) == ['file', 'taken']


def test_a_failure_leaves_no_partial_dataset(tmp_path):
  def fail_after_first(done, total):
    raise RuntimeError('interrupted')

  with pytest.raises(RuntimeError, match='interrupted'):
    _generate(tmp_path / 'out', progress=fail_after_first)
  assert os.listdir(tmp_path) == []


@pytest.mark.parametrize('args, message', [
    (['--height', '0'], 'at least 16x16 pixels'),
    (['--train-count', '0', '--test-count', '0'], 'need at least one image'),
    (['--layout', 'stare', '--count', '21'], 'STARE publishes 20 images: cannot generate 21'),
    (['--layout', 'chase_db1', '--count', '29'], 'CHASE_DB1 publishes 28 images: cannot generate 29'),
    (['--layout', 'hrf', '--count', '46'], 'HRF publishes 45 images: cannot generate 46'),
    (['--layout', 'hrf', '--count', '0'], 'need at least one image'),
    (['--layout', 'hrf', '--train-count', '2'], 'HRF has no training/test split'),
    (['--count', '2'], 'DRIVE is split into training and test'),
])
def test_bad_sizes_and_counts_are_one_line_errors_writing_nothing(args, message, tmp_path, capsys):
  out = tmp_path / 'demo'
  assert main(['make-demo-data', str(out), *args]) == 1
  error = capsys.readouterr().err
  assert error.startswith('retina-tfx: error: ') and message in error and 'Traceback' not in error
  assert not out.exists() and os.listdir(tmp_path) == []


def test_distinct_pictures_are_mirrored_with_their_labels(tmp_path):
  synthetic.generate(str(tmp_path / 'd'), n_train=5, n_test=1, height=48, width=40, distinct=2)
  read = lambda folder, name: np.asarray(Image.open(tmp_path / 'd' / folder / name))
  image = lambda i: read('training/images', f'{i}_training.tif')
  label = lambda i: read('training/1st_manual', f'{i}_manual1.gif')
  assert not np.array_equal(image(21), image(22))                      # two pictures
  np.testing.assert_array_equal(image(23), image(21)[:, ::-1])         # then mirrored left-right
  np.testing.assert_array_equal(label(23), label(21)[:, ::-1])
  np.testing.assert_array_equal(image(25), image(21)[::-1])            # then up-down
  np.testing.assert_array_equal(read('test/images', '01_test.tif'), image(22)[::-1])
  with pytest.raises(ValueError, match='at least 1'):
    synthetic.generate(str(tmp_path / 'e'), n_train=1, n_test=1, height=48, width=40, distinct=0)


def test_drive_layout_with_more_than_20_test_images_keeps_test_and_training_ids_apart(tmp_path):
  """DRIVE numbers test images 01-20 and training images from 21: more test images go on from 1001,
  so a large generated set (benchmark-scale's) is still read as one dataset of distinct ids."""
  synthetic.generate(str(tmp_path / 'd'), n_train=22, n_test=23, height=128, width=128)
  records = reader_layouts.list_datasets([str(tmp_path / 'd')])
  ids = [r.image_id for r in records]
  assert len(set(ids)) == len(ids) == 45
  test_ids = {r.image_id for r in records if r.split == reader_layouts.TEST}
  assert test_ids == {f'{i:02d}' for i in range(1, 21)} | {'1001', '1002', '1003'}
