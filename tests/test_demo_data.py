"""Tests for synthetic_drive (make-demo-data): layout, formats, determinism and realism of the synthetic
DRIVE, and its STARE, CHASE_DB1 and HRF layouts."""
import gzip
import io
import os

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score

from cli.main import main
from components.fundus_example_gen import layouts as reader_layouts
from synthetic_drive import dataset as synthetic
from synthetic_drive import fundus, layouts

# Half DRIVE's size keeps the suite fast; the generator scales its geometry to the image.
HEIGHT, WIDTH = 292, 282
N_TRAIN, N_TEST = 3, 2


def _generate(out_dir, seed=0, **kwargs):
  return synthetic.generate(str(out_dir), seed=seed, n_train=kwargs.pop('n_train', N_TRAIN),
                            n_test=kwargs.pop('n_test', N_TEST), height=HEIGHT, width=WIDTH, **kwargs)


def _files(root):
  return sorted(os.path.relpath(os.path.join(folder, name), root)
                for folder, _, names in os.walk(root) for name in names)


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
  assert _files(out_dir) == [
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
  for path in _files(out_dir):
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
  assert _files(tmp_path / 'again') == _files(out_dir)
  for path in _files(out_dir):
    assert (tmp_path / 'again' / path).read_bytes() == (out_dir / path).read_bytes(), path


def test_an_image_depends_only_on_seed_and_id(dataset, tmp_path):
  out_dir, _, _ = dataset
  _generate(tmp_path / 'fewer', n_train=1, n_test=1)
  for path in _files(tmp_path / 'fewer'):
    assert (tmp_path / 'fewer' / path).read_bytes() == (out_dir / path).read_bytes(), path


def test_different_seed_gives_different_images(dataset, tmp_path):
  out_dir, _, _ = dataset
  _generate(tmp_path / 'other', seed=1, n_train=1, n_test=0)
  for path in ('training/images/21_training.tif', 'training/1st_manual/21_manual1.gif'):
    assert (tmp_path / 'other' / path).read_bytes() != (out_dir / path).read_bytes(), path


def test_writes_into_an_existing_empty_folder(tmp_path):
  (tmp_path / 'empty').mkdir()
  _generate(tmp_path / 'empty', n_train=1, n_test=0)
  assert 'training/images/21_training.tif' in _files(tmp_path / 'empty')


def test_refuses_a_non_empty_folder_and_leaves_it_alone(tmp_path):
  (tmp_path / 'taken').mkdir()
  (tmp_path / 'taken' / 'keep.txt').write_text('mine')
  with pytest.raises(FileExistsError, match='not an empty folder'):
    _generate(tmp_path / 'taken')
  assert _files(tmp_path / 'taken') == ['keep.txt']
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


# --- The other published layouts: STARE, CHASE_DB1, HRF --------------------------------------------

SMALL_HEIGHT, SMALL_WIDTH = 100, 120  # not square, so that a width/height mix-up shows
OTHER_LAYOUTS = {  # layout: (count, every file it must write, exactly)
    'stare': (3, [f'{folder}/im{id}.{suffix}ppm.gz'
                  for folder, suffix in (('labels-ah', 'ah.'), ('labels-vk', 'vk.'), ('stare-images', ''))
                  for id in ('0001', '0002', '0003')]),
    'chase_db1': (3, [f'Image_{id}{suffix}' for id in ('01L', '01R', '02L')
                      for suffix in ('.jpg', '_1stHO.png', '_2ndHO.png')]),
    'hrf': (4, ['images/01_dr.JPG', 'images/01_g.jpg', 'images/01_h.jpg', 'images/02_h.jpg']
            + [f'{folder}/{id}{suffix}.tif' for folder, suffix in (('manual1', ''), ('mask', '_mask'))
               for id in ('01_dr', '01_g', '01_h', '02_h')]),
}
# (format, mode) of the photos and of the maps (labels, FOV masks), by file extension; HRF's FOV masks
# are RGB TIFFs (three equal channels).
FORMATS = {'.ppm.gz': (('PPM', 'RGB'), ('PPM', 'L')), '.jpg': (('JPEG', 'RGB'), None),
           '.png': (None, ('PNG', '1')), '.tif': (None, ('TIFF', 'L')), 'mask.tif': (None, ('TIFF', 'RGB'))}


def _generate_layout(out_dir, layout, seed=0, count=None, **kwargs):
  return synthetic.generate(str(out_dir), seed=seed, layout=layout, height=SMALL_HEIGHT,
                            width=SMALL_WIDTH, count=count or OTHER_LAYOUTS[layout][0], **kwargs)


def _jobs(layout, count=None):
  return layouts.images(layouts.get(layout), layouts.counts(layouts.get(layout), count=count))


def _open(path):
  """Any generated file as a PIL image, gunzipped first if need be."""
  gzipped = str(path).endswith('.gz')
  return Image.open(io.BytesIO(gzip.decompress(path.read_bytes())) if gzipped else path)


@pytest.fixture(scope='module', params=sorted(OTHER_LAYOUTS))
def other(request, tmp_path_factory):
  out_dir = tmp_path_factory.mktemp('layouts') / request.param
  calls = []
  summary = _generate_layout(out_dir, request.param, progress=lambda *call: calls.append(call))
  return request.param, out_dir, summary, calls


def test_other_layouts_names_formats_and_what_the_drive_renderer_draws(other):
  """The published names; in each file, in the published format, exactly the map fundus.render
  (DRIVE's renderer) draws for that image, the JPEG photos within JPEG's loss; two-level maps, but
  for HRF's first two labels, which have a few gray pixels along vessel edges as three of HRF's do."""
  layout, out_dir, summary, calls = other
  count, expected = OTHER_LAYOUTS[layout]
  assert _files(out_dir) == sorted(expected) and os.listdir(out_dir.parent) == [out_dir.name]
  assert [summary[key] for key in ('layout', 'count', 'n_train', 'n_test')] == [layout, count, None, None]
  assert calls == [(done, count) for done in range(1, count + 1)]
  assert (layouts.TRAINING, layouts.TEST) == (fundus.TRAINING, fundus.TEST)
  for job in _jobs(layout, count):
    rendered = dict(zip(layouts.MAPS, fundus.render(0, *job.render_key, SMALL_HEIGHT, SMALL_WIDTH)))
    written = {}
    for path, content in job.files:
      extension = next((e for e in ('.ppm.gz', 'mask.tif') if path.endswith(e)),
                       os.path.splitext(path)[1].lower())
      with _open(out_dir / path) as image:
        assert image.size == (SMALL_WIDTH, SMALL_HEIGHT), path
        assert (image.format, image.mode) == FORMATS[extension][content != layouts.IMAGE], path
        pixels = np.asarray(image.convert('RGB' if image.mode == 'RGB' else 'L'))
      if content != layouts.IMAGE and pixels.ndim == 3:
        assert (pixels == pixels[..., :1]).all(), path
        pixels = pixels[..., 0]
      if job.gray_edged_label and content == layouts.LABEL:
        gray = np.count_nonzero((pixels != 0) & (pixels != 255))
        assert 0 < gray <= pixels.size * 0.001, (path, gray)
        pixels = np.where(pixels >= 128, 255, 0)
      written[content] = pixels
      if extension == '.ppm.gz':  # gzip without a timestamp around a binary PPM (P6 RGB, P5 grey)
        raw = (out_dir / path).read_bytes()
        assert raw[:2] == b'\x1f\x8b' and raw[4:8] == b'\0\0\0\0', path
        header = b'P%d\n%d %d\n255\n' % (6 if content == layouts.IMAGE else 5, SMALL_WIDTH, SMALL_HEIGHT)
        assert gzip.decompress(raw).startswith(header), path
      if extension == '.jpg':
        difference = np.abs(pixels.astype(int) - rendered[content])
        assert difference.mean() < 4 and np.percentile(difference, 99) < 24, path
      else:
        np.testing.assert_array_equal(pixels, rendered[content], err_msg=path)
      assert content == layouts.IMAGE or set(np.unique(pixels)) == {0, 255}, path
    if layouts.SECOND_LABEL in written:  # a second observer that differs a little, like DRIVE's
      assert np.any(written[layouts.LABEL] != written[layouts.SECOND_LABEL])
  assert sum(job.gray_edged_label for job in _jobs(layout, count)) == (2 if layout == 'hrf' else 0)


def test_other_layouts_same_seed_gives_identical_files_and_fewer_images_the_same_first(other, tmp_path):
  layout, out_dir, _, _ = other
  for copy, seed, count in (('again', 0, None), ('fewer', 0, 1), ('other', 1, 1)):
    _generate_layout(tmp_path / copy, layout, seed=seed, count=count)
    assert set(_files(tmp_path / copy)) <= set(_files(out_dir))
    for path in _files(tmp_path / copy):
      same = (tmp_path / copy / path).read_bytes() == (out_dir / path).read_bytes()
      assert same if seed == 0 else (not same or 'mask' in path), (copy, path)  # tiny FOVs may agree
  assert _files(tmp_path / 'again') == _files(out_dir)


def test_published_orders_counts_and_no_shared_pictures():
  stare, chase, hrf = ([job.files[0][0] for job in _jobs(name)] for name in ('stare', 'chase_db1', 'hrf'))
  assert ' '.join(name[15:19] for name in stare) == ('0001 0002 0003 0004 0005 0044 0077 0081 0082 0139 '
                                                     '0162 0163 0235 0236 0239 0240 0255 0291 0319 0324')
  assert (len(chase), chase[:3], chase[-1]) == (28, ['Image_01L.jpg', 'Image_01R.jpg', 'Image_02L.jpg'],
                                                'Image_14R.jpg')
  assert (len(hrf), hrf[:4], hrf[-1]) == (
      45, ['images/01_h.jpg', 'images/01_g.jpg', 'images/01_dr.JPG', 'images/02_h.jpg'], 'images/15_dr.JPG')
  # No layout repeats another's pictures, and DRIVE's are where they always were.
  keys = [job.render_key for name in layouts.NAMES for job in _jobs(name)]
  assert len(keys) == len(set(keys)) == 40 + 20 + 28 + 45
  assert [job.render_key for job in _jobs('drive')[19:21]] == [('training', 40), ('test', 1)]
  with pytest.raises(ValueError, match="unknown layout 'messidor': choose one of drive, stare"):
    synthetic.generate('unused', layout='messidor')


def test_default_sizes_are_the_published_ones(tmp_path, monkeypatch):
  # A stand-in renderer: rendering HRF's 8 M pixels takes long.
  monkeypatch.setattr(synthetic, 'render', lambda seed, folder, image_id, height, width: (
      np.full((height, width, 3), 90, np.uint8), *[np.full((height, width), 255, np.uint8)] * 3))
  sizes = {'drive': (565, 584), 'stare': (700, 605), 'chase_db1': (999, 960), 'hrf': (3504, 2336)}
  for layout, size in sizes.items():
    counts = {'n_train': 1, 'n_test': 0} if layout == 'drive' else {'count': 1}
    summary = synthetic.generate(str(tmp_path / layout), layout=layout, **counts)
    assert (summary['width'], summary['height']) == size
    for path in _files(tmp_path / layout):
      with _open(tmp_path / layout / path) as image:
        assert image.size == size, path


def test_cli_writes_other_layouts(tmp_path, capsys):
  out = tmp_path / 'stare'
  assert main(['make-demo-data', str(out), '--layout', 'stare', '--count', '3',
               '--height', str(SMALL_HEIGHT), '--width', str(SMALL_WIDTH)]) == 0
  assert 'STARE-like' in capsys.readouterr().out and _files(out) == sorted(OTHER_LAYOUTS['stare'][1])


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
