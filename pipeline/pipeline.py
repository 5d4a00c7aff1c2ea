"""The pipeline definition, shared by every runner."""
import dataclasses
from typing import List, Optional, Sequence

from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

import schemas
from components.data_gate.component import DataGate
from components.drive_example_gen.component import DriveExampleGen
from components.patch_gen.component import PatchGen
from models import constants
from pipeline.configs import Profile


def create_pipeline(
    pipeline_name: str,
    pipeline_root: str,
    data_paths: Sequence[str],
    profile: Profile,
    eval_count: int = constants.DEFAULT_EVAL_COUNT,
    split_seed: int = 0,
    input_fingerprint: Optional[str] = None,
    beam_pipeline_args: Sequence[str] = (),
    metadata_connection_config: Optional[metadata_store_pb2.ConnectionConfig] = None,
    enable_cache: bool = True,
) -> tfx.dsl.Pipeline:
  """ExampleGen -> statistics -> validation against the curated schema -> DataGate -> Transform
  -> PatchGen -> Trainer."""
  example_gen = DriveExampleGen(input_paths=data_paths, eval_count=eval_count,
                                split_seed=split_seed, input_fingerprint=input_fingerprint)
  statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs['examples'])
  schema_importer = tfx.components.ImportSchemaGen(schema_file=schemas.SCHEMA_FILE)
  example_validator = tfx.components.ExampleValidator(
      statistics=statistics_gen.outputs['statistics'], schema=schema_importer.outputs['schema'])
  data_gate = DataGate(anomalies=example_validator.outputs['anomalies'],
                       schema=schema_importer.outputs['schema'])
  transform = tfx.components.Transform(
      examples=example_gen.outputs['examples'],
      schema=data_gate.outputs['validated_schema'],
      preprocessing_fn='models.preprocessing.preprocessing_fn',
      custom_config=dataclasses.asdict(profile.preprocessing),
      splits_config=tfx.proto.SplitsConfig(analyze=[constants.TRAIN_SPLIT],
                                           transform=list(constants.SPLITS)),
      # TFDV statistics over 330k-value pixel lists per image cost minutes and tell nothing.
      disable_statistics=True)
  patch_gen = PatchGen(transformed_examples=transform.outputs['transformed_examples'],
                       patches_per_image=profile.patches_per_image,
                       patch_size=profile.training.patch_size, seed=split_seed)
  trainer = tfx.components.Trainer(
      run_fn='models.training.run_fn',
      examples=patch_gen.outputs['patches'],
      transform_graph=transform.outputs['transform_graph'],
      custom_config=profile.training.to_custom_config())
  components: List[tfx.dsl.components.base.base_node.BaseNode] = [
      example_gen, statistics_gen, schema_importer, example_validator, data_gate, transform,
      patch_gen, trainer]
  return tfx.dsl.Pipeline(
      pipeline_name=pipeline_name,
      pipeline_root=pipeline_root,
      components=components,
      enable_cache=enable_cache,
      metadata_connection_config=metadata_connection_config,
      beam_pipeline_args=list(beam_pipeline_args),
  )
