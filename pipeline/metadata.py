"""Reads what a pipeline run recorded in ML-Metadata: each component's latest execution and outputs."""
import dataclasses
from typing import Dict, List, Optional

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

from pipeline import configs


@dataclasses.dataclass
class NodeRun:
  node_id: str
  state: str                     # MLMD execution state: COMPLETE, CACHED, FAILED, RUNNING, ...
  outputs: Dict[str, List[str]]  # output key -> artifact URIs


def connection_config(pipeline_root: str) -> metadata_store_pb2.ConnectionConfig:
  return tfx.orchestration.metadata.sqlite_metadata_connection_config(
      configs.metadata_path(pipeline_root))


def open_store(pipeline_root: str) -> metadata_store.MetadataStore:
  return metadata_store.MetadataStore(connection_config(pipeline_root))


def latest_node_runs(store: metadata_store.MetadataStore, pipeline_name: str) -> List[NodeRun]:
  """The latest execution of every component of `pipeline_name`, in execution order."""
  latest = []
  for context in store.get_contexts_by_type('node'):
    prefix, _, node_id = context.name.partition('.')
    if prefix != pipeline_name:
      continue
    executions = store.get_executions_by_context(context.id)
    if executions:
      latest.append((node_id, max(executions, key=lambda e: e.id)))
  runs = []
  for node_id, execution in sorted(latest, key=lambda item: item[1].id):
    outputs: Dict[str, List[str]] = {}
    events = [e for e in store.get_events_by_execution_ids([execution.id])
              if e.type == metadata_store_pb2.Event.OUTPUT]
    artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
    for event in events:
      outputs.setdefault(event.path.steps[0].key, []).append(artifacts[event.artifact_id].uri)
    runs.append(NodeRun(node_id=node_id,
                        state=metadata_store_pb2.Execution.State.Name(execution.last_known_state),
                        outputs=outputs))
  return runs


def latest_output(store: metadata_store.MetadataStore, pipeline_name: str, node_id: str,
                  output_key: str) -> Optional[str]:
  """URI of `output_key` of the latest completed (or cached) run of `node_id`, if any."""
  for run in latest_node_runs(store, pipeline_name):
    if run.node_id == node_id and run.state in ('COMPLETE', 'CACHED') and run.outputs.get(output_key):
      return run.outputs[output_key][0]
  return None
