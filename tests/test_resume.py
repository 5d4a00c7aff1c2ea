"""Resuming an interrupted training, the orchestration side: ML-Metadata names the Trainer runs
that never completed and the local runner hands them to the Trainer (tests/test_training_data.py
kills and resumes a training); and end to end, a killed `retina-tfx run` and its rerun."""
import glob
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import pytest
import tensorflow_model_analysis as tfma
from google.protobuf import json_format
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2 as mlmd

from cli import history, run
from cli.main import main, parse_args
from models import constants, resume, settings, training
from pipeline import configs, local_runner
from synthetic_drive import dataset


def _trainer_history(root, states):
  """A store with Trainer executions in `states`, as TFX records them; returns their ids."""
  store = metadata_store.MetadataStore(local_runner.connection_config(str(root)))
  context_type = store.put_context_type(mlmd.ContextType(name='node'))
  execution_type = store.put_execution_type(mlmd.ExecutionType(name='Trainer'))
  [context] = store.put_contexts([mlmd.Context(
      type_id=context_type, name=f'{configs.PIPELINE_NAME}.{configs.TRAINER}')])
  ids = store.put_executions([mlmd.Execution(type_id=execution_type, last_known_state=state)
                              for state in states])
  store.put_attributions_and_associations(
      [], [mlmd.Association(context_id=context, execution_id=i) for i in ids])
  return store, ids


def test_interrupted_trainer_runs_are_those_that_never_completed_newest_first(tmp_path):
  store, ids = _trainer_history(tmp_path, [mlmd.Execution.COMPLETE, mlmd.Execution.FAILED,
                                           mlmd.Execution.CACHED, mlmd.Execution.RUNNING])
  assert history.interrupted_executions(store, configs.TRAINER) == [ids[3], ids[1]]
  assert history.interrupted_executions(store, configs.EVALUATOR) == []


def _run_args():
  return parse_args(['run', '--data', 'DRIVE', '--profile', 'smoke', '--eval-count', '4'])


def test_a_run_hands_the_interrupted_trainer_runs_to_the_runner(tmp_path, monkeypatch, capsys):
  _, ids = _trainer_history(tmp_path, [mlmd.Execution.RUNNING, mlmd.Execution.COMPLETE,
                                       mlmd.Execution.RUNNING])
  handed = {}
  monkeypatch.setattr(local_runner, 'run', lambda *args, **kwargs: handed.update(kwargs))
  assert run.run_pipeline(_run_args(), str(tmp_path), str(tmp_path / 'serving')) is not None
  assert handed['interrupted_trainer_runs'] == [ids[2], ids[0]]
  assert f'Trainer execution {ids[2]}, {ids[0]}' in capsys.readouterr().out
  # A first run in a fresh root has none (the runner creates the store).
  fresh = str(tmp_path / 'fresh')
  monkeypatch.setattr(local_runner, 'run', lambda *args, **kwargs: handed.update(kwargs) or
                      metadata_store.MetadataStore(local_runner.connection_config(fresh)))
  run.run_pipeline(_run_args(), fresh, str(tmp_path / 'serving'))
  assert handed['interrupted_trainer_runs'] == []


def test_the_local_runner_tells_the_trainer_through_its_environment(tmp_path, monkeypatch):
  seen = []

  class Runner:
    def run(self, pipeline, run_options=None):
      seen.append(os.environ[settings.INTERRUPTED_TRAINER_RUNS_ENV])

  monkeypatch.setattr(local_runner.tfx.orchestration, 'LocalDagRunner', Runner)
  monkeypatch.setattr(local_runner, 'create_pipeline', lambda **kwargs: None)
  monkeypatch.delenv(settings.INTERRUPTED_TRAINER_RUNS_ENV, raising=False)
  for interrupted in ([12, 9], []):
    local_runner.run([str(tmp_path)], str(tmp_path / 'root'), configs.PROFILES['smoke'],
                     str(tmp_path / 'serving'), interrupted_trainer_runs=interrupted)
  assert seen == ['12,9', '']


@pytest.mark.slow
def test_a_killed_run_resumes_its_training_from_ml_metadata_and_ends_blessed(tmp_path, capsys):
  """A real `retina-tfx run`, killed after its first epoch, then the same command again: the
  Trainer takes over the killed training and trains only the epoch left, and the model is
  released. The gate options and --serving-dir ride along (their one pipeline test)."""
  # Few, small images for a short run: 2 to train on, 1 to validate, 1 to test.
  data = tmp_path / 'DRIVE'
  dataset.generate(str(data), seed=5, n_train=3, n_test=1, height=192, width=192)
  root, serving_dir = tmp_path / 'root', tmp_path / 'serving'
  epochs = configs.PROFILES['smoke'].training.epochs
  argv = ['run', '--data', str(data), '--pipeline-root', str(root), '--profile', 'smoke',
          '--eval-count', '1', '--min-auc', '0.6', '--max-auc-drop', '0.05',
          '--serving-dir', str(serving_dir)]
  # Written after each epoch (models/resume.py, TrainingState): its first appearance says epoch
  # 1 has ended and epoch 2 is running.
  states = str(root / configs.TRAINER / 'model_run' / '*' / resume.RESUME_DIR /
               resume.RESUME_STATE_FILE)
  child_log = tmp_path / 'killed-run.out'
  with open(child_log, 'w') as log:
    child = subprocess.Popen([sys.executable, '-m', 'cli.main', *argv], stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True)
  try:
    deadline = time.monotonic() + 600
    while not (found := glob.glob(states)):
      assert child.poll() is None and time.monotonic() < deadline, child_log.read_text()
      time.sleep(0.05)
  finally:
    os.killpg(child.pid, signal.SIGKILL)   # no chance to record anything: ML-Metadata says RUNNING
    child.wait()
  killed = pathlib.Path(found[0]).parents[1]
  assert resume.read_resume_state(str(killed))['epochs_done'] == 1, 'killed after epoch 2'

  assert main(argv) == 0
  out, err = capsys.readouterr()
  assert f'taking over the lock of process {child.pid} ' in err
  assert f'interrupted training found (Trainer execution {killed.name})' in out
  with open(re.search(r'full log: (\S+)', out).group(1)) as log:
    assert (f'Trainer: resuming the training interrupted in {killed} after epoch 1 of {epochs}'
            in log.read())
  store = history.open_store(str(root))
  trainer = {r.node_id: r for r in history.latest_node_runs(store)}[configs.TRAINER]
  summary = training.read_summary(trainer.outputs['model_run'][0])
  assert summary['resumed_from'] == str(killed)
  assert summary['epochs_trained'] == list(range(2, epochs + 1))
  assert 'epoch 1:' not in out and f'epoch {epochs}:' in out
  # Blessed and pushed where --serving-dir says, not beside the pipeline root.
  [decision] = history.decisions(store)
  assert decision.blessed and decision.pushed_to == str(serving_dir / '1')
  assert (serving_dir / '1' / 'saved_model.pb').exists()
  assert not (tmp_path / configs.SERVING_DIR).exists()
  # The gate options reached the Evaluator's config (the change bound waits for a blessed baseline).
  [evaluator] = history.node_executions(store, configs.EVALUATOR)
  config = json_format.Parse(evaluator.custom_properties['eval_config'].string_value,
                             tfma.EvalConfig())
  gates = {tuple(t.slicing_specs[0].feature_keys): t.threshold
           for m in config.metrics_specs[0].metrics for t in m.per_slice_thresholds}
  assert gates[()].value_threshold.lower_bound.value == 0.6
  assert {keys: gate.change_threshold.absolute.value for keys, gate in gates.items()} == {
      (): -0.05, (constants.DATASET_KEY,): -0.05}
