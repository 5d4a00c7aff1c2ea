"""The pipeline definition, shared by every runner."""
import dataclasses
from typing import List, Mapping, Optional, Sequence

from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

import schemas
from components.data_gate.component import DataGate
from components.fundus_example_gen.component import FundusExampleGen
from components.numbered_pusher.component import NumberedPusher
from components.patch_gen.component import PatchGen
from components.transform.component import Transform
from models import constants, settings
from pipeline import configs, eval_config


def create_pipeline(
    pipeline_name: str,
    pipeline_root: str,
    data_paths: Sequence[str],
    profile: configs.Profile,
    serving_dir: str,
    eval_count: int = constants.DEFAULT_EVAL_COUNT,
    split_seed: int = 0,
    input_fingerprint: Optional[str] = None,
    beam_pipeline_args: Sequence[str] = (),
    component_beam_args: Mapping[str, Sequence[str]] = (),
    trainer_resources=None,
    metadata_connection_config: Optional[metadata_store_pb2.ConnectionConfig] = None,
    enable_cache: bool = True,
    base_model: Optional[str] = None,
) -> tfx.dsl.Pipeline:
  """ExampleGen -> statistics -> validation against the curated schema -> DataGate -> Transform
  -> PatchGen -> Trainer -> Evaluator (on the test split, against the latest blessed model) ->
  Pusher (to `serving_dir`, only when blessed).

  `base_model`: the Trainer starts from this model's weights (TFX's base_model, so ML-Metadata
  records it as the new model's parent): configs.LATEST_BLESSED, the latest blessed model, the one
  the Evaluator compares with (none before the first blessing: the Trainer trains from scratch);
  or a model folder (<folder>/Format-Serving/saved_model.pb, see cli/run.stage_base_model), which
  an Importer registers and the Evaluator then takes as the baseline instead of the latest blessed
  model. Transform gets the same channel and keeps that model's transform statistics.

  `beam_pipeline_args` apply to every Beam component; `component_beam_args` (component id -> args,
  see configs.component_beam_args) are added to the named ones. `trainer_resources` is a KFP
  ResourceSpec for the Trainer task (e.g. a GPU); runners without placement ignore it."""
  example_gen = FundusExampleGen(input_paths=data_paths, eval_count=eval_count,
                                split_seed=split_seed, input_fingerprint=input_fingerprint
                                ).with_id(configs.EXAMPLE_GEN)
  statistics_gen = tfx.components.StatisticsGen(
      examples=example_gen.outputs['examples']).with_id(configs.STATISTICS_GEN)
  schema_importer = tfx.components.ImportSchemaGen(
      schema_file=schemas.SCHEMA_FILE).with_id(configs.SCHEMA_IMPORTER)
  example_validator = tfx.components.ExampleValidator(
      statistics=statistics_gen.outputs['statistics'], schema=schema_importer.outputs['schema']
  ).with_id(configs.EXAMPLE_VALIDATOR)
  data_gate = DataGate(anomalies=example_validator.outputs['anomalies'],
                       schema=schema_importer.outputs['schema']).with_id(configs.DATA_GATE)
  latest_blessed_model = tfx.dsl.Resolver(
      strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
      model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
      model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
  ).with_id(configs.BASELINE_RESOLVER)
  importers, base_model_channel = [], None
  if base_model == configs.LATEST_BLESSED:
    base_model_channel = latest_blessed_model.outputs['model']
  elif base_model:
    importers = [tfx.dsl.Importer(source_uri=base_model,
                                  artifact_type=tfx.types.standard_artifacts.Model
                                  ).with_id(configs.BASE_MODEL_IMPORTER)]
    base_model_channel = importers[0].outputs['result']
  transform = Transform(
      examples=example_gen.outputs['examples'],
      schema=data_gate.outputs['validated_schema'],
      preprocessing_fn=configs.PREPROCESSING_FN,
      custom_config=dataclasses.asdict(profile.preprocessing),
      base_model=base_model_channel,
      splits_config=tfx.proto.SplitsConfig(analyze=[constants.TRAIN_SPLIT],
                                           transform=list(constants.SPLITS)),
      # TFDV statistics over 330k-value pixel lists per image cost minutes and tell nothing.
      disable_statistics=True).with_id(configs.TRANSFORM)
  patch_gen = PatchGen(transformed_examples=transform.outputs['transformed_examples'],
                       patches_per_image=profile.patches.per_image,
                       patch_size=profile.patches.size, seed=profile.patches.seed
                       ).with_id(configs.PATCH_GEN)
  trainer = tfx.components.Trainer(
      run_fn=configs.RUN_FN,
      examples=patch_gen.outputs['patches'],
      transform_graph=transform.outputs['transform_graph'],
      base_model=base_model_channel,
      custom_config=settings.trainer_custom_config(profile.training, profile.export,
                                                   warm_start=base_model is not None)
  ).with_id(configs.TRAINER)
  evaluator = tfx.components.Evaluator(
      examples=example_gen.outputs['examples'],
      model=trainer.outputs['model'],
      # A fine-tuned model answers to the model it was tuned from, on every dataset's slice.
      baseline_model=base_model_channel if importers else latest_blessed_model.outputs['model'],
      eval_config=eval_config.eval_config(profile.min_auc, profile.max_auc_drop),
      example_splits=[constants.TEST_SPLIT],
      module_path=configs.EVALUATOR_MODULE).with_id(configs.EVALUATOR)
  pusher = NumberedPusher(
      model=trainer.outputs['model'],
      model_blessing=evaluator.outputs['blessing'],
      push_destination=tfx.proto.PushDestination(
          filesystem=tfx.proto.PushDestination.Filesystem(base_directory=serving_dir)),
  ).with_id(configs.PUSHER)
  components: List[tfx.dsl.components.base.base_node.BaseNode] = [
      example_gen, statistics_gen, schema_importer, example_validator, data_gate, transform,
      patch_gen, *importers, trainer, latest_blessed_model, evaluator, pusher]
  by_id = {component.id: component for component in components}
  for component_id, args in dict(component_beam_args).items():
    if not hasattr(by_id.get(component_id), 'with_beam_pipeline_args'):
      raise ValueError(f'{component_id!r} is not a Beam component of this pipeline')
    by_id[component_id].with_beam_pipeline_args(list(args))
  if trainer_resources is not None:
    trainer.with_platform_config(trainer_resources)
  return tfx.dsl.Pipeline(
      pipeline_name=pipeline_name,
      pipeline_root=pipeline_root,
      components=components,
      enable_cache=enable_cache,
      metadata_connection_config=metadata_connection_config,
      beam_pipeline_args=list(beam_pipeline_args),
  )
