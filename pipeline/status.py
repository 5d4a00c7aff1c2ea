"""The release history, read back from ML-Metadata and the Evaluator's output: for every evaluation,
the run, the model, its FOV-weighted test metrics, the blessing decision with its reasons, and the
pushed version."""
import dataclasses
import datetime
from typing import Dict, List, Optional

import tensorflow_model_analysis as tfma
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.components.evaluator import constants as evaluator

from models import constants, vessel_metrics
from pipeline import eval_config

EVALUATOR_NODE = 'Evaluator'
PUSHER_NODE = 'Pusher'
# Columns of the table, by metric name (all per FOV pixel, on the test split).
METRIC_COLUMNS = ((vessel_metrics.AUC, 'AUC'), (vessel_metrics.AUC_PR, 'AUC-PR'),
                  (vessel_metrics.ACCURACY, 'Acc'), (vessel_metrics.RECALL, 'Se'),
                  (vessel_metrics.SPECIFICITY, 'Sp'), (vessel_metrics.F1, 'F1'))
CANDIDATE = ('', 'candidate')   # TFMA names the evaluated model 'candidate' once a baseline exists
_BASELINE_ID = evaluator.ARTIFACT_PROPERTY_BASELINE_MODEL_ID_KEY


@dataclasses.dataclass
class Decision:
  """One Evaluator execution: what was judged, how it scored and what became of it."""
  run_id: str
  evaluated_at: str                   # UTC, ISO 8601
  state: str                          # COMPLETE, or CACHED when a rerun reused the decision
  model_id: int
  model_uri: str
  baseline_model_id: Optional[int]    # the latest blessed model it was compared with, if any
  metrics: Dict[str, float]           # overall slice, FOV-weighted
  auc_change: Optional[float]         # AUC minus the baseline's AUC
  per_image_auc: Dict[str, float]     # image_id -> FOV-weighted AUC
  blessed: bool
  reasons: List[str]                  # why it was not blessed (empty when blessed)
  pushed_version: Optional[str]
  pushed_to: Optional[str]
  evaluation_uri: str
  examples_uri: str                   # the examples it was evaluated on (test split)


def artifacts_by_key(store, execution_id: int, event_type) -> Dict[str, metadata_store_pb2.Artifact]:
  events = [e for e in store.get_events_by_execution_ids([execution_id]) if e.type == event_type]
  artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
  return {e.path.steps[0].key: artifacts[e.artifact_id] for e in events}


def node_executions(store, pipeline_name: str, node_id: str) -> List[metadata_store_pb2.Execution]:
  context = store.get_context_by_type_and_name('node', f'{pipeline_name}.{node_id}')
  if context is None:
    return []
  return sorted(store.get_executions_by_context(context.id), key=lambda e: e.id)


def _run_id(store, execution_id: int) -> str:
  run_type = store.get_context_type('pipeline_run').id
  names = [c.name for c in store.get_contexts_by_execution(execution_id) if c.type_id == run_type]
  return names[-1] if names else '?'


def metric_values(evaluation_uri: str):
  """(overall metrics, AUC change vs baseline, per-image AUC) of the candidate model."""
  overall, per_image, change = {}, {}, None
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
      elif (len(slice_keys) == 1 and slice_keys[0].column == constants.IMAGE_ID_KEY
            and key.name == eval_config.GATED_METRIC and not key.is_diff):
        per_image[slice_keys[0].bytes_value.decode()] = value
  return overall, change, dict(sorted(per_image.items()))


def _reasons(evaluation_uri: str) -> List[str]:
  """TFMA's failed thresholds, in words."""
  result = tfma.load_validation_result(evaluation_uri)
  reasons = []
  for per_slice in result.metric_validations_per_slice:
    for failure in per_slice.failures:
      name, value = failure.metric_key.name, failure.metric_value.double_value.value
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


def decisions(store: metadata_store.MetadataStore, pipeline_name: str) -> List[Decision]:
  """Every evaluation recorded for `pipeline_name`, oldest first."""
  pushes = {}
  for execution in node_executions(store, pipeline_name, PUSHER_NODE):
    inputs = artifacts_by_key(store, execution.id, metadata_store_pb2.Event.INPUT)
    outputs = artifacts_by_key(store, execution.id, metadata_store_pb2.Event.OUTPUT)
    if 'model_blessing' in inputs and 'pushed_model' in outputs:
      pushes[inputs['model_blessing'].id] = outputs['pushed_model'].custom_properties
  result = []
  for execution in node_executions(store, pipeline_name, EVALUATOR_NODE):
    state = metadata_store_pb2.Execution.State.Name(execution.last_known_state)
    if state not in ('COMPLETE', 'CACHED'):
      continue
    inputs = artifacts_by_key(store, execution.id, metadata_store_pb2.Event.INPUT)
    outputs = artifacts_by_key(store, execution.id, metadata_store_pb2.Event.OUTPUT)
    blessing, evaluation = outputs['blessing'], outputs['evaluation']
    overall, change, per_image = metric_values(evaluation.uri)
    # The Evaluator records on its blessing what it judged, against what, and the verdict.
    judged = blessing.custom_properties
    blessed = judged[evaluator.ARTIFACT_PROPERTY_BLESSED_KEY].int_value == evaluator.BLESSED_VALUE
    push = pushes.get(blessing.id, {})
    pushed = 'pushed' in push and push['pushed'].int_value == 1
    result.append(Decision(
        run_id=_run_id(store, execution.id),
        evaluated_at=datetime.datetime.fromtimestamp(
            execution.create_time_since_epoch / 1000, datetime.timezone.utc).isoformat(
                timespec='seconds'),
        state=state,
        model_id=judged[evaluator.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY].int_value,
        model_uri=judged[evaluator.ARTIFACT_PROPERTY_CURRENT_MODEL_URI_KEY].string_value,
        baseline_model_id=(judged[_BASELINE_ID].int_value if _BASELINE_ID in judged else None),
        metrics=overall, auc_change=change, per_image_auc=per_image,
        blessed=blessed,
        reasons=[] if blessed else _reasons(evaluation.uri),
        pushed_version=push['pushed_version'].string_value if pushed else None,
        pushed_to=push['pushed_destination'].string_value if pushed else None,
        evaluation_uri=evaluation.uri,
        examples_uri=inputs['examples'].uri))
  return result


def format_table(rows: List[Decision]) -> str:
  """A table a person reads in a minute, with the reasons under each rejected model."""
  if not rows:
    return 'no evaluations recorded yet: run the pipeline first'
  header = (f'{"run":<28} {"model":>5} {"vs":>5} '
            + ' '.join(f'{title:>7}' for _, title in METRIC_COLUMNS)
            + f' {"ΔAUC":>8}  {"decision":<11} pushed version')
  lines = [header, '-' * len(header)]
  for row in rows:
    values = ' '.join(f'{row.metrics[key]:>7.4f}' if key in row.metrics else f'{"-":>7}'
                      for key, _ in METRIC_COLUMNS)
    change = f'{row.auc_change:+8.4f}' if row.auc_change is not None else f'{"-":>8}'
    baseline = str(row.baseline_model_id) if row.baseline_model_id is not None else '-'
    decision = 'BLESSED' if row.blessed else 'REJECTED'
    cached = ' (cached)' if row.state == 'CACHED' else ''
    lines.append(f'{row.run_id:<28} {row.model_id:>5} {baseline:>5} {values} {change}  '
                 f'{decision:<11} {row.pushed_version or "-"}{cached}')
    lines += [f'    why: {reason}' for reason in row.reasons]
  lines.append('metrics: per pixel inside the FOV on the test split (TFMA); '
               '"vs": the blessed model it was compared with')
  return '\n'.join(lines)
