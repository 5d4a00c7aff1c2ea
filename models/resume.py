"""Resuming an interrupted training. Every epoch leaves a checkpoint of the whole training state in
the model_run output. When the orchestrator finds interrupted Trainer executions in ML-Metadata (a
killed run), the Trainer takes over the newest one with the same settings and input patches and
trains only the epochs left; with other settings or inputs it starts afresh."""
import hashlib
import json
import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import tensorflow as tf
import tf_keras as keras
from absl import logging

from models.settings import INTERRUPTED_TRAINER_RUNS_ENV

# In the Trainer's model_run output while it trains: what a rerun needs to continue an interrupted
# training (TrainingState). Removed when training ends.
RESUME_DIR = 'resume'
RESUME_STATE_FILE = 'state.json'


def training_fingerprint(custom_config: Mapping[str, Any], train_files: Sequence[str],
                         eval_files: Sequence[str], base_model: Optional[str] = None) -> str:
  """What makes two trainings the same one: the Trainer's settings, its input patches (their URIs
  name the PatchGen execution that wrote them) and the base model it started from, if any."""
  key = json.dumps({'config': custom_config, 'train': list(train_files), 'eval': list(eval_files),
                    'base_model': base_model}, sort_keys=True)
  return hashlib.sha256(key.encode()).hexdigest()


def tracked_state(model: keras.Model, decay_steps: tf.Variable) -> tf.train.Checkpoint:
  """Everything fit changes: weights, optimizer (step count, moments, weight average) and the
  learning-rate decay's length."""
  return tf.train.Checkpoint(model=model, optimizer=model.optimizer, decay_steps=decay_steps)


def _write_json(path: str, value: Dict[str, Any]) -> None:
  """Written beside and renamed into place: a kill mid-write leaves the previous file whole."""
  with tf.io.gfile.GFile(path + '.tmp', 'w') as f:
    json.dump(value, f, indent=2)
  tf.io.gfile.rename(path + '.tmp', path, overwrite=True)


def read_resume_state(model_run_dir: str) -> Optional[Dict[str, Any]]:
  path = os.path.join(model_run_dir, RESUME_DIR, RESUME_STATE_FILE)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


class TrainingState(keras.callbacks.Callback):
  """After every epoch, saves what a rerun needs to continue this training: weights, optimizer,
  the best epoch's weights and validation AUC, epochs done and time spent. Epoch N's files are
  written first and the state file naming them second (a rename), so a kill at any moment leaves a
  state file and the files it names; older files go after that."""

  def __init__(self, model_run_dir: str, fingerprint: str, state: tf.train.Checkpoint,
               best_epoch: keras.callbacks.ModelCheckpoint, elapsed_seconds: Callable[[], float]):
    super().__init__()
    self.directory = os.path.join(model_run_dir, RESUME_DIR)
    self.fingerprint = fingerprint
    self.state = state
    self.best_epoch = best_epoch
    self.elapsed_seconds = elapsed_seconds   # training time so far, a resumed training's included

  def on_epoch_end(self, epoch, logs=None):
    prefix = f'epoch-{epoch + 1}'
    self.state.write(os.path.join(self.directory, prefix))
    # A copy: ModelCheckpoint rewrites its file in place, which a kill can leave half written.
    # (There is none while no epoch has had a validation AUC.)
    best_weights = f'{prefix}.{os.path.basename(self.best_epoch.filepath)}'
    if tf.io.gfile.exists(self.best_epoch.filepath):
      tf.io.gfile.copy(self.best_epoch.filepath, os.path.join(self.directory, best_weights),
                       overwrite=True)
    else:
      best_weights = None
    _write_json(os.path.join(self.directory, RESUME_STATE_FILE), {
        'fingerprint': self.fingerprint, 'epochs_done': epoch + 1, 'checkpoint': prefix,
        'best_weights': best_weights, 'best_validation_auc': float(self.best_epoch.best),
        'training_seconds': self.elapsed_seconds()})
    for path in tf.io.gfile.glob(os.path.join(self.directory, 'epoch-*')):
      if not os.path.basename(path).startswith(prefix + '.'):
        tf.io.gfile.remove(path)


def find_resumable(model_run_dirs: Sequence[str], fingerprint: str) -> Optional[str]:
  """The first of the interrupted trainings' model_run folders that holds a state to resume with
  the same settings and inputs (fingerprint); None when there is none."""
  for model_run_dir in model_run_dirs:
    state = read_resume_state(model_run_dir)
    if state is None:
      continue
    if state['fingerprint'] == fingerprint:
      return model_run_dir
    logging.info('Trainer: the interrupted training in %s had other settings or inputs; not '
                 'resuming it', model_run_dir)
  return None


def interrupted_model_runs(model_run_dir: str) -> List[str]:
  """The model_run folders of interrupted Trainer executions that the orchestrator found in
  ML-Metadata (INTERRUPTED_TRAINER_RUNS_ENV: execution ids, newest first). TFX names an execution's
  output folder by its execution id, beside this execution's own."""
  ids = [i for i in os.environ.get(INTERRUPTED_TRAINER_RUNS_ENV, '').split(',') if i.strip()]
  return [os.path.join(os.path.dirname(model_run_dir.rstrip('/')), i.strip()) for i in ids]


def take_over(model_run_dir: str, resume_from: str, state: tf.train.Checkpoint,
              best_weights: str) -> Dict[str, Any]:
  """Takes over an interrupted training's state (consumed: it is resumed once), loads its last
  epoch's weights and optimizer into `state` and puts its best epoch's weights at `best_weights`;
  returns its resume state."""
  resume_state = read_resume_state(resume_from)
  source, target = os.path.join(resume_from, RESUME_DIR), os.path.join(model_run_dir, RESUME_DIR)
  tf.io.gfile.makedirs(target)
  for path in tf.io.gfile.glob(os.path.join(source, '*')):
    tf.io.gfile.copy(path, os.path.join(target, os.path.basename(path)), overwrite=True)
  tf.io.gfile.rmtree(source)
  if resume_state['best_weights']:
    tf.io.gfile.makedirs(os.path.dirname(best_weights))
    tf.io.gfile.copy(os.path.join(target, resume_state['best_weights']), best_weights,
                     overwrite=True)
  state.model.optimizer.build(state.model.trainable_variables)
  state.read(os.path.join(target, resume_state['checkpoint'])).assert_existing_objects_matched()
  return resume_state


def finish(model_run_dir: str) -> None:
  """A training that has ended leaves nothing to resume."""
  resume_dir = os.path.join(model_run_dir, RESUME_DIR)
  if tf.io.gfile.exists(resume_dir):
    tf.io.gfile.rmtree(resume_dir)
