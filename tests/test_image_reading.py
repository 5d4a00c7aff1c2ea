"""The one image decoder every reader uses (ingestion and evaluate through files.decode_file,
predict and show-preprocessing through predict.read_image): a hostile file is one line naming it,
wide samples are scaled by the image's range (never clipped), any other mode becomes RGB."""
import gzip
import zipfile

import cv2
import numpy as np
import pytest
from PIL import Image

import bad_inputs
from cli import predict
from components.fundus_example_gen import files, layouts, source
import real_data

READERS = ('ingestion', 'predict')


def _read(reader, path, expect_binary=False):
  if reader == 'ingestion':
    return files.decode_file(files.FileRef(rel_path=path.name, path=str(path)), expect_binary)
  return predict.read_image(str(path), expect_binary)


@pytest.fixture(scope='module')
def hostile(tmp_path_factory):
  return bad_inputs.hostile_files(tmp_path_factory.mktemp('hostile'))


@pytest.mark.parametrize('reader', READERS)
def test_each_hostile_file_is_one_line_naming_it(hostile, reader):
  for path, words in hostile.items():
    with pytest.raises((files.FundusInputError, predict.PredictError)) as error:
      _read(reader, path)
    line = getattr(error.value, 'message', str(error.value))
    assert line.startswith(f'{path}: ') and words in line and '\n' not in line, line


def test_a_bomb_under_pils_own_bound_is_refused_from_its_header(tmp_path):
  Image.new('1', (8000, 6000)).save(tmp_path / 'big.png')   # 48 M pixels: PIL would decode it
  with pytest.raises(predict.PredictError, match='8000x6000 pixels is more than the 40,000,000'):
    predict.read_image(str(tmp_path / 'big.png'))


# A 12-bit camera's 0..4095 in 16-bit containers (and as 32-bit int and float): 0..255 after.
RAMP = np.arange(4096, dtype=np.uint16).reshape(64, 64)
RAMP_RGB = np.stack([RAMP, RAMP // 2, 4095 - RAMP], axis=-1)


def _scaled(samples):
  return np.round(samples * 255.0 / 4095).astype(np.uint8)


def _write_wide(path):
  if path.name.startswith('rgb'):
    assert cv2.imwrite(str(path), RAMP_RGB[..., ::-1])
  elif path.name.startswith('rgba'):
    opaque = np.full_like(RAMP, 65535)[..., None]
    assert cv2.imwrite(str(path), np.concatenate([RAMP_RGB[..., ::-1], opaque], axis=-1))
  else:
    samples = {'gray16': RAMP, 'int32': RAMP.astype(np.int32) * 1000,
               'float': RAMP.astype(np.float32) / 8190}[path.stem]   # float: 0..0.5
    Image.fromarray(samples).save(path)


@pytest.mark.parametrize('reader', READERS)
@pytest.mark.parametrize('name', ['gray16.png', 'gray16.tif', 'rgb16.png', 'rgb16.tif',
                                  'rgb16.ppm', 'rgba16.png', 'int32.tif', 'float.tif'])
def test_wide_samples_are_divided_by_the_image_maximum_not_clipped(reader, name, tmp_path):
  _write_wide(tmp_path / name)
  rgb = _read(reader, tmp_path / name)
  expected = _scaled(RAMP_RGB if 'rgb' in name else np.stack([RAMP] * 3, axis=-1))
  assert rgb.dtype == np.uint8 and rgb.max() == 255
  np.testing.assert_array_equal(rgb, expected)
  if 'rgb' not in name:
    assert rgb.mean() == pytest.approx(127.5)   # the old clipping gave ~251


@pytest.mark.parametrize('suffix', ['.png', '.tif'])
def test_a_16_bit_map_of_0_and_65535_is_0_and_255(suffix, tmp_path):
  vessels = RAMP % 7 == 0
  Image.fromarray(vessels.astype(np.uint16) * 65535).save(tmp_path / f'label{suffix}')
  for reader in READERS:
    np.testing.assert_array_equal(_read(reader, tmp_path / f'label{suffix}', expect_binary=True),
                                  vessels * 255)


@pytest.mark.parametrize('samples, problem', [
    (np.array([[0, -5], [7, 9]], np.int32), 'below 0'),
    (np.array([[0, np.nan], [0.5, 1]], np.float32), 'not finite'),
])
def test_samples_without_a_range_from_0_are_refused(samples, problem, tmp_path):
  Image.fromarray(samples).save(tmp_path / 'odd.tif')
  with pytest.raises(files.FundusInputError, match=problem):
    _read('ingestion', tmp_path / 'odd.tif')


@pytest.mark.parametrize('mode, pixels, suffix, expected', [
    ('1', (0, 255), '.png', [(0, 0, 0), (255, 255, 255)]),
    ('L', (30, 200), '.png', [(30, 30, 30), (200, 200, 200)]),
    ('P', (0, 1), '.png', [(10, 20, 30), (200, 150, 100)]),
    ('LA', ((30, 0), (200, 255)), '.png', [(30, 30, 30), (200, 200, 200)]),
    ('RGBA', ((10, 20, 30, 0), (200, 150, 100, 128)), '.png', [(10, 20, 30), (200, 150, 100)]),
    ('CMYK', ((255, 0, 0, 0), (0, 0, 0, 0)), '.tif', [(0, 255, 255), (255, 255, 255)]),
])
def test_other_modes_become_rgb_and_alpha_is_ignored(mode, pixels, suffix, expected, tmp_path):
  image = Image.new(mode, (2, 1))
  if mode == 'P':
    image.putpalette([10, 20, 30, 200, 150, 100])
  for x, value in enumerate(pixels):
    image.putpixel((x, 0), value)
  image.save(tmp_path / f'image{suffix}')
  for reader in READERS:
    np.testing.assert_array_equal(_read(reader, tmp_path / f'image{suffix}'), [expected])


# --- Maps (labels and FOV masks) as the datasets publish them ----------------------------------------
VESSELS = RAMP[:60, :64] % 5 == 0   # a 64x60 0/1 map


def _write_map(path, pixels):
  Image.fromarray(pixels).save(path, **({'compression': 'tiff_lzw'} if path.suffix == '.tif' else {}))
  return path


@pytest.mark.parametrize('name, channels', [('mask.tif', 3), ('mask.png', 4)])
def test_a_map_in_rgb_with_equal_channels_is_a_gray_map(name, channels, tmp_path):
  """HRF's FOV masks are RGB TIFFs of three equal 0/255 channels (alpha, if any, ignored)."""
  gray = VESSELS.astype(np.uint8) * 255
  _write_map(tmp_path / name, np.stack([gray] * channels, axis=-1))
  for reader in READERS:
    np.testing.assert_array_equal(_read(reader, tmp_path / name, expect_binary=True), gray)


def test_a_map_whose_channels_differ_is_a_colour_image(tmp_path):
  rgb = np.stack([VESSELS * 255] * 3, axis=-1).astype(np.uint8)
  rgb[10:12, 20:23, 1] = 200   # 6 pixels with a green tint
  path = _write_map(tmp_path / 'mask.tif', rgb)
  for reader in READERS:
    with pytest.raises((files.FundusInputError, predict.PredictError)) as error:
      _read(reader, path, expect_binary=True)
    line = getattr(error.value, 'message', str(error.value))
    assert line == (f'{path}: is a colour image, not a map: its red, green and blue differ at 6 of '
                    '3,840 pixels'), line


def test_drives_palette_maps_of_near_gray_colours_stay_maps(tmp_path):
  """DRIVE's 2nd_manual GIFs: a palette of (4, 2, 4) and (252, 254, 252), not quite gray."""
  image = Image.fromarray(VESSELS.astype(np.uint8), mode='L').convert('P')
  image.putpalette([4, 2, 4, 252, 254, 252])
  image.save(tmp_path / '01_manual2.gif')
  np.testing.assert_array_equal(_read('ingestion', tmp_path / '01_manual2.gif', True), VESSELS * 255)


def test_a_few_gray_pixels_along_edges_are_thresholded_and_counted(tmp_path, caplog):
  """As HRF's manual1/11_h, 12_h and 13_h: a few hundred gray pixels along vessel edges."""
  label = VESSELS.astype(np.uint8) * 255
  label[5, :16] = 127   # 16 of 3,840 pixels: 0.4 %, 16 dark and 16 bright edge pixels
  label[6, :16] = 128
  expected = np.where(label >= 128, 255, 0)
  path = _write_map(tmp_path / 'label.tif', label)
  for reader in READERS:
    caplog.clear()
    np.testing.assert_array_equal(_read(reader, path, expect_binary=True), expected)
    [warning] = [r.getMessage() for r in caplog.records if str(path) in r.getMessage()]
    assert warning.startswith(f'{path}: 32 of 3840 pixels'), warning


def test_gray_levels_beyond_the_bound_are_not_a_map(tmp_path):
  label = VESSELS.astype(np.uint8) * 255
  label[:, :1] = 100   # 60 of 3,840 pixels: 1.6 %, over the 1 % a map may have
  with pytest.raises(files.FundusInputError, match=r'expected a binary \(two-level\) map.* \(1\.6%'):
    _read('ingestion', _write_map(tmp_path / 'label.png', label), expect_binary=True)


# A photo of each real dataset, and a generated one.
_PHOTOS = {'DRIVE': ('training', 'images', '21_training.tif'), 'HRF': ('images', '01_h.jpg'),
           'STARE': ('stare-images', 'im0001.ppm.gz'), 'CHASE_DB1': ('Image_08L.jpg',)}


@pytest.mark.parametrize('dataset', ['generated'] + [
    pytest.param(name, marks=pytest.mark.real_data(name)) for name in _PHOTOS])
def test_a_photo_in_gray_is_not_a_map(dataset, tiny_drive, tmp_path):
  photo = (str(tiny_drive / 'test/images/01_test.tif') if dataset == 'generated'
           else real_data.path(dataset, *_PHOTOS[dataset]))
  rgb = files.decode_file(files.FileRef(rel_path=photo, path=photo), expect_binary=False)
  for channels, name in ((Image.fromarray(rgb).convert('L'), 'gray.png'),
                         (Image.fromarray(rgb[..., 1]), 'green.png')):
    channels.save(tmp_path / name)
    with pytest.raises(files.FundusInputError, match='expected a binary'):
      _read('ingestion', tmp_path / name, expect_binary=True)


# --- Sizes: a file too large for any image within the pixel bound is refused before it is read ------
TOO_MANY_BYTES = files.MAX_FILE_BYTES + 1


def _zeros(stream, size):
  """Writes `size` zero bytes in chunks: a bomb's content, never held whole."""
  chunk = bytes(1 << 24)
  for start in range(0, size, len(chunk)):
    stream.write(chunk[:min(len(chunk), size - start)])


def test_an_oversized_zip_member_is_refused_unread(tmp_path, monkeypatch):
  """A generic dataset whose images/x.png inflates to 321 MB from 1.4 MB of zip: refused from the
  size the archive declares, its data never opened."""
  tiny = files.encode_png(VESSELS.astype(np.uint8) * 255)
  archive = tmp_path / 'bomb.zip'
  with zipfile.ZipFile(archive, 'w', zipfile.ZIP_DEFLATED, compresslevel=1) as z:
    with z.open('images/x.png', 'w', force_zip64=True) as member:
      _zeros(member, TOO_MANY_BYTES)
    for name in ('labels/x.png', 'images/y.png', 'labels/y.png'):
      z.writestr(name, tiny)
  assert archive.stat().st_size < TOO_MANY_BYTES / 100
  [bomb] = [r for r in layouts.list_datasets([str(archive)]) if r.image_id == 'x']
  opened = []
  real_open = zipfile.ZipFile.open
  monkeypatch.setattr(zipfile.ZipFile, 'open',
                      lambda self, name, *args, **kwargs: opened.append(name) or real_open(
                          self, name, *args, **kwargs))
  with pytest.raises(files.FundusInputError) as error:
    source.decode_record(bomb)
  assert error.value.message == (f'{archive}!images/x.png: {TOO_MANY_BYTES:,} bytes is more than '
                                 f'the {files.MAX_FILE_BYTES:,} bytes an image of 40,000,000 pixels '
                                 'can take')
  assert 'images/x.png' not in opened


@pytest.mark.parametrize('reader', READERS)
def test_an_oversized_file_is_refused_unread(reader, tmp_path, monkeypatch):
  path = tmp_path / 'huge.tif'
  with open(path, 'wb') as f:
    f.truncate(TOO_MANY_BYTES)   # sparse: takes no disk
  monkeypatch.setattr(files, 'decode_image', lambda *args: pytest.fail('read and decoded'))
  with pytest.raises((files.FundusInputError, predict.PredictError),
                     match=f'^(input error: )?{path}: {TOO_MANY_BYTES:,} bytes is more than'):
    _read(reader, path)


def test_a_gzip_bomb_is_refused_without_inflating_it_whole(tmp_path):
  """A STARE-like .ppm.gz of 1.4 MB whose stream inflates to 321 MB (and would go on)."""
  path = tmp_path / 'im0001.ppm.gz'
  with gzip.GzipFile(path, 'wb', compresslevel=1) as stream:
    stream.write(b'P6 20000 20000 255\n')
    _zeros(stream, TOO_MANY_BYTES)
  with pytest.raises(files.FundusInputError,
                     match=f'^input error: {path}: inflates to more than the '
                           f'{files.MAX_FILE_BYTES:,} bytes'):
    files.decode_file(files.FileRef(rel_path=path.name, path=str(path)), expect_binary=False)


def test_a_damaged_gzip_stream_is_one_line_naming_it(tmp_path):
  """zlib's own error for damaged deflate data, which gzip lets through, is a file that cannot be read."""
  damaged = bytearray(gzip.compress(bytes(range(256)) * 100))
  damaged[20:40] = b'\xff' * 20
  path = tmp_path / 'im0001.ppm.gz'
  path.write_bytes(damaged)
  with pytest.raises(files.FundusInputError, match=f'^input error: {path}: cannot be read \\(Error -3'):
    files.decode_file(files.FileRef(rel_path=path.name, path=str(path)), expect_binary=False)
