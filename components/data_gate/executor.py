"""DataGate executor: raise DataAnomaliesError naming every anomaly, else pass the schema on."""
import os
from typing import Any, Dict, List

from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import types
from tfx.components.example_validator import executor as example_validator_executor
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils

_SCHEMA_FILE = 'schema.pbtxt'  # the name ImportSchemaGen and SchemaGen write


class DataAnomaliesError(RuntimeError):
  pass


def read_anomalies(anomalies: types.Artifact) -> Dict[str, anomalies_pb2.Anomalies]:
  result = {}
  for split in artifact_utils.decode_split_names(anomalies.split_names):
    path = os.path.join(artifact_utils.get_split_uri([anomalies], split),
                        example_validator_executor.DEFAULT_FILE_NAME)
    result[split] = anomalies_pb2.Anomalies.FromString(io_utils.read_bytes_file(path))
  return result


def describe(anomalies_by_split: Dict[str, anomalies_pb2.Anomalies]) -> List[str]:
  """One line per anomaly: split, feature and TFDV's own description."""
  lines = []
  for split, anomalies in sorted(anomalies_by_split.items()):
    for feature, info in sorted(anomalies.anomaly_info.items()):
      lines.append(f"split '{split}', feature '{feature}': {info.short_description}: "
                   f'{info.description}')
    if anomalies.HasField('dataset_anomaly_info'):
      info = anomalies.dataset_anomaly_info
      lines.append(f"split '{split}', dataset: {info.short_description}: {info.description}")
  return lines


class Executor(base_executor.BaseExecutor):

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
    anomalies = artifact_utils.get_single_instance(input_dict['anomalies'])
    problems = describe(read_anomalies(anomalies))
    if problems:
      raise DataAnomaliesError(
          'ExampleValidator found anomalies against the curated schema; stopping before any '
          'training stage:\n  ' + '\n  '.join(problems))
    schema = artifact_utils.get_single_instance(input_dict['schema'])
    validated = artifact_utils.get_single_instance(output_dict['validated_schema'])
    io_utils.copy_file(os.path.join(schema.uri, _SCHEMA_FILE),
                       os.path.join(validated.uri, _SCHEMA_FILE))
