"""PatchGen executor: a Beam FlatMap from each preprocessed image to its patches, then a seeded mix
of the patches of all images before they are written."""
import collections
import hashlib
import json
import os
from typing import Any, Dict, Iterator, List

import apache_beam as beam
import numpy as np
import tensorflow as tf
from absl import logging
from tfx import types
from tfx.components.example_gen import write_split
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils

from models import constants, patches

_FILE_FORMAT = example_gen_pb2.FORMAT_TFRECORDS_GZIP
# Patches per mixing group. Runners write elements in the order they process them, i.e. image by
# image; the Trainer's shuffle buffer (thousands of patches) is smaller than one image's patches, so
# unmixed files hand it batches cut from one image at a time (and validation a single image).
MIX_GROUP_SIZE = 2000


def _map(features, key: str, height: int, width: int) -> np.ndarray:
  return np.asarray(features[key].float_list.value, np.float32).reshape(height, width)


def extract_patches(serialized: bytes, per_image: Dict[bytes, int], patch_size: int, seed: int
                    ) -> Iterator[bytes]:
  """per_image[the image's dataset] windows whose centre pixel lies inside the FOV, seeded by
  (seed, image id), so the result does not depend on how Beam distributes the images."""
  features = tf.train.Example.FromString(serialized).features.feature
  image_id = features[constants.IMAGE_ID_KEY].bytes_list.value[0]
  patches_per_image = per_image[features[constants.DATASET_KEY].bytes_list.value[0]]
  height = features[constants.HEIGHT_KEY].int64_list.value[0]
  width = features[constants.WIDTH_KEY].int64_list.value[0]
  image, label, fov = (_map(features, key, height, width) for key in patches.MAP_KEYS)
  half = patch_size // 2
  # Top-left corners of windows that fit in the image and whose centre is inside the FOV.
  corners = np.argwhere(fov[half:height - patch_size + half + 1, half:width - patch_size + half + 1] > 0.5)
  if not len(corners):
    raise ValueError(f'image {image_id.decode()}: no {patch_size}x{patch_size} patch has its centre '
                     'inside the FOV')
  image_seed = int.from_bytes(hashlib.sha256(image_id).digest()[:8], 'little')
  rng = np.random.default_rng([seed, image_seed])
  for row, col in corners[rng.integers(len(corners), size=patches_per_image)]:
    window = np.s_[row:row + patch_size, col:col + patch_size]
    yield patches.encode(image_id, int(row), int(col), image[window], label[window], fov[window])


def _mix_key(seed: int, record: bytes) -> int:
  return int.from_bytes(hashlib.sha256(seed.to_bytes(8, 'little') + record).digest()[:8], 'little')


class MixPatches(beam.PTransform):
  """Reorders patches so any stretch of the output is a seeded random draw from all images: each
  patch gets a hash key, patches are grouped by key into `group_count` groups, and every group is
  emitted sorted by key. Deterministic for a seed, bounded memory per group.

  The group count is a number, not a Beam side input: with a side input (a Count of the patches)
  Beam 2.59's multi-processing DirectRunner lost 1-22 % of the train patches (whole 10 MB data
  channel chunks of single images' patches) between the extraction and the grouping; fixed, it
  writes every patch (BENCHMARKS.md)."""

  def __init__(self, seed: int, group_count: int):
    super().__init__()
    self._seed = seed
    self._group_count = group_count

  def expand(self, records):
    return (records
            | 'Key' >> beam.Map(_group_and_key, self._seed, self._group_count)
            | 'GroupByKey' >> beam.GroupByKey()
            | 'Sort' >> beam.FlatMap(lambda group: [record for _, record in sorted(group[1])]))


def _group_and_key(record: bytes, seed: int, group_count: int):
  key = _mix_key(seed, record)
  return key % group_count, (key, record)


def group_count(patch_count: int) -> int:
  """Groups of about MIX_GROUP_SIZE patches."""
  return max(1, -(-patch_count // MIX_GROUP_SIZE))


def _records(pattern: str):
  return tf.data.TFRecordDataset(tf.io.gfile.glob(pattern), compression_type='GZIP')


def count_records(pattern: str) -> int:
  return sum(1 for _ in _records(pattern))


def images_per_dataset(pattern: str) -> Dict[bytes, int]:
  """How many of the transformed examples at `pattern` come from each dataset."""
  counts = collections.Counter(
      tf.train.Example.FromString(record.numpy()).features.feature[constants.DATASET_KEY]
      .bytes_list.value[0] for record in _records(pattern))
  return dict(sorted(counts.items()))


def patches_per_dataset(images: Dict[bytes, int], patches_per_image: int) -> Dict[bytes, int]:
  """Patches per image of each dataset: every dataset gets an equal share of the split's
  patches_per_image x images, spread evenly over its images, so a dataset of few images weighs as
  much in training as one of many (one dataset: patches_per_image exactly)."""
  share = patches_per_image * sum(images.values()) / len(images)
  return {dataset: max(1, round(share / count)) for dataset, count in images.items()}


def check_patch_count(split: str, images: Dict[bytes, int], per_image: Dict[bytes, int],
                      written: int) -> None:
  """Every image gives exactly its dataset's patches per image: anything else is data a runner lost
  or duplicated, and must not reach the Trainer silently."""
  expected = sum(count * per_image[dataset] for dataset, count in images.items())
  if written != expected:
    detail = ', '.join(f'{dataset.decode()}: {count} images x {per_image[dataset]}'
                       for dataset, count in images.items())
    raise RuntimeError(f'PatchGen: split {split!r}: {written} patches written, expected {expected} '
                       f'({detail}): the Beam runner lost or duplicated patches')


class Executor(base_beam_executor.BaseBeamExecutor):

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
    self._log_startup(input_dict, output_dict, exec_properties)
    transformed = artifact_utils.get_single_instance(input_dict['transformed_examples'])
    output = artifact_utils.get_single_instance(output_dict['patches'])
    splits = json.loads(exec_properties['splits'])
    patches_per_image = exec_properties['patches_per_image']
    patch_size = exec_properties['patch_size']
    output.split_names = artifact_utils.encode_split_names(splits)
    inputs = {split: os.path.join(artifact_utils.get_split_uri([transformed], split), '*')
              for split in splits}
    outputs = {split: artifact_utils.get_split_uri([output], split) for split in splits}
    images = {split: images_per_dataset(inputs[split]) for split in splits}
    per_image = {split: patches_per_dataset(images[split], patches_per_image) for split in splits}
    for split in splits:
      logging.info('PatchGen: split %s: patches per image %s', split,
                   {dataset.decode(): count for dataset, count in per_image[split].items()})
    with self._make_beam_pipeline() as pipeline:
      for split in splits:
        total = sum(count * per_image[split][d] for d, count in images[split].items())
        _ = (pipeline
             | f'Read[{split}]' >> beam.io.ReadFromTFRecord(inputs[split])
             | f'Extract[{split}]' >> beam.FlatMap(extract_patches, per_image[split], patch_size,
                                                   exec_properties['seed'])
             | f'Mix[{split}]' >> MixPatches(exec_properties['seed'], group_count(total))
             | f'WriteSplit[{split}]' >> write_split.WriteSplit(outputs[split], _FILE_FORMAT))
    for split in splits:
      check_patch_count(split, images[split], per_image[split],
                        count_records(os.path.join(outputs[split], '*')))
    examples_utils.set_payload_format(output, example_gen_pb2.FORMAT_TF_EXAMPLE)
    examples_utils.set_file_format(output, write_split.to_file_format_str(_FILE_FORMAT))
    output.set_int_custom_property('patch_size', patch_size)
    output.set_int_custom_property('patches_per_image', patches_per_image)
    logging.info('PatchGen: %d patches of %dx%d per image for splits %s', patches_per_image,
                 patch_size, patch_size, splits)
