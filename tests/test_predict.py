"""`retina-tfx predict` on files: the formats it reads and writes, the bytes it feeds the
signature, a pushed serving folder, bad inputs named one by one. Any exported model serves, so these
use the shipped one (no pipeline run) and run beside the tests that share demo_run."""
import io
import os
import shutil

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score

import bad_inputs
from cli import predict
from cli.main import main
from components.fundus_example_gen import files
from conftest import demo_pixels
from models import constants

@pytest.mark.slow
def test_predict_cli_writes_maps_and_overlays_for_tiff_and_png(shipped_model, demo_drive,
                                                              tmp_path, capsys):
  serving_base = tmp_path / 'serving'
  for version in ('1', '7'):  # a pushed serving folder: the latest version must be used
    shutil.copytree(shipped_model, serving_base / version)
  inputs = tmp_path / 'in'
  inputs.mkdir()
  shutil.copy(demo_drive / 'test/images/01_test.tif', inputs)
  crop = demo_pixels(demo_drive, 'test/images/02_test.tif')[:300, :280]
  Image.fromarray(crop).save(inputs / 'crop.png')
  (inputs / 'broken.png').write_bytes(b'not a png')
  bad = {inputs / 'broken.png': 'cannot be decoded as an image', **bad_inputs.hostile_files(inputs)}
  out = tmp_path / 'out'
  code = main(['predict', '--model', str(serving_base), '--input', str(inputs), '--output',
               str(out), '--overlay'])
  captured = capsys.readouterr()
  assert code == 1  # the bad inputs failed, each said in one line naming it ...
  errors = [line for line in captured.err.splitlines() if line.startswith('retina-tfx: error: ')]
  assert len(errors) == len(bad) and 'Traceback' not in captured.err
  for path, words in bad.items():
    assert any(line.startswith(f'retina-tfx: error: {path}: ') and words in line
               for line in errors), path
  assert str(serving_base / '7') in captured.out
  # ... and the others were all written, at their input's size.
  assert sorted(os.listdir(out)) == ['01_test.png', '01_test_overlay.png', 'crop.png',
                                     'crop_overlay.png']
  assert Image.open(out / '01_test.png').size == (constants.IMAGE_WIDTH, constants.IMAGE_HEIGHT)
  assert Image.open(out / '01_test.png').mode == 'I;16'
  assert Image.open(out / '01_test_overlay.png').size == (constants.IMAGE_WIDTH,
                                                          constants.IMAGE_HEIGHT)
  assert Image.open(out / 'crop.png').size == (280, 300)


@pytest.mark.slow
def test_predict_formats_store_the_signature_output_and_png16_and_npy_keep_its_auc(
    shipped_model, demo_drive, tmp_path):
  image = str(demo_drive / 'test/images/01_test.tif')
  model = predict.VesselModel(shipped_model)
  probabilities, _ = model.predict(files.encode_png(predict.read_image(image)))
  for map_format in constants.MAP_FORMATS:
    predict.predict_files(model, [image], str(tmp_path / map_format), map_format=map_format,
                          progress=lambda *a: None)
  png8, png16 = (np.asarray(Image.open(tmp_path / f / '01_test.png')) for f in ('png8', 'png16'))
  npy = np.load(tmp_path / 'npy/01_test.npy')
  assert (png8.dtype, png16.dtype, npy.dtype) == (np.uint8, np.uint16, np.float32)
  np.testing.assert_array_equal(png8, np.round(probabilities * 255))
  np.testing.assert_array_equal(png16, np.round(probabilities * 65535))
  np.testing.assert_array_equal(npy, probabilities)
  label = np.asarray(Image.open(demo_drive / 'test/1st_manual/01_manual1.gif').convert('L')) > 127
  inside = np.asarray(Image.open(demo_drive / 'test/mask/01_test_mask.gif').convert('L')) > 127
  auc = roc_auc_score(label[inside], probabilities[inside])
  for stored in (png16 / 65535, npy):
    assert roc_auc_score(label[inside], stored[inside]) == pytest.approx(auc, abs=1e-5)


class _RecordingModel(predict.VesselModel):
  """Keeps the image bytes predict feeds the signature."""

  def predict(self, image, fov_png=None):
    self.fed = image
    return super().predict(image, fov_png)


@pytest.mark.slow
def test_predict_feeds_decode_images_pixels_uncompressed_and_writes_the_same_maps(
    shipped_model, demo_drive, tmp_path):
  rgb = demo_pixels(demo_drive, 'test/images/02_test.tif')[:300, :281]
  twelve_bit = rgb[..., 1].astype(np.uint16) * 16   # a 12-bit camera's samples in 16 bits
  inputs = {'drive.tif': demo_drive / 'test/images/01_test.tif', 'crop.png': rgb,
            'crop.jpg': rgb, 'twelve_bit.png': twelve_bit}
  model = _RecordingModel(shipped_model)
  for name, source in inputs.items():
    path = tmp_path / name
    if isinstance(source, np.ndarray):
      Image.fromarray(source).save(path)
    else:
      shutil.copy(source, path)
    predict.predict_files(model, [str(path)], str(tmp_path / 'out'), map_format='npy',
                          progress=lambda *a: None)
    # An uncompressed BMP of the pixels ingestion and evaluate decode (a 16-bit file scaled by its
    # maximum), not a PNG re-encoded at zlib's default level, which took seconds on a large photo.
    assert model.fed[:2] == b'BM', name
    decoded = predict.read_image(str(path))
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(model.fed))), decoded)
    if name == 'twelve_bit.png':
      scaled = np.round(twelve_bit * 255.0 / twelve_bit.max())   # by the image's maximum
      np.testing.assert_array_equal(decoded[..., 0], scaled)
    # The map is the one the previous path (a lossless PNG of the same pixels) gave.
    np.testing.assert_array_equal(np.load(tmp_path / 'out' / f'{path.stem}.npy'),
                                  model.predict(files.encode_png(decoded))[0])


def _zlib_level(png: bytes) -> int:
  """A PNG's zlib compression level class: 0 fastest, 1 fast, 2 zlib's default, 3 maximum."""
  idat = png.index(b'IDAT')
  return png[idat + 5] >> 6   # FLEVEL, the top bits of the zlib header's second byte


@pytest.mark.slow
def test_predict_writes_maps_and_overlays_at_zlibs_fastest_level(shipped_model, demo_drive,
                                                                 tmp_path):
  image = tmp_path / 'crop.png'
  Image.fromarray(demo_pixels(demo_drive)[:200, :190]).save(image)
  model = predict.VesselModel(shipped_model)
  for map_format in ('png8', 'png16'):
    predict.predict_files(model, [str(image)], str(tmp_path / map_format), with_overlay=True,
                          map_format=map_format, progress=lambda *a: None)
    for written in ('crop.png', 'crop_overlay.png'):
      assert _zlib_level((tmp_path / map_format / written).read_bytes()) == 0, written


def test_not_a_model_is_a_clear_error(tmp_path, capsys):
  code = main(['predict', '--model', str(tmp_path), '--input', str(tmp_path), '--output',
               str(tmp_path / 'out')])
  assert code == 1
  assert 'neither a SavedModel nor a serving folder' in capsys.readouterr().err
