"""Reading fundus datasets' files where they are: folders or zip archives (read in place, never
extracted), any tf.io.gfile filesystem, gzip-compressed members (STARE) included. Decoding checks
what a pixel map must be and refuses, with the file's name, what it is not."""
import dataclasses
import gzip
import hashlib
import io
import os
import re
import zipfile
from typing import List, Optional, Sequence

import numpy as np
import tensorflow as tf
from PIL import Image

from models import constants

ERROR_PREFIX = 'input error: '


class FundusInputError(ValueError):
  """Bad input data. The message starts with the offending file."""

  def __init__(self, where: str, problem: str):
    super().__init__(f'{ERROR_PREFIX}{where}: {problem}')


@dataclasses.dataclass(frozen=True)
class FileRef:
  """One source file: a path on a filesystem tf.io.gfile reads, or a member of a zip archive."""
  rel_path: str                 # relative to the dataset, e.g. 'training/images/21_training.tif'
  path: str                     # filesystem path, or the zip archive's path
  member: Optional[str] = None  # name inside the zip archive

  def __str__(self):
    return f'{self.path}!{self.member}' if self.member else self.path

  def read(self) -> bytes:
    with tf.io.gfile.GFile(self.path, 'rb') as f:
      if self.member is None:
        data = f.read()
      else:
        with zipfile.ZipFile(f) as archive:
          data = archive.read(self.member)
    return gzip.decompress(data) if self.rel_path.lower().endswith('.gz') else data


def _is_junk(name: str) -> bool:
  """OS litter that archivers and file browsers leave behind; never data."""
  parts = name.split('/')
  return parts[0] == '__MACOSX' or any(p.startswith('.') for p in parts if p)


def _list_zip(path: str) -> List[FileRef]:
  try:
    with tf.io.gfile.GFile(path, 'rb') as f, zipfile.ZipFile(f) as archive:
      names = archive.namelist()
  except (zipfile.BadZipFile, OSError, tf.errors.OpError) as e:
    raise FundusInputError(path, f'not a readable zip archive ({e})') from e
  refs = []
  for name in names:
    parts = name.replace('\\', '/').split('/')
    # Never extracted, but an archive with such entries is not the one published: refuse it.
    if name.startswith(('/', '\\')) or re.match(r'^[A-Za-z]:', name) or '..' in parts:
      raise FundusInputError(f'{path}!{name}', 'unsafe zip entry (absolute path or "..")')
    if name.endswith('/') or _is_junk(name):
      continue
    refs.append(FileRef(rel_path='/'.join(parts), path=path, member=name))
  return refs


def _list_folder(path: str) -> List[FileRef]:
  refs = []
  for root, _, files in tf.io.gfile.walk(path):
    for name in files:
      full = os.path.join(root, name)
      rel = os.path.relpath(full, path).replace(os.sep, '/')
      if not _is_junk(rel):
        refs.append(FileRef(rel_path=rel, path=full))
  return refs


def list_files(path: str) -> List[FileRef]:
  """Every file of a folder (and of the zip archives directly in it) or of a zip archive."""
  if not tf.io.gfile.exists(path):
    raise FundusInputError(path, 'does not exist')
  if tf.io.gfile.isdir(path):
    refs = _list_folder(path)
    if not refs:
      raise FundusInputError(path, 'is an empty folder')
    # A folder may also hold the official archives themselves (training.zip, test.zip).
    zips = [r for r in refs if r.rel_path.lower().endswith('.zip') and '/' not in r.rel_path]
    return [r for r in refs if r not in zips] + [z for r in zips for z in _list_zip(r.path)]
  return _list_zip(path)


def decode_file(ref: FileRef, expect_binary: bool) -> np.ndarray:
  """Decodes one source file to uint8 pixels: RGB [H, W, 3], or a 0/255 map [H, W]. Refuses what
  would need a silent conversion: 16-bit or float images, and more than MAX_PIXELS pixels."""
  try:
    with Image.open(io.BytesIO(ref.read())) as image:
      width, height = image.size
      if width * height > constants.MAX_IMAGE_PIXELS:
        raise FundusInputError(str(ref), f'{width}x{height} pixels is more than the '
                               f'{constants.MAX_IMAGE_PIXELS:,} an image may have')
      # PIL reads 16-bit RGB as mode RGB, keeping the high bytes: the raw mode tells.
      raw_mode = _raw_mode(image)
      if image.mode not in (('1', 'L', 'P') if expect_binary else ('RGB',)) or ';16' in raw_mode:
        wanted = 'a 1- or 8-bit map' if expect_binary else 'an 8-bit RGB image'
        raise FundusInputError(str(ref), f'expected {wanted}, got {raw_mode or image.mode} '
                               '(convert it to 8 bits per channel first)')
      image.load()
      pixels = np.asarray(image.convert('L') if expect_binary else image)
  except (OSError, SyntaxError, ValueError, EOFError, zipfile.BadZipFile,
          Image.DecompressionBombError, tf.errors.OpError) as e:
    if isinstance(e, FundusInputError):
      raise
    raise FundusInputError(str(ref), f'cannot be decoded as an image ({e})') from e
  if expect_binary:
    # DRIVE's 2nd_manual GIFs use a palette of gray levels 3 and 253: accept any two-level map with
    # one dark and one bright level and store it as 0/255; anything with more levels is not a label.
    levels = np.unique(pixels)
    if len(levels) > 2 or (len(levels) == 2 and not (levels[0] < 128 <= levels[1])):
      raise FundusInputError(str(ref), f'expected a binary (two-level) map, found gray levels '
                             f'{levels[:8]}{"..." if len(levels) > 8 else ""}')
    pixels = np.where(pixels >= 128, 255, 0).astype(np.uint8)
  return pixels


def _raw_mode(image: Image.Image) -> str:
  """How the file stores its pixels, e.g. 'RGB;16B' for 16-bit RGB (PIL's mode would say 'RGB')."""
  args = image.tile[0][3] if image.tile else ''
  return str(args[0] if isinstance(args, tuple) else args)


def encode_png(pixels: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format='PNG')
  return buffer.getvalue()


def fingerprint(paths: Sequence[str]) -> str:
  """Cheap content fingerprint (names, sizes, mtimes) so cached ingestion reruns when data changes."""
  digest = hashlib.sha256()
  for path in filter(tf.io.gfile.exists, paths):  # missing paths are ExampleGen's error to report
    entries = [path] if not tf.io.gfile.isdir(path) else [
        os.path.join(root, name) for root, _, names in tf.io.gfile.walk(path) for name in names]
    for entry in sorted(entries):
      stat = tf.io.gfile.stat(entry)
      digest.update(f'{entry}:{stat.length}:{stat.mtime_nsec}\n'.encode())
  return digest.hexdigest()
