"""Tests for synthetic_drive's other published layouts (make-demo-data --layout): STARE, CHASE_DB1
and HRF names, formats and orders, each file exactly what DRIVE's renderer draws for it."""
import gzip
import io
import os

import numpy as np
import pytest
from PIL import Image

from cli.main import main
from conftest import relative_files
from synthetic_drive import dataset as synthetic
from synthetic_drive import fundus, layouts


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
  assert relative_files(out_dir) == sorted(expected)
  assert os.listdir(out_dir.parent) == [out_dir.name]
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
    assert set(relative_files(tmp_path / copy)) <= set(relative_files(out_dir))
    for path in relative_files(tmp_path / copy):
      same = (tmp_path / copy / path).read_bytes() == (out_dir / path).read_bytes()
      assert same if seed == 0 else (not same or 'mask' in path), (copy, path)  # tiny FOVs may agree
  assert relative_files(tmp_path / 'again') == relative_files(out_dir)


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
    for path in relative_files(tmp_path / layout):
      with _open(tmp_path / layout / path) as image:
        assert image.size == size, path


def test_cli_writes_other_layouts(tmp_path, capsys):
  out = tmp_path / 'stare'
  assert main(['make-demo-data', str(out), '--layout', 'stare', '--count', '3',
               '--height', str(SMALL_HEIGHT), '--width', str(SMALL_WIDTH)]) == 0
  assert 'STARE-like' in capsys.readouterr().out
  assert relative_files(out) == sorted(OTHER_LAYOUTS['stare'][1])
