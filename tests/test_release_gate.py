"""The release gate: the FOV-pixel AUC on the test split (TFMA), blessing against the baseline (the
latest blessed model, or an imported base model), pushing only blessed models, and what `status`
and `report` show of it."""
import dataclasses
import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tfx.utils import path_utils

from conftest import copy_run, release_decision, sklearn_metrics, split_records
from models import constants, serving, settings, training, transform
from cli import history, run, status, visualize
from cli.main import main, parse_args
from pipeline import configs, local_runner

SMOKE = configs.PROFILES['smoke']


def _decisions(root):
  return history.decisions(history.open_store(str(root)))


def _versions(serving_dir):
  return sorted(os.listdir(serving_dir)) if os.path.isdir(serving_dir) else []


def test_first_model_is_blessed_and_pushed_and_a_worse_one_fine_tuned_from_it_is_not(
    demo_run, demo_data, tmp_path, capsys):
  serving_dir = demo_run.parent / configs.SERVING_DIR
  [first] = _decisions(demo_run)
  assert first.blessed and first.baseline_model_id is None and first.reasons == []
  assert first.metrics['auc'] >= SMOKE.min_auc
  assert first.pushed_version == '1' and _versions(serving_dir) == ['1']
  assert (serving_dir / '1' / 'saved_model.pb').exists()

  # The first model fine-tuned (`run --base-model PATH`: imported from its serving folder) for one
  # step at a learning rate that wrecks it. Its parent, the imported model, is its baseline too
  # (before, a model from a path had none): no absolute bound, only the change.
  root = copy_run(demo_run, tmp_path)
  serving_copy = str(root.parent / configs.SERVING_DIR)
  staged = run.base_model_of(parse_args(['run', '--data', 'D', '--base-model', serving_copy]),
                             str(root))
  wrecked = dataclasses.replace(SMOKE, min_auc=0.0, training=dataclasses.replace(
      SMOKE.training, epochs=1, steps_per_epoch=1, learning_rate=1.0))
  # Transform keeps the statistics the base model recorded, here shifted to tell them from the
  # ones this data gives.
  saved_model = path_utils.serving_model_dir(staged)
  recorded = serving.read_transform_statistics(saved_model)
  kept = {**recorded, transform.FOV_GRAY_MEAN_KEY: recorded[transform.FOV_GRAY_MEAN_KEY] + 5.0}
  with open(os.path.join(saved_model, serving.TRANSFORM_STATISTICS_FILE), 'w') as f:
    json.dump(kept, f)
  local_runner.run(demo_data, str(root), wrecked, serving_copy, eval_count=1, base_model=staged)
  split = os.path.join(history.latest_output(history.open_store(str(root)), configs.TRANSFORM,
                                             'transformed_examples'), 'Split-train')
  features = tf.train.Example.FromString(split_records(split)[0]).features.feature
  assert {key: features[key].float_list.value[0] for key in transform.STATISTICS_KEYS} == (
      pytest.approx(kept))
  first_again, second = _decisions(root)
  assert first_again == first and first.parent_model_id is None
  assert second.parent_model_uri == staged and second.parent_model_id not in (None, first.model_id)
  assert second.baseline_model_id == second.parent_model_id
  summary = training.read_summary(history.latest_output(history.open_store(str(root)),
                                                        configs.TRAINER, 'model_run'))
  assert summary['base_model'] == path_utils.serving_model_dir(staged)
  assert summary['config'][settings.WARM_START_KEY]
  assert not second.blessed
  assert second.metrics['auc'] < first.metrics['auc'] - SMOKE.max_auc_drop
  # The baseline is the first model's export, scored again on the same test examples.
  assert second.auc_change == pytest.approx(second.metrics['auc'] - first.metrics['auc'], abs=1e-6)
  # Pooled and, as the one-step model is worse everywhere, on each dataset of the demo data.
  overall, *per_dataset = sorted(second.reasons)
  assert overall.startswith('auc changed by -')
  assert [reason.split(' changed by -')[0] for reason in per_dataset] == [
      'auc on dataset DRIVE', 'auc on dataset STARE']
  assert second.pushed_version is None
  assert _versions(root.parent / configs.SERVING_DIR) == ['1']

  assert main(['status', '--pipeline-root', str(root)]) == 0
  table = capsys.readouterr().out
  assert re.search(rf'\s{first.model_id}\s+-\s.*BLESSED\s+{first.pushed_version}', table), table
  parent = second.parent_model_id
  assert re.search(rf'\s{second.model_id}\s+{parent}\s+{parent}\s.*REJECTED\s+-', table), table
  assert f'why: {second.reasons[0]}' in table
  assert main(['status', '--pipeline-root', str(root), '--json']) == 0
  listed = json.loads(capsys.readouterr().out)
  assert [(d['model_id'], d['blessed'], d['pushed_version']) for d in listed] == [
      (first.model_id, True, first.pushed_version), (second.model_id, False, None)]
  # What CI asks after `make demo`: did the latest run bless its model? Yes in demo_run, not here.
  assert main(['status', '--pipeline-root', str(demo_run), '--require-blessed']) == 0
  assert capsys.readouterr().out == f'run {first.run_id}: {status.verdict(first)}\n'
  assert main(['status', '--pipeline-root', str(root), '--require-blessed']) == 1
  out, err = capsys.readouterr()
  assert out == '' and err == (f'retina-tfx: error: run {second.run_id}: {status.verdict(second)}: '
                               f'{"; ".join(second.reasons)}\n')

  # The report of a named run, not the latest one: the first model's, blessed.
  assert main(['report', '--pipeline-root', str(root), '--run', first.run_id, '-o',
               str(tmp_path / 'report')]) == 0
  page = (tmp_path / 'report' / 'index.html').read_text()
  assert f'Vessel model {first.model_id}:' in page and f'<code>{first.run_id}</code>' in page
  assert 'BLESSED' in page and 'REJECTED' not in page


def test_gate_metrics_equal_sklearn_on_the_fov_pixels(demo_run):
  [decision] = _decisions(demo_run)
  model = tf.saved_model.load(path_utils.serving_model_path(decision.model_uri))
  examples = tf.constant(split_records(os.path.join(decision.examples_uri,
                                                  f'Split-{constants.TEST_SPLIT}')))
  # The very signatures TFMA calls: predictions, and the transformed label and FOV maps.
  scores = model.signatures[serving.PREDICT_EXAMPLES](examples=examples)[serving.PROBABILITIES_KEY].numpy()
  transformed = model.signatures[serving.TRANSFORM_FEATURES](examples=examples)
  labels, fov = (transformed[key].numpy() for key in (constants.LABEL_KEY, constants.FOV_KEY))
  assert decision.metrics == pytest.approx(sklearn_metrics(labels, scores, fov), abs=1e-4)
  image_ids = [tf.train.Example.FromString(e).features.feature[constants.IMAGE_ID_KEY]
               .bytes_list.value[0].decode() for e in examples.numpy()]
  for i, image_id in enumerate(image_ids):
    assert decision.per_image_auc[image_id] == pytest.approx(
        sklearn_metrics(labels[i], scores[i], fov[i])['auc'], abs=1e-4)
  # Per dataset (DRIVE and STARE): the same metric on that dataset's rows alone.
  datasets = np.array([tf.train.Example.FromString(e).features.feature[constants.DATASET_KEY]
                       .bytes_list.value[0].decode() for e in examples.numpy()])
  for name, auc in decision.per_dataset_auc.items():
    rows = datasets == name
    assert auc == pytest.approx(sklearn_metrics(labels[rows], scores[rows], fov[rows])['auc'],
                                abs=1e-4)
  assert set(decision.per_dataset_auc) == {'DRIVE', 'STARE'}


def test_report_shows_the_pictures_and_the_numbers_status_shows(demo_run, tmp_path, capsys):
  assert (demo_run / configs.REPORT_DIR / 'index.html').exists()  # `run` wrote one
  out = tmp_path / 'report'
  assert main(['report', '--pipeline-root', str(demo_run), '-o', str(out)]) == 0
  page = (out / 'index.html').read_text()
  images = sorted(set(re.findall(r'<img src="([^"]+)"', page)))
  [decision] = _decisions(demo_run)
  assert len(images) == 2 + len(decision.per_image_auc)  # curves, preprocessing + overlays
  for name in images:
    with Image.open(out / name) as image:
      assert image.format == 'PNG' and image.size[0] > 100
      image.verify()
  for key, _ in status.METRIC_COLUMNS:
    assert f'{decision.metrics[key]:.4f}' in page, key
  for value in decision.per_image_auc.values():
    assert f'{value:.4f}' in page
  assert set(decision.per_dataset_auc) == {'DRIVE', 'STARE'}
  for name, value in decision.per_dataset_auc.items():
    assert f'<td>{name}</td><td>{value:.4f}</td>' in page
  assert 'BLESSED' in page and decision.pushed_version in page
  overlay = np.asarray(Image.open(out / next(n for n in images if n.startswith('overlay_'))))
  colours = {tuple(int(c) for c in pixel) for pixel in overlay.reshape(-1, 3)}
  assert {visualize.TP_RGB, visualize.FP_RGB, visualize.FN_RGB} <= colours

  assert main(['report', '--pipeline-root', str(demo_run), '--run', 'nope', '-o',
               str(tmp_path / 'x')]) == 1
  assert "no evaluation in run 'nope'" in capsys.readouterr().err


def test_status_shows_each_datasets_auc_and_the_verdict_in_one_line():
  row = release_decision(per_dataset_auc={'DRIVE': 0.981, 'STARE': 0.975})
  assert 'AUC per dataset: DRIVE 0.9810, STARE 0.9750' in status.format_table([row])
  assert status.verdict(row) == 'model 3 BLESSED (test FOV AUC 0.9800); pushed as version 1 to /serving/1'
  rejected = dataclasses.replace(row, blessed=False, reasons=['auc 0.9800 is below the required 0.9900'],
                                 pushed_version=None, pushed_to=None, per_dataset_auc={'DRIVE': 0.98})
  table = status.format_table([rejected])
  assert 'REJECTED' in table and 'why: auc 0.9800 is below' in table and 'per dataset' not in table


def test_require_blessed_passes_only_when_the_latest_run_blessed_its_model(tmp_path, capsys):
  blessed = release_decision()
  assert status.blessed_verdict([blessed], 'run-1') == (
      'run run-1: model 3 BLESSED (test FOV AUC 0.9800); pushed as version 1 to /serving/1')
  rejected = dataclasses.replace(
      blessed, run_id='run-2', model_id=5, blessed=False, pushed_version=None, pushed_to=None,
      reasons=['auc 0.9800 is below the required 0.9900', 'auc changed by -0.0100'])
  # The latest run counts, not the latest blessing: a failed or partial run decided nothing.
  for latest, words in (
      ('run-2', 'run run-2: model 5 REJECTED (test FOV AUC 0.9800), not pushed: '
                'auc 0.9800 is below the required 0.9900; auc changed by -0.0100'),
      ('run-3', 'the latest run, run-3, made no release decision'),
      (None, 'no pipeline runs recorded yet')):
    with pytest.raises(status.NotBlessed, match=re.escape(words)):
      status.blessed_verdict([blessed, rejected], latest)
  # Through the command line: one line on stderr, exit 1 (here: no store at all).
  assert main(['status', '--pipeline-root', str(tmp_path / 'none'), '--require-blessed']) == 1
  out, err = capsys.readouterr()
  assert out == '' and err.count('\n') == 1 and err.startswith('retina-tfx: error: ')
  assert 'no pipeline runs recorded here' in err
