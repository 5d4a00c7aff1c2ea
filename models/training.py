"""The Trainer's run_fn: patches in, a whole-image vessel model out.

Loss: binary cross-entropy plus soft Dice, both over FOV pixels only. Vessels are ~12 % of the FOV:
cross-entropy keeps probabilities calibrated, which the AUC ranking needs; Dice weighs the minority
class as much as the background, which keeps thin vessels above the 0.5 threshold that
Se/F1 are read at. Pixels outside the FOV are never scored, so they are never trained on either.

Exported weights: those of the epoch with the best validation FOV AUC or, when configured, an
exponential moving average of the weights over the last steps, whichever scores higher on the same
validation patches. Late in a short training the weights still jitter from batch to batch; their
average sits nearer the middle of the minimum they circle.

With a base model (TFX's base_model) the model starts from its weights, not at random
(models/warm_start.py). The input batches and their augmentation: models/augmentation.py. Resuming a
killed training: models/resume.py.
"""
import json
import math
import os
import time
from typing import Any, Callable, Dict, Optional, Tuple

import tensorflow as tf
import tf_keras as keras
from absl import logging

from models import model as model_lib, resume, serving, warm_start
from models.augmentation import make_dataset
from models.settings import (WARM_START_KEY, ModelConfig, TrainingConfig,
                             from_trainer_custom_config)

# Training batches that re-collect batch-norm statistics for averaged weights: batch norm's momentum
# is 0.9 (models/model.py), so after 100 batches the old statistics weigh 0.9^100, nothing.
BATCH_NORM_RECALIBRATION_STEPS = 100
BEST_EPOCH = 'best_epoch'
WEIGHT_AVERAGE = 'weight_average'
SUMMARY_FILE = 'training.json'   # in the Trainer's model_run output
BEST_WEIGHTS_FILE = 'best.weights.h5'   # ModelCheckpoint's, in the model run's checkpoints/


# CPU flags of native bfloat16 matrix maths (Intel AMX, AVX512-BF16), which oneDNN uses for Keras'
# mixed_bfloat16 policy: measured 1.7x faster training steps than float32 on an AMX machine. Without
# them bfloat16 is emulated (~3x slower than float32) or has no convolution kernel at all.
_BFLOAT16_CPU_FLAGS = ('amx_bf16', 'avx512_bf16')


def cpu_flags(cpuinfo_path: str = '/proc/cpuinfo') -> frozenset:
  """The CPU's feature flags (Linux); empty where /proc/cpuinfo is not there."""
  try:
    with open(cpuinfo_path) as f:
      flags = next((line for line in f if line.startswith('flags')), '')
  except OSError:
    flags = ''
  return frozenset(flags.split(':', 1)[1].split()) if flags else frozenset()


def choose_strategy(flags: Optional[frozenset] = None):
  """MirroredStrategy across all GPUs with mixed float16 when there are GPUs; else the default
  (CPU) strategy, in mixed bfloat16 where the CPU computes bfloat16 natively, else float32 (float16
  only slows a CPU down). `flags` defaults to this machine's CPU flags."""
  if tf.config.list_physical_devices('GPU'):
    keras.mixed_precision.set_global_policy('mixed_float16')
    return tf.distribute.MirroredStrategy()
  flags = cpu_flags() if flags is None else flags
  native_bfloat16 = any(flag in flags for flag in _BFLOAT16_CPU_FLAGS)
  keras.mixed_precision.set_global_policy('mixed_bfloat16' if native_bfloat16 else 'float32')
  return tf.distribute.get_strategy()


def float32_copy(model: keras.Model, config: ModelConfig) -> keras.Model:
  """The model rebuilt in float32 with the same weights: the export must serve on any CPU, and a
  bfloat16 or float16 graph has no CPU kernels on some (AVX2) and crawls on most others. Leaves
  Keras' global policy at float32."""
  keras.mixed_precision.set_global_policy('float32')
  if model.compute_dtype == 'float32':
    return model
  copy = model_lib.build_model(config)
  copy.set_weights(model.get_weights())
  return copy


class FovLoss(keras.losses.Loss):
  """BCE + dice_weight * (1 - soft Dice), both over FOV pixels only (see module docstring)."""

  def __init__(self, dice_weight: float = 0.5, name: str = 'fov_bce_dice', **kwargs):
    super().__init__(name=name, **kwargs)
    self.dice_weight = dice_weight

  def call(self, y_true, y_pred):
    label, fov = y_true[..., 0:1], y_true[..., 1:2]
    y_pred = tf.cast(y_pred, tf.float32)
    bce = keras.backend.binary_crossentropy(label, y_pred)
    bce = tf.reduce_sum(bce * fov, axis=[1, 2, 3]) / tf.maximum(tf.reduce_sum(fov, axis=[1, 2, 3]), 1.0)
    overlap = tf.reduce_sum(label * y_pred * fov, axis=[1, 2, 3])
    total = tf.reduce_sum((label + y_pred) * fov, axis=[1, 2, 3])
    dice = (2.0 * overlap + 1.0) / (total + 1.0)
    return bce + self.dice_weight * (1.0 - dice)

  def get_config(self):
    return {**super().get_config(), 'dice_weight': self.dice_weight}


class FovAUC(keras.metrics.AUC):
  """Keras' AUC over FOV pixels: the FOV channel of y_true becomes the sample weight."""

  def update_state(self, y_true, y_pred, sample_weight=None):
    return super().update_state(y_true[..., 0:1], y_pred, sample_weight=y_true[..., 1:2])


class BudgetCosineDecay(keras.optimizers.schedules.LearningRateSchedule):
  """Cosine decay to `alpha` of the initial rate over `decay_steps`, a variable that TimeBudget
  re-fits while training so that the decay ends when the budget does."""

  def __init__(self, initial_learning_rate: float, decay_steps: int, alpha: float):
    super().__init__()
    self.initial_learning_rate = initial_learning_rate
    self.alpha = alpha
    self.decay_steps = tf.Variable(float(decay_steps), trainable=False, name='decay_steps')

  def __call__(self, step):
    progress = tf.minimum(tf.cast(step, tf.float32) / self.decay_steps, 1.0)
    cosine = 0.5 * (1.0 + tf.cos(math.pi * progress))
    return self.initial_learning_rate * ((1.0 - self.alpha) * cosine + self.alpha)

  def get_config(self):
    return {'initial_learning_rate': self.initial_learning_rate, 'alpha': self.alpha,
            'decay_steps': int(self.decay_steps.numpy())}


class TimeBudget(keras.callbacks.Callback):
  """Fits training into a wall-time budget. After each epoch it plans how many epochs end inside
  the budget at the last epoch's pace, re-fits the learning-rate decay to end with them, and stops
  after the last. Without the re-fit a slower machine would stop mid-decay, at a high learning
  rate, and export unsettled weights; with it the schedule depends on the machine's speed."""

  def __init__(self, max_minutes: Optional[float], schedule: BudgetCosineDecay,
               steps_per_epoch: int, clock: Callable[[], float] = time.monotonic,
               spent_seconds: float = 0.0):
    super().__init__()
    self.max_seconds = None if max_minutes is None else max_minutes * 60
    self.schedule = schedule
    self.steps_per_epoch = steps_per_epoch
    self.clock = clock
    self.spent_seconds = spent_seconds   # by the interrupted training this one resumes
    self.planned_epochs = None

  def on_train_begin(self, logs=None):
    self.started = self.clock()

  def elapsed_seconds(self) -> float:
    """Training time so far, the resumed training's included."""
    return self.spent_seconds + self.clock() - self.started

  def on_epoch_begin(self, epoch, logs=None):
    self.epoch_started = self.clock()

  def on_epoch_end(self, epoch, logs=None):
    if self.max_seconds is None:
      return
    now, done = self.clock(), epoch + 1
    epoch_seconds = now - self.epoch_started
    left = self.max_seconds - self.elapsed_seconds()
    planned = min(self.params['epochs'], done + max(0, int(left // epoch_seconds)))
    if planned != self.planned_epochs:
      logging.info('TimeBudget: epoch %d took %.1f min; %d epochs fit in %.1f min',
                   done, epoch_seconds / 60, planned, self.max_seconds / 60)
      self.planned_epochs = planned
      self.schedule.decay_steps.assign(float(planned * self.steps_per_epoch))
    if done >= planned:
      self.model.stop_training = True


class ProgressLog(keras.callbacks.Callback):
  """One log line per epoch (the run's log is where users look while a long training runs)."""

  def on_epoch_end(self, epoch, logs=None):
    logging.info('Trainer: epoch %d: %s', epoch + 1,
                 ', '.join(f'{k}={v:.4f}' for k, v in sorted((logs or {}).items())))

def compile_model(config: TrainingConfig, schedule: BudgetCosineDecay) -> keras.Model:
  model = model_lib.build_model(config.model)
  # With use_ema, Keras keeps the average in the optimizer and writes it into the model when fit ends.
  averaging = config.weight_average_momentum is not None
  optimizer = keras.optimizers.Adam(schedule, use_ema=averaging,
                                    ema_momentum=config.weight_average_momentum if averaging else 0.99)
  model.compile(optimizer=optimizer, loss=FovLoss(config.dice_weight),
                metrics=[FovAUC(name='auc', num_thresholds=500)])
  # AutoGraph skips `keras` but converts `tf_keras`, all a step calls (~17 s of CPU before the first
  # step); it is written for graph mode, and our loss and metric need no conversion either.
  for step in ('train_step', 'test_step', 'predict_step'):
    setattr(model, step, tf.autograph.experimental.do_not_convert(getattr(model, step)))
  return model


def recalibrate_batch_norm(model: keras.Model, dataset: tf.data.Dataset, steps: int) -> None:
  """Re-collects batch norm's moving statistics for the model's current weights: statistics
  collected while training belong to the weights of those steps, not to their average."""
  for images, _ in dataset.take(steps):
    model(images, training=True)   # in eager mode this updates the moving statistics


def validation_auc(model: keras.Model, dataset: tf.data.Dataset, steps: int) -> float:
  return model.evaluate(dataset, steps=steps, verbose=0, return_dict=True)['auc']


def train(config: TrainingConfig, train_files, eval_files, model_run_dir: str,
          fingerprint: str = '', resume_from: Optional[str] = None,
          base_model: Optional[str] = None) -> Tuple[keras.Model, Dict[str, Any]]:
  """Fits a model on the patches, from scratch or from the weights of `base_model` (an exported
  model, see warm_start.saved_model_dir) or, with `resume_from` (an interrupted training's model_run
  folder, see resume.find_resumable), from that training's last epoch on. Returns the model with
  the weights it exports (see the module docstring) and a summary: the epochs trained here, the
  candidates' validation AUCs and which one was chosen."""
  keras.utils.set_random_seed(config.seed)
  strategy = choose_strategy()
  logging.info('Trainer: strategy %s, %d replica(s), policy %s', type(strategy).__name__,
               strategy.num_replicas_in_sync, keras.mixed_precision.global_policy().name)
  with strategy.scope():
    schedule = BudgetCosineDecay(config.learning_rate, config.epochs * config.steps_per_epoch,
                                 alpha=0.05)
    model = compile_model(config, schedule)
    state = resume.tracked_state(model, schedule.decay_steps)
    best_weights = os.path.join(model_run_dir, 'checkpoints', BEST_WEIGHTS_FILE)
    resumed = (resume.take_over(model_run_dir, resume_from, state, best_weights) if resume_from
               else {'epochs_done': 0, 'training_seconds': 0.0, 'best_validation_auc': None})
    # A resumed training holds its own weights, the base's trained on: it never reads the base.
    if base_model and not resume_from:
      warm_start.load_base_weights(model, config.model, base_model)
  if resume_from:
    logging.info('Trainer: resuming the training interrupted in %s after epoch %d of %d '
                 '(%.1f min of training)', resume_from, resumed['epochs_done'], config.epochs,
                 resumed['training_seconds'] / 60)
  logging.info('Trainer: %s with %d parameters', model.name, model.count_params())
  checkpoint = keras.callbacks.ModelCheckpoint(
      best_weights, monitor='val_auc', mode='max', save_best_only=True, save_weights_only=True,
      initial_value_threshold=resumed['best_validation_auc'])
  budget = TimeBudget(config.max_minutes, schedule, config.steps_per_epoch,
                      spent_seconds=resumed['training_seconds'])
  callbacks = [
      # Model selection by the FOV AUC of the eval patches, the release metric: on DRIVE the
      # validation loss (its Dice term above all) bottomed out epochs before the AUC did. A resumed
      # training counts its patience afresh.
      keras.callbacks.EarlyStopping(monitor='val_auc', mode='max',
                                    patience=config.early_stopping_patience),
      checkpoint,
      keras.callbacks.TensorBoard(os.path.join(model_run_dir, 'logs'), profile_batch=0),
      budget,
      resume.TrainingState(model_run_dir, fingerprint, state, checkpoint, budget.elapsed_seconds),
      ProgressLog(),
  ]
  train_data = make_dataset(train_files, config, training=True)
  validation_data = make_dataset(eval_files, config, training=False)
  history = model.fit(train_data, validation_data=validation_data, epochs=config.epochs,
                      initial_epoch=resumed['epochs_done'], steps_per_epoch=config.steps_per_epoch,
                      validation_steps=config.validation_steps, callbacks=callbacks, verbose=0)
  # Whatever ended training (epochs, patience or the time budget), choose between the best epoch
  # and the weight average, which fit has just written into the model.
  candidates = {BEST_EPOCH: float(checkpoint.best)}
  if config.weight_average_momentum is not None:
    recalibrate_batch_norm(model, train_data, BATCH_NORM_RECALIBRATION_STEPS)
    candidates[WEIGHT_AVERAGE] = validation_auc(model, validation_data, config.validation_steps)
    model.save_weights(os.path.join(model_run_dir, 'checkpoints', 'average.weights.h5'))
  chosen = max(candidates, key=candidates.get)
  if chosen == BEST_EPOCH:
    model.load_weights(best_weights)
  logging.info('Trainer: validation AUC %s; exporting the %s',
               ', '.join(f'{k}={v:.4f}' for k, v in candidates.items()), chosen.replace('_', ' '))
  return model, {'validation_auc': candidates, 'exported': chosen, 'resumed_from': resume_from,
                 'base_model': base_model,
                 'epochs_trained': [e + 1 for e in history.epoch],
                 'training_seconds': budget.elapsed_seconds()}


def run_fn(fn_args) -> None:
  """TFX Trainer entry point (GenericExecutor)."""
  custom_config = fn_args.custom_config or {}
  config, export = from_trainer_custom_config(custom_config)
  if custom_config.get(WARM_START_KEY) and not fn_args.base_model:
    logging.info('Trainer: base model: none blessed yet; training starts from scratch')
  # The base model is part of what makes a training the same one: a rerun from another base (or
  # from none) does not resume this one.
  fingerprint = resume.training_fingerprint(custom_config, fn_args.train_files,
                                            fn_args.eval_files, fn_args.base_model)
  model, summary = train(
      config, fn_args.train_files, fn_args.eval_files, fn_args.model_run_dir, fingerprint,
      resume_from=resume.find_resumable(resume.interrupted_model_runs(fn_args.model_run_dir),
                                        fingerprint),
      base_model=fn_args.base_model)
  serving.export(float32_copy(model, config.model), fn_args.transform_output,
                 fn_args.serving_model_dir, config.model, flip_average=export.flip_average)
  with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, SUMMARY_FILE), 'w') as f:
    json.dump({'parameters': model.count_params(), **summary, 'config': fn_args.custom_config},
              f, indent=2)
  resume.finish(fn_args.model_run_dir)


def read_summary(model_run_uri: str) -> Dict[str, Any]:
  """What run_fn recorded beside the model: wall time, parameters, validation AUCs, config."""
  with tf.io.gfile.GFile(os.path.join(model_run_uri, SUMMARY_FILE)) as f:
    return json.load(f)
