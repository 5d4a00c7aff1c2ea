"""Pusher executor that numbers serving versions 1, 2, 3, ... in the order models were blessed.

TFX 1.16's filesystem Pusher names versions by the push time in seconds. Numbered versions say how
many models this serving folder has released, sort the same way in TF Serving (highest is served)
and are what people type in a rollback. Blessing check, model lookup and MLMD marking are TFX's.

A push copies the model into a temporary folder beside the versions, named so that TF Serving (which
loads folders whose name is an integer) and `versions()` skip it, then renames that folder to its
number. On a local filesystem the rename is atomic: a version folder is complete or absent, and a
crash mid-copy leaves only the temporary folder, which the next push removes before it numbers.
On object stores such as GCS a folder rename copies and deletes object by object, in name order
(saved_model.pb before variables/): a crash during the copy still leaves no version folder, but
during the rename TF Serving can see an incomplete one, and a crash then leaves it.
"""
import os
import uuid
from typing import Any, Dict, List

from tfx import types
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils


PARTIAL_PUSH_PREFIX = '.push-'  # a push in progress, or what a crashed one left


def versions(base_directory: str) -> List[int]:
  """The numeric version folders in base_directory, in TF Serving's layout, lowest first."""
  if not fileio.isdir(base_directory):
    return []
  return sorted(int(name.rstrip('/')) for name in fileio.listdir(base_directory)
                if name.rstrip('/').isdigit())


def next_version(base_directory: str) -> int:
  """One past the highest version in base_directory (1 when there is none)."""
  return max(versions(base_directory), default=0) + 1


def remove_partial_pushes(base_directory: str) -> None:
  """Removes the temporary folders of pushes that died before their rename. A push running at the
  same time from another pipeline root would lose its own: the run lock serialises one root's."""
  if fileio.isdir(base_directory):
    for name in fileio.listdir(base_directory):
      if name.startswith(PARTIAL_PUSH_PREFIX):
        fileio.rmtree(os.path.join(base_directory, name.rstrip('/')))


def push(model_path: str, base_directory: str) -> str:
  """Puts the model into base_directory as the next version, whole or not at all; returns it."""
  remove_partial_pushes(base_directory)
  version = str(next_version(base_directory))
  partial = os.path.join(base_directory, f'{PARTIAL_PUSH_PREFIX}{version}-{uuid.uuid4().hex[:8]}')
  io_utils.copy_dir(model_path, partial)
  fileio.rename(partial, os.path.join(base_directory, version))
  return version


class Executor(pusher_executor.Executor):

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
    self._log_startup(input_dict, output_dict, exec_properties)
    model_push = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.PUSHED_MODEL_KEY])
    if not self.CheckBlessing(input_dict):
      self._MarkNotPushed(model_push)
      return
    destination = pusher_pb2.PushDestination()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY],
                              destination)
    if destination.WhichOneof('destination') != 'filesystem':
      raise ValueError('NumberedPusher pushes to a filesystem destination only')
    base_directory = destination.filesystem.base_directory
    model_path = self.GetModelPath(input_dict)
    version = push(model_path, base_directory)
    io_utils.copy_dir(model_path, model_push.uri)   # the push artifact archives what was served
    self._MarkPushed(model_push, pushed_destination=os.path.join(base_directory, version),
                     pushed_version=version)
