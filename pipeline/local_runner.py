"""Runs the pipeline on this machine with LocalDagRunner and a SQLite ML-Metadata store."""
import os
from typing import Optional, Sequence

from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx
from tfx.orchestration import pipeline as tfx_pipeline

from components.fundus_example_gen import files
from models import constants, settings
from pipeline import configs
from pipeline.pipeline import create_pipeline


def connection_config(pipeline_root: str) -> metadata_store_pb2.ConnectionConfig:
  """The SQLite ML-Metadata store local runs record into, inside the pipeline root."""
  return tfx.orchestration.metadata.sqlite_metadata_connection_config(
      configs.metadata_path(pipeline_root))


def _absolute(path: str) -> str:
  return path if '://' in path else os.path.abspath(path)


def run(data_paths: Sequence[str], pipeline_root: str, profile: configs.Profile, serving_dir: str,
        beam_pipeline_args: Sequence[str] = (),
        eval_count: int = constants.DEFAULT_EVAL_COUNT, split_seed: int = 0,
        enable_cache: bool = True, until: Optional[str] = None,
        interrupted_trainer_runs: Sequence[int] = (), base_model: Optional[str] = None) -> None:
  """Runs the whole pipeline, or with `until` a component id, only that component and what it
  depends on (a partial run: e.g. the data stages alone). `interrupted_trainer_runs`: execution ids
  of Trainer runs that never completed, newest first, for the Trainer to resume (models/resume.py).
  `base_model`: what the Trainer starts from (see create_pipeline).
  """
  pipeline_root = _absolute(pipeline_root)
  data_paths = [_absolute(p) for p in data_paths]
  serving_dir = _absolute(serving_dir)
  if base_model not in (None, configs.LATEST_BLESSED):
    base_model = _absolute(base_model)
  os.makedirs(pipeline_root, exist_ok=True)
  # The Trainer runs in this process: the environment is how it learns of them without a change
  # to its exec properties, which would defeat the cache.
  os.environ[settings.INTERRUPTED_TRAINER_RUNS_ENV] = ','.join(map(str, interrupted_trainer_runs))
  tfx.orchestration.LocalDagRunner().run(create_pipeline(
      pipeline_name=configs.PIPELINE_NAME,
      pipeline_root=pipeline_root,
      data_paths=data_paths,
      profile=profile,
      serving_dir=serving_dir,
      eval_count=eval_count,
      split_seed=split_seed,
      input_fingerprint=files.fingerprint(data_paths),
      beam_pipeline_args=beam_pipeline_args,
      metadata_connection_config=connection_config(pipeline_root),
      enable_cache=enable_cache,
      base_model=base_model,
  ), run_options=tfx_pipeline.RunOptions(to_nodes=[until]) if until else None)
