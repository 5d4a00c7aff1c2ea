"""Compiles the pipeline definition the local runner runs (pipeline/pipeline.py) for Kubeflow
Pipelines v2 / Vertex AI Pipelines, offline.

Components run from `image`, which has this project installed: Transform and Trainer get their
code as function paths (`models.transform.preprocessing_fn`, `models.training.run_fn`), never
as a module file, which TFX would upload at compile time.
"""
import dataclasses
import os
from typing import Mapping, Optional, Sequence

from kfp.pipeline_spec import pipeline_spec_pb2
from tfx import v1 as tfx
from tfx.utils import path_utils

from models import constants
from pipeline import configs
from pipeline.pipeline import create_pipeline

_RESOURCE_SPEC = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec


@dataclasses.dataclass(frozen=True)
class GpuRequest:
  """Accelerator for the Trainer task, in KFP's terms (e.g. NVIDIA_TESLA_T4, nvidia.com/gpu)."""
  accelerator_type: str
  count: int = 1

  def resource_spec(self) -> _RESOURCE_SPEC:
    if self.count < 1:
      raise ValueError(f'GPU count must be at least 1, not {self.count}')
    return _RESOURCE_SPEC(accelerator=_RESOURCE_SPEC.AcceleratorConfig(
        type=self.accelerator_type, count=self.count))


def check_base_model(base_model: str) -> None:
  """A base model a Kubeflow run can start from: configs.LATEST_BLESSED (resolved in the cluster's
  ML-Metadata when the run starts), or the URI of a model artifact, a folder holding
  Format-Serving/saved_model.pb (a Trainer's `model` output), which the Importer registers. A
  local folder is checked; a remote one cannot be offline."""
  if base_model == configs.SHIPPED:
    raise ValueError(
        f'--base-model {configs.SHIPPED}: a Kubeflow run reads its base model from storage the '
        'cluster sees; copy models/shipped_model/<version> to <URI>/Format-Serving and give <URI>')
  if base_model != configs.LATEST_BLESSED and '://' not in base_model and not os.path.exists(
      os.path.join(path_utils.serving_model_dir(base_model), 'saved_model.pb')):
    raise ValueError(f'--base-model {base_model}: no model artifact there (a folder holding '
                     'Format-Serving/saved_model.pb, as a Trainer writes it)')


def compile_pipeline(image: str, pipeline_root: str, data_paths: Sequence[str], output_path: str,
                     profile: configs.Profile, serving_dir: Optional[str] = None,
                     gpu: Optional[GpuRequest] = None,
                     component_beam_args: Mapping[str, Sequence[str]] = (),
                     eval_count: int = constants.DEFAULT_EVAL_COUNT, split_seed: int = 0,
                     base_model: Optional[str] = None) -> str:
  """Writes the PipelineJob JSON to `output_path`; returns its path. `base_model`: see
  check_base_model; Transform reads its transform statistics when it runs."""
  if base_model:
    check_base_model(base_model)
  pipeline = create_pipeline(
      pipeline_name=configs.PIPELINE_NAME,
      pipeline_root=pipeline_root,
      data_paths=data_paths,
      profile=profile,
      serving_dir=serving_dir or os.path.join(pipeline_root, configs.SERVING_DIR),
      eval_count=eval_count,
      split_seed=split_seed,
      component_beam_args=dict(component_beam_args),
      trainer_resources=gpu.resource_spec() if gpu else None,
      base_model=base_model,
  )
  output_dir, filename = os.path.split(os.path.abspath(output_path))
  os.makedirs(output_dir, exist_ok=True)
  runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
      config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image),
      output_dir=output_dir, output_filename=filename)
  runner.run(pipeline, write_out=True)
  return os.path.join(output_dir, filename)
