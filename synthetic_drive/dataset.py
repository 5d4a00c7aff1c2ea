"""Writes a synthetic fundus dataset in the exact folder layout and file formats of DRIVE, STARE,
CHASE_DB1 or HRF (layouts.py lists them).

The real datasets cannot be redistributed, so demos and tests run on this instead (see fundus.py for
what the images hold). Everything depends only on (seed, layout, image): the same seed gives
byte-identical files, and a smaller count gives the same first images.
"""
import gzip
import io
import os
import shutil
import tempfile
from typing import Callable, Optional

import numpy as np
from PIL import Image

from synthetic_drive import layouts
from synthetic_drive.fundus import render

FIRST_TRAINING_ID = layouts.FIRST_TRAINING_ID
MIN_SIDE = 16   # smaller images have too few pixels for a field of view with vessels in it

# Pillow's format and options by file extension (case-insensitive: HRF has both .jpg and .JPG).
_FORMATS = {
    '.tif': ('TIFF', {'compression': 'tiff_lzw'}),  # lossless, like DRIVE's own TIFFs
    # A full grey-level palette, so that PIL reads it back as mode L like DRIVE's own GIFs.
    '.gif': ('GIF', {'optimize': False}),
    # Lossy, as CHASE_DB1 and HRF publish their images; chroma subsampling pinned, not left to Pillow.
    '.jpg': ('JPEG', {'quality': 95, 'subsampling': '4:2:0'}),
    '.png': ('PNG', {}),
    '.ppm': ('PPM', {}),                 # binary: P6 for RGB, P5 for grey
}


def _save(pixels: np.ndarray, name: str, file):
  """Saves one map to an open file in the format its name's extension says."""
  file_format, options = _FORMATS[os.path.splitext(name)[1].lower()]
  # PNG maps are 1-bit (mode '1') like CHASE_DB1's; everything else is 8-bit L or RGB.
  image = Image.fromarray(pixels > 127) if file_format == 'PNG' else Image.fromarray(pixels)
  image.save(file, format=file_format, **options)


def _write(pixels: np.ndarray, path: str):
  """Writes one map; the format follows from the name, e.g. 'im0001.ppm.gz' is a gzipped PPM.

  Straight into the real file: Pillow's libtiff writer leaves a padding byte uninitialised when
  saving to a memory buffer, which would break byte-identical output.
  """
  os.makedirs(os.path.dirname(path), exist_ok=True)
  stem, extension = os.path.splitext(path)
  with open(path, 'wb') as file:
    if extension != '.gz':
      _save(pixels, path, file)
      return
    buffer = io.BytesIO()
    _save(pixels, stem, buffer)
    # No timestamp (mtime=0), and the inner file's name as gzip itself would record it.
    with gzip.GzipFile(os.path.basename(stem), 'wb', compresslevel=9, fileobj=file, mtime=0) as out:
      out.write(buffer.getvalue())


def _as_published(pixels: np.ndarray, content: str, job: layouts.ImageFiles) -> np.ndarray:
  """A rendered map as the dataset stores it: with gray edge pixels, or as RGB (HRF's quirks)."""
  if content == layouts.LABEL and job.gray_edged_label:
    pixels = _gray_edged(pixels)
  return np.stack([pixels] * 3, axis=-1) if content in job.rgb_maps else pixels


# One in 5,000 pixels, as many as HRF's 12_h has (0.019 %): a few, far under the 1 % a reader allows.
GRAY_EDGE_FRACTION = 1 / 5000


def _gray_edged(label: np.ndarray) -> np.ndarray:
  """The 0/255 label with GRAY_EDGE_FRACTION of its pixels, spread along the vessels' edges, at 170
  (vessel side) or 85 (background side): thresholding at 128 gives the label back."""
  vessel = label > 127
  padded = np.pad(vessel, 1, mode='edge')
  on_edge = ((padded[:-2, 1:-1] != vessel) | (padded[2:, 1:-1] != vessel)
             | (padded[1:-1, :-2] != vessel) | (padded[1:-1, 2:] != vessel))
  edge = np.flatnonzero(on_edge)
  count = min(len(edge), max(1, round(label.size * GRAY_EDGE_FRACTION)))
  chosen = edge[np.linspace(0, len(edge) - 1, count).astype(int)]
  edged = label.copy()
  edged.flat[chosen] = np.where(vessel.flat[chosen], 170, 85)
  return edged


# How `distinct` varies a picture: which axes (rows, columns) to mirror.
_MIRRORS = ((), (1,), (0,), (0, 1))


def _maps(seed: int, jobs, index: int, height: int, width: int, distinct: Optional[int],
          rendered: dict) -> dict:
  """The maps of image `index`: rendered, or with `distinct` a mirror image of a rendered one."""
  if distinct is None:
    return dict(zip(layouts.MAPS, render(seed, *jobs[index].render_key, height, width)))
  picture = index % distinct
  if picture not in rendered:
    rendered[picture] = render(seed, *jobs[picture].render_key, height, width)
  axes = _MIRRORS[index // distinct % len(_MIRRORS)]
  return {name: np.ascontiguousarray(np.flip(pixels, axes)) if axes else pixels
          for name, pixels in zip(layouts.MAPS, rendered[picture])}


def generate(out_dir: str, seed: int = 0, n_train: Optional[int] = None, n_test: Optional[int] = None,
             height: Optional[int] = None, width: Optional[int] = None,
             progress: Optional[Callable[[int, int], None]] = None, *,
             layout: str = layouts.DRIVE, count: Optional[int] = None,
             distinct: Optional[int] = None) -> dict:
  """Writes a synthetic dataset in `layout`'s published form into `out_dir`, which must not exist or
  be empty.

  layout: one of layouts.NAMES ('drive', 'stare', 'chase_db1', 'hrf').
  n_train, n_test: DRIVE only, its training and test images (default 20 each, as published).
  count: the other layouts only (they have no training/test split), how many of the published
    images, in published order (default all: STARE 20, CHASE_DB1 28, HRF 45; more is an error).
  height, width: default the layout's real size (DRIVE 584x565, STARE 605x700, CHASE_DB1 960x999,
    HRF 2336x3504, height x width).
  progress: if given, called as progress(done, total) after each image.
  distinct: if given, render only the first `distinct` pictures (2 s each at 2048x2048) and make
    image i picture i % distinct mirrored one of four ways (none, left-right, up-down, both), in
    turn: cheap fundus-like data for measuring cost at scale, not for measuring accuracy.

  Returns a summary with the layout, the image counts, the size and the vessel fraction inside the
  field of view (first observer, all images).
  """
  spec = layouts.get(layout)
  part_counts = layouts.counts(spec, n_train, n_test, count)
  height = spec.height if height is None else height
  width = spec.width if width is None else width
  if min(height, width) < MIN_SIDE:
    raise ValueError(f'images must be at least {MIN_SIDE}x{MIN_SIDE} pixels, got {width}x{height}')
  if distinct is not None and distinct < 1:
    raise ValueError(f'distinct pictures must be at least 1, got {distinct}')
  out_dir = os.path.abspath(out_dir)
  if os.path.exists(out_dir) and (not os.path.isdir(out_dir) or os.listdir(out_dir)):
    raise FileExistsError(f'{out_dir} already exists and is not an empty folder: refusing to write the '
                          'demo dataset over it (delete it or choose another folder)')
  parent = os.path.dirname(out_dir)
  os.makedirs(parent, exist_ok=True)
  # Build everything in a hidden sibling and rename it into place, so a crash leaves no half dataset.
  staging = tempfile.mkdtemp(prefix=f'.{os.path.basename(out_dir)}.partial-', dir=parent)
  jobs = layouts.images(spec, part_counts)
  vessel_pixels = fov_pixels = 0
  rendered = {}
  try:
    for done, job in enumerate(jobs, start=1):
      maps = _maps(seed, jobs, done - 1, height, width, distinct, rendered)
      for relative, content in job.files:
        _write(_as_published(maps[content], content, job), os.path.join(staging, relative))
      vessel_pixels += int(np.count_nonzero(maps[layouts.LABEL]))
      fov_pixels += int(np.count_nonzero(maps[layouts.FOV]))
      if progress is not None:
        progress(done, len(jobs))
    os.chmod(staging, 0o755)  # mkdtemp makes it private; the dataset should not be
    if os.path.isdir(out_dir):
      os.rmdir(out_dir)  # checked empty above
    os.rename(staging, out_dir)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  split = len(spec.parts) == 2
  return {'out_dir': out_dir, 'layout': spec.name, 'seed': seed,
          'n_train': part_counts[0] if split else None, 'n_test': part_counts[1] if split else None,
          'count': sum(part_counts), 'height': height, 'width': width,
          'vessel_fraction': vessel_pixels / fov_pixels}
