"""The on-disk format of training patches: written by PatchGen (numpy), read by the Trainer (tf.data).

A patch is one tf.Example holding uint8 bytes, in the convention of Transform's maps
(models/transform.py, `encode_map`): the preprocessed image as gray levels k (value k/255, exact,
since preprocessing ends on a 256-level LUT), and the label and FOV as 0/1. Lossless.

PatchGen writes each image's patches to a file of their own (`image_file_name`); the Trainer mixes
the images by reading many files at once, every dataset in turn (`mixed_records`), each taking an
equal share of the stream unless given another (`stream_shares`).
"""
import collections
import fractions
import math
import os
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from models import constants

ROW_KEY = 'row'   # top-left corner of the patch in its image
COL_KEY = 'col'
MAP_KEYS = (constants.IMAGE_KEY, constants.LABEL_KEY, constants.FOV_KEY)


def encode(image_id: bytes, dataset: bytes, row: int, col: int, image: np.ndarray,
           label: np.ndarray, fov: np.ndarray) -> bytes:
  """uint8 [P, P] maps as Transform stores them: image levels k, label and fov 0/1."""
  maps = {constants.IMAGE_KEY: image, constants.LABEL_KEY: label, constants.FOV_KEY: fov}
  if any(pixels.dtype != np.uint8 for pixels in maps.values()):
    raise TypeError('patch maps must be uint8 levels, as Transform stores them')
  feature = {key: tf.train.Feature(bytes_list=tf.train.BytesList(value=[pixels.tobytes()]))
             for key, pixels in maps.items()}
  for key, value in ((constants.IMAGE_ID_KEY, image_id), (constants.DATASET_KEY, dataset)):
    feature[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
  feature[ROW_KEY] = tf.train.Feature(int64_list=tf.train.Int64List(value=[row]))
  feature[COL_KEY] = tf.train.Feature(int64_list=tf.train.Int64List(value=[col]))
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


# Patch files (one per image) of each dataset read at once, a patch from each in turn: any stretch
# of the stream then mixes that many images before the Trainer's shuffle buffer mixes it further.
# Each open file costs a read buffer (~0.5 MB with gzip's).
IMAGES_READ_AT_ONCE = 64


def _first_example(path: str) -> Optional[tf.train.Example]:
  for record in tf.data.TFRecordDataset(path, compression_type='GZIP').take(1):
    return tf.train.Example.FromString(record.numpy())
  return None


def files_by_dataset(files: Sequence[str]) -> Dict[bytes, List[str]]:
  """PatchGen's files by the dataset of their patches (read off each file's first patch); empty
  files are left out. Patches written before they named their dataset count as one dataset, b''."""
  groups = collections.defaultdict(list)
  for path in sorted(files):
    example = _first_example(path)
    if example is not None:
      value = example.features.feature[constants.DATASET_KEY].bytes_list.value
      groups[value[0] if value else b''].append(path)
  if b'' in groups:
    # A pipeline root's cached PatchGen output from before: its datasets cannot be told apart.
    logging.warning('%d patch files in %s do not name their dataset (written before the Trainer '
                    'took the datasets in turn): read as one dataset; run again with --no-cache '
                    'for an equal share of each', len(groups[b'']), os.path.dirname(groups[b''][0]))
  return dict(sorted(groups.items()))


def _interleaved(files: Sequence[str], seed: Optional[int]) -> tf.data.Dataset:
  names = tf.data.Dataset.from_tensor_slices(list(files))
  if seed is not None:
    names = names.shuffle(len(files), seed=seed)
  return names.interleave(lambda name: tf.data.TFRecordDataset(name, compression_type='GZIP'),
                          cycle_length=min(len(files), IMAGES_READ_AT_ONCE), block_length=1,
                          num_parallel_calls=tf.data.AUTOTUNE)


def stream_shares(datasets: Sequence[bytes],
                  requested: Optional[Mapping[str, float]] = None) -> Dict[bytes, fractions.Fraction]:
  """Each dataset's share of the training stream, in hundredths: a requested one its own, the others
  equal parts of what remains (equal parts of all when none is requested). E.g. fine-tuning to a new
  camera's few photos with the old cameras' data listed too, {'CHASE_DB1': 0.5}."""
  names = [dataset.decode() for dataset in datasets]
  requested = dict(requested or {})
  unknown = sorted(set(requested) - set(names))
  if unknown:
    raise ValueError(f'dataset shares name {", ".join(unknown)}, not among the datasets '
                     f'({", ".join(names)})')
  given = {name: fractions.Fraction(round(share * 100), 100) for name, share in requested.items()}
  others = [name for name in names if name not in given]
  remaining = 1 - sum(given.values(), fractions.Fraction(0))
  if min(given.values(), default=1) <= 0 or remaining < 0 or (remaining > 0) != bool(others):
    raise ValueError(f'dataset shares {requested} must each be above 0 and leave a share to every '
                     'dataset not named (sum to 1 when every dataset is named)')
  return {dataset: given.get(name, remaining / max(len(others), 1))
          for dataset, name in zip(datasets, names)}


def _turn_order(shares: Sequence[fractions.Fraction]) -> List[int]:
  """A cycle of indices into `shares` in which each index has its share of the turns, spread out
  (smooth weighted round robin): 1/2, 1/4, 1/4 -> 0, 1, 2, 0."""
  cycle = math.lcm(*(share.denominator for share in shares))
  weights = [int(share * cycle) for share in shares]
  credit, order = [0] * len(weights), []
  for _ in range(cycle):
    credit = [c + w for c, w in zip(credit, weights)]
    turn = credit.index(max(credit))
    credit[turn] -= cycle
    order.append(turn)
  return order


def mixed_records(files: Sequence[str], seed: Optional[int] = None,
                  shares: Optional[Mapping[str, float]] = None) -> tf.data.Dataset:
  """Serialized patches of PatchGen's per-image files, endlessly: the datasets in turns that give
  each its share (`stream_shares`), within a dataset interleaved across IMAGES_READ_AT_ONCE files;
  the files in a random order drawn from `seed` (anew at every pass), or in name order without one.

  By default every dataset has an equal share of any stretch of the stream, as PatchGen's counts give
  it over a whole pass (`patches_per_dataset`). Reading all files in turn instead would draw each
  dataset by its number of images until the datasets with the fewest patches per image run out, and
  then only the others: with DRIVE, STARE, CHASE_DB1 and HRF the last four epochs of 26 were
  STARE's six photos alone (BENCHMARKS.md)."""
  groups = files_by_dataset(files)
  if not groups:
    raise ValueError(f'no patches in {", ".join(files)}')
  dataset_shares = stream_shares(list(groups), shares)
  logging.info('patch stream: %s', ', '.join(
      f'{dataset.decode() or "?"} {float(share):.2f}' for dataset, share in dataset_shares.items()))
  streams = [_interleaved(group, seed).repeat() for group in groups.values()]
  turns = tf.data.Dataset.from_tensor_slices(
      tf.constant(_turn_order(list(dataset_shares.values())), tf.int64)).repeat()
  return tf.data.Dataset.choose_from_datasets(streams, turns)


_FEATURE_SPEC = {
    **{key: tf.io.FixedLenFeature([], tf.string) for key in MAP_KEYS},
    constants.IMAGE_ID_KEY: tf.io.FixedLenFeature([], tf.string),
    ROW_KEY: tf.io.FixedLenFeature([], tf.int64),
    COL_KEY: tf.io.FixedLenFeature([], tf.int64),
}


def parse(serialized: tf.Tensor, patch_size: int) -> Dict[str, tf.Tensor]:
  """Batch of serialized patches -> image, label, fov as float32 [batch, P, P, 1], plus id/row/col."""
  parsed = tf.io.parse_example(serialized, _FEATURE_SPEC)
  for key in MAP_KEYS:
    pixels = tf.cast(tf.io.decode_raw(parsed[key], tf.uint8), tf.float32)
    pixels = tf.reshape(pixels, [-1, patch_size, patch_size, 1])
    parsed[key] = pixels / 255.0 if key == constants.IMAGE_KEY else pixels
  return parsed


def patch_size(files: Sequence[str]) -> int:
  """The side of the patches in PatchGen's output files, read from their first record: PatchGen's
  configuration decides it, the Trainer follows."""
  for record in tf.data.TFRecordDataset(list(files), compression_type='GZIP').take(1):
    example = tf.train.Example.FromString(record.numpy())
    pixels = len(example.features.feature[constants.IMAGE_KEY].bytes_list.value[0])
    side = math.isqrt(pixels)
    if side * side != pixels:
      raise ValueError(f'a patch of {pixels} pixels in {os.path.dirname(files[0])} is not square')
    return side
  raise ValueError(f'no patches in {", ".join(files)}')
