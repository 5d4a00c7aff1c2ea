"""Ingests the real DRIVE (tests/real_data.py) and checks it pixel for pixel."""
import glob
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tfx.types import standard_artifacts
from tfx.utils import path_utils

from components.fundus_example_gen import executor
import real_data
from conftest import sklearn_metrics, split_records
from models import constants, serving, vessel_metrics
from cli import history
from cli.main import main

pytestmark = pytest.mark.real_data('DRIVE')
REAL_DRIVE = real_data.path('DRIVE')


def _examples(split_dir):
  return [tf.train.Example.FromString(record) for record in split_records(split_dir)]


def _png(example, key):
  return tf.io.decode_png(example.features.feature[key].bytes_list.value[0]).numpy().squeeze()


def _source(rel):
  image = Image.open(os.path.join(REAL_DRIVE, rel))
  return np.asarray(image if image.mode == 'RGB' else image.convert('L'))


def test_real_drive_is_ingested_losslessly(tmp_path):
  examples = standard_artifacts.Examples()
  examples.uri = str(tmp_path / 'examples')
  executor.Executor().Do({}, {'examples': [examples]}, {
      'input_paths': f'["{os.path.abspath(REAL_DRIVE)}"]', 'eval_count': 4, 'split_seed': 0})

  ids = {}
  for split in constants.SPLITS:
    ids[split] = []
    for example in _examples(os.path.join(examples.uri, f'Split-{split}')):
      feature = example.features.feature
      image_id = feature[constants.IMAGE_ID_KEY].bytes_list.value[0].decode()
      folder = 'test' if split == constants.TEST_SPLIT else 'training'
      ids[split].append(image_id)
      assert feature[constants.SOURCE_FILE_KEY].bytes_list.value[0].decode() == (
          f'{folder}/images/{image_id}_{folder}.tif')
      assert (feature[constants.HEIGHT_KEY].int64_list.value[0],
              feature[constants.WIDTH_KEY].int64_list.value[0]) == (constants.IMAGE_HEIGHT,
                                                                    constants.IMAGE_WIDTH)
      np.testing.assert_array_equal(_png(example, constants.IMAGE_KEY),
                                    _source(f'{folder}/images/{image_id}_{folder}.tif'))
      np.testing.assert_array_equal(_png(example, constants.LABEL_KEY),
                                    _source(f'{folder}/1st_manual/{image_id}_manual1.gif'))
      np.testing.assert_array_equal(_png(example, constants.FOV_KEY),
                                    _source(f'{folder}/mask/{image_id}_{folder}_mask.gif'))
      if split == constants.TEST_SPLIT:
        # DRIVE's 2nd_manual GIFs use gray levels 3/253; ingestion stores every map as 0/255.
        second = _source(f'test/2nd_manual/{image_id}_manual2.gif')
        assert set(np.unique(second)) == {3, 253}
        np.testing.assert_array_equal(_png(example, constants.LABEL2_KEY),
                                      np.where(second == 253, 255, 0))
      else:
        assert constants.LABEL2_KEY not in feature

  assert [len(ids[s]) for s in constants.SPLITS] == [16, 4, 20]
  assert sorted(ids['train'] + ids['eval'], key=int) == [str(i) for i in range(21, 41)]
  assert sorted(ids['test']) == [f'{i:02d}' for i in range(1, 21)]


def _test_images(folder, count):
  """A DRIVE folder of the first `count` real test images and two training images (DRIVE's layout
  needs both folders, the eval hold-out one image), every file of each (links)."""
  for name in sorted(glob.glob(os.path.join(REAL_DRIVE, '*', '*', '*'))):
    if int(os.path.basename(name)[:2]) in (*range(1, count + 1), 21, 22):
      link = os.path.join(folder, os.path.relpath(name, REAL_DRIVE))
      os.makedirs(os.path.dirname(link), exist_ok=True)
      os.symlink(name, link)
  return str(folder)


def test_gate_metrics_on_real_drive_equal_sklearn(demo_run, tmp_path):
  """The release gate's metrics, computed by TFX's Evaluator (benchmark-gate's replay, on examples
  ingested first) on real test images with a trained (smoke) model's maps, against scikit-learn on
  the same maps, overall and per image. Four of the 20 images: each costs ~3 s."""
  out = tmp_path / 'gate'
  assert main(['benchmark-gate', '--pipeline-root', str(demo_run), '--output', str(out),
               '--data', _test_images(tmp_path / 'DRIVE', 4)]) == 0
  overall, _, per_dataset_auc, per_image_auc = history.metric_values(
      str(out / 'evaluator' / 'evaluation'))
  [decision] = history.decisions(history.open_store(str(demo_run)))
  model = tf.saved_model.load(path_utils.serving_model_path(decision.model_uri))
  labels, scores, fov = [], [], []
  for example in _examples(os.path.join(out, 'examples', f'Split-{constants.TEST_SPLIT}')):
    serialized = tf.constant([example.SerializeToString()])
    transformed = model.signatures[serving.TRANSFORM_FEATURES](examples=serialized)
    labels.append(transformed[constants.LABEL_KEY].numpy()[0])
    fov.append(transformed[constants.FOV_KEY].numpy()[0])
    scores.append(model.signatures[serving.PREDICT_EXAMPLES](
        examples=serialized)[serving.PROBABILITIES_KEY].numpy()[0])
    image_id = example.features.feature[constants.IMAGE_ID_KEY].bytes_list.value[0].decode()
    assert per_image_auc[image_id] == pytest.approx(
        sklearn_metrics(labels[-1], scores[-1], fov[-1])[vessel_metrics.AUC], abs=1e-4)
  assert sorted(per_image_auc) == ['01', '02', '03', '04']
  assert overall[vessel_metrics.FOV_PIXELS] == sum(int(f.sum()) for f in fov)
  assert per_dataset_auc == pytest.approx({'DRIVE': overall[vessel_metrics.AUC]}, abs=1e-9)
  assert overall == pytest.approx(sklearn_metrics(*map(np.concatenate, (labels, scores, fov))),
                                  abs=1e-4)
