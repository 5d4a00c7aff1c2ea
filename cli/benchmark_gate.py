"""`retina-tfx benchmark-gate`: replays a pipeline root's latest Evaluator run and measures it.

The same candidate and baseline models and the same EvalConfig as ML-Metadata recorded, on the same
test examples or on a dataset given with --data (ingested here first, e.g. generated images of
another size); TFX's own Evaluator executor runs in a child process, so the wall time and peak RSS
measured are the evaluation's alone.
"""
import json
import multiprocessing
import os
import resource
import time
from typing import Dict, List, Optional, Sequence

from ml_metadata.proto import metadata_store_pb2
from tfx.components.evaluator import executor as evaluator_executor
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs as specs

from cli import console, history
from components.fundus_example_gen import executor as example_gen_executor
from models import constants, vessel_metrics
from pipeline import configs


class GateBenchmarkError(console.CommandError):
  pass


def recorded_evaluation(pipeline_root: str) -> Dict:
  """The inputs (URIs by key) and execution properties of the latest completed Evaluator run."""
  store = history.open_store(pipeline_root)
  executions = [e for e in history.node_executions(store, configs.EVALUATOR)
                if e.last_known_state == metadata_store_pb2.Execution.COMPLETE]
  if not executions:
    raise GateBenchmarkError(f'{pipeline_root}: no completed Evaluator run recorded')
  execution = executions[-1]
  inputs = history.artifacts_by_key(store, execution.id, metadata_store_pb2.Event.INPUT)
  return {
      'inputs': {key: artifact.uri for key, artifact in inputs.items()},
      'eval_config': execution.custom_properties[specs.EVAL_CONFIG_KEY].string_value,
      'example_splits': execution.custom_properties[specs.EXAMPLE_SPLITS_KEY].string_value,
      'module_path': execution.custom_properties[specs.MODULE_PATH_KEY].string_value,
  }


def ingest(data_paths: Sequence[str], examples_uri: str) -> None:
  """Writes Examples of DRIVE-layout `data_paths` to `examples_uri` (the pipeline's reader)."""
  example_gen_executor.Executor().Do({}, {'examples': [_artifact(standard_artifacts.Examples,
                                                                 examples_uri)]}, {
      'input_paths': json.dumps([os.path.abspath(p) for p in data_paths]),
      'eval_count': 1, 'split_seed': 0})


def _artifact(artifact_type, uri: str, splits: Optional[List[str]] = None):
  artifact = artifact_type()
  artifact.uri = uri
  if splits is not None:
    artifact.split_names = artifact_utils.encode_split_names(splits)
  return artifact


def _evaluate(recorded: Dict, output_dir: str) -> None:
  """TFX's Evaluator executor on `recorded` inputs, writing into `output_dir` (child process)."""
  inputs = recorded['inputs']
  input_dict = {specs.EXAMPLES_KEY: [_artifact(standard_artifacts.Examples,
                                               inputs[specs.EXAMPLES_KEY], list(constants.SPLITS))],
                specs.MODEL_KEY: [_artifact(standard_artifacts.Model, inputs[specs.MODEL_KEY])]}
  if specs.BASELINE_MODEL_KEY in inputs:
    input_dict[specs.BASELINE_MODEL_KEY] = [
        _artifact(standard_artifacts.Model, inputs[specs.BASELINE_MODEL_KEY])]
  evaluator_executor.Executor().Do(input_dict, {
      specs.EVALUATION_KEY: [_artifact(standard_artifacts.ModelEvaluation,
                                       os.path.join(output_dir, 'evaluation'))],
      specs.BLESSING_KEY: [_artifact(standard_artifacts.ModelBlessing,
                                     os.path.join(output_dir, 'blessing'))],
  }, {specs.EVAL_CONFIG_KEY: recorded['eval_config'],
      specs.EXAMPLE_SPLITS_KEY: recorded['example_splits'],
      specs.MODULE_PATH_KEY: recorded['module_path']})


def replay(recorded: Dict, output_dir: str) -> Dict:
  """Runs `_evaluate` in a fresh process; returns its wall time, peak RSS and verdict."""
  os.makedirs(output_dir, exist_ok=True)
  child = multiprocessing.get_context('spawn').Process(target=_evaluate,
                                                        args=(recorded, output_dir))
  started = time.monotonic()
  child.start()
  child.join()
  wall = time.monotonic() - started
  if child.exitcode != 0:
    raise GateBenchmarkError(f'the Evaluator failed (exit code {child.exitcode}); see the log above')
  blessed = os.path.exists(os.path.join(output_dir, 'blessing', 'BLESSED'))
  return {
      'evaluator_seconds': wall,
      # The largest child waited for so far: only this one, as the CLI starts no other.
      'peak_rss_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
      'baseline': specs.BASELINE_MODEL_KEY in recorded['inputs'],
      'blessed': blessed,
      'metrics': history.metric_values(os.path.join(output_dir, 'evaluation'))[0],
  }


def command(args) -> int:
  recorded = recorded_evaluation(args.pipeline_root)
  if args.data:
    examples_uri = os.path.join(os.path.abspath(args.output), 'examples')
    print(f'retina-tfx: ingesting {", ".join(args.data)} into {examples_uri}', flush=True)
    try:
      ingest(args.data, examples_uri)
    except Exception as error:  # pylint: disable=broad-except
      raise GateBenchmarkError(console.user_message(error)) from error
    recorded['inputs']['examples'] = examples_uri
  print(f'retina-tfx: replaying the Evaluator on {recorded["inputs"]["examples"]}', flush=True)
  result = replay(recorded, os.path.join(args.output, 'evaluator'))
  result['command'] = 'retina-tfx ' + ' '.join(args.argv)
  path = os.path.join(args.output, 'gate_benchmark.json')
  with open(path, 'w') as f:
    json.dump(result, f, indent=2)
  models = 'candidate + baseline' if result['baseline'] else 'candidate only'
  auc = result['metrics'].get(vessel_metrics.AUC, float('nan'))
  print(f'  Evaluator ({models}): {result["evaluator_seconds"]:.1f} s wall, peak RSS '
        f'{result["peak_rss_mb"]:.0f} MB, AUC {auc:.4f}, '
        f'{"BLESSED" if result["blessed"] else "REJECTED"}\n  result: {path}')
  return 0
