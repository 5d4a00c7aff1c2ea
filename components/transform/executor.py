"""TFX's Transform executor with a bound on the images in one batch, and the base model's
transform statistics on a warm start.

TFT hands `preprocessing_fn` batches whose size Beam tunes by elapsed time, up to 1,000 rows. With
fundus images as rows a batch's pixels, and the maps decoded and preprocessed from them, grow with
the dataset (6.1 GB of peak RSS in Transform on HRF's 22 training photos). A fixed batch of
IMAGES_PER_BATCH rows bounds them; analyzers are combiners and accumulate across batches as before.

The base model's statistics are read when Transform runs, from the model its `base_model` channel
resolves to, not when the pipeline is compiled: on Kubeflow the latest blessed model is known only
then.
"""
from typing import Any, Dict, List, Optional

from absl import logging
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx import types
from tfx.components.transform import executor as tfx_transform
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import json_utils, path_utils

from models import serving, settings

# One image per batch: the graph's per-call overhead is milliseconds, an image's work a second or
# more at 2048x2048, so larger batches gain nothing and cost their pixels in memory.
IMAGES_PER_BATCH = 1
# The input channel of the model a warm start begins with (the Trainer's base_model).
BASE_MODEL_KEY = 'base_model'


def base_statistics(base_model: List[types.Artifact]) -> Optional[Dict[str, float]]:
  """The transform statistics the base model's export recorded; None without a base model (none
  blessed yet) or for a model exported before they were recorded."""
  if not base_model:
    logging.info('Transform: no base model; analysing the training images')
    return None
  saved_model = path_utils.serving_model_path(artifact_utils.get_single_uri(base_model))
  statistics = serving.read_transform_statistics(saved_model)
  if statistics is None:
    logging.warning('Transform: base model %s recorded no transform statistics; analysing the '
                    'training images', saved_model)
    return None
  logging.info("Transform: keeping the base model's transform statistics %s (%s)", statistics,
               saved_model)
  return statistics


class Executor(tfx_transform.Executor):

  def _GetDesiredBatchSize(self, data_format: int, schema: schema_pb2.Schema) -> Optional[int]:
    return IMAGES_PER_BATCH

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
    statistics = base_statistics(input_dict.get(BASE_MODEL_KEY, []))
    if statistics is not None:
      key = standard_component_specs.CUSTOM_CONFIG_KEY
      custom_config = json_utils.loads(exec_properties.get(key) or 'null') or {}
      exec_properties = {**exec_properties, key: json_utils.dumps(
          {**custom_config, settings.BASE_STATISTICS_KEY: statistics})}
    super().Do(input_dict, output_dict, exec_properties)
