"""Writes a synthetic DRIVE-like dataset in DRIVE's exact folder layout and file formats.

The real DRIVE cannot be redistributed, so demos and tests run on this instead (see fundus.py for
what the images hold). Everything depends only on (seed, folder, image id): the same seed gives
byte-identical files.
"""
import os
import shutil
import tempfile
from typing import Callable, Optional

import numpy as np
from PIL import Image

from models.constants import IMAGE_HEIGHT, IMAGE_WIDTH
from synthetic_drive.fundus import TEST, TRAINING, render

FIRST_TRAINING_ID = 21  # DRIVE numbers its test images 01-20 and its training images 21-40.


def _save(pixels: np.ndarray, path: str):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  if pixels.ndim == 3:
    # Lossless like DRIVE's own TIFFs.
    Image.fromarray(pixels, 'RGB').save(path, format='TIFF', compression='tiff_lzw')
  else:
    # A full grey-level palette, so that PIL reads it back as mode L like DRIVE's own GIFs.
    Image.fromarray(pixels, 'L').save(path, format='GIF', optimize=False)


MIN_SIDE = 16   # smaller images have too few pixels for a field of view with vessels in it


def generate(out_dir: str, seed: int = 0, n_train: int = 20, n_test: int = 20,
             height: int = IMAGE_HEIGHT, width: int = IMAGE_WIDTH,
             progress: Optional[Callable[[int, int], None]] = None) -> dict:
  """Writes a synthetic DRIVE into `out_dir`, which must not exist or be empty.

  `progress`, if given, is called as progress(done, total) after each image. Returns a summary with
  the image counts and the vessel fraction inside the field of view (1st_manual, all images).
  """
  if n_train < 0 or n_test < 0 or n_train + n_test == 0:
    raise ValueError(f'need at least one image, got n_train={n_train}, n_test={n_test}')
  if min(height, width) < MIN_SIDE:
    raise ValueError(f'images must be at least {MIN_SIDE}x{MIN_SIDE} pixels, got {width}x{height}')
  out_dir = os.path.abspath(out_dir)
  if os.path.exists(out_dir) and (not os.path.isdir(out_dir) or os.listdir(out_dir)):
    raise FileExistsError(f'{out_dir} already exists and is not an empty folder: refusing to write the '
                          'demo dataset over it (delete it or choose another folder)')
  parent = os.path.dirname(out_dir)
  os.makedirs(parent, exist_ok=True)
  # Build everything in a hidden sibling and rename it into place, so a crash leaves no half dataset.
  staging = tempfile.mkdtemp(prefix=f'.{os.path.basename(out_dir)}.partial-', dir=parent)
  jobs = ([(TRAINING, FIRST_TRAINING_ID + i) for i in range(n_train)]
          + [(TEST, 1 + i) for i in range(n_test)])
  vessel_pixels = fov_pixels = 0
  try:
    for done, (folder, image_id) in enumerate(jobs, start=1):
      image, label, second_label, fov = render(seed, folder, image_id, height, width)
      name = f'{image_id:02d}'
      files = {f'images/{name}_{folder}.tif': image, f'1st_manual/{name}_manual1.gif': label,
               f'mask/{name}_{folder}_mask.gif': fov}
      if folder == TEST:
        files[f'2nd_manual/{name}_manual2.gif'] = second_label
      for relative, pixels in files.items():
        _save(pixels, os.path.join(staging, folder, relative))
      vessel_pixels += int(np.count_nonzero(label))
      fov_pixels += int(np.count_nonzero(fov))
      if progress is not None:
        progress(done, len(jobs))
    os.chmod(staging, 0o755)  # mkdtemp makes it private; the dataset should not be
    if os.path.isdir(out_dir):
      os.rmdir(out_dir)  # checked empty above
    os.rename(staging, out_dir)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  return {'out_dir': out_dir, 'seed': seed, 'n_train': n_train, 'n_test': n_test,
          'height': height, 'width': width, 'vessel_fraction': vessel_pixels / fov_pixels}
