"""`retina-tfx compile-kfp`: the pipeline compiled offline for Kubeflow Pipelines v2, validated by
parsing it into KFP's own protos."""
import json

import pytest
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from cli.main import main, parse_args
from models import settings
from pipeline import configs
from pipeline.pipeline import create_pipeline

IMAGE = 'europe-docker.pkg.dev/example/retina/retina-tfx:1.0'
ROOT = 'gs://example-bucket/retina-tfx/root'
DATA = 'gs://example-bucket/DRIVE'


def _compile(tmp_path, *extra):
  path = tmp_path / 'pipeline.json'
  code = main(['compile-kfp', '--image', IMAGE, '--pipeline-root', ROOT, '--data', DATA,
               '-o', str(path), *extra])
  return code, path


def _parse(path):
  """PipelineJob -> its PipelineSpec -> {task name: container spec or None} via KFP's protos."""
  job = json_format.Parse(path.read_text(), pipeline_spec_pb2.PipelineJob())
  spec = json_format.ParseDict(json_format.MessageToDict(job.pipeline_spec),
                               pipeline_spec_pb2.PipelineSpec())
  deployment = json_format.ParseDict(json_format.MessageToDict(spec.deployment_spec),
                                     pipeline_spec_pb2.PipelineDeploymentConfig())
  containers = {}
  for task_name, task in spec.root.dag.tasks.items():
    executor = deployment.executors[spec.components[task.component_ref.name].executor_label]
    containers[task_name] = executor.container if executor.HasField('container') else None
  return spec, containers


def test_every_task_runs_the_image_and_the_trainer_gets_its_gpu(tmp_path):
  code, path = _compile(tmp_path, '--gpu-type', 'NVIDIA_TESLA_T4', '--gpu-count', '2')
  assert code == 0
  spec, containers = _parse(path)
  assert spec.pipeline_info.name == configs.PIPELINE_NAME
  # One definition, two runners: the same components the local runner runs.
  local = create_pipeline(configs.PIPELINE_NAME, '/tmp/root', ['/tmp/DRIVE'],
                          configs.PROFILES['drive'], '/tmp/serving')
  component_ids = {c.id for c in local.components}
  assert {name for name, c in containers.items() if c is not None} == component_ids - {
      'latest_blessed_model_resolver'}
  for name, container in containers.items():
    if container is None:   # the resolver: a KFP resolver step, no container of ours
      assert name.startswith('latest_blessed_model_resolver')
      continue
    assert container.image == IMAGE, name
    assert list(container.command), name
    gpu = container.resources.accelerator
    assert (gpu.type, gpu.count) == (('NVIDIA_TESLA_T4', 2) if name == 'Trainer' else ('', 0)), name


def test_code_comes_from_the_image_as_function_paths(tmp_path):
  code, path = _compile(tmp_path)
  assert code == 0
  spec, _ = _parse(path)

  def parameters(task):
    return {name: value.runtime_value.constant_value.string_value
            for name, value in spec.root.dag.tasks[task].inputs.parameters.items()}

  assert parameters('Trainer')['run_fn'] == 'models.training.run_fn'
  assert parameters('Transform')['preprocessing_fn'] == 'models.transform.preprocessing_fn'
  assert 'module_file' not in parameters('Trainer') and 'module_file' not in parameters('Transform')
  assert list(tmp_path.iterdir()) == [path]   # nothing staged or uploaded beside the spec


@pytest.mark.parametrize('runner,extra,expected', [
    ('direct', [], '--direct_num_workers=2'),
    ('dataflow', ['--gcp-project', 'p', '--gcp-region', 'europe-west4', '--temp-location',
                  'gs://example-bucket/tmp'], '--runner=DataflowRunner'),
    ('flink', ['--flink-master', 'flink-jobmanager:8081'], '--runner=FlinkRunner'),
])
def test_beam_args_reach_exactly_the_beam_components(tmp_path, runner, extra, expected):
  code, path = _compile(tmp_path, '--beam-runner', runner, *extra)
  assert code == 0
  _, containers = _parse(path)
  with_args = {name for name, c in containers.items() if c is not None and expected in c.args}
  assert with_args == set(configs.BEAM_COMPONENTS)
  if runner == 'dataflow':
    # Every stage streams: none needs a high-memory worker.
    assert not any('--machine_type' in arg for c in containers.values() if c is not None
                   for arg in c.args)
    assert f'--sdk_container_image={IMAGE}' in containers['PatchGen'].args


def test_incomplete_cluster_settings_are_refused(tmp_path, capsys):
  code, path = _compile(tmp_path, '--beam-runner', 'dataflow', '--gcp-project', 'p')
  assert code == 1 and not path.exists()
  assert 'the Dataflow runner needs region, temp_location' in capsys.readouterr().err


def _base_model_sources(spec):
  """{task: the task its base_model input comes from} for the tasks that take one."""
  return {name: task.inputs.artifacts['base_model'].task_output_artifact.producer_task
          for name, task in spec.root.dag.tasks.items() if 'base_model' in task.inputs.artifacts}


def test_a_kubeflow_run_fine_tunes_from_the_latest_blessed_model_or_an_imported_one(tmp_path):
  """Trainer and Transform (which reads the model's transform statistics when it runs) take the
  same base model; the profile is then the fine-tuning one, as for `run`."""
  code, path = _compile(tmp_path, '--base-model', configs.LATEST_BLESSED)
  assert code == 0
  spec, _ = _parse(path)
  resolver = _base_model_sources(spec)['Trainer']
  assert resolver.startswith(configs.BASELINE_RESOLVER)
  assert _base_model_sources(spec) == {'Trainer': resolver, 'Transform': resolver}
  trainer_config = spec.root.dag.tasks['Trainer'].inputs.parameters['custom_config']
  assert json.loads(trainer_config.runtime_value.constant_value.string_value)[
      settings.WARM_START_KEY]
  kfp = ['compile-kfp', '--image', IMAGE, '--pipeline-root', ROOT, '--data', DATA, '-o', 'F']
  assert parse_args([*kfp, '--base-model', configs.LATEST_BLESSED]).profile == (
      configs.FINETUNE_PROFILE)
  assert parse_args(kfp).profile == 'drive'
  uri = 'gs://example-bucket/retina-tfx/root/Trainer/model/12'
  code, path = _compile(tmp_path, '--base-model', uri)
  assert code == 0
  spec, _ = _parse(path)
  assert _base_model_sources(spec) == {'Trainer': configs.BASE_MODEL_IMPORTER,
                                       'Transform': configs.BASE_MODEL_IMPORTER}
  importer = spec.root.dag.tasks[configs.BASE_MODEL_IMPORTER]
  assert importer.inputs.parameters['artifact_uri'].runtime_value.constant_value.string_value == uri


@pytest.mark.parametrize('base_model, message', [
    (configs.SHIPPED, 'copy models/shipped_model/<version> to <URI>/Format-Serving'),
    ('/no/such/model', 'no model artifact there (a folder holding Format-Serving/saved_model.pb'),
])
def test_a_base_model_a_kubeflow_run_cannot_read_is_refused(tmp_path, capsys, base_model, message):
  code, path = _compile(tmp_path, '--base-model', base_model)
  assert code == 1 and not path.exists()
  assert message in capsys.readouterr().err
