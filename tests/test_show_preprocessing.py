"""`retina-tfx show-preprocessing`: the raw image and every step, as one picture, each panel checked
against the step recomputed with numpy and OpenCV."""
import numpy as np
import pytest
from PIL import Image

from cli.main import main
from conftest import recipe_gray, recipe_steps
from pipeline import configs
from synthetic_drive import dataset


@pytest.fixture(scope='module')
def photo(tmp_path_factory):
  """A DRIVE-like test image and its FOV mask, tall enough for the caption's six lines."""
  out = tmp_path_factory.mktemp('show') / 'DRIVE'
  dataset.generate(str(out), seed=1, n_train=1, n_test=1, height=200, width=240)
  return out / 'test/images/01_test.tif', out / 'test/mask/01_test_mask.gif'


def _display(values):
  """A float map as the picture shows it: stretched to 0..255 by its own min and max."""
  return np.round((values - values.min()) / (values.max() - values.min()) * 255).astype(np.uint8)


def test_every_panel_is_its_step_recomputed_with_numpy_and_opencv(photo, tmp_path, capsys):
  image, mask = photo
  out = tmp_path / 'strip.png'
  assert main(['show-preprocessing', str(image), '-o', str(out), '--fov', str(mask)]) == 0
  assert capsys.readouterr().out == f'wrote {out}\n'
  rgb = np.asarray(Image.open(image))
  fov = np.asarray(Image.open(mask).convert('L')) > 127
  gray = recipe_gray(rgb.astype(np.float64))
  steps = recipe_steps(gray, gray[fov].mean(), gray[fov].std(),
                       configs.PROFILES[configs.DEFAULT_PROFILE].preprocessing)
  # 2 rows x 4 cells of the image's size, each under a title bar; the last cell is the caption.
  strip = np.asarray(Image.open(out))
  height, width = rgb.shape[:2]
  cell = strip.shape[0] // 2
  title = cell - height
  assert strip.shape == (2 * cell, 4 * width, 3) and title > 0
  cells = [strip[top:top + cell, left:left + width]
           for top in (0, cell) for left in range(0, 4 * width, width)]
  expected = [rgb, np.where(fov, 255, 0), _display(gray), _display(steps['standardised']),
              steps['rescaled'], steps['clahe'], steps['gamma']]
  for pixels, panel in zip(cells, expected):
    assert (pixels[:title] < 128).any()   # a title drawn
    np.testing.assert_array_equal(pixels[title:],
                                  panel if panel.ndim == 3 else np.stack([panel] * 3, axis=-1))
  # The caption: no title, six lines of text on white.
  caption = cells[-1]
  assert (caption[:title] == 255).all()
  ink = (caption[title:] < 128).any(axis=(1, 2))
  assert np.count_nonzero(ink[1:] & ~ink[:-1]) + ink[0] == 6


def test_unreadable_image_is_one_clear_error(tmp_path, capsys):
  (tmp_path / 'x.tif').write_bytes(b'nope')
  assert main(['show-preprocessing', str(tmp_path / 'x.tif'), '-o', str(tmp_path / 'o.png')]) == 1
  assert f'{tmp_path / "x.tif"}: cannot be decoded as an image' in capsys.readouterr().err
  assert not (tmp_path / 'o.png').exists()
