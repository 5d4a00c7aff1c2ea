"""Pusher executor that numbers serving versions 1, 2, 3, ... in the order models were blessed.

TFX 1.16's filesystem Pusher names versions by the push time in seconds. Numbered versions say how
many models this serving folder has released, sort the same way in TF Serving (highest is served)
and are what people type in a rollback. Blessing check, model lookup and MLMD marking are TFX's.
"""
import os
from typing import Any, Dict, List

from tfx import types
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils


def versions(base_directory: str) -> List[int]:
  """The numeric version folders in base_directory, in TF Serving's layout, lowest first."""
  if not fileio.isdir(base_directory):
    return []
  return sorted(int(name.rstrip('/')) for name in fileio.listdir(base_directory)
                if name.rstrip('/').isdigit())


def next_version(base_directory: str) -> int:
  """One past the highest version in base_directory (1 when there is none)."""
  return max(versions(base_directory), default=0) + 1


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
    version = str(next_version(base_directory))
    serving_path = os.path.join(base_directory, version)
    model_path = self.GetModelPath(input_dict)
    # saved_model.pb last: TF Serving loads a version folder as soon as that file exists.
    io_utils.copy_dir(model_path, serving_path, deny_regex_patterns=[r'saved_model\.pb'])
    io_utils.copy_file(os.path.join(model_path, 'saved_model.pb'),
                       os.path.join(serving_path, 'saved_model.pb'))
    io_utils.copy_dir(model_path, model_push.uri)   # the push artifact archives what was served
    self._MarkPushed(model_push, pushed_destination=serving_path, pushed_version=version)
