"""Warm start: a training that begins with the weights of an exported model, TFX's base_model (the
latest blessed model, or a SavedModel imported from a path), instead of a random initialisation.

The weights come from the SavedModel's own variables, a checkpoint of the exported Keras model's
object graph, matched to the freshly built model by variable name and shape. So any model this
project exported serves as a base, and one of another architecture is refused before training."""
import os
from typing import Dict, Optional

import numpy as np
import tensorflow as tf
import tf_keras as keras
from absl import logging
from tensorflow.core.protobuf import trackable_object_graph_pb2

from models import serving
from models.settings import ModelConfig

# The checkpoint's description of itself, under this key (tf.train.Checkpoint's own).
_OBJECT_GRAPH_KEY = '_CHECKPOINTABLE_OBJECT_GRAPH'
# The Keras model's layers are the root's `layer_with_weights-N` children; the optimizer's, the
# metrics' and the transform layer's variables hang elsewhere in the graph.
_MODEL_WEIGHTS_PREFIX = 'layer_with_weights-'


class BaseModelMismatchError(ValueError):
  """The base model's weights do not fit the model this training builds."""


def saved_model_dir(base_model: str) -> str:
  """fn_args.base_model, checked: TFX hands the Trainer <Model artifact>/Format-Serving, where an
  imported model is too (cli/run.stage_base_model lays it out so)."""
  if not tf.io.gfile.exists(os.path.join(base_model, 'saved_model.pb')):
    raise ValueError(f'base model {base_model}: no SavedModel there')
  return base_model


def base_weights(saved_model: str) -> Dict[str, np.ndarray]:
  """The exported Keras model's weights by variable name, e.g. 'down0_conv0/kernel'."""
  reader = tf.train.load_checkpoint(os.path.join(saved_model, 'variables', 'variables'))
  graph = trackable_object_graph_pb2.TrackableObjectGraph.FromString(
      reader.get_tensor(_OBJECT_GRAPH_KEY))
  return {attribute.full_name: reader.get_tensor(attribute.checkpoint_key)
          for node in graph.nodes for attribute in node.attributes
          if attribute.checkpoint_key.startswith(_MODEL_WEIGHTS_PREFIX)}


def _describe(config: Optional[ModelConfig], weights: Dict[str, tuple]) -> str:
  parameters = sum(int(np.prod(shape)) for shape in weights.values())
  settings = (f'{config.architecture}, base_filters {config.base_filters}, depth {config.depth}'
              if config else 'settings not recorded')
  return f'{settings}: {parameters:,} parameters'


def _differences(theirs: Dict[str, tuple], ours: Dict[str, tuple]) -> str:
  """The first few weights, in the model's order, that differ in shape or exist on one side only,
  in words."""
  shape = lambda s: 'x'.join(map(str, s))
  problems = [f'no {name} there' if name not in theirs
              else f'{name} is {shape(theirs[name])} there, {shape(ours[name])} here'
              for name in ours if theirs.get(name) != ours[name]]
  problems += [f'{name} there has no place here' for name in theirs if name not in ours]
  return '; '.join(problems[:3]) + (f' (and {len(problems) - 3} more)' if len(problems) > 3 else '')


def load_base_weights(model: keras.Model, config: ModelConfig, base_model: str) -> None:
  """Sets every weight of `model` (built from `config`) to the base model's. Raises
  BaseModelMismatchError, naming both models, unless the two have the same weights (dropout, which
  has none, may differ)."""
  saved_model = saved_model_dir(base_model)
  theirs = base_weights(saved_model)
  ours = {weight.name.rsplit(':', 1)[0]: weight for weight in model.weights}
  their_shapes = {name: tuple(value.shape) for name, value in theirs.items()}
  our_shapes = {name: tuple(weight.shape) for name, weight in ours.items()}
  if their_shapes != our_shapes:
    base = _describe(serving.read_model_config(saved_model), their_shapes)
    raise BaseModelMismatchError(
        f'base model {saved_model} ({base}) does not fit the model this training builds '
        f'({_describe(config, our_shapes)}): {_differences(their_shapes, our_shapes)}')
  for name, weight in ours.items():
    weight.assign(theirs[name])
  logging.info('Trainer: base model %s: training starts from its weights', saved_model)
