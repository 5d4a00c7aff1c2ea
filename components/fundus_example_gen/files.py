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
import zlib
from typing import List, Optional, Sequence

import cv2
import numpy as np
import tensorflow as tf
from absl import logging
from PIL import Image, UnidentifiedImageError

from models import constants

ERROR_PREFIX = 'input error: '


class FundusInputError(ValueError):
  """Bad input data. The message starts with the offending file."""

  def __init__(self, where: str, problem: str):
    self.message = f'{where}: {problem}'   # what a command prints after 'retina-tfx: error: '
    super().__init__(ERROR_PREFIX + self.message)


@dataclasses.dataclass(frozen=True)
class FileRef:
  """One source file: a path on a filesystem tf.io.gfile reads, or a member of a zip archive."""
  rel_path: str                 # relative to the dataset, e.g. 'training/images/21_training.tif'
  path: str                     # filesystem path, or the zip archive's path
  member: Optional[str] = None  # name inside the zip archive

  def __str__(self):
    return f'{self.path}!{self.member}' if self.member else self.path

  def read(self) -> bytes:
    """The file's bytes, gunzipped if its name ends in .gz; its size checked before reading it."""
    with tf.io.gfile.GFile(self.path, 'rb') as f:
      if self.member is None:
        check_file_size(tf.io.gfile.stat(self.path).length, str(self))
        data = f.read()
      else:
        with zipfile.ZipFile(f) as archive:
          # The size the archive declares bounds what zipfile inflates (it stops there, and a member
          # declaring less than it holds fails its CRC check): a zip bomb is refused unread.
          check_file_size(archive.getinfo(self.member).file_size, str(self))
          data = archive.read(self.member)
    return _gunzipped(data, str(self)) if self.rel_path.lower().endswith('.gz') else data


# The most bytes an image file may take: MAX_IMAGE_PIXELS pixels stored uncompressed with the widest
# samples decode_image reads (16-bit RGBA: 4 channels x 2 bytes, 320 MB), plus 1 MiB for headers,
# tags and padding. A larger file, archive member or inflated gzip stream cannot be an image
# decode_image accepts: refused before it is read (or inflated further), so that a 3 MB zip or
# gzip bomb costs no more memory than the largest image would.
MAX_FILE_BYTES = constants.MAX_IMAGE_PIXELS * 4 * 2 + 2**20
_TOO_MANY_BYTES = (f'more than the {MAX_FILE_BYTES:,} bytes an image of '
                   f'{constants.MAX_IMAGE_PIXELS:,} pixels can take')


def check_file_size(size: int, name: str) -> None:
  """Refuses a file of `size` bytes that no image within the pixel bound needs."""
  if size > MAX_FILE_BYTES:
    raise FundusInputError(name, f'{size:,} bytes is {_TOO_MANY_BYTES}')


def _gunzipped(data: bytes, name: str) -> bytes:
  """Inflates at most MAX_FILE_BYTES + 1 bytes: a gzip bomb is refused without inflating it whole."""
  with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
    inflated = stream.read(MAX_FILE_BYTES + 1)
  if len(inflated) > MAX_FILE_BYTES:
    raise FundusInputError(name, f'inflates to {_TOO_MANY_BYTES}')
  return inflated


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
  """One dataset file decoded by decode_image's rules."""
  try:
    data = ref.read()
  except (OSError, EOFError, zlib.error, zipfile.BadZipFile, tf.errors.OpError) as e:
    raise FundusInputError(str(ref), f'cannot be read ({e})') from e
  return decode_image(data, str(ref), expect_binary)


def decode_image(data: bytes, name: str, expect_binary: bool) -> np.ndarray:
  """Image file bytes -> uint8 pixels: RGB [H, W, 3], or a 0/255 map [H, W]. Every reader uses it,
  so ingestion, evaluate, predict and show-preprocessing see the same pixels and refuse the same
  files, with one line naming `name`: an empty or non-image file, a truncated one, one of more than
  MAX_IMAGE_PIXELS pixels (refused from its header, before decoding: a decompression bomb).

  Palette, gray, 1-bit, CMYK and alpha images become RGB as PIL converts them (alpha ignored).
  Wider samples (16-bit RGB or gray, 32-bit integer or float gray) are scaled by the image's own
  range, never clipped: divided by the image's maximum, so that becomes 255 and 0 stays 0, and
  rounded. A 12-bit camera's 0..4095 in a 16-bit file fills 0..255; a 0/65535 map becomes 0/255.

  A map (expect_binary) may come in any of these modes: see _binary_map for what it must hold."""
  if not data:
    raise FundusInputError(name, 'is empty (0 bytes)')
  try:
    with Image.open(io.BytesIO(data)) as image:
      width, height = image.size
      if width * height > constants.MAX_IMAGE_PIXELS:
        raise FundusInputError(name, f'{width}x{height} pixels is {_TOO_LARGE}')
      wide_gray = image.mode in ('I', 'F') or image.mode.startswith('I;16')
      low_bytes_dropped = _drops_low_bytes(image)   # tells from the tile, which load() clears
      image.load()   # a truncated file fails here: ImageFile.LOAD_TRUNCATED_IMAGES stays False
      if low_bytes_dropped:
        pixels = _decode_wide_color(data)
      elif wide_gray:
        pixels = np.asarray(image)
      else:
        # A palette map becomes gray as PIL weighs its colours: DRIVE's 2nd_manual GIFs hold
        # (4, 2, 4) and (252, 254, 252), gray levels 3 and 253. True colour stays RGB, which a map
        # may be only with equal channels.
        gray = expect_binary and image.mode in ('1', 'L', 'LA', 'P', 'PA')
        pixels = np.asarray(image.convert('L' if gray else 'RGB'))
  except UnidentifiedImageError as e:
    raise FundusInputError(name, 'cannot be decoded as an image (not a format PIL reads, or its '
                           'header is damaged or cut off)') from e
  except Image.DecompressionBombError as e:   # PIL's own bound, checked in Image.open
    raise FundusInputError(name, f'is {_TOO_LARGE} ({e})') from e
  except (OSError, SyntaxError, ValueError, EOFError, cv2.error) as e:
    if isinstance(e, FundusInputError):
      raise
    raise FundusInputError(name, f'cannot be decoded as an image ({e})') from e
  pixels = _scaled_to_8_bits(pixels, name)
  if expect_binary:
    return _binary_map(pixels, name)
  return pixels if pixels.ndim == 3 else np.stack([pixels] * 3, axis=-1)


_TOO_LARGE = f'more than the {constants.MAX_IMAGE_PIXELS:,} pixels an image may have'


# A map may hold a few pixels at neither of its two levels, thresholded at half range: HRF's
# manual1/11_h, 12_h and 13_h have 599, 1,584 and 1,119 gray pixels along vessel edges (0.0073 %,
# 0.019 % and 0.014 % of 8.2 M); the other 283 published labels and masks of DRIVE, STARE,
# CHASE_DB1 and HRF have none. A photo is nowhere near: the 133 photos of these datasets, in gray or
# their green channel alone, have from 66 % (CHASE_DB1's 08L, green) to 88 % (median) of their
# pixels at neither their most frequent dark nor bright level. 1 % leaves a factor of 50 each way.
MAX_STRAY_FRACTION = 0.01


def _binary_map(pixels: np.ndarray, name: str) -> np.ndarray:
  """uint8 gray or RGB pixels -> 0/255: pixels at or above 128 are 255. The map must be gray (RGB
  with equal channels is: HRF's FOV masks are) and hold one dark (< 128) and one bright level,
  apart from at most MAX_STRAY_FRACTION of its pixels, whose count is logged."""
  if pixels.ndim == 3:
    differing = np.count_nonzero((pixels != pixels[..., :1]).any(axis=-1))
    if differing:
      raise FundusInputError(name, f'is a colour image, not a map: its red, green and blue differ '
                             f'at {differing:,} of {pixels[..., 0].size:,} pixels')
    pixels = pixels[..., 0]
  counts = np.bincount(pixels.ravel(), minlength=256)
  strays = pixels.size - counts[:128].max() - counts[128:].max()
  if strays > MAX_STRAY_FRACTION * pixels.size:
    levels = np.flatnonzero(counts)
    raise FundusInputError(name, f'expected a binary (two-level) map, found gray levels '
                           f'{levels[:8]}{"..." if len(levels) > 8 else ""} ({strays / pixels.size:.1%}'
                           f' of its pixels at neither its main dark nor bright level)')
  if strays:
    logging.warning('%s: %d of %d pixels (%.4f %%) at neither of its two levels, thresholded at 128',
                    name, strays, pixels.size, 100 * strays / pixels.size)
  return np.where(pixels >= 128, 255, 0).astype(np.uint8)


def _drops_low_bytes(image: Image.Image) -> bool:
  """PIL opens 16-bit RGB, RGBA and gray+alpha as 8 bits per sample, keeping the high bytes: the
  file's raw mode tells ('RGB;16B'), or for a PPM its maximum value (above 255)."""
  if not image.tile or image.mode in ('I', 'F') or image.mode.startswith('I;16'):
    return False
  decoder, args = image.tile[0][0], image.tile[0][3]
  raw_mode, *rest = args if isinstance(args, tuple) else (args,)
  return ';16' in str(raw_mode) or (decoder == 'ppm' and bool(rest) and rest[0] > 255)


def _decode_wide_color(data: bytes) -> np.ndarray:
  """16-bit color samples as they are (OpenCV keeps them): RGB [H, W, 3], alpha dropped."""
  pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
  if pixels is None:
    raise OSError('OpenCV cannot decode its 16-bit samples')
  channels = 1 if pixels.ndim == 2 else pixels.shape[2]
  conversion = {1: cv2.COLOR_GRAY2RGB, 3: cv2.COLOR_BGR2RGB, 4: cv2.COLOR_BGRA2RGB}[channels]
  return cv2.cvtColor(pixels, conversion)


def _scaled_to_8_bits(pixels: np.ndarray, name: str) -> np.ndarray:
  """uint8 as it is; wider samples divided by the image's maximum (-> 255), rounded."""
  if pixels.dtype == np.uint8:
    return pixels
  values = pixels.astype(np.float32)
  if not np.isfinite(values).all() or values.min() < 0:
    raise FundusInputError(name, f'has {pixels.dtype} samples below 0 or not finite: no range to '
                           'scale to 8 bits')
  peak = values.max()
  if peak:
    values *= 255   # exact for 16-bit samples; then one rounding, in the division
    values /= peak
  return np.round(values).astype(np.uint8)


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
