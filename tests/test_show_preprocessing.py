"""`retina-tfx show-preprocessing`: the raw image and every step, as one picture."""
import numpy as np
from PIL import Image

from cli.main import main


def test_writes_a_grid_of_the_steps(tiny_drive, tmp_path, capsys):
  out = tmp_path / 'strip.png'
  image = tiny_drive / 'test/images/01_test.tif'
  assert main(['show-preprocessing', str(image), '-o', str(out),
               '--fov', str(tiny_drive / 'test/mask/01_test_mask.gif')]) == 0
  strip = np.asarray(Image.open(out))
  # 2 rows x 4 panels of the image's size, each under a title bar.
  assert strip.shape[1] == 4 * 64 and strip.shape[0] > 2 * 60
  raw_panel = strip[strip.shape[0] // 2 - 60:strip.shape[0] // 2, :64]
  np.testing.assert_array_equal(raw_panel, np.asarray(Image.open(image)))
  assert 'wrote' in capsys.readouterr().out


def test_unreadable_image_is_one_clear_error(tmp_path, capsys):
  (tmp_path / 'x.tif').write_bytes(b'nope')
  assert main(['show-preprocessing', str(tmp_path / 'x.tif'), '-o', str(tmp_path / 'o.png')]) == 1
  assert f'{tmp_path / "x.tif"}: cannot be decoded as an image' in capsys.readouterr().err
  assert not (tmp_path / 'o.png').exists()
