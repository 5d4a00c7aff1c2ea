"""`retina-tfx benchmark` and `benchmark-gate`: FOV-only pooled scoring, a rerun from the cache with
progress, agreement with the Evaluator, the pushed model it leaves, the table row."""
import json
import os
import shutil

import numpy as np
import pytest
from sklearn import metrics as sk
from tfx.utils import path_utils

from cli import benchmark, console, history
from cli.main import main
from components.fundus_example_gen import files, layouts
from conftest import COMPONENTS, PIPELINE_ARGS
from pipeline import configs

# Re-judged on a rerun: the first run's model became the blessed baseline they compare against.
GATE = (configs.BASELINE_RESOLVER, configs.EVALUATOR, configs.PUSHER)


class _OracleModel:
  """Answers with a given function of the true label; garbage outside the FOV."""

  def __init__(self, data, answer):
    self.truth = {r.image.rel_path: r for r in layouts.list_datasets([str(data)])}
    self.answer = answer
    self.calls = []

  def predict(self, png):
    record = next(r for r in self.truth.values()
                  if files.encode_png(files.decode_file(r.image, expect_binary=False)) == png)
    self.calls.append(record.image_id)
    label = files.decode_file(record.label, expect_binary=True) / 255.0
    outside = files.decode_file(record.fov, expect_binary=True) == 0
    return np.where(outside, 1.0 - label, self.answer(label)), None


def test_scores_pool_fov_pixels_of_the_test_images_only(tiny_drive):
  perfect = benchmark.score_test_images(_OracleModel(tiny_drive, lambda y: y), [str(tiny_drive)])
  assert perfect['images'] == 2
  for key in ('auc_roc', 'auc_pr', 'accuracy', 'sensitivity', 'specificity', 'f1'):
    assert perfect[key] == pytest.approx(1.0), key  # the garbage outside the FOV is not scored
  inverted = benchmark.score_test_images(_OracleModel(tiny_drive, lambda y: 1 - y), [str(tiny_drive)])
  assert inverted['auc_roc'] == pytest.approx(0.0)
  assert inverted['sensitivity'] == 0.0 and inverted['specificity'] == 0.0


def _noisy(label):
  """Scores that only partly follow the label, continuous (the same noise for maps of one size)."""
  noise = np.random.default_rng(label.size).normal(0.35, 0.2, label.shape)
  return np.clip(0.3 * (label > 0) + noise, 0, 1)


def test_scores_of_noisy_maps_equal_sklearn_on_the_float_maps(tiny_drive):
  """Counted at 65,536 score levels (a fixed 1 MB for any number of pixels), the scores are
  scikit-learn's on the float maps, to the 65,536 levels' precision; at the 0.5 threshold a score less than half a
  level below it may count as above (a pixel or so here)."""
  scores = benchmark.score_test_images(_OracleModel(tiny_drive, _noisy), [str(tiny_drive)])
  labels, maps = [], []
  for record in layouts.list_datasets([str(tiny_drive)]):
    if record.split == layouts.TEST:
      inside = files.decode_file(record.fov, expect_binary=True) > 0
      label = files.decode_file(record.label, expect_binary=True) / 255.0
      labels.append(label[inside] > 0)
      maps.append(_noisy(label)[inside])
  y_true, y_score = np.concatenate(labels), np.concatenate(maps)
  assert 0.6 < scores['auc_roc'] < 0.95 and scores['fov_pixels'] == y_true.size
  assert scores['auc_roc'] == pytest.approx(sk.roc_auc_score(y_true, y_score), abs=1e-5)
  # Measured: AUC-ROC 4.7e-6 apart, average precision 1.2e-5 (its steps sit on single pixels here).
  assert scores['auc_pr'] == pytest.approx(sk.average_precision_score(y_true, y_score), abs=1e-4)
  one_pixel = 1.0 / y_true.size
  assert scores['accuracy'] == pytest.approx(sk.accuracy_score(y_true, y_score >= 0.5),
                                             abs=2 * one_pixel)
  assert scores['f1'] == pytest.approx(sk.f1_score(y_true, y_score >= 0.5), abs=1e-3)


def test_benchmark_reruns_from_the_cache_and_leaves_scores_a_row_and_a_release(
    demo_run, demo_data, tmp_path, capsys):
  # The output folder starts as a copy of demo_run's pipeline root and serving folder. Same data,
  # same settings: the run reuses every artifact up to the model from the cache, and the gate
  # re-judges that model against itself, the latest blessed model, and pushes it again.
  out = tmp_path / 'out'
  shutil.copytree(demo_run.parent, out)
  (out / demo_run.name).rename(out / 'pipeline_root')
  table = tmp_path / 'BENCHMARKS.md'
  table.write_text('# Benchmarks\n')
  args = ['benchmark', '--data', *demo_data, '--output', str(out),
          '--benchmarks-file', str(table), *PIPELINE_ARGS]
  assert main(args) == 0, capsys.readouterr().err
  printed = capsys.readouterr().out
  for component in COMPONENTS:
    assert f'{component:<{console.NAME_WIDTH}} done in' in printed  # progress per component
  store = history.open_store(str(out / 'pipeline_root'))
  runs = {r.node_id: r for r in history.latest_node_runs(store)}
  assert {r.state for node, r in runs.items() if node not in GATE} == {'CACHED'}
  assert runs[configs.PATCH_GEN].outputs['patches'][0] in printed  # it says where artifacts are
  [demo_decision] = history.decisions(history.open_store(str(demo_run)))
  assert runs[configs.TRAINER].outputs['model'][0] == demo_decision.model_uri

  result = json.loads((out / 'benchmark.json').read_text())
  assert result['model'] == path_utils.serving_model_path(demo_decision.model_uri)
  assert sorted(os.listdir(out / configs.SERVING_DIR)) == ['1', '2']   # its second release
  assert (out / configs.SERVING_DIR / '2' / 'saved_model.pb').exists()
  assert result['scores']['images'] == 2 + 2 and 0 <= result['scores']['auc_roc'] <= 1  # DRIVE, STARE
  # The Evaluator (TFMA) and this scoring agree on the same test pixels. Not exactly: predict here
  # computes each FOV from its image, as a user's call does, so the model's window may differ.
  assert result['evaluator']['auc'] == pytest.approx(result['scores']['auc_roc'], abs=1e-3)
  assert result['evaluator']['pushed_version'] == '2'
  assert result['command'] == 'retina-tfx ' + ' '.join(args)
  rows = [line for line in table.read_text().splitlines() if line.startswith('| 20')]
  assert len(rows) == 1 and f"{result['scores']['auc_roc']:.4f}" in rows[0]
  assert table.read_text().count(benchmark.BENCHMARK_TABLE_HEADER) == 1
  assert 'auc_roc' in printed


def test_benchmark_gate_replays_the_recorded_evaluation(demo_run, tmp_path, capsys):
  [decision] = history.decisions(history.open_store(str(demo_run)))
  out = tmp_path / 'gate'
  assert main(['benchmark-gate', '--pipeline-root', str(demo_run), '--output', str(out)]) == 0
  result = json.loads((out / 'gate_benchmark.json').read_text())
  # Same models, examples and EvalConfig: the same numbers and verdict, in a measured process.
  assert result['metrics'] == pytest.approx(decision.metrics, abs=1e-9)
  assert result['blessed'] == decision.blessed and not result['baseline']
  assert result['evaluator_seconds'] > 0 and result['peak_rss_mb'] > 100
  assert 'peak RSS' in capsys.readouterr().out

  # Another dataset, ingested first: tests/test_drive_real.py replays the gate on real DRIVE.
  (tmp_path / 'not-drive').mkdir()
  assert main(['benchmark-gate', '--pipeline-root', str(demo_run), '--output',
               str(tmp_path / 'gate-bad'), '--data', str(tmp_path / 'not-drive')]) == 1
  error = capsys.readouterr().err
  assert error.startswith('retina-tfx: error: ') and 'not-drive' in error and 'Traceback' not in error


def test_benchmark_gate_without_a_pipeline_run_is_a_clear_error(tmp_path, capsys):
  (tmp_path / 'root').mkdir()
  assert main(['benchmark-gate', '--pipeline-root', str(tmp_path / 'root'), '--output',
               str(tmp_path / 'out')]) == 1
  assert 'no pipeline runs recorded here' in capsys.readouterr().err
