"""The pipeline and the command line around a base model (`run --base-model`): the Trainer gets
TFX's base_model and the Evaluator its baseline, Transform keeps the base's recorded transform
statistics, `--dataset-share` gives a new camera its share, and status and the report show each
model's parent (the Trainer's warm start itself: test_warm_start.py)."""
import dataclasses
import json
import logging
import os
import re

import pytest
import tensorflow as tf
from ml_metadata import metadata_store
from tfx.components.transform import executor as tfx_transform
from tfx.dsl.compiler import compiler
from tfx.types import standard_artifacts
from tfx.utils import path_utils

from cli import history, predict, report, run, status
from cli.main import main, parse_args
from components.transform import executor as transform_executor
from conftest import PIPELINE_ARGS, release_decision, split_records
from models import serving, settings, transform
from pipeline import configs, local_runner
from pipeline.pipeline import create_pipeline

_STATISTICS = {transform.REFERENCE_FOV_WIDTH_KEY: 919.0, transform.FOV_GRAY_MEAN_KEY: 102.1,
               transform.FOV_GRAY_STD_KEY: 32.9}


def _base_model_wiring(base_model):
  """The compiled pipeline (the IR the runners run): the Trainer's base_model channels, the Importer
  node if any, the Trainer's warm-start flag, the Evaluator's baseline's producer and Transform's
  base_model channels."""
  definition = create_pipeline(configs.PIPELINE_NAME, '/tmp/root', ['/tmp/DRIVE'],
                               configs.PROFILES['smoke'], '/tmp/serving', base_model=base_model)
  nodes = {n.pipeline_node.node_info.id: n.pipeline_node
           for n in compiler.Compiler().compile(definition).nodes}

  def base_model_channels(node_id):
    inputs = nodes[node_id].inputs.inputs
    return [(c.producer_node_query.id, c.output_key)
            for c in (inputs['base_model'].channels if 'base_model' in inputs else [])]
  custom_config = json.loads(
      nodes[configs.TRAINER].parameters.parameters['custom_config'].field_value.string_value)
  [baseline] = nodes[configs.EVALUATOR].inputs.inputs['baseline_model'].channels
  return (base_model_channels(configs.TRAINER), nodes.get(configs.BASE_MODEL_IMPORTER),
          custom_config[settings.WARM_START_KEY], baseline.producer_node_query.id,
          base_model_channels(configs.TRANSFORM))


def test_trainer_and_transform_get_the_base_model_and_the_evaluator_its_baseline():
  channels, importer, warm, baseline, transform_channels = _base_model_wiring(None)
  assert channels == transform_channels == [] and importer is None and not warm
  assert baseline == configs.BASELINE_RESOLVER
  # The resolver the Evaluator's baseline comes from; optional, so a first run trains from scratch.
  channels, importer, warm, baseline, transform_channels = _base_model_wiring(
      configs.LATEST_BLESSED)
  assert channels == transform_channels == [(configs.BASELINE_RESOLVER, 'model')]
  assert importer is None and warm and baseline == configs.BASELINE_RESOLVER
  # An imported model is the baseline too: a fine-tuned model answers to the one it came from.
  channels, importer, warm, baseline, transform_channels = _base_model_wiring('/models/serving/3')
  assert channels == transform_channels == [(configs.BASE_MODEL_IMPORTER, 'result')] and warm
  assert baseline == configs.BASE_MODEL_IMPORTER
  parameters = importer.parameters.parameters
  assert parameters['artifact_uri'].field_value.string_value == '/models/serving/3'
  assert importer.outputs.outputs['result'].artifact_spec.type.name == 'Model'


def test_transform_keeps_the_transform_statistics_its_base_model_recorded(tmp_path, monkeypatch,
                                                                          caplog):
  """Read when Transform runs, from the model its base_model channel resolved to (on Kubeflow the
  latest blessed model is known only then), and handed to preprocessing_fn in its custom config."""
  handed = []
  monkeypatch.setattr(tfx_transform.Executor, 'Do', lambda self, inputs, outputs, properties:
                      handed.append(json.loads(properties['custom_config'])))
  config = dataclasses.asdict(settings.PreprocessingConfig())

  def run_with(*base_model):
    handed.clear()
    transform_executor.Executor().Do({transform_executor.BASE_MODEL_KEY: list(base_model)}, {},
                                     {'custom_config': json.dumps(config)})
    return handed[0]

  def model(name, statistics=None):
    artifact = standard_artifacts.Model()
    artifact.uri = str(tmp_path / name)
    saved_model = path_utils.serving_model_dir(artifact.uri)
    os.makedirs(os.path.join(saved_model, 'assets.extra'))
    if statistics is not None:
      with open(os.path.join(saved_model, serving.TRANSFORM_STATISTICS_FILE), 'w') as f:
        f.write(statistics)
    return artifact, os.path.join(saved_model, serving.TRANSFORM_STATISTICS_FILE)

  recorded, _ = model('recorded', json.dumps(_STATISTICS))
  assert run_with(recorded) == {**config, settings.BASE_STATISTICS_KEY: _STATISTICS}
  # No model blessed yet, or one exported before the statistics were recorded: analysed afresh.
  assert run_with() == config
  older, _ = model('older')
  with caplog.at_level(logging.WARNING, logger='absl'):
    assert run_with(older) == config
  assert 'recorded no transform statistics; analysing the training images' in caplog.text
  broken, path = model('broken', json.dumps(_STATISTICS)[:30])
  with pytest.raises(ValueError, match=re.escape(
      f'{path}: not the transform statistics an export writes (JSONDecodeError(')):
    run_with(broken)


def test_the_command_line_takes_a_base_model_and_fine_tunes_by_default(tmp_path, monkeypatch,
                                                                        capsys):
  args = parse_args(['run', '--data', 'D', '--base-model', configs.LATEST_BLESSED])
  assert (args.base_model, args.profile) == (configs.LATEST_BLESSED, configs.FINETUNE_PROFILE)
  assert run.base_model_of(args, str(tmp_path / 'root')) == configs.LATEST_BLESSED
  assert parse_args(['run', '--data', 'D', '--base-model', 'M', '--profile', 'drive']
                    ).profile == 'drive'
  assert parse_args(['run', '--data', 'D']).profile == configs.DEFAULT_PROFILE
  assert parse_args(['benchmark', '--data', 'D', '--output', 'O']).profile == 'drive'
  finetune = configs.PROFILES[configs.FINETUNE_PROFILE].training
  assert finetune.learning_rate < min(configs.PROFILES[p].training.learning_rate
                                      for p in ('demo', 'drive'))
  assert finetune.epochs * finetune.steps_per_epoch < min(
      configs.PROFILES[p].training.epochs * configs.PROFILES[p].training.steps_per_epoch
      for p in ('demo', 'drive'))
  # A serving folder: its highest version (numerically); a SavedModel folder: itself. Either is
  # staged as a Trainer's model (<folder>/Format-Serving), named by its content.
  for version in (1, 2, 10):
    (tmp_path / 'serving' / str(version) / 'variables').mkdir(parents=True)
    (tmp_path / 'serving' / str(version) / 'saved_model.pb').write_text(f'model {version}')
  # Version 2 recorded its transform statistics (models/serving.py's export), 10 did not.
  (tmp_path / 'serving' / '2' / serving.TRANSFORM_STATISTICS_FILE).parent.mkdir()
  (tmp_path / 'serving' / '2' / serving.TRANSFORM_STATISTICS_FILE).write_text(
      json.dumps(_STATISTICS))
  root = str(tmp_path / 'root')
  args = parse_args(['run', '--data', 'D', '--base-model', str(tmp_path / 'serving')])
  staged = run.base_model_of(args, root)
  assert os.path.dirname(staged) == os.path.join(root, configs.BASE_MODEL_DIR)
  assert sorted(os.listdir(path_utils.serving_model_dir(staged))) == ['saved_model.pb', 'variables']
  assert run.base_statistics_of(staged, root) is None
  assert open(os.path.join(path_utils.serving_model_dir(staged), 'saved_model.pb')).read() == (
      'model 10')
  args.base_model = str(tmp_path / 'serving' / '10')
  assert run.base_model_of(args, root) == staged
  args.base_model = str(tmp_path / 'serving' / '2')
  second = run.base_model_of(args, root)
  assert second != staged and sorted(os.listdir(os.path.dirname(staged))) == sorted(
      os.path.basename(p) for p in (staged, second))
  shipped = run.base_model_of(parse_args(['run', '--data', 'D', '--base-model', configs.SHIPPED]),
                              root)
  assert sorted(os.listdir(path_utils.serving_model_dir(shipped))) == sorted(
      os.listdir(predict.resolve_saved_model(configs.SHIPPED_MODEL_DIR)))
  handed = {}
  monkeypatch.setattr(local_runner, 'run', lambda *args, **kwargs: handed.update(kwargs) or
                      metadata_store.MetadataStore(local_runner.connection_config(root)))
  assert run.run_pipeline(args, root, str(tmp_path / 'serving')) == []
  assert handed['base_model'] == second   # whose statistics Transform reads when it runs
  printed = capsys.readouterr().out
  assert f'  base model: {args.base_model} (imported as {second})\n' in printed
  assert ("  transform statistics: the base model's: FOV width 919 px, FOV gray mean 102.1, "
          'std 32.9\n') in printed
  # Anything else stops the run before it starts.
  assert main(['run', '--data', str(tmp_path), '--pipeline-root', str(tmp_path / 'root'),
               '--base-model', str(tmp_path / 'nothing')]) == 1
  assert (f'{tmp_path / "nothing"}: neither a SavedModel nor a serving folder'
          in capsys.readouterr().err)
  # A base whose statistics file is broken (cut short) is named in one line, nothing run.
  broken = tmp_path / 'serving' / '2' / serving.TRANSFORM_STATISTICS_FILE
  broken.write_text(json.dumps(_STATISTICS)[:30])
  assert main(['run', '--data', str(tmp_path), '--pipeline-root', str(tmp_path / 'root'),
               '--base-model', str(tmp_path / 'serving' / '2')]) == 1
  out, err = capsys.readouterr()
  [imported] = re.findall(r'\(imported as (\S+)\)', out)   # the staged copy, which is read
  [line] = err.splitlines()
  statistics_file = os.path.join(path_utils.serving_model_dir(imported),
                                 serving.TRANSFORM_STATISTICS_FILE)
  assert line.startswith(f'retina-tfx: error: {statistics_file}: not the transform statistics an '
                         'export writes (JSONDecodeError('), line


def test_the_command_line_gives_a_dataset_a_share_of_the_training_stream(capsys):
  """A new camera fine-tuned with the old datasets listed too gets more than an equal share; the
  share travels in the Trainer's custom config (the Trainer checks it against the datasets)."""
  args = parse_args(['run', '--data', 'D', '--base-model', 'M', '--dataset-share', 'CHASE_DB1=0.5'])
  training = run.profile_of(args).training
  assert training.dataset_shares == (('CHASE_DB1', 0.5),)
  assert dataclasses.replace(training, dataset_shares=()) == (
      configs.PROFILES[configs.FINETUNE_PROFILE].training)
  custom_config = json.loads(json.dumps(settings.trainer_custom_config(
      training, configs.PROFILES[configs.FINETUNE_PROFILE].export)))
  assert settings.from_trainer_custom_config(custom_config)[0] == training
  assert run.profile_of(parse_args(['run', '--data', 'D'])).training.dataset_shares == ()
  for bad, message in ((['CHASE_DB1'], 'expected NAME=SHARE'), (['CHASE_DB1=1.5'], 'expected NAME'),
                       (['CHASE_DB1=half'], 'expected NAME'),
                       (['A=0.2', 'A=0.3'], 'a dataset named twice'),
                       (['A=0.6', 'B=0.6'], 'add up to more than 1')):
    with pytest.raises(SystemExit):
      parse_args(['run', '--data', 'D', *(f'--dataset-share={share}' for share in bad)])
    assert message in capsys.readouterr().err


def test_a_share_for_a_dataset_the_data_does_not_hold_stops_the_run_before_the_pipeline(
    tiny_drive, tmp_path, capsys):
  root = tmp_path / 'root'
  for shares, message in ((['CHASE_DB1=0.5'], 'name CHASE_DB1, not among the datasets (DRIVE)'),
                          (['DRIVE=0.5'], 'leave a share to every dataset not named')):
    argv = ['run', '--data', str(tiny_drive), '--pipeline-root', str(root), *PIPELINE_ARGS,
            *(f'--dataset-share={share}' for share in shares)]
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert err.startswith('retina-tfx: error: --dataset-share: dataset shares ') and message in err
    assert 'running pipeline' not in out and not os.path.exists(configs.metadata_path(str(root)))


def test_status_and_report_show_each_models_parent():
  scratch = release_decision(model_id=9)
  tuned = release_decision(model_id=12, parent_model_id=9, parent_model_uri='/root/Trainer/model/9',
                    baseline_model_id=9, pushed_version='2')
  table = status.format_table([scratch, tuned])
  header = table.splitlines()[0].split()
  assert header[:4] == ['run', 'model', 'vs', 'parent']
  assert [line.split()[1:4] for line in table.splitlines()[2:4]] == [['9', '-', '-'],
                                                                      ['12', '9', '9']]
  assert 'trained from scratch (no base model)' in report._decision_html(scratch)
  assert ('trained from the weights of base model 9 (<code>/root/Trainer/model/9</code>)'
          in report._decision_html(tuned))


def test_an_export_records_its_transform_statistics_and_latest_blessed_hands_them_on(demo_run):
  store = history.open_store(str(demo_run))
  split = os.path.join(history.latest_output(store, configs.TRANSFORM, 'transformed_examples'),
                       'Split-train')
  features = tf.train.Example.FromString(split_records(split)[0]).features.feature
  transformed = {key: features[key].float_list.value[0] for key in transform.STATISTICS_KEYS}
  [first] = history.decisions(store)
  recorded = serving.read_transform_statistics(path_utils.serving_model_path(first.model_uri))
  assert recorded == pytest.approx(transformed, rel=1e-6)
  assert run.base_statistics_of(configs.LATEST_BLESSED, str(demo_run)) == recorded
  # Before any model is blessed there is no base model, and nothing to keep.
  assert run.base_statistics_of(configs.LATEST_BLESSED, str(demo_run.parent / 'new')) is None
