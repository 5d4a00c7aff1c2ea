"""From paired files to tf.Examples: train/eval/test splits, decoding, and the FOV of datasets that
publish none (computed from the image with the serving graph's own rule, so training, evaluation
and serving agree). Everything is stored losslessly as PNG; input is only ever read."""
import hashlib
from typing import Dict, List, Sequence

import numpy as np
import tensorflow as tf

from components.fundus_example_gen.files import FundusInputError, decode_file, encode_png
from components.fundus_example_gen.layouts import TEST, TRAIN, FundusRecord
from models import constants, preprocessing


def assign_splits(records: Sequence[FundusRecord], eval_count: int, seed: int
                  ) -> Dict[str, List[FundusRecord]]:
  """Each dataset's test images -> test; a seeded, order-independent hold-out of `eval_count` of
  each dataset's training images -> eval; the rest -> train."""
  splits = {constants.TRAIN_SPLIT: [], constants.EVAL_SPLIT: [], constants.TEST_SPLIT: []}
  for dataset in sorted({r.dataset for r in records}):
    training = [r for r in records if r.dataset == dataset and r.split == TRAIN]
    if not 1 <= eval_count < len(training):
      raise FundusInputError('--eval-count', f'must be between 1 and {len(training) - 1} '
                             f'({dataset} has {len(training)} training images), got {eval_count}')
    by_hash = sorted(training,
                     key=lambda r: hashlib.sha256(f'{seed}:{r.image_id}'.encode()).hexdigest())
    held_out = {r.image_id for r in by_hash[:eval_count]}
    splits[constants.TRAIN_SPLIT] += [r for r in training if r.image_id not in held_out]
    splits[constants.EVAL_SPLIT] += [r for r in training if r.image_id in held_out]
    splits[constants.TEST_SPLIT] += [r for r in records if r.dataset == dataset and r.split == TEST]
  return splits


def decode_record(record: FundusRecord) -> Dict[str, np.ndarray]:
  """The image (RGB) and its maps (0/255) by feature key, checked to be of one size; the FOV
  computed from the image where the dataset publishes none."""
  image = decode_file(record.image, expect_binary=False)
  decoded = {constants.IMAGE_KEY: image}
  maps = {constants.LABEL_KEY: record.label, constants.FOV_KEY: record.fov,
          constants.LABEL2_KEY: record.label2}
  for key, ref in maps.items():
    if ref is not None:
      pixels = decode_file(ref, expect_binary=True)
      if pixels.shape != image.shape[:2]:
        raise FundusInputError(str(ref), f'size {pixels.shape[1]}x{pixels.shape[0]} does not match '
                               f'its image {record.image.rel_path} '
                               f'({image.shape[1]}x{image.shape[0]})')
      decoded[key] = pixels
  if record.fov is None:
    decoded[constants.FOV_KEY] = (preprocessing.fov_from_image(image).numpy() * 255).astype(np.uint8)
  return decoded


def to_example(record: FundusRecord) -> tf.train.Example:
  """Decodes and checks one image's files and packs them, losslessly re-encoded as PNG."""
  decoded = decode_record(record)
  height, width = decoded[constants.IMAGE_KEY].shape[:2]
  features = {
      constants.DATASET_KEY: _bytes(record.dataset.encode()),
      constants.IMAGE_ID_KEY: _bytes(record.image_id.encode()),
      constants.HEIGHT_KEY: _int(height),
      constants.WIDTH_KEY: _int(width),
      constants.SOURCE_FILE_KEY: _bytes(record.image.rel_path.encode()),
      **{key: _bytes(encode_png(pixels)) for key, pixels in decoded.items()},
  }
  return tf.train.Example(features=tf.train.Features(feature=features))


def _bytes(value: bytes) -> tf.train.Feature:
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int(value: int) -> tf.train.Feature:
  return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
