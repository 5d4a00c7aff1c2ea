"""Reads DRIVE as published (a folder, or the official zip archive(s) read in place) into tf.Examples.

Listing and pairing files is cheap and happens up front, so layout problems (missing label, ids that do
not match, stray files, unsafe zip entries) are reported before any Beam work starts. Decoding happens
per image inside Beam; any file that does not decode, or whose size does not match its image, fails the
run with a DriveInputError naming that file. Input is only ever read.
"""
import dataclasses
import hashlib
import io
import os
import re
import zipfile
from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf
from PIL import Image

from models import constants

# DRIVE's two top-level folders, and the sub-folders with their file-name patterns. The number is the id.
FOLDERS = ('training', 'test')
IMAGES, LABELS, LABELS2, MASKS = 'images', '1st_manual', '2nd_manual', 'mask'
_NAME_PATTERNS = {
    IMAGES: r'(?P<id>\d+)_(?P<folder>training|test)\.tiff?',
    LABELS: r'(?P<id>\d+)_manual1\.gif',
    LABELS2: r'(?P<id>\d+)_manual2\.gif',
    MASKS: r'(?P<id>\d+)_(?P<folder>training|test)_mask\.gif',
}
_EXPECTED_NAMES = {
    IMAGES: '{id}_{folder}.tif', LABELS: '{id}_manual1.gif', LABELS2: '{id}_manual2.gif',
    MASKS: '{id}_{folder}_mask.gif',
}
_REQUIRED = (IMAGES, LABELS, MASKS)
ERROR_PREFIX = 'DRIVE input error: '


class DriveInputError(ValueError):
  """Bad DRIVE input. The message starts with the offending file."""

  def __init__(self, where: str, problem: str):
    super().__init__(f'{ERROR_PREFIX}{where}: {problem}')


@dataclasses.dataclass(frozen=True)
class FileRef:
  """One source file: a path on a filesystem tf.io.gfile reads, or a member of a zip archive."""
  drive_path: str               # DRIVE-relative, e.g. 'training/images/21_training.tif'
  path: str                     # filesystem path, or the zip archive's path
  member: Optional[str] = None  # name inside the zip archive

  def __str__(self):
    return f'{self.path}!{self.member}' if self.member else self.path

  def read(self) -> bytes:
    with tf.io.gfile.GFile(self.path, 'rb') as f:
      if self.member is None:
        return f.read()
      with zipfile.ZipFile(f) as archive:
        return archive.read(self.member)


@dataclasses.dataclass(frozen=True)
class DriveRecord:
  """The files that make up one DRIVE image."""
  image_id: str
  folder: str
  image: FileRef
  label: FileRef
  fov: FileRef
  label2: Optional[FileRef] = None


def _is_junk(name: str) -> bool:
  """OS litter that archivers and file browsers leave behind; never DRIVE data."""
  parts = name.split('/')
  return parts[0] == '__MACOSX' or any(p.startswith('.') for p in parts if p)


def _list_zip(path: str) -> List[FileRef]:
  try:
    with tf.io.gfile.GFile(path, 'rb') as f, zipfile.ZipFile(f) as archive:
      names = archive.namelist()
  except (zipfile.BadZipFile, OSError, tf.errors.OpError) as e:
    raise DriveInputError(path, f'not a readable zip archive ({e})') from e
  refs = []
  for name in names:
    parts = name.replace('\\', '/').split('/')
    # Never extracted, but an archive with such entries is not the one published: refuse it.
    if name.startswith(('/', '\\')) or re.match(r'^[A-Za-z]:', name) or '..' in parts:
      raise DriveInputError(f'{path}!{name}', 'unsafe zip entry (absolute path or "..")')
    if name.endswith('/') or _is_junk(name):
      continue
    refs.append(FileRef(drive_path='/'.join(parts), path=path, member=name))
  return refs


def _list_folder(path: str) -> List[FileRef]:
  refs = []
  for root, _, files in tf.io.gfile.walk(path):
    for name in files:
      full = os.path.join(root, name)
      rel = os.path.relpath(full, path).replace(os.sep, '/')
      if not _is_junk(rel):
        refs.append(FileRef(drive_path=rel, path=full))
  return refs


def _list_source(path: str) -> List[FileRef]:
  if not tf.io.gfile.exists(path):
    raise DriveInputError(path, 'does not exist')
  if tf.io.gfile.isdir(path):
    refs = _list_folder(path)
    if not refs:
      raise DriveInputError(path, 'is an empty folder')
    # A folder may also hold the official archives themselves (training.zip, test.zip).
    zips = [r for r in refs if r.drive_path.lower().endswith('.zip') and '/' not in r.drive_path]
    return [r for r in refs if r not in zips] + [z for r in zips for z in _list_zip(r.path)]
  return _list_zip(path)


def _drive_relative(ref: FileRef) -> Optional[str]:
  """'x/DRIVE/training/images/21_training.tif' -> 'training/images/21_training.tif'; None if not DRIVE."""
  parts = ref.drive_path.split('/')
  if len(parts) >= 3 and parts[-3] in FOLDERS and parts[-2] in _NAME_PATTERNS:
    return '/'.join(parts[-3:])
  return None


def list_drive(paths: Sequence[str]) -> List[DriveRecord]:
  """Pairs up the files of every DRIVE image found under `paths` (folders and/or zip archives)."""
  if not paths:
    raise DriveInputError('--data', 'no input given')
  # folder -> subfolder -> id -> FileRef
  found: Dict[str, Dict[str, Dict[str, FileRef]]] = {f: {s: {} for s in _NAME_PATTERNS} for f in FOLDERS}
  for path in paths:
    refs = _list_source(path)
    drive_refs = [(rel, ref) for ref in refs if (rel := _drive_relative(ref))]
    if not drive_refs:
      raise DriveInputError(path, 'not DRIVE: no training/ or test/ folder with images, 1st_manual, '
                            'mask files inside')
    for rel, ref in drive_refs:
      folder, sub, name = rel.split('/')
      match = re.fullmatch(_NAME_PATTERNS[sub], name, flags=re.IGNORECASE)
      if not match or match.groupdict().get('folder', folder) != folder:
        raise DriveInputError(str(ref), f'unexpected file in {folder}/{sub}/ (DRIVE names look like '
                              f'{_EXPECTED_NAMES[sub].format(id="21", folder=folder)})')
      ref = dataclasses.replace(ref, drive_path=rel)
      image_id = match.group('id')
      if image_id in found[folder][sub]:
        raise DriveInputError(str(ref), f'duplicate of {found[folder][sub][image_id]}')
      found[folder][sub][image_id] = ref

  records = []
  for folder in FOLDERS:
    subs = found[folder]
    if not subs[IMAGES]:
      raise DriveInputError(', '.join(paths), f'no {folder}/images/ found: DRIVE needs both training/ '
                            'and test/')
    expected = [s for s in _REQUIRED] + ([LABELS2] if subs[LABELS2] else [])
    for sub in expected:
      if not subs[sub]:
        raise DriveInputError(', '.join(paths), f'{folder}/{sub}/ is missing or empty')
    # Every file must have its partner in every expected sub-folder; name the file left alone.
    all_ids = sorted(set().union(*(subs[s] for s in expected)), key=int)
    for image_id in all_ids:
      present = next(subs[s][image_id] for s in expected if image_id in subs[s])
      for sub in expected:
        if image_id not in subs[sub]:
          wanted = _EXPECTED_NAMES[sub].format(id=image_id, folder=folder)
          raise DriveInputError(str(present), f'has no matching {folder}/{sub}/{wanted}')
      records.append(DriveRecord(image_id=image_id, folder=folder, image=subs[IMAGES][image_id],
                                 label=subs[LABELS][image_id], fov=subs[MASKS][image_id],
                                 label2=subs[LABELS2].get(image_id)))
  return records


def assign_splits(records: Sequence[DriveRecord], eval_count: int, seed: int
                  ) -> Dict[str, List[DriveRecord]]:
  """test/ -> test; a seeded, order-independent hold-out of `eval_count` training images -> eval."""
  training = [r for r in records if r.folder == 'training']
  if not 1 <= eval_count < len(training):
    raise DriveInputError('--eval-count', f'must be between 1 and {len(training) - 1} '
                          f'(there are {len(training)} training images), got {eval_count}')
  by_hash = sorted(training, key=lambda r: hashlib.sha256(f'{seed}:{r.image_id}'.encode()).hexdigest())
  held_out = {r.image_id for r in by_hash[:eval_count]}
  return {
      constants.TRAIN_SPLIT: [r for r in training if r.image_id not in held_out],
      constants.EVAL_SPLIT: [r for r in training if r.image_id in held_out],
      constants.TEST_SPLIT: [r for r in records if r.folder == 'test'],
  }


def decode_file(ref: FileRef, expect_binary: bool) -> np.ndarray:
  """Decodes one source file to uint8 pixels: RGB [H, W, 3], or a 0/255 map [H, W]."""
  try:
    with Image.open(io.BytesIO(ref.read())) as image:
      image.load()
      if expect_binary:
        pixels = np.asarray(image.convert('L'))
      elif image.mode == 'RGB':
        pixels = np.asarray(image)
      else:
        raise DriveInputError(str(ref), f'expected an 8-bit RGB image, got PIL mode {image.mode}')
  except (OSError, SyntaxError, ValueError, zipfile.BadZipFile, tf.errors.OpError) as e:
    if isinstance(e, DriveInputError):
      raise
    raise DriveInputError(str(ref), f'cannot be decoded as an image ({e})') from e
  if expect_binary:
    # DRIVE's 2nd_manual GIFs use a palette of gray levels 3 and 253: accept any two-level map with one
    # dark and one bright level and store it as 0/255; anything with more levels is not a label.
    levels = np.unique(pixels)
    if len(levels) > 2 or (len(levels) == 2 and not (levels[0] < 128 <= levels[1])):
      raise DriveInputError(str(ref), f'expected a binary (two-level) map, found gray levels {levels[:8]}'
                            f'{"..." if len(levels) > 8 else ""}')
    pixels = np.where(pixels >= 128, 255, 0).astype(np.uint8)
  return pixels


def encode_png(pixels: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format='PNG')
  return buffer.getvalue()


def to_example(record: DriveRecord) -> tf.train.Example:
  """Decodes and checks one image's files and packs them, losslessly re-encoded as PNG."""
  image = decode_file(record.image, expect_binary=False)
  height, width = image.shape[:2]
  maps = {constants.LABEL_KEY: record.label, constants.FOV_KEY: record.fov}
  if record.label2 is not None:
    maps[constants.LABEL2_KEY] = record.label2
  features = {
      constants.IMAGE_ID_KEY: _bytes(record.image_id.encode()),
      constants.IMAGE_KEY: _bytes(encode_png(image)),
      constants.HEIGHT_KEY: _int(height),
      constants.WIDTH_KEY: _int(width),
      constants.SOURCE_FILE_KEY: _bytes(record.image.drive_path.encode()),
  }
  for key, ref in maps.items():
    pixels = decode_file(ref, expect_binary=True)
    if pixels.shape != (height, width):
      raise DriveInputError(str(ref), f'size {pixels.shape[1]}x{pixels.shape[0]} does not match its '
                            f'image {record.image.drive_path} ({width}x{height})')
    features[key] = _bytes(encode_png(pixels))
  return tf.train.Example(features=tf.train.Features(feature=features))


def _bytes(value: bytes) -> tf.train.Feature:
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int(value: int) -> tf.train.Feature:
  return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))


def fingerprint(paths: Sequence[str]) -> str:
  """Cheap content fingerprint (names, sizes, mtimes) so cached ingestion reruns when the data changes."""
  digest = hashlib.sha256()
  for path in filter(tf.io.gfile.exists, paths):  # missing paths are ExampleGen's error to report
    entries = [path] if not tf.io.gfile.isdir(path) else [
        os.path.join(root, name) for root, _, names in tf.io.gfile.walk(path) for name in names]
    for entry in sorted(entries):
      stat = tf.io.gfile.stat(entry)
      digest.update(f'{entry}:{stat.length}:{stat.mtime_nsec}\n'.encode())
  return digest.hexdigest()
