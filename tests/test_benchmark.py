"""`retina-tfx benchmark`: FOV-only pooled scoring, agreement with the Evaluator, the pushed model it
leaves, the table row."""
import json
import os

import numpy as np
import pytest

from components.drive_example_gen import source
from conftest import PIPELINE_ARGS
from pipeline import benchmark, cli


class _OracleModel:
  """Answers with a given function of the true label; garbage outside the FOV."""

  def __init__(self, data, answer):
    self.truth = {r.image.drive_path: r for r in source.list_drive([str(data)])}
    self.answer = answer
    self.calls = []

  def predict(self, png):
    record = next(r for r in self.truth.values()
                  if source.encode_png(source.decode_file(r.image, expect_binary=False)) == png)
    self.calls.append(record.image_id)
    label = source.decode_file(record.label, expect_binary=True) / 255.0
    outside = source.decode_file(record.fov, expect_binary=True) == 0
    return np.where(outside, 1.0 - label, self.answer(label)), None


def test_scores_pool_fov_pixels_of_the_test_images_only(tiny_drive):
  perfect = benchmark.score_test_images(_OracleModel(tiny_drive, lambda y: y), [str(tiny_drive)])
  assert perfect['images'] == 2
  for key in ('auc_roc', 'auc_pr', 'accuracy', 'sensitivity', 'specificity', 'f1'):
    assert perfect[key] == pytest.approx(1.0), key  # the garbage outside the FOV is not scored
  inverted = benchmark.score_test_images(_OracleModel(tiny_drive, lambda y: 1 - y), [str(tiny_drive)])
  assert inverted['auc_roc'] == pytest.approx(0.0)
  assert inverted['sensitivity'] == 0.0 and inverted['specificity'] == 0.0


def test_benchmark_command_leaves_serving_model_scores_and_a_row(demo_drive, tmp_path, capsys):
  table = tmp_path / 'BENCHMARKS.md'
  table.write_text('# Benchmarks\n')
  args = ['benchmark', '--data', str(demo_drive), '--output', str(tmp_path / 'out'),
          '--benchmarks-file', str(table), *PIPELINE_ARGS]
  assert cli.main(args) == 0, capsys.readouterr().err
  result = json.loads((tmp_path / 'out' / 'benchmark.json').read_text())
  versions = os.listdir(tmp_path / 'out' / 'serving_model')
  assert len(versions) == 1 and versions[0].isdigit()
  assert (tmp_path / 'out' / 'serving_model' / versions[0] / 'saved_model.pb').exists()
  assert result['scores']['images'] == 2 and 0 <= result['scores']['auc_roc'] <= 1
  # The Evaluator (TFMA, FOV as example weight) and this scoring agree on the same test pixels.
  assert result['evaluator']['auc'] == pytest.approx(result['scores']['auc_roc'], abs=1e-3)
  assert result['evaluator']['pushed_version'] == versions[0]
  assert result['command'] == 'retina-tfx ' + ' '.join(args)
  rows = [line for line in table.read_text().splitlines() if line.startswith('| 20')]
  assert len(rows) == 1 and f"{result['scores']['auc_roc']:.4f}" in rows[0]
  assert table.read_text().count(benchmark.BENCHMARK_TABLE_HEADER) == 1
  assert 'auc_roc' in capsys.readouterr().out
