"""The published layouts of the public fundus vessel datasets, and a generic one for users' own.

A layout names each role's files (image, label, second observer's label, FOV mask) by a pattern
relative to the dataset's folder, with the image id in it, and says how the dataset splits into
train and test. The layout of every --data path is recognised from its files; listing and pairing
happen up front, so a missing partner, a stray file or an unknown layout stops a run before any
Beam work, with one line naming the file.

Splits: DRIVE its official training/ and test/ folders; CHASE_DB1 the usual first 20 images
(children 01-10) for training and the last 8 for test; STARE, HRF and generic folders a stable
hash of the image id (not --split-seed: the test set never moves), half of the images for test
(STARE, HRF) or a quarter (generic).
"""
import dataclasses
import hashlib
import os
import re
from typing import Callable, Dict, List, Optional, Sequence

from components.fundus_example_gen import files
from components.fundus_example_gen.files import FileRef, FundusInputError

IMAGE, LABEL, LABEL2, FOV = 'image', 'label', 'label2', 'fov'
TRAIN, TEST = 'train', 'test'
_IMAGE_SUFFIX = r'\.(?:png|tiff?|jpe?g|bmp|gif|ppm)'


@dataclasses.dataclass(frozen=True)
class Layout:
  name: str                  # also the `dataset` of its examples (generic: the folder's name)
  patterns: Dict[str, str]   # role -> regex of a dataset-relative path with an `id` group
  names: Dict[str, str]      # role -> how that file is named, for messages ({id}, {folder})
  folders: str               # regex of the folders whose every file must be one of the roles
  is_test: Callable[[str, str, List[str]], bool]   # (image id, folder, all ids) -> in test?
  required: tuple = (IMAGE, LABEL, FOV)


def _hashed_split(test_fraction: float) -> Callable[[str, str, List[str]], bool]:
  """The first round(n * test_fraction) ids (at least one, at most n - 1) in the order of their
  SHA-256: the same for the same set of images on every machine and run."""
  def is_test(image_id: str, folder: str, ids: List[str]) -> bool:
    ranked = sorted(ids, key=lambda i: hashlib.sha256(i.encode()).hexdigest())
    count = min(max(1, round(len(ids) * test_fraction)), len(ids) - 1)
    return image_id in ranked[:count]
  return is_test


DRIVE = Layout(
    name='DRIVE',
    patterns={IMAGE: r'(?P<folder>training|test)/images/(?P<id>\d+)_(?P=folder)\.tiff?',
              LABEL: r'(?P<folder>training|test)/1st_manual/(?P<id>\d+)_manual1\.gif',
              LABEL2: r'(?P<folder>training|test)/2nd_manual/(?P<id>\d+)_manual2\.gif',
              FOV: r'(?P<folder>training|test)/mask/(?P<id>\d+)_(?P=folder)_mask\.gif'},
    names={IMAGE: '{folder}/images/{id}_{folder}.tif', LABEL: '{folder}/1st_manual/{id}_manual1.gif',
           LABEL2: '{folder}/2nd_manual/{id}_manual2.gif', FOV: '{folder}/mask/{id}_{folder}_mask.gif'},
    folders=r'(training|test)/(images|1st_manual|2nd_manual|mask)',
    is_test=lambda image_id, folder, ids: folder == 'test')
STARE = Layout(
    name='STARE',
    patterns={IMAGE: r'stare-images/(?P<id>im\d{4})\.ppm\.gz',
              LABEL: r'labels-ah/(?P<id>im\d{4})\.ah\.ppm\.gz',
              LABEL2: r'labels-vk/(?P<id>im\d{4})\.vk\.ppm\.gz'},
    names={IMAGE: 'stare-images/{id}.ppm.gz', LABEL: 'labels-ah/{id}.ah.ppm.gz',
           LABEL2: 'labels-vk/{id}.vk.ppm.gz'},
    folders=r'stare-images|labels-ah|labels-vk', is_test=_hashed_split(0.5),
    required=(IMAGE, LABEL))
CHASE_DB1 = Layout(
    name='CHASE_DB1',
    patterns={IMAGE: r'Image_(?P<id>\d\d[LR])\.jpg', LABEL: r'Image_(?P<id>\d\d[LR])_1stHO\.png',
              LABEL2: r'Image_(?P<id>\d\d[LR])_2ndHO\.png'},
    names={IMAGE: 'Image_{id}.jpg', LABEL: 'Image_{id}_1stHO.png', LABEL2: 'Image_{id}_2ndHO.png'},
    folders=r'', is_test=lambda image_id, folder, ids: int(image_id[:2]) > 10,
    required=(IMAGE, LABEL))
HRF = Layout(
    name='HRF',
    patterns={IMAGE: r'images/(?P<id>\d\d_(?:h|g|dr))\.jpg',
              LABEL: r'manual1/(?P<id>\d\d_(?:h|g|dr))\.tif',
              FOV: r'mask/(?P<id>\d\d_(?:h|g|dr))_mask\.tif'},
    names={IMAGE: 'images/{id}.jpg', LABEL: 'manual1/{id}.tif', FOV: 'mask/{id}_mask.tif'},
    folders=r'images|manual1|mask', is_test=_hashed_split(0.5))
GENERIC = Layout(
    name='generic',
    patterns={IMAGE: r'images/(?P<id>[^/]+?)' + _IMAGE_SUFFIX,
              LABEL: r'labels/(?P<id>[^/]+?)' + _IMAGE_SUFFIX,
              FOV: r'masks/(?P<id>[^/]+?)' + _IMAGE_SUFFIX},
    names={IMAGE: 'images/{id}.png', LABEL: 'labels/{id}.*', FOV: 'masks/{id}.*'},
    folders=r'images|labels|masks', is_test=_hashed_split(0.25), required=(IMAGE, LABEL))
# Specific layouts first: a generic images/ folder is part of HRF's and of DRIVE's too.
LAYOUTS = (DRIVE, STARE, CHASE_DB1, HRF)
EXPECTED = ('DRIVE (training/images/21_training.tif, ...), STARE (stare-images/im0001.ppm.gz, '
            'labels-ah/), CHASE_DB1 (Image_01L.jpg, Image_01L_1stHO.png), HRF (images/01_h.jpg, '
            'manual1/, mask/) or your own: images/ + labels/ (+ masks/), matched by file stem')


@dataclasses.dataclass(frozen=True)
class FundusRecord:
  """The files that make up one image of a dataset."""
  dataset: str
  image_id: str
  split: str                      # the dataset's own: TRAIN or TEST
  image: FileRef
  label: FileRef
  fov: Optional[FileRef] = None   # None: computed from the image (the dataset publishes none)
  label2: Optional[FileRef] = None


def _match(layout: Layout, ref: FileRef):
  """(role, dataset root, folder, id) of a file in `layout`, or None."""
  for role, pattern in layout.patterns.items():
    if match := re.fullmatch(r'(?P<root>(?:[^/]+/)*?)' + pattern, ref.rel_path, re.IGNORECASE):
      return role, match.group('root'), match.groupdict().get('folder') or '', match.group('id')
  return None


def _recognise(path: str, refs: List[FileRef]):
  """The layout of one --data path and its dataset's root inside it."""
  for layout in LAYOUTS + (GENERIC,):
    roots = {m[1] for ref in refs if (m := _match(layout, ref)) and m[0] == IMAGE}
    if len(roots) > 1:
      raise FundusInputError(path, f'holds more than one {layout.name} dataset ('
                             f'{", ".join(sorted(r or "./" for r in roots))}): give each its own --data')
    if roots:
      return layout, roots.pop()
  raise FundusInputError(path, f'unknown layout: expected {EXPECTED}')


def _dataset_name(layout: Layout, path: str, root: str) -> str:
  if layout is not GENERIC:
    return layout.name
  return os.path.basename((root.rstrip('/') or path.rstrip('/')).rstrip('/')) or 'dataset'


def list_datasets(paths: Sequence[str]) -> List[FundusRecord]:
  """Pairs up the files of every image of the datasets at `paths` (folders and/or zip archives;
  one dataset may come in several, like DRIVE's training.zip and test.zip)."""
  if not paths:
    raise FundusInputError('--data', 'no input given')
  found: Dict[str, Dict] = {}   # dataset -> {'layout': ..., (folder, id) -> {role: FileRef}}
  for path in paths:
    refs = files.list_files(path)
    layout, root = _recognise(path, refs)
    dataset = found.setdefault(_dataset_name(layout, path, root), {'layout': layout, 'images': {}})
    for ref in refs:
      if not ref.rel_path.startswith(root):
        continue
      ref = dataclasses.replace(ref, rel_path=ref.rel_path[len(root):])
      match = _match(layout, ref)
      if match is None or match[1]:
        if re.fullmatch(layout.folders, os.path.dirname(ref.rel_path), re.IGNORECASE):
          example = layout.names[IMAGE].format(id='01', folder=os.path.dirname(ref.rel_path)
                                               .split('/')[0])
          raise FundusInputError(str(ref), f'unexpected file in {os.path.dirname(ref.rel_path) or "./"}/ '
                                 f'({layout.name} names look like {example})')
        continue
      role, _, folder, image_id = match
      files_of_image = dataset['images'].setdefault((folder, image_id), {})
      if role in files_of_image:
        raise FundusInputError(str(ref), f'duplicate of {files_of_image[role]}')
      files_of_image[role] = ref
  records = [record for name, dataset in found.items() for record in _pair(name, dataset, paths)]
  seen = {}
  for record in records:   # image ids name the per-image slices and seed the patches
    if (other := seen.setdefault(record.image_id, record)) is not record:
      raise FundusInputError(str(record.image), f'image id {record.image_id} is also in '
                             f'{other.dataset} ({other.image}): rename one of them')
  return records


def _pair(name: str, dataset: Dict, paths: Sequence[str]) -> List[FundusRecord]:
  """Every image with its partners in every role its folder has; names a file left alone."""
  layout, images = dataset['layout'], dataset['images']
  records = []
  for folder in sorted({folder for folder, _ in images}, key=lambda f: f != 'training'):
    ids = sorted((i for f, i in images if f == folder), key=lambda i: (len(i), i))
    present_roles = {role for i in ids for role in images[(folder, i)]}
    expected = [role for role in layout.patterns if role in layout.required or role in present_roles]
    for image_id in ids:
      files_of_image = images[(folder, image_id)]
      for role in expected:
        if role not in files_of_image:
          wanted = layout.names[role].format(id=image_id, folder=folder)
          raise FundusInputError(str(next(iter(files_of_image.values()))),
                                 f'has no matching {wanted}')
      records.append(FundusRecord(
          dataset=name, image_id=image_id,
          split=TEST if layout.is_test(image_id, folder, ids) else TRAIN,
          image=files_of_image[IMAGE], label=files_of_image[LABEL], fov=files_of_image.get(FOV),
          label2=files_of_image.get(LABEL2)))
  for split in (TRAIN, TEST):
    if not any(r.split == split for r in records):
      raise FundusInputError(', '.join(paths), f'{name}: no {split} images found'
                             + (': DRIVE needs both training/ and test/' if layout is DRIVE else ''))
  return records
