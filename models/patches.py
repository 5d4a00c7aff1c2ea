"""The on-disk format of training patches: written by PatchGen (numpy), read by the Trainer (tf.data).

A patch is one tf.Example holding uint8 bytes: the preprocessed image as gray levels k (value k/255,
exact, since preprocessing ends on a 256-level LUT), and the label and FOV as 0/1. Four times smaller
than float32 before the gzip of the TFRecord files, and lossless.
"""
import math
import os
from typing import Dict, Sequence

import numpy as np
import tensorflow as tf

from models import constants

ROW_KEY = 'row'   # top-left corner of the patch in its image
COL_KEY = 'col'
MAP_KEYS = (constants.IMAGE_KEY, constants.LABEL_KEY, constants.FOV_KEY)


def encode(image_id: bytes, row: int, col: int, image: np.ndarray, label: np.ndarray,
           fov: np.ndarray) -> bytes:
  """image in [0, 1] on the k/255 grid; label and fov 0/1. All [P, P]."""
  maps = {
      constants.IMAGE_KEY: np.round(image * 255.0).astype(np.uint8),
      constants.LABEL_KEY: (label > 0.5).astype(np.uint8),
      constants.FOV_KEY: (fov > 0.5).astype(np.uint8),
  }
  feature = {key: tf.train.Feature(bytes_list=tf.train.BytesList(value=[pixels.tobytes()]))
             for key, pixels in maps.items()}
  feature[constants.IMAGE_ID_KEY] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[image_id]))
  feature[ROW_KEY] = tf.train.Feature(int64_list=tf.train.Int64List(value=[row]))
  feature[COL_KEY] = tf.train.Feature(int64_list=tf.train.Int64List(value=[col]))
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


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
