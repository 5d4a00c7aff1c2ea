"""The Trainer over PatchGen's files: batches (shapes, targets, augmentation only in training) and the
weights it exports (best epoch or weight average), and resuming an interrupted training."""
import dataclasses
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

import tf_keras as keras

from conftest import write_patches
from models import model as model_lib
from models import augmentation, patches, resume, settings, training


@pytest.mark.parametrize('size', [8, 12])
def test_batches_carry_image_and_label_with_fov_at_the_patches_own_size(size, tmp_path):
  write_patches(tmp_path / 'p.gz', 10, size)
  config = settings.TrainingConfig(batch_size=4)
  for is_training in (True, False):
    image, y_true = next(iter(augmentation.make_dataset([str(tmp_path / '*.gz')], config,
                                                        is_training)))
    assert image.shape == (4, size, size, 1) and y_true.shape == (4, size, size, 2)
    np.testing.assert_array_equal(y_true[..., 1], 1.0)
    # Augmentation keeps vessels the bright pixels (see test_model); validation is untouched.
    np.testing.assert_array_equal(image.numpy()[..., 0] > 0.5, y_true.numpy()[..., 0] > 0.5)
    if not is_training:
      np.testing.assert_allclose(np.unique(image.numpy()), [51 / 255, 204 / 255], atol=1e-6)


def test_empty_or_non_square_patch_files_are_a_clear_error(tmp_path):
  empty = tmp_path / 'empty.gz'
  write_patches(empty, 0, 8)
  with pytest.raises(ValueError, match='no patches in'):
    patches.patch_size([str(empty)])
  with tf.io.TFRecordWriter(str(tmp_path / 'odd.gz'), options='GZIP') as writer:
    maps = (np.zeros((4, 6), np.uint8) for _ in range(3))
    writer.write(patches.encode(b'21', b'DRIVE', 0, 0, *maps))
  with pytest.raises(ValueError, match='a patch of 24 pixels in .* is not square'):
    patches.patch_size([str(empty), str(tmp_path / 'odd.gz')])


def test_missing_patch_files_are_a_clear_error(tmp_path):
  with pytest.raises(ValueError, match='no patch files match'):
    augmentation.make_dataset([str(tmp_path / '*.gz')], settings.TrainingConfig(), True)


# A model small enough to train in seconds on 8x8 patches whose vessels are the bright pixels.
_TINY = dict(batch_size=4, epochs=3, steps_per_epoch=5, validation_steps=3,
             model=settings.ModelConfig(base_filters=4, depth=1))


def _train(tmp_path, **overrides):
  write_patches(tmp_path / 'train.gz', 40, 8)
  write_patches(tmp_path / 'eval.gz', 12, 8)
  config = settings.TrainingConfig(**{**_TINY, **overrides})
  model, summary = training.train(config, [str(tmp_path / 'train.gz')], [str(tmp_path / 'eval.gz')],
                                  str(tmp_path / 'run'))
  exported_auc = training.validation_auc(
      model, augmentation.make_dataset([str(tmp_path / 'eval.gz')], config, False),
      config.validation_steps)
  return model, summary, exported_auc


@pytest.mark.slow
def test_without_averaging_the_best_validation_epoch_is_exported(tmp_path):
  _, summary, exported_auc = _train(tmp_path)
  assert summary['exported'] == training.BEST_EPOCH
  assert list(summary['validation_auc']) == [training.BEST_EPOCH]
  assert exported_auc == pytest.approx(summary['validation_auc'][training.BEST_EPOCH], abs=1e-6)


@pytest.mark.slow
def test_with_averaging_the_better_of_best_epoch_and_average_is_exported(tmp_path):
  _, summary, exported_auc = _train(tmp_path, weight_average_momentum=0.9)
  candidates = summary['validation_auc']
  assert set(candidates) == {training.BEST_EPOCH, training.WEIGHT_AVERAGE}
  assert summary['exported'] == max(candidates, key=candidates.get)
  assert exported_auc == pytest.approx(max(candidates.values()), abs=1e-6)
  assert (tmp_path / 'run' / 'checkpoints' / 'average.weights.h5').exists()


def test_batch_norm_recalibration_moves_only_the_moving_statistics():
  model = model_lib.build_model(settings.ModelConfig(base_filters=4, depth=1))
  batch_norm = next(layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))
  trainable = [w.numpy() for w in model.trainable_weights]
  images = tf.fill([4, 8, 8, 1], 0.7)
  training.recalibrate_batch_norm(model, tf.data.Dataset.from_tensors((images, images)).repeat(), 30)
  # The first conv's input is constant 0.7, so its outputs' mean is no longer the initial zero.
  assert np.abs(batch_norm.moving_mean.numpy()).max() > 1e-3
  for before, after in zip(trainable, model.trainable_weights, strict=True):
    np.testing.assert_array_equal(before, after.numpy())


# Trains in a child process, stalls after STOP_AFTER epochs until the test kills it (SIGKILL: no
# clean-up runs, as when a machine or a container dies).
_STALLING_TRAINER = '''
import json, sys, time
from models import settings, training
config = settings.TrainingConfig.from_custom_config(json.loads(sys.argv[1]))
train_file, eval_file, model_run_dir, fingerprint, stop_after = sys.argv[2:]
logged = training.ProgressLog.on_epoch_end
def stall(self, epoch, logs=None):
  logged(self, epoch, logs)
  if epoch + 1 == int(stop_after):
    time.sleep(600)
training.ProgressLog.on_epoch_end = stall
training.train(config, [train_file], [eval_file], model_run_dir, fingerprint)
'''


@pytest.mark.slow
def test_a_killed_training_resumes_after_its_last_epoch_with_the_same_settings(tmp_path):
  write_patches(tmp_path / 'train.gz', 40, 8)
  write_patches(tmp_path / 'eval.gz', 12, 8)
  config = settings.TrainingConfig(**{**_TINY, 'epochs': 4, 'weight_average_momentum': 0.9})
  inputs = [str(tmp_path / 'train.gz')], [str(tmp_path / 'eval.gz')]
  custom_config = settings.trainer_custom_config(config, settings.ExportConfig())
  fingerprint = resume.training_fingerprint(custom_config, *inputs)
  killed = tmp_path / 'model_run' / '7'
  child = subprocess.Popen(
      [sys.executable, '-c', _STALLING_TRAINER, json.dumps(config.to_custom_config()),
       *inputs[0], *inputs[1], str(killed), fingerprint, '2'],
      env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '3'})
  try:
    deadline = time.monotonic() + 180
    while (resume.read_resume_state(str(killed)) or {}).get('epochs_done') != 2:
      assert child.poll() is None and time.monotonic() < deadline, 'the child did not train'
      time.sleep(0.2)
  finally:
    child.kill()
    child.wait()

  # Other settings (a different learning rate) or other inputs: nothing to resume.
  other = settings.trainer_custom_config(dataclasses.replace(config, learning_rate=1e-2),
                                         settings.ExportConfig())
  assert resume.find_resumable([str(killed)], resume.training_fingerprint(other, *inputs)) is None
  assert resume.find_resumable([str(killed)], resume.training_fingerprint(
      custom_config, [str(tmp_path / 'eval.gz')], inputs[1])) is None
  resume_from = resume.find_resumable([str(tmp_path / 'model_run' / '6'), str(killed)],
                                        fingerprint)
  assert resume_from == str(killed)

  resumed = tmp_path / 'model_run' / '8'
  _, summary = training.train(config, *inputs, str(resumed), fingerprint, resume_from=resume_from)
  assert summary['epochs_trained'] == [3, 4] and summary['resumed_from'] == str(killed)
  # The optimizer went on from the killed run's step count, not from zero.
  state = resume.read_resume_state(str(resumed))
  assert state['epochs_done'] == 4
  checkpoint = tf.train.load_checkpoint(str(resumed / resume.RESUME_DIR / state['checkpoint']))
  assert checkpoint.get_tensor('optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE') == (
      4 * config.steps_per_epoch)
  assert (resumed / 'checkpoints' / training.BEST_WEIGHTS_FILE).exists()
  # Its time: the killed run's two epochs and its own two.
  assert summary['training_seconds'] >= state['training_seconds'] > 0
  # The killed run's state is consumed: a later rerun does not resume it a second time.
  assert resume.read_resume_state(str(killed)) is None
  assert resume.find_resumable([str(killed)], fingerprint) is None


def test_interrupted_runs_are_the_model_run_folders_of_the_executions_the_orchestrator_names(
    monkeypatch):
  monkeypatch.delenv(settings.INTERRUPTED_TRAINER_RUNS_ENV, raising=False)
  assert resume.interrupted_model_runs('/root/Trainer/model_run/12') == []
  monkeypatch.setenv(settings.INTERRUPTED_TRAINER_RUNS_ENV, '11,9')
  assert resume.interrupted_model_runs('/root/Trainer/model_run/12/') == [
      '/root/Trainer/model_run/11', '/root/Trainer/model_run/9']
