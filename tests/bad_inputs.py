"""Every way a DRIVE input can be wrong that the issue names, each with the file the error must
name; and hostile image files for any reader.

A case builds its bad input under tmp_path from the tiny generated dataset and returns
(path to pass as --data, the file the error must name, words the error must contain).
"""
import io
import os
import shutil
import zipfile

import numpy as np
from PIL import Image

from conftest import zip_folder


def _broken_copy(tiny_drive, tmp_path, breaker):
  copy = tmp_path / 'DRIVE'
  shutil.copytree(tiny_drive, copy)
  culprit, problem = breaker(copy)
  return copy, copy / culprit, problem


def _missing_label(root):
  os.remove(root / 'training/1st_manual/22_manual1.gif')
  return 'training/images/22_training.tif', 'no matching training/1st_manual/22_manual1.gif'


def _missing_mask(root):
  os.remove(root / 'test/mask/02_test_mask.gif')
  return 'test/images/02_test.tif', 'no matching test/mask/02_test_mask.gif'


def _ids_do_not_match(root):
  os.rename(root / 'training/1st_manual/23_manual1.gif', root / 'training/1st_manual/19_manual1.gif')
  return 'training/1st_manual/19_manual1.gif', 'no matching training/images/19_training.tif'


def _text_file_in_images(root):
  (root / 'training/images/notes.txt').write_text('hello')
  return 'training/images/notes.txt', 'unexpected file'


def _non_image_with_image_name(root):
  (root / 'test/images/01_test.tif').write_bytes(b'%PDF-1.4 not a tiff')
  return 'test/images/01_test.tif', 'cannot be decoded'


def _truncated_tiff(root):
  path = root / 'training/images/21_training.tif'
  path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])
  return 'training/images/21_training.tif', 'cannot be decoded'


def _zero_byte_image(root):
  (root / 'test/images/02_test.tif').write_bytes(b'')
  return 'test/images/02_test.tif', 'is empty (0 bytes)'


def _decompression_bomb(root):
  # 400 M pixels (10 times the bound) in 12 KB: refused from the header, never decoded.
  Image.new('1', (20000, 20000)).save(root / 'training/images/22_training.tif',
                                      compression='group4')
  return 'training/images/22_training.tif', 'more than the 40,000,000 pixels'


def _mask_of_wrong_size(root):
  Image.new('L', (32, 30), 255).save(root / 'training/mask/22_training_mask.gif')
  return 'training/mask/22_training_mask.gif', 'size 32x30 does not match'


def _grey_label(root):
  ramp = np.tile((np.arange(64) * 4).astype(np.uint8), (60, 1))
  Image.fromarray(ramp).save(root / 'test/1st_manual/02_manual1.gif')
  return 'test/1st_manual/02_manual1.gif', 'expected a binary'


def _unsafe_zip(entry):
  def build(tiny_drive, tmp_path):
    archive = zip_folder(tiny_drive, tmp_path / 'DRIVE.zip')
    with zipfile.ZipFile(archive, 'a') as z:
      z.writestr(zipfile.ZipInfo(entry), b'x')
    return archive, f'{archive}!{entry}', 'unsafe zip entry'
  return build


def _zip_not_drive(tiny_drive, tmp_path):
  archive = tmp_path / 'photos.zip'
  with zipfile.ZipFile(archive, 'w') as z:
    z.writestr('holiday/beach.jpg', b'jpeg')
  return archive, archive, 'unknown layout'


def _not_a_zip(tiny_drive, tmp_path):
  (tmp_path / 'fake.zip').write_bytes(b'not a zip at all')
  return tmp_path / 'fake.zip', tmp_path / 'fake.zip', 'not a readable zip archive'


def _empty_folder(tiny_drive, tmp_path):
  (tmp_path / 'empty').mkdir()
  return tmp_path / 'empty', tmp_path / 'empty', 'empty folder'


def _missing_folder(tiny_drive, tmp_path):
  return tmp_path / 'nowhere', tmp_path / 'nowhere', 'does not exist'


def _copy_case(breaker):
  return lambda tiny_drive, tmp_path: _broken_copy(tiny_drive, tmp_path, breaker)


CASES = {
    'missing label': _copy_case(_missing_label),
    'missing mask': _copy_case(_missing_mask),
    'ids do not match': _copy_case(_ids_do_not_match),
    'text file in images/': _copy_case(_text_file_in_images),
    'non-image file with an image name': _copy_case(_non_image_with_image_name),
    'truncated TIFF': _copy_case(_truncated_tiff),
    'zero-byte image': _copy_case(_zero_byte_image),
    'decompression bomb': _copy_case(_decompression_bomb),
    'mask of the wrong size': _copy_case(_mask_of_wrong_size),
    'grey label with many levels': _copy_case(_grey_label),
    'zip with ../ entry': _unsafe_zip('DRIVE/../../evil.tif'),
    'zip with absolute entry': _unsafe_zip('/etc/evil.tif'),
    'zip that is not DRIVE': _zip_not_drive,
    'file that is not a zip': _not_a_zip,
    'empty folder': _empty_folder,
    'non-existent folder': _missing_folder,
}


def hostile_files(folder):
  """Image-named files no reader may decode, written into folder: {path: words its one-line error
  holds}. The bomb is a 20000x20000 PNG of 49 KB."""
  folder.mkdir(exist_ok=True)
  noise = np.random.default_rng(0).integers(0, 256, (60, 64, 3), np.uint8)
  for name, image_format in (('cut.png', 'PNG'), ('cut.tif', 'TIFF')):
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format=image_format)
    (folder / name).write_bytes(buffer.getvalue()[:len(buffer.getvalue()) // 2])
  (folder / 'empty.png').write_bytes(b'')
  (folder / 'notes.png').write_text('not an image')
  Image.new('1', (20000, 20000)).save(folder / 'bomb.png')
  return {folder / 'cut.png': 'truncated', folder / 'cut.tif': 'truncated',
          folder / 'empty.png': 'is empty (0 bytes)',
          folder / 'notes.png': 'cannot be decoded as an image',
          folder / 'bomb.png': 'more than the 40,000,000 pixels'}
