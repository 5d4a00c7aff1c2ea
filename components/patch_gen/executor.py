"""PatchGen executor: a Beam DoFn that cuts each preprocessed image's patches and writes them to a
file of that image's own, so no stage ever holds more than the image at hand. The images are mixed
where the patches are read: the Trainer draws from many image files at once, every dataset in turn
(models/patches.py, `mixed_records`)."""
import collections
import hashlib
import json
import os
import re
import uuid
from typing import Any, Dict, Iterator, List, Tuple

import apache_beam as beam
import numpy as np
import tensorflow as tf
from absl import logging
from tensorflow.core.framework import tensor_pb2
from tfx import types
from tfx.components.example_gen import write_split
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils

from models import constants, patches

_FILE_FORMAT = example_gen_pb2.FORMAT_TFRECORDS_GZIP
_PARTIAL_DIR = '.partial'   # files being written, inside the output artifact, outside every split


def _map(features, key: str) -> np.ndarray:
  """One map of a transformed example: uint8 [H, W] (models/transform.py, `encode_map`)."""
  return tf.make_ndarray(tensor_pb2.TensorProto.FromString(features[key].bytes_list.value[0]))


def extract_patches(serialized: bytes, per_image: Dict[bytes, int], patch_size: int, seed: int
                    ) -> Tuple[bytes, Iterator[bytes]]:
  """(image id, its patches): per_image[the image's dataset] windows whose centre pixel lies inside
  the FOV, seeded by (seed, image id), so they do not depend on how Beam distributes the images.
  The patches are cut as they are consumed."""
  features = tf.train.Example.FromString(serialized).features.feature
  image_id = features[constants.IMAGE_ID_KEY].bytes_list.value[0]
  dataset = features[constants.DATASET_KEY].bytes_list.value[0]
  patches_per_image = per_image[dataset]
  image, label, fov = (_map(features, key) for key in patches.MAP_KEYS)
  height, width = fov.shape
  half = patch_size // 2
  # Top-left corners of windows that fit in the image and whose centre is inside the FOV.
  corners = np.argwhere(fov[half:height - patch_size + half + 1, half:width - patch_size + half + 1])
  if not len(corners):
    raise ValueError(f'image {image_id.decode()}: no {patch_size}x{patch_size} patch has its centre '
                     'inside the FOV')
  image_seed = int.from_bytes(hashlib.sha256(image_id).digest()[:8], 'little')
  rng = np.random.default_rng([seed, image_seed])

  def cut(row: int, col: int) -> bytes:
    window = np.s_[row:row + patch_size, col:col + patch_size]
    return patches.encode(image_id, dataset, row, col, image[window], label[window], fov[window])
  chosen = corners[rng.integers(len(corners), size=patches_per_image)].tolist()
  return image_id, (cut(row, col) for row, col in chosen)


def image_file_name(image_id: bytes) -> str:
  """The patch file of one image: its id made safe for a file name, and a digest of the id so
  that two ids made alike stay apart."""
  readable = re.sub(r'[^A-Za-z0-9_.-]', '_', image_id.decode(errors='replace'))[:64]
  return f'patches-{readable}-{hashlib.sha256(image_id).hexdigest()[:8]}.gz'


class WriteImagePatches(beam.DoFn):
  """Transformed example -> its patches, written to their own GZIP TFRecord file in `split_dir`.

  Written under a temporary name beside the splits and renamed into place, so a split holds only
  complete files; a retried bundle rewrites the same patches (they are seeded per image)."""

  def __init__(self, split_dir: str, partial_dir: str, per_image: Dict[bytes, int],
               patch_size: int, seed: int):
    super().__init__()
    self._split_dir, self._partial_dir = split_dir, partial_dir
    self._per_image, self._patch_size, self._seed = per_image, patch_size, seed

  def process(self, serialized: bytes) -> None:
    image_id, records = extract_patches(serialized, self._per_image, self._patch_size, self._seed)
    name = image_file_name(image_id)
    partial = os.path.join(self._partial_dir, f'{uuid.uuid4().hex}-{name}')
    with tf.io.TFRecordWriter(partial, options='GZIP') as writer:
      for record in records:
        writer.write(record)
    tf.io.gfile.rename(partial, os.path.join(self._split_dir, name), overwrite=True)


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
    partial_dir = os.path.join(output.uri, _PARTIAL_DIR)
    tf.io.gfile.makedirs(partial_dir)
    with self._make_beam_pipeline() as pipeline:
      for split in splits:
        tf.io.gfile.makedirs(outputs[split])
        _ = (pipeline
             | f'Read[{split}]' >> beam.io.ReadFromTFRecord(inputs[split])
             | f'WritePatches[{split}]' >> beam.ParDo(WriteImagePatches(
                 outputs[split], partial_dir, per_image[split], patch_size,
                 exec_properties['seed'])))
    tf.io.gfile.rmtree(partial_dir)
    for split in splits:
      check_patch_count(split, images[split], per_image[split],
                        count_records(os.path.join(outputs[split], '*')))
    examples_utils.set_payload_format(output, example_gen_pb2.FORMAT_TF_EXAMPLE)
    examples_utils.set_file_format(output, write_split.to_file_format_str(_FILE_FORMAT))
    output.set_int_custom_property('patch_size', patch_size)
    output.set_int_custom_property('patches_per_image', patches_per_image)
    logging.info('PatchGen: %d patches of %dx%d per image for splits %s', patches_per_image,
                 patch_size, patch_size, splits)
