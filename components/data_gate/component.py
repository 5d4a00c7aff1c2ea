"""DataGate: stops the pipeline when ExampleValidator found anomalies.

TFX 1.16's ExampleValidator records anomalies but lets the run go on. DataGate re-emits the schema only
when every split is clean, and Transform takes its schema from DataGate, so in any orchestrator no
training stage can start on data that broke the contract.
"""
from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import component_spec, standard_artifacts

from components.data_gate import executor

ANOMALIES_KEY = 'anomalies'
SCHEMA_KEY = 'schema'
VALIDATED_SCHEMA_KEY = 'validated_schema'


class DataGateSpec(types.ComponentSpec):
  PARAMETERS = {}
  INPUTS = {
      ANOMALIES_KEY: component_spec.ChannelParameter(type=standard_artifacts.ExampleAnomalies),
      SCHEMA_KEY: component_spec.ChannelParameter(type=standard_artifacts.Schema),
  }
  OUTPUTS = {VALIDATED_SCHEMA_KEY: component_spec.ChannelParameter(type=standard_artifacts.Schema)}


class DataGate(base_component.BaseComponent):
  SPEC_CLASS = DataGateSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

  def __init__(self, anomalies: types.BaseChannel, schema: types.BaseChannel):
    super().__init__(spec=DataGateSpec(
        anomalies=anomalies, schema=schema,
        validated_schema=types.Channel(type=standard_artifacts.Schema)))
