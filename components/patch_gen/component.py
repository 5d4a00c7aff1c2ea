"""PatchGen: random training patches, centred inside the FOV, cut from Transform's preprocessed maps.

It runs right after Transform (not inside it) so that the transform graph, which the exported model
embeds, stays one image in, one map out. The preprocessing itself is not repeated here: patches are
windows of Transform's materialised output.
"""
import json
from typing import Sequence

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import component_spec, standard_artifacts

from components.patch_gen import executor
from models import constants

TRANSFORMED_EXAMPLES_KEY = 'transformed_examples'
PATCHES_KEY = 'patches'
PATCHES_PER_IMAGE_KEY = 'patches_per_image'
PATCH_SIZE_KEY = 'patch_size'
SEED_KEY = 'seed'
SPLITS_KEY = 'splits'


class PatchGenSpec(types.ComponentSpec):
  PARAMETERS = {
      PATCHES_PER_IMAGE_KEY: component_spec.ExecutionParameter(type=int),
      PATCH_SIZE_KEY: component_spec.ExecutionParameter(type=int),
      SEED_KEY: component_spec.ExecutionParameter(type=int),
      SPLITS_KEY: component_spec.ExecutionParameter(type=str),  # JSON list of split names
  }
  INPUTS = {TRANSFORMED_EXAMPLES_KEY: component_spec.ChannelParameter(type=standard_artifacts.Examples)}
  OUTPUTS = {PATCHES_KEY: component_spec.ChannelParameter(type=standard_artifacts.Examples)}


class PatchGen(base_beam_component.BaseBeamComponent):
  SPEC_CLASS = PatchGenSpec
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

  def __init__(self, transformed_examples: types.BaseChannel, patches_per_image: int,
               patch_size: int = constants.PATCH_SIZE, seed: int = 0,
               splits: Sequence[str] = (constants.TRAIN_SPLIT, constants.EVAL_SPLIT)):
    super().__init__(spec=PatchGenSpec(
        transformed_examples=transformed_examples, patches_per_image=patches_per_image,
        patch_size=patch_size, seed=seed, splits=json.dumps(list(splits)),
        patches=types.Channel(type=standard_artifacts.Examples)))
