"""Shared fixtures: small generated DRIVE-like datasets (the real ones: tests/real_data.py)."""
import dataclasses
import hashlib
import os
import shutil
import zipfile

import math

# Under pytest-xdist each worker's TensorFlow (and its child processes') gets its share of the
# cores: with a pool per worker as wide as the machine, the pools' spinning threads fight.
if os.environ.get('PYTEST_XDIST_WORKER_COUNT'):
  os.environ.setdefault('TF_NUM_INTRAOP_THREADS', str(max(
      1, (os.cpu_count() or 1) // int(os.environ['PYTEST_XDIST_WORKER_COUNT']))))

import apache_beam as beam  # pylint: disable=wrong-import-position
import cv2
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
from PIL import Image
from sklearn import metrics as sk
from tensorflow_model_analysis.evaluators import metrics_plots_and_validations_evaluator

from cli import history
from models import patches, vessel_metrics
from synthetic_drive import dataset

# The published datasets: tests marked real_data skip without them, or fail the run with CI set.
pytest_plugins = ['real_data']


@pytest.fixture(scope='session')
def tiny_drive(tmp_path_factory):
  """A 3+2 image DRIVE-like dataset at 64x60 pixels: enough for ingestion logic, fast to decode."""
  out = tmp_path_factory.mktemp('tiny') / 'DRIVE'
  dataset.generate(str(out), seed=1, n_train=3, n_test=2, height=60, width=64)
  return out


# What the pipeline tests run: the smoke profile keeps training to seconds.
PIPELINE_ARGS = ('--eval-count', '1', '--profile', 'smoke')
# The pipeline's component ids, as ML-Metadata records them.
COMPONENTS = ['FundusExampleGen', 'ImportSchemaGen', 'StatisticsGen', 'ExampleValidator', 'DataGate',
              'Transform', 'PatchGen', 'Trainer', 'latest_blessed_model_resolver', 'Evaluator',
              'Pusher']


@pytest.fixture(scope='session')
def demo_drive(tmp_path_factory):
  """DRIVE's layout and size, few images to keep runs short."""
  out = tmp_path_factory.mktemp('demo') / 'DRIVE'
  dataset.generate(str(out), seed=3, n_train=5, n_test=2)
  return out


def demo_pixels(drive_root, name='test/images/01_test.tif'):
  """The RGB pixels of one image of a generated DRIVE (demo_drive)."""
  return np.asarray(Image.open(drive_root / name))


@pytest.fixture(scope='session')
def shipped_model():
  """The model the project ships, as a SavedModel path: the tests that any exported model serves
  use it, so they need no pipeline run and run beside the tests that share demo_run."""
  from cli import predict
  from pipeline import configs
  return predict.resolve_saved_model(configs.SHIPPED_MODEL_DIR)


@pytest.fixture(scope='session')
def demo_data(demo_drive, tmp_path_factory):
  """What demo_run ingests: demo_drive and a 4-image STARE (its own layout, size and computed
  FOVs), so every run the tests inspect mixes two datasets and two image sizes."""
  stare = tmp_path_factory.mktemp('demo') / 'STARE'
  dataset.generate(str(stare), seed=3, layout='stare', count=4)
  return [str(demo_drive), str(stare)]


@pytest.hookimpl(tryfirst=True)   # before xdist's own hook reads the groups
def pytest_collection_modifyitems(items):
  """Every test on a pipeline run is slow, whether it shares demo_run or runs its own. Under
  pytest-xdist (`make test`), the tests that share demo_run go to one worker, which runs it once."""
  for item in items:
    if 'demo_run' in item.fixturenames:
      item.add_marker(pytest.mark.slow)
      item.add_marker(pytest.mark.xdist_group('demo_run'))


@pytest.fixture(scope='session')
def demo_run(demo_data, tmp_path_factory):
  """One in-memory run of the whole pipeline; the tests that inspect artifacts share it."""
  from cli.main import main
  root = tmp_path_factory.mktemp('run') / 'root'
  assert main(['run', '--data', *demo_data, '--pipeline-root', str(root),
               *PIPELINE_ARGS]) == 0
  return root


def gzip_records(files):
  """The serialized records of GZIP TFRecord files (a path or a list), in order."""
  return [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type='GZIP')]


def split_records(split_dir):
  """The serialized records of one split of an artifact: <uri>/Split-<name>, GZIP TFRecords."""
  return gzip_records([os.path.join(split_dir, name) for name in sorted(os.listdir(split_dir))])


def copy_run(root, tmp_path):
  """A private copy of a pipeline root and the serving folder beside it, to run the pipeline again
  without changing what other tests read (its ML-Metadata still points at the original artifacts)."""
  copy = tmp_path / 'run-copy'
  shutil.copytree(root.parent, copy)
  return copy / root.name


@pytest.fixture
def drive_copy(tiny_drive, tmp_path):
  """A private, modifiable copy of tiny_drive."""
  copy = tmp_path / 'DRIVE'
  shutil.copytree(tiny_drive, copy)
  return copy


def write_patches(path, count, size, image_id=b'21', dataset=b'DRIVE'):
  """`count` PatchGen-format patches of one image, numbered by their row, whose vessels are the
  bright pixels, full FOV; the file's path."""
  rng = np.random.default_rng(0)
  with tf.io.TFRecordWriter(str(path), options='GZIP') as writer:
    for i in range(count):
      label = (rng.random((size, size)) > 0.8).astype(np.uint8)
      image = np.where(label > 0, 204, 51).astype(np.uint8)
      fov = np.ones((size, size), np.uint8)
      writer.write(patches.encode(image_id, dataset, i, 0, image, label, fov))
  return str(path)


def zip_folder(folder, zip_path, prefix='DRIVE/'):
  with zipfile.ZipFile(zip_path, 'w') as archive:
    for root, _, files in os.walk(folder):
      for name in sorted(files):
        full = os.path.join(root, name)
        archive.write(full, prefix + os.path.relpath(full, folder))
  return zip_path


def relative_files(root):
  """Every file under root, as sorted paths relative to it."""
  return sorted(os.path.relpath(os.path.join(folder, name), root)
                for folder, _, names in os.walk(root) for name in names)


def tree_digest(path) -> str:
  """Names, modes and contents of everything under path: proves a run left the input untouched."""
  digest = hashlib.sha256()
  paths = [path] if os.path.isfile(path) else sorted(
      os.path.join(root, name) for root, dirs, files in os.walk(path) for name in dirs + files)
  for entry in paths:
    stat = os.stat(entry)
    digest.update(f'{entry}:{stat.st_mode}:{stat.st_mtime_ns}\n'.encode())
    if os.path.isfile(entry):
      with open(entry, 'rb') as f:
        digest.update(f.read())
  return digest.hexdigest()


def sklearn_metrics(labels, predictions, weights):
  """The release gate's metrics (vessel_metrics.METRIC_NAMES) by scikit-learn, on the pixels with
  weight > 0, with vessel at probability >= 0.5; NaN where scikit-learn cannot define one."""
  inside = np.asarray(weights).reshape(-1) > 0
  y_true = np.asarray(labels).reshape(-1)[inside] > 0.5
  y_score = np.asarray(predictions).reshape(-1)[inside].astype(np.float64)
  y_pred = y_score >= vessel_metrics.DECISION_THRESHOLD
  has_vessel, has_background = y_true.any(), (~y_true).any()
  return {
      vessel_metrics.AUC: (sk.roc_auc_score(y_true, y_score) if has_vessel and has_background
                           else math.nan),
      vessel_metrics.AUC_PR: sk.average_precision_score(y_true, y_score) if has_vessel else math.nan,
      vessel_metrics.ACCURACY: sk.accuracy_score(y_true, y_pred) if y_true.size else math.nan,
      vessel_metrics.PRECISION: sk.precision_score(y_true, y_pred) if y_pred.any() else math.nan,
      vessel_metrics.RECALL: sk.recall_score(y_true, y_pred) if has_vessel else math.nan,
      vessel_metrics.SPECIFICITY: (sk.recall_score(y_true, y_pred, pos_label=False)
                                   if has_background else math.nan),
      vessel_metrics.F1: (sk.f1_score(y_true, y_pred) if has_vessel or y_pred.any()
                          else math.nan),
      vessel_metrics.FOV_PIXELS: float(inside.sum()),
  }


def recipe_gray(rgb):
  """The recipe's gray (ITU-R BT.601 weights) of float RGB pixels."""
  return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def recipe_steps(gray, mean, std, config):
  """The recipe's steps as its authors wrote them (numpy, uint8 casts, cv2 CLAHE, cv2.LUT gamma),
  to check models.preprocessing against: the standardised gray, min-max rescaled and cast, then
  CLAHE and gamma, each a [H, W] array."""
  standardised = (gray - mean) / std
  rescaled = ((standardised - standardised.min()) / (standardised.max() - standardised.min())
              * 255).astype(np.uint8)
  equalised = cv2.createCLAHE(clipLimit=config.clahe_clip_limit,
                              tileGridSize=(config.clahe_tile_grid,) * 2).apply(rescaled)
  table = np.array([((i / 255.0) ** (1.0 / config.gamma)) * 255 for i in range(256)]).astype(np.uint8)
  return {'standardised': standardised, 'rescaled': rescaled, 'clahe': equalised,
          'gamma': cv2.LUT(equalised, table)}


def vessel_maps(seed, sharpness=1.0, noise=1.5, height=292, width=282):
  """A vessel-like label map, a noisy prediction of it and a disc FOV, at a quarter of DRIVE's size
  by default. The seed fixes the label and the noise's pattern, `noise` its scale (the larger, the
  lower the AUC), `sharpness` scales the logits (large values push most pixels to within 1e-6 of 0
  and 1, as a well-trained model does)."""
  rng = np.random.default_rng(seed)
  rows, cols = np.mgrid[:height, :width]
  labels = ((np.sin(cols / 3.0 + seed) > 0.7) | (rng.random((height, width)) < 0.05)).astype(np.float32)
  logits = sharpness * (3.0 * (labels - 0.5) + noise * rng.normal(0.0, 1.0, labels.shape))
  predictions = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
  fov = ((rows - height / 2) ** 2 + (cols - width / 2) ** 2 < (height / 2) ** 2).astype(np.float32)
  return labels, predictions, fov


def release_decision(**changes):
  """A release decision as cli.history.decisions makes them: model 3 of run-1, trained from
  scratch, blessed without a baseline, pushed as version 1; `changes` replace fields."""
  return dataclasses.replace(history.Decision(
      run_id='run-1', evaluated_at='2026-12-01T00:00:00+00:00', state='COMPLETE', model_id=3,
      model_uri='/m', parent_model_id=None, parent_model_uri=None, baseline_model_id=None,
      metrics={'auc': 0.98}, auc_change=None, per_dataset_auc={}, per_image_auc={}, blessed=True,
      reasons=[], pushed_version='1', pushed_to='/serving/1', evaluation_uri='/e',
      examples_uri='/x'), **changes)


def gate_evaluation(extracts, config):
  """TFMA's evaluation of whole-map extracts (labels, predictions and FOV weights already in them)
  as the Evaluator runs it after the model: each image reduced to its histograms, sliced, then
  metrics and validations. A PTransform: its output is TFMA's dict of PCollections."""
  evaluator = metrics_plots_and_validations_evaluator.MetricsPlotsAndValidationsEvaluator(
      eval_config=config)
  return (beam.Create(extracts)
          | vessel_metrics.HistogramsExtractor(config).ptransform
          | tfma.extractors.SliceKeyExtractor(eval_config=config).ptransform
          | evaluator.ptransform)
