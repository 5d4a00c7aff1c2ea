"""FundusExampleGen: ingests fundus vessel datasets (DRIVE, STARE, CHASE_DB1, HRF as published, or
images/ + labels/ folders; folders or zip archives) into train/eval/test tf.Examples."""
import json
from typing import Optional, Sequence

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import component_spec, standard_artifacts

from components.fundus_example_gen import executor
from models import constants

INPUT_PATHS_KEY = 'input_paths'
EVAL_COUNT_KEY = 'eval_count'
SPLIT_SEED_KEY = 'split_seed'
INPUT_FINGERPRINT_KEY = 'input_fingerprint'
EXAMPLES_KEY = 'examples'


class FundusExampleGenSpec(types.ComponentSpec):
  PARAMETERS = {
      # JSON list of folders and/or zip archives (local paths or any tf.io.gfile URI).
      INPUT_PATHS_KEY: component_spec.ExecutionParameter(type=str),
      EVAL_COUNT_KEY: component_spec.ExecutionParameter(type=int),
      SPLIT_SEED_KEY: component_spec.ExecutionParameter(type=int),
      # Changes when the input files change, so a cached ingestion is not reused for new data.
      INPUT_FINGERPRINT_KEY: component_spec.ExecutionParameter(type=str, optional=True),
  }
  INPUTS = {}
  OUTPUTS = {EXAMPLES_KEY: component_spec.ChannelParameter(type=standard_artifacts.Examples)}


class FundusExampleGen(base_beam_component.BaseBeamComponent):
  """One tf.Example per image; splits train/eval (a hold-out of each dataset's training images)
  and test (each dataset's test images)."""

  SPEC_CLASS = FundusExampleGenSpec
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

  def __init__(self, input_paths: Sequence[str], eval_count: int = constants.DEFAULT_EVAL_COUNT,
               split_seed: int = 0, input_fingerprint: Optional[str] = None):
    """input_fingerprint: pass files.fingerprint(input_paths) where the data is readable at build
    time (local runs); leave None where it is not (compiling for a cluster)."""
    spec = FundusExampleGenSpec(
        input_paths=json.dumps(list(input_paths)), eval_count=eval_count, split_seed=split_seed,
        input_fingerprint=input_fingerprint,
        examples=types.Channel(type=standard_artifacts.Examples))
    super().__init__(spec=spec)
