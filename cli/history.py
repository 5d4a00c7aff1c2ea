"""Run history, read back from ML-Metadata and the Evaluator's output: every component's latest run
and outputs, and for every evaluation the run, the model and its parent (the base model it was
trained from), its FOV-weighted test metrics, the blessing decision with its reasons, and the
pushed version. status, report, benchmark and the run summary all read it here."""
import dataclasses
import datetime
import os
from typing import Dict, List, Optional

import tensorflow_model_analysis as tfma
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.components.evaluator import constants as evaluator
from tfx.types import standard_component_specs

from cli import console
from models import constants
from pipeline import configs, eval_config, local_runner

CANDIDATE = ('', 'candidate')   # TFMA names the evaluated model 'candidate' once a baseline exists
_BASELINE_ID = evaluator.ARTIFACT_PROPERTY_BASELINE_MODEL_ID_KEY
_BASE_MODEL = standard_component_specs.BASE_MODEL_KEY
_DONE = ('COMPLETE', 'CACHED')


class NoHistoryError(console.CommandError):
  pass


def open_store(pipeline_root: str) -> metadata_store.MetadataStore:
  if not os.path.exists(configs.metadata_path(pipeline_root)):
    raise NoHistoryError(f'{pipeline_root}: no pipeline runs recorded here '
                         f'({configs.METADATA_FILE} missing)')
  return metadata_store.MetadataStore(local_runner.connection_config(pipeline_root))

def node_executions(store, node_id: str) -> List[metadata_store_pb2.Execution]:
  """Every execution of the pipeline's component `node_id`, oldest first."""
  context = store.get_context_by_type_and_name('node', f'{configs.PIPELINE_NAME}.{node_id}')
  if context is None:
    return []
  return sorted(store.get_executions_by_context(context.id), key=lambda e: e.id)


def _events_and_artifacts(store, execution_id: int, event_type):
  events = [e for e in store.get_events_by_execution_ids([execution_id]) if e.type == event_type]
  artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
  return [(e.path.steps[0].key, artifacts[e.artifact_id]) for e in events]


def artifacts_by_key(store, execution_id: int, event_type) -> Dict[str, metadata_store_pb2.Artifact]:
  """An execution's input or output artifacts (one per key, as this pipeline's are)."""
  return dict(_events_and_artifacts(store, execution_id, event_type))


def producer(store, artifact_id: int):
  """The execution that wrote an artifact, and that execution's input artifacts by key."""
  output = next(e for e in store.get_events_by_artifact_ids([artifact_id])
                if e.type == metadata_store_pb2.Event.OUTPUT)
  execution = store.get_executions_by_id([output.execution_id])[0]
  return execution, artifacts_by_key(store, execution.id, metadata_store_pb2.Event.INPUT)


def _state(execution) -> str:
  return metadata_store_pb2.Execution.State.Name(execution.last_known_state)


def interrupted_executions(store, node_id: str) -> List[int]:
  """Ids of `node_id`'s executions that started and never completed (killed: still RUNNING in
  the store; or FAILED, CANCELED), newest first."""
  return [e.id for e in reversed(node_executions(store, node_id))
          if _state(e) in ('RUNNING', 'FAILED', 'CANCELED')]


@dataclasses.dataclass
class NodeRun:
  node_id: str
  state: str                     # MLMD execution state: COMPLETE, CACHED, FAILED, RUNNING, ...
  outputs: Dict[str, List[str]]  # output key -> artifact URIs
  started: float                 # seconds since the epoch: MLMD registered the execution
  finished: float                # seconds since the epoch: its last update (its outcome)


def latest_node_runs(store: metadata_store.MetadataStore) -> List[NodeRun]:
  """The latest execution of every component of the pipeline, in execution order."""
  latest = []
  for context in store.get_contexts_by_type('node'):
    prefix, _, node_id = context.name.partition('.')
    if prefix == configs.PIPELINE_NAME and (executions := node_executions(store, node_id)):
      latest.append((node_id, executions[-1]))
  runs = []
  for node_id, execution in sorted(latest, key=lambda item: item[1].id):
    outputs: Dict[str, List[str]] = {}
    for key, artifact in _events_and_artifacts(store, execution.id, metadata_store_pb2.Event.OUTPUT):
      outputs.setdefault(key, []).append(artifact.uri)
    runs.append(NodeRun(node_id=node_id, state=_state(execution), outputs=outputs,
                        started=execution.create_time_since_epoch / 1000,
                        finished=execution.last_update_time_since_epoch / 1000))
  return runs


def latest_output(store: metadata_store.MetadataStore, node_id: str, output_key: str
                  ) -> Optional[str]:
  """URI of `output_key` of the latest completed (or cached) run of `node_id`, if any."""
  for run in latest_node_runs(store):
    if run.node_id == node_id and run.state in _DONE and run.outputs.get(output_key):
      return run.outputs[output_key][0]
  return None


@dataclasses.dataclass
class Decision:
  """One Evaluator execution: what was judged, how it scored and what became of it."""
  run_id: str
  evaluated_at: str                   # UTC, ISO 8601
  state: str                          # COMPLETE, or CACHED when a rerun reused the decision
  model_id: int
  model_uri: str
  parent_model_id: Optional[int]      # the base model its training started from, if any
  parent_model_uri: Optional[str]
  baseline_model_id: Optional[int]    # compared with: the latest blessed or an imported base model
  metrics: Dict[str, float]           # overall slice, FOV-weighted
  auc_change: Optional[float]         # AUC minus the baseline's AUC
  per_dataset_auc: Dict[str, float]   # dataset -> FOV-weighted AUC of its test images
  per_image_auc: Dict[str, float]     # image_id -> FOV-weighted AUC
  blessed: bool
  reasons: List[str]                  # why it was not blessed (empty when blessed)
  pushed_version: Optional[str]
  pushed_to: Optional[str]
  evaluation_uri: str
  examples_uri: str                   # the examples it was evaluated on (test split)


def latest_run_id(store) -> Optional[str]:
  """The newest pipeline run's id, whatever became of it (killed and partial runs too)."""
  runs = store.get_contexts_by_type('pipeline_run')
  return max(runs, key=lambda run: run.id).name if runs else None


def _run_id(store, execution_id: int) -> str:
  run_type = store.get_context_type('pipeline_run').id
  names = [c.name for c in store.get_contexts_by_execution(execution_id) if c.type_id == run_type]
  return names[-1] if names else '?'


def metric_values(evaluation_uri: str):
  """(overall metrics, AUC change vs baseline, AUC per dataset, AUC per image) of the candidate."""
  overall, change = {}, None
  sliced = {constants.DATASET_KEY: {}, constants.IMAGE_ID_KEY: {}}
  for metrics_for_slice in tfma.load_metrics(evaluation_uri):
    slice_keys = metrics_for_slice.slice_key.single_slice_keys
    for entry in metrics_for_slice.metric_keys_and_values:
      key = entry.key
      if key.model_name not in CANDIDATE or not entry.value.HasField('double_value'):
        continue
      value = entry.value.double_value.value
      if not slice_keys:
        if key.is_diff:
          change = value if key.name == eval_config.GATED_METRIC else change
        else:
          overall[key.name] = value
      elif (len(slice_keys) == 1 and slice_keys[0].column in sliced
            and key.name == eval_config.GATED_METRIC and not key.is_diff):
        sliced[slice_keys[0].column][slice_keys[0].bytes_value.decode()] = value
  return (overall, change, *(dict(sorted(sliced[column].items()))
                             for column in (constants.DATASET_KEY, constants.IMAGE_ID_KEY)))


def _slice_name(slice_key) -> str:
  """'' for the overall slice, ' on dataset STARE' for a dataset's."""
  values = []
  for single in slice_key.single_slice_keys:
    value = getattr(single, single.WhichOneof('kind'))
    values.append(f'{single.column} {value.decode() if isinstance(value, bytes) else value}')
  return f' on {", ".join(values)}' if values else ''


def failed_thresholds(evaluation_uri: str) -> List[str]:
  """TFMA's failed thresholds, in words, each naming its slice."""
  result = tfma.load_validation_result(evaluation_uri)
  reasons = []
  for per_slice in result.metric_validations_per_slice:
    for failure in per_slice.failures:
      name = failure.metric_key.name + _slice_name(per_slice.slice_key)
      value = failure.metric_value.double_value.value
      threshold = failure.metric_threshold
      if failure.metric_key.is_diff:
        allowed = threshold.change_threshold.absolute.value
        reasons.append(f'{name} changed by {value:+.4f} against the latest blessed model '
                       f'(allowed: {allowed:+.4f} or better)')
      elif threshold.value_threshold.HasField('lower_bound'):
        reasons.append(f'{name} {value:.4f} is below the required '
                       f'{threshold.value_threshold.lower_bound.value:.4f}')
      else:
        reasons.append(f'{name} {value:.4f} failed {threshold}'.strip())
  if not result.validation_ok and not reasons:
    reasons.append('validation failed without a metric failure (see the evaluation artifact)')
  return reasons


def decisions(store: metadata_store.MetadataStore) -> List[Decision]:
  """Every evaluation recorded for the pipeline, oldest first."""
  pushes = {}
  for execution in node_executions(store, configs.PUSHER):
    inputs = artifacts_by_key(store, execution.id, metadata_store_pb2.Event.INPUT)
    outputs = artifacts_by_key(store, execution.id, metadata_store_pb2.Event.OUTPUT)
    if 'model_blessing' in inputs and 'pushed_model' in outputs:
      pushes[inputs['model_blessing'].id] = outputs['pushed_model'].custom_properties
  result = []
  for execution in node_executions(store, configs.EVALUATOR):
    state = _state(execution)
    if state not in _DONE:
      continue
    inputs = artifacts_by_key(store, execution.id, metadata_store_pb2.Event.INPUT)
    outputs = artifacts_by_key(store, execution.id, metadata_store_pb2.Event.OUTPUT)
    blessing, evaluation = outputs['blessing'], outputs['evaluation']
    overall, change, per_dataset, per_image = metric_values(evaluation.uri)
    # The Evaluator records on its blessing what it judged, against what, and the verdict.
    judged = blessing.custom_properties
    blessed = judged[evaluator.ARTIFACT_PROPERTY_BLESSED_KEY].int_value == evaluator.BLESSED_VALUE
    push = pushes.get(blessing.id, {})
    pushed = 'pushed' in push and push['pushed'].int_value == 1
    model_id = judged[evaluator.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY].int_value
    parent = producer(store, model_id)[1].get(_BASE_MODEL)   # the Trainer's base_model input
    result.append(Decision(
        run_id=_run_id(store, execution.id),
        evaluated_at=datetime.datetime.fromtimestamp(
            execution.create_time_since_epoch / 1000, datetime.timezone.utc).isoformat(
                timespec='seconds'),
        state=state,
        model_id=model_id,
        model_uri=judged[evaluator.ARTIFACT_PROPERTY_CURRENT_MODEL_URI_KEY].string_value,
        parent_model_id=parent.id if parent else None,
        parent_model_uri=parent.uri if parent else None,
        baseline_model_id=(judged[_BASELINE_ID].int_value if _BASELINE_ID in judged else None),
        metrics=overall, auc_change=change, per_dataset_auc=per_dataset, per_image_auc=per_image,
        blessed=blessed,
        reasons=[] if blessed else failed_thresholds(evaluation.uri),
        pushed_version=push['pushed_version'].string_value if pushed else None,
        pushed_to=push['pushed_destination'].string_value if pushed else None,
        evaluation_uri=evaluation.uri,
        examples_uri=inputs['examples'].uri))
  return result
