"""Transform: TFX's own component, run by an executor that feeds `preprocessing_fn` a bounded
number of images per batch and, on a warm start, the base model's transform statistics (see
executor.py). Everything else is TFX's Transform as it is."""
from typing import Optional

from tfx import types
from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec
from tfx.types import component_spec, standard_artifacts, standard_component_specs

from components.transform import executor


class TransformSpec(standard_component_specs.TransformSpec):
  """TFX's TransformSpec with one more input: the model a warm start begins with."""
  INPUTS = {**standard_component_specs.TransformSpec.INPUTS,
            executor.BASE_MODEL_KEY: component_spec.ChannelParameter(
                type=standard_artifacts.Model, optional=True)}


class Transform(tfx.components.Transform):
  """`base_model`: the Trainer's base model channel (a resolver's or an importer's). Transform then
  keeps that model's transform statistics, read when it runs, so a fine-tuned model sees images at
  the scale and in the standardisation its weights learnt; with the channel empty (no model blessed
  yet) or a model that recorded none, it analyses the training images as without one."""
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

  def __init__(self, base_model: Optional[types.BaseChannel] = None, **kwargs):
    super().__init__(**kwargs)
    if base_model is not None:
      # TFX's __init__ builds its own spec; the same spec with the channel added replaces it
      # before the pipeline reads the component's inputs.
      spec = self.spec
      self.spec = TransformSpec(**spec.exec_properties, **spec.inputs, **spec.outputs,
                                **{executor.BASE_MODEL_KEY: base_model})
