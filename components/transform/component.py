"""Transform: TFX's own component, run by an executor that feeds `preprocessing_fn` a bounded
number of images per batch (see executor.py). Everything else is TFX's Transform as it is."""
from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec

from components.transform import executor


class Transform(tfx.components.Transform):
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)
