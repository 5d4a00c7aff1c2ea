"""Warm start (`run --base-model`) in the Trainer: it starts from an exported model's weights,
refuses one that does not fit, keeps a resumed training's own state, and trains from scratch
when no model is blessed yet (the pipeline and the command line around it:
test_base_model_commands.py)."""
import dataclasses
import logging
import os
import types

import numpy as np
import pytest
import tf_keras as keras
from tfx.utils import path_utils

from cli import history, run
from conftest import write_patches
from models import model as model_lib
from models import resume, serving, settings, training, warm_start
from pipeline import configs

# A model small enough to train in seconds on 8x8 patches; the base differs only in its dropout,
# which has no weights.
_TINY_MODEL = settings.ModelConfig(base_filters=4, depth=1, dropout=0.0)
_TINY = dict(batch_size=4, epochs=1, steps_per_epoch=1, validation_steps=2, model=_TINY_MODEL)


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
