"""Warm start (`run --base-model`): the Trainer starts from an exported model's weights, refuses one
that does not fit, keeps a resumed training's own state; the pipeline hands it TFX's base_model and
Transform the base's recorded transform statistics, and status and the report show each model's
parent."""
import dataclasses
import json
import logging
import os
import re
import types

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
from ml_metadata import metadata_store
from tfx.dsl.compiler import compiler
from tfx.utils import path_utils

from cli import history, predict, report, run, status
from cli.main import main, parse_args
from conftest import PIPELINE_ARGS, release_decision, split_records, write_patches
from models import model as model_lib
from models import resume, serving, settings, training, transform, warm_start
from pipeline import configs, local_runner
from pipeline.pipeline import create_pipeline

# A model small enough to train in seconds on 8x8 patches; the base differs only in its dropout,
# which has no weights.
_TINY_MODEL = settings.ModelConfig(base_filters=4, depth=1, dropout=0.0)
_TINY = dict(batch_size=4, epochs=1, steps_per_epoch=1, validation_steps=2, model=_TINY_MODEL)
_STATISTICS = {transform.REFERENCE_FOV_WIDTH_KEY: 919.0, transform.FOV_GRAY_MEAN_KEY: 102.1,
               transform.FOV_GRAY_STD_KEY: 32.9}


def _export_base(serving_dir, model_config, version=1):
  """A base model as the Pusher leaves it, <serving_dir>/<version>/: a SavedModel of a model whose
  weights (moving statistics included) are far from any initialisation; returns them by name."""
  model = model_lib.build_model(model_config)
  rng = np.random.default_rng(version)
  model.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(np.float32) for w in model.weights])
  path = str(serving_dir / str(version))
  model.save(path, save_format='tf')
  serving.write_model_config(path, model_config)
  return {w.name.split(':')[0]: w.numpy() for w in model.weights}


def _patches(tmp_path):
  write_patches(tmp_path / 'train.gz', 40, 8)
  write_patches(tmp_path / 'eval.gz', 12, 8)
  return [str(tmp_path / 'train.gz')], [str(tmp_path / 'eval.gz')]


def _trainable(model):
  return {w.name.split(':')[0]: w.numpy() for w in model.trainable_weights}


@pytest.mark.slow
def test_a_warm_start_begins_with_the_base_models_weights(tmp_path):
  base = _export_base(tmp_path / 'serving', dataclasses.replace(_TINY_MODEL, dropout=0.1))
  config = settings.TrainingConfig(**_TINY, learning_rate=1e-6)
  # TFX hands the Trainer <artifact>/Format-Serving, where `run --base-model PATH` stages the model.
  imported = path_utils.serving_model_dir(run.stage_base_model(str(tmp_path / 'serving' / '1'),
                                                               str(tmp_path / 'root')))
  model, summary = training.train(config, *_patches(tmp_path), str(tmp_path / 'run'),
                                  base_model=imported)
  assert summary['base_model'] == imported
  # One step at a learning rate of 1e-6 moves no weight by more than ~1e-6 (Adam's first step).
  trained = _trainable(model)
  assert set(trained) < set(base)
  for name, value in trained.items():
    np.testing.assert_allclose(value, base[name], atol=1e-5, err_msg=name)
  # Where a training from scratch (same seed) starts is far from there.
  keras.utils.set_random_seed(config.seed)
  fresh = _trainable(model_lib.build_model(config.model))
  assert max(np.abs(value - base[name]).max() for name, value in fresh.items()) > 0.3


@pytest.mark.slow
def test_a_base_model_of_another_architecture_is_a_clear_error(tmp_path):
  _export_base(tmp_path / 'serving', dataclasses.replace(_TINY_MODEL, base_filters=8), version=1)
  config = settings.TrainingConfig(**_TINY)
  wider = str(tmp_path / 'serving' / '1')
  with pytest.raises(warm_start.BaseModelMismatchError) as error:
    training.train(config, *_patches(tmp_path), str(tmp_path / 'run'), base_model=wider)
  parameters = lambda **changes: model_lib.build_model(
      dataclasses.replace(_TINY_MODEL, **changes)).count_params()
  assert str(error.value) == (
      f'base model {wider} (unet, base_filters 8, depth 1: {parameters(base_filters=8):,} '
      'parameters) does not fit the model this training builds (unet, base_filters 4, depth 1: '
      f'{parameters():,} parameters): down0_conv0/kernel is 3x3x1x8 there, 3x3x1x4 here; '
      'down0_bn0/gamma is 8 there, 4 here; down0_bn0/beta is 8 there, 4 here (and 36 more)')
  # A model exported before its settings were recorded is told by its weights alone.
  _export_base(tmp_path / 'serving', _TINY_MODEL, version=2)
  shallower = str(tmp_path / 'serving' / '2')
  os.remove(os.path.join(shallower, serving.MODEL_CONFIG_FILE))
  deeper = dataclasses.replace(config, model=dataclasses.replace(_TINY_MODEL, depth=2))
  with pytest.raises(warm_start.BaseModelMismatchError,
                     match=rf' \(settings not recorded: {parameters():,} parameters\) does not '
                           r'fit the model this training builds \(unet, base_filters 4, depth 2: '
                           rf'{parameters(depth=2):,} parameters\): no down1_conv0/kernel there; '):
    training.train(deeper, *_patches(tmp_path), str(tmp_path / 'run'), base_model=shallower)
  with pytest.raises(ValueError, match='no SavedModel there'):
    warm_start.saved_model_dir(str(tmp_path / 'nothing' / 'Format-Serving'))


@pytest.mark.slow
def test_a_resumed_warm_start_keeps_its_own_state(tmp_path):
  base = _export_base(tmp_path / 'serving', _TINY_MODEL)
  base_model = str(tmp_path / 'serving' / '1')
  inputs = _patches(tmp_path)
  config = settings.TrainingConfig(**{**_TINY, 'steps_per_epoch': 5, 'learning_rate': 0.05})
  custom_config = settings.trainer_custom_config(config, settings.ExportConfig(), warm_start=True)
  fingerprint = resume.training_fingerprint(custom_config, *inputs, base_model)
  # An epoch at a high learning rate. train() leaves its resume state behind as a killed training
  # does (run_fn removes it after the export).
  first, _ = training.train(config, *inputs, str(tmp_path / 'run' / '7'), fingerprint,
                            base_model=base_model)
  state_weights = _trainable(first)
  assert max(np.abs(v - base[name]).max() for name, v in state_weights.items()) > 0.01
  # Only a rerun from the same base takes it over.
  for other_base in (None, str(tmp_path / 'serving' / '2')):
    assert resume.find_resumable([str(tmp_path / 'run' / '7')], resume.training_fingerprint(
        custom_config, *inputs, other_base)) is None
  resume_from = resume.find_resumable([str(tmp_path / 'run' / '7')], fingerprint)
  assert resume_from == str(tmp_path / 'run' / '7')
  # Resumed with a zero learning rate, the weights stay what training resumed from: the killed
  # run's, not the base's.
  resumed_config = dataclasses.replace(config, epochs=2, learning_rate=0.0)
  resumed, summary = training.train(resumed_config, *inputs, str(tmp_path / 'run' / '8'),
                                    fingerprint, resume_from=resume_from, base_model=base_model)
  assert summary['epochs_trained'] == [2]
  for name, value in _trainable(resumed).items():
    np.testing.assert_array_equal(value, state_weights[name], err_msg=name)


def test_latest_blessed_without_a_blessed_model_trains_from_scratch_and_says_so(monkeypatch,
                                                                                 caplog):
  handed = {}

  class Stop(Exception):
    """What the Trainer does after its start is not this test's."""

  def train(*args, base_model=None, **kwargs):
    handed['base_model'] = base_model
    raise Stop

  monkeypatch.setattr(training, 'train', train)
  custom_config = settings.trainer_custom_config(settings.TrainingConfig(),
                                                 settings.ExportConfig(), warm_start=True)
  fn_args = types.SimpleNamespace(custom_config=custom_config, base_model=None, train_files=['t'],
                                  eval_files=['e'], model_run_dir='/root/Trainer/model_run/3')
  with caplog.at_level(logging.INFO, logger='absl'), pytest.raises(Stop):
    training.run_fn(fn_args)
  assert handed == {'base_model': None}
  assert [r.getMessage() for r in caplog.records if 'base model' in r.getMessage()] == [
      'Trainer: base model: none blessed yet; training starts from scratch']


def test_the_pipeline_s_transform_keeps_base_statistics_when_given():
  def transform_config(**kwargs):
    definition = create_pipeline(configs.PIPELINE_NAME, '/tmp/root', ['/tmp/DRIVE'],
                                 configs.PROFILES['smoke'], '/tmp/serving', **kwargs)
    [transform_node] = [n.pipeline_node for n in compiler.Compiler().compile(definition).nodes
                        if n.pipeline_node.node_info.id == configs.TRANSFORM]
    return json.loads(
        transform_node.parameters.parameters['custom_config'].field_value.string_value)
  assert settings.BASE_STATISTICS_KEY not in transform_config()
  assert settings.BASE_STATISTICS_KEY not in transform_config(base_model=configs.LATEST_BLESSED)
  config = transform_config(base_model='/models/3', base_statistics=_STATISTICS)
  assert config[settings.BASE_STATISTICS_KEY] == _STATISTICS
  assert settings.PreprocessingConfig.from_custom_config(config) == settings.PreprocessingConfig()


def _trainer_and_importer(base_model):
  """The compiled pipeline (the IR the runners run): the Trainer's base_model channel and the
  Importer node, if any."""
  definition = create_pipeline(configs.PIPELINE_NAME, '/tmp/root', ['/tmp/DRIVE'],
                               configs.PROFILES['smoke'], '/tmp/serving', base_model=base_model)
  nodes = {n.pipeline_node.node_info.id: n.pipeline_node
           for n in compiler.Compiler().compile(definition).nodes}
  trainer = nodes[configs.TRAINER]
  custom_config = json.loads(
      trainer.parameters.parameters['custom_config'].field_value.string_value)
  inputs = trainer.inputs.inputs
  channels = list(inputs['base_model'].channels) if 'base_model' in inputs else []
  [baseline] = nodes[configs.EVALUATOR].inputs.inputs['baseline_model'].channels
  return (channels, nodes.get(configs.BASE_MODEL_IMPORTER), custom_config[settings.WARM_START_KEY],
          baseline.producer_node_query.id)


def test_the_pipeline_hands_the_trainer_its_base_model_and_the_evaluator_its_baseline():
  channels, importer, warm, baseline = _trainer_and_importer(None)
  assert channels == [] and importer is None and not warm
  assert baseline == configs.BASELINE_RESOLVER
  # The resolver the Evaluator's baseline comes from; optional, so a first run trains from scratch.
  channels, importer, warm, baseline = _trainer_and_importer(configs.LATEST_BLESSED)
  assert [(c.producer_node_query.id, c.output_key) for c in channels] == [
      (configs.BASELINE_RESOLVER, 'model')] and importer is None and warm
  assert baseline == configs.BASELINE_RESOLVER
  # An imported model is the baseline too: a fine-tuned model answers to the one it came from.
  channels, importer, warm, baseline = _trainer_and_importer('/models/serving/3')
  assert [(c.producer_node_query.id, c.output_key) for c in channels] == [
      (configs.BASE_MODEL_IMPORTER, 'result')] and warm
  assert baseline == configs.BASE_MODEL_IMPORTER
  parameters = importer.parameters.parameters
  assert parameters['artifact_uri'].field_value.string_value == '/models/serving/3'
  assert importer.outputs.outputs['result'].artifact_spec.type.name == 'Model'


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
  assert handed['base_model'] == second and handed['base_statistics'] == _STATISTICS
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


def test_the_warm_start_reads_an_exported_model_s_own_weights(demo_run):
  """Those of the best epoch (the smoke profile keeps no weight average). A run fine-tuned from a
  pushed model, with its parent as the gate's baseline: test_release_gate.py."""
  store = history.open_store(str(demo_run))
  [first] = history.decisions(store)
  exported = model_lib.build_model(configs.PROFILES['smoke'].training.model)
  exported.load_weights(os.path.join(history.latest_output(store, configs.TRAINER, 'model_run'),
                                     'checkpoints', training.BEST_WEIGHTS_FILE))
  weights = warm_start.base_weights(path_utils.serving_model_path(first.model_uri))
  assert list(weights) == [w.name.split(':')[0] for w in exported.weights]
  for weight in exported.weights:
    np.testing.assert_array_equal(weights[weight.name.split(':')[0]], weight.numpy())
