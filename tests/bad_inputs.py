"""Every way a DRIVE input can be wrong that the issue names, each with the file the error must name.

A case builds its bad input under tmp_path from the tiny generated dataset and returns
(path to pass as --data, the file the error must name, words the error must contain).
"""
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
  path.write_bytes(path.read_bytes()[:300])
  return 'training/images/21_training.tif', 'cannot be decoded'


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
    'mask of the wrong size': _copy_case(_mask_of_wrong_size),
    'grey label with many levels': _copy_case(_grey_label),
    'zip with ../ entry': _unsafe_zip('DRIVE/../../evil.tif'),
    'zip with absolute entry': _unsafe_zip('/etc/evil.tif'),
    'zip that is not DRIVE': _zip_not_drive,
    'file that is not a zip': _not_a_zip,
    'empty folder': _empty_folder,
    'non-existent folder': _missing_folder,
}
