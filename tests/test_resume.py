"""Resuming an interrupted training, the orchestration side: ML-Metadata names the Trainer runs
that never completed and the local runner hands them to the Trainer (tests/test_training_data.py
kills and resumes a training)."""
import argparse
import os

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2 as mlmd

from cli import history, run
from models import settings
from pipeline import configs, local_runner


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


def _run_args(**overrides):
  return argparse.Namespace(**{
      'data': ['DRIVE'], 'profile': 'smoke', 'beam_args': [], 'eval_count': 4, 'split_seed': 0,
      'no_cache': False, 'until': None, 'min_auc': None, 'max_auc_drop': None, 'base_model': None,
      **overrides})


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
