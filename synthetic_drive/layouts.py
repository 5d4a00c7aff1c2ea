"""The published layouts the generator writes: DRIVE's, STARE's, CHASE_DB1's and HRF's.

Pure data and bookkeeping (which files each image has, under which names, holding which of the
rendered maps); dataset.py renders and encodes. Imports nothing beyond the standard library and
models.constants, so the command line can offer the layout names without loading numpy.

As published:
- DRIVE: training/ (images 21-40) and test/ (01-20); images/NN_<folder>.tif, 1st_manual/NN_manual1.gif,
  mask/NN_<folder>_mask.gif, and test/2nd_manual/NN_manual2.gif. 565x584 (width x height).
- STARE: 20 hand-labelled images, gzipped PPMs: stare-images/imNNNN.ppm.gz (P6),
  labels-ah/imNNNN.ah.ppm.gz and labels-vk/imNNNN.vk.ppm.gz (P5, the two observers). No FOV masks.
  700x605.
- CHASE_DB1: 14 children x left/right eye, flat: Image_NNL.jpg, Image_NNL_1stHO.png and
  Image_NNL_2ndHO.png (1-bit PNGs). No FOV masks. 999x960.
- HRF: 15 healthy (h), 15 glaucoma (g), 15 diabetic retinopathy (dr): images/NN_h.jpg (NN_dr.JPG),
  manual1/NN_h.tif (one observer, gray), mask/NN_h_mask.tif (RGB, three equal channels). 3504x2336.
  Three labels (11_h, 12_h, 13_h) have a few gray pixels along vessel edges (0.007-0.019 %); the
  generator gives its first two labels some, so that a few generated images show them too.

How a file is encoded follows from its name (see dataset._write); what it holds is one of the maps
fundus.render returns, as RGB if its Part says so (rgb_maps), a label with gray edge pixels for its
Part's first gray_edged_labels images.
"""
import dataclasses
from typing import Callable, Dict, List, Optional, Tuple

from models.constants import IMAGE_HEIGHT, IMAGE_WIDTH

DRIVE, STARE, CHASE_DB1, HRF = 'drive', 'stare', 'chase_db1', 'hrf'

# What a file holds: fundus.render returns these four maps, in this order.
IMAGE, LABEL, SECOND_LABEL, FOV = 'image', 'label', 'second_label', 'fov'
MAPS = (IMAGE, LABEL, SECOND_LABEL, FOV)

# DRIVE's folders, which are also fundus.render's folder keys (fundus.TRAINING, fundus.TEST).
TRAINING, TEST = 'training', 'test'

STARE_IDS = ('0001', '0002', '0003', '0004', '0005', '0044', '0077', '0081', '0082', '0139',
             '0162', '0163', '0235', '0236', '0239', '0240', '0255', '0291', '0319', '0324')
# HRF's categories with the extension their images are published with.
HRF_CATEGORIES = (('h', 'jpg'), ('g', 'jpg'), ('dr', 'JPG'))


@dataclasses.dataclass(frozen=True)
class Part:
  """A run of images named alike: DRIVE has two (training and test), the other layouts one."""
  names: Callable[[int], Dict[str, str]]  # the i-th image's fields for the path patterns
  size: int                  # images in the published dataset: the default count
  open_ended: bool           # whether more than `size` can be generated (DRIVE's numbers go on)
  files: Tuple[Tuple[str, str], ...]  # (path pattern, map) of each image's files
  # Which picture the i-th image is: fundus.render(seed, render_folder, first_render_id + i).
  render_folder: str
  first_render_id: int
  rgb_maps: Tuple[str, ...] = ()   # maps written as RGB with three equal channels
  gray_edged_labels: int = 0       # how many of the first images' labels have gray edge pixels


@dataclasses.dataclass(frozen=True)
class Layout:
  name: str
  title: str                 # as the dataset names itself
  width: int                 # of the published images
  height: int
  parts: Tuple[Part, ...]


@dataclasses.dataclass(frozen=True)
class ImageFiles:
  """One image to write: which picture, and its files (path relative to the dataset, map)."""
  render_key: Tuple[str, int]
  files: Tuple[Tuple[str, str], ...]
  rgb_maps: Tuple[str, ...] = ()
  gray_edged_label: bool = False


def _drive_names(folder: str, first_id: int) -> Callable[[int], Dict[str, str]]:
  return lambda i: {'folder': folder, 'id': f'{first_id + i:02d}'}


_DRIVE_FILES = (('{folder}/images/{id}_{folder}.tif', IMAGE),
                ('{folder}/1st_manual/{id}_manual1.gif', LABEL),
                ('{folder}/mask/{id}_{folder}_mask.gif', FOV))
FIRST_TRAINING_ID = 21  # DRIVE numbers its test images 01-20 and its training images 21-40.
# Test images beyond DRIVE's 20 are numbered from here, clear of the training images' numbers.
FIRST_EXTRA_TEST_ID = 1001


def _drive_test_names(i: int) -> Dict[str, str]:
  number = i + 1 if i < FIRST_TRAINING_ID - 1 else FIRST_EXTRA_TEST_ID + i - (FIRST_TRAINING_ID - 1)
  return {'folder': TEST, 'id': f'{number:02d}'}
# The other layouts' pictures come from render ids far beyond DRIVE's, so that no layout repeats
# another's pictures (a model trained on one can be fairly tested on another).
_RENDER_ID_STRIDE = 1_000_000


def _hrf_names(i: int) -> Dict[str, str]:
  category, extension = HRF_CATEGORIES[i % len(HRF_CATEGORIES)]
  return {'id': f'{i // len(HRF_CATEGORIES) + 1:02d}_{category}', 'ext': extension}


LAYOUTS = {layout.name: layout for layout in (
    Layout(DRIVE, 'DRIVE', IMAGE_WIDTH, IMAGE_HEIGHT, (
        Part(_drive_names(TRAINING, FIRST_TRAINING_ID), 20, True, _DRIVE_FILES,
             TRAINING, FIRST_TRAINING_ID),
        Part(_drive_test_names, 20, True,
             _DRIVE_FILES + (('{folder}/2nd_manual/{id}_manual2.gif', SECOND_LABEL),), TEST, 1),
    )),
    Layout(STARE, 'STARE', 700, 605, (
        Part(lambda i: {'id': STARE_IDS[i]}, len(STARE_IDS), False,
             (('stare-images/im{id}.ppm.gz', IMAGE), ('labels-ah/im{id}.ah.ppm.gz', LABEL),
              ('labels-vk/im{id}.vk.ppm.gz', SECOND_LABEL)),
             TEST, 1 * _RENDER_ID_STRIDE + 1),
    )),
    # Image k is child k // 2 + 1's left (even k) or right (odd k) eye.
    Layout(CHASE_DB1, 'CHASE_DB1', 999, 960, (
        Part(lambda i: {'id': f'{i // 2 + 1:02d}{"LR"[i % 2]}'}, 28, False,
             (('Image_{id}.jpg', IMAGE), ('Image_{id}_1stHO.png', LABEL),
              ('Image_{id}_2ndHO.png', SECOND_LABEL)),
             TEST, 2 * _RENDER_ID_STRIDE + 1),
    )),
    # Ordered 01_h, 01_g, 01_dr, 02_h, ...: a few images cover all three categories.
    Layout(HRF, 'HRF', 3504, 2336, (
        Part(_hrf_names, 15 * len(HRF_CATEGORIES), False,
             (('images/{id}.{ext}', IMAGE), ('manual1/{id}.tif', LABEL), ('mask/{id}_mask.tif', FOV)),
             TEST, 3 * _RENDER_ID_STRIDE + 1, rgb_maps=(FOV,), gray_edged_labels=2),
    )),
)}
NAMES = tuple(LAYOUTS)


def get(name: str) -> Layout:
  if name not in LAYOUTS:
    raise ValueError(f'unknown layout {name!r}: choose one of {", ".join(NAMES)}')
  return LAYOUTS[name]


def counts(layout: Layout, n_train: Optional[int] = None, n_test: Optional[int] = None,
           count: Optional[int] = None) -> Tuple[int, ...]:
  """How many images each part gets: DRIVE takes n_train and n_test, the others count (none of them
  has a training/test split); what is not given defaults to the published number."""
  if len(layout.parts) == 2:
    if count is not None:
      raise ValueError(f'{layout.title} is split into training and test images: give n_train and '
                       f'n_test (--train-count, --test-count), not count')
    result = tuple(part.size if n is None else n for part, n in zip(layout.parts, (n_train, n_test)))
    if min(result) < 0 or sum(result) == 0:
      raise ValueError(f'need at least one image, got n_train={result[0]}, n_test={result[1]}')
  else:
    if n_train is not None or n_test is not None:
      raise ValueError(f'{layout.title} has no training/test split: give count (--count), not '
                       f'n_train or n_test')
    result = (layout.parts[0].size if count is None else count,)
    if result[0] < 1:
      raise ValueError(f'need at least one image, got count={result[0]}')
  for part, n in zip(layout.parts, result):
    if n > part.size and not part.open_ended:
      raise ValueError(f'{layout.title} publishes {part.size} images: cannot generate {n}')
  return result


def images(layout: Layout, part_counts: Tuple[int, ...]) -> List[ImageFiles]:
  """The images to write, in order, with their files' paths relative to the dataset."""
  result = []
  for part, n in zip(layout.parts, part_counts):
    for i in range(n):
      fields = part.names(i)
      result.append(ImageFiles((part.render_folder, part.first_render_id + i),
                               tuple((pattern.format(**fields), content)
                                     for pattern, content in part.files),
                               part.rgb_maps, i < part.gray_edged_labels))
  return result
