"""The release gate's EvalConfig, judged by TFMA's own validator as TFX's Evaluator uses it."""
import apache_beam as beam
import numpy as np
import pytest
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.evaluators import metrics_validator
from tensorflow_model_analysis.metrics import metric_types

from cli import history
from conftest import gate_evaluation, vessel_maps
from models import constants
from pipeline import eval_config

OVERALL = ()
ONE_IMAGE = (('image_id', b'03'),)
DATASET = constants.DATASET_KEY
CANDIDATE, BASELINE = tfma.constants.CANDIDATE_KEY, tfma.constants.BASELINE_KEY


def _blessed(slice_key, auc, baseline_auc=None):
  config = tfma.utils.update_eval_config_with_defaults(
      eval_config.eval_config(min_auc=0.9, max_auc_drop=0.002), has_baseline=baseline_auc is not None,
      rubber_stamp=True)   # what TFX's Evaluator does before it validates
  candidate = '' if baseline_auc is None else 'candidate'
  metrics = {metric_types.MetricKey(name='auc', model_name=candidate, example_weighted=True): auc}
  if baseline_auc is not None:
    metrics[metric_types.MetricKey(name='auc', model_name='baseline', example_weighted=True)] = baseline_auc
    metrics[metric_types.MetricKey(name='auc', model_name=candidate, example_weighted=True,
                                   is_diff=True)] = auc - baseline_auc
  return metrics_validator.validate_metrics((slice_key, metrics), config).validation_ok


@pytest.mark.parametrize('auc,blessed', [(0.95, True), (0.9, True), (0.85, False),
                                         (float('nan'), False)])
def test_overall_auc_against_the_absolute_bound(auc, blessed):
  assert _blessed(OVERALL, auc) == blessed


def test_one_hard_image_does_not_veto_the_model():
  assert _blessed(ONE_IMAGE, 0.5)


@pytest.mark.parametrize('auc,blessed', [(0.951, True), (0.9485, True), (0.947, False)])
def test_no_regression_beyond_the_tolerance_against_the_blessed_baseline(auc, blessed):
  assert _blessed(OVERALL, auc, baseline_auc=0.95) == blessed


def test_a_drop_on_one_dataset_is_rejected_even_when_the_pooled_auc_rises():
  assert not _blessed(((DATASET, b'STARE'),), 0.947, baseline_auc=0.95)
  assert _blessed(((DATASET, b'STARE'),), 0.9485, baseline_auc=0.95)
  assert _blessed(((DATASET, b'STARE'),), 0.5)   # without a baseline only the pooled AUC counts


def _evaluate(tmp_path, noise):
  """TFMA's evaluation of the gate as TFX's Evaluator runs it, on two datasets of two images each,
  with a candidate and a baseline model whose predictions have the noise scale
  noise[model][dataset]; returns the candidate's pooled AUC change and the gate's reasons."""
  config = tfma.utils.update_eval_config_with_defaults(
      eval_config.eval_config(min_auc=0.5, max_auc_drop=0.002), has_baseline=True)
  for spec in config.model_specs:
    del spec.preprocessing_function_names[:]   # the extracts hold the maps already
  extracts = []
  for dataset, seeds in (('DRIVE', (0, 1)), ('STARE', (2, 3))):
    for seed in seeds:
      maps = {model: vessel_maps(seed, noise=noise[model][dataset]) for model in noise}
      labels, _, fov = maps[CANDIDATE]
      extracts.append({
          tfma.LABELS_KEY: labels.reshape(-1), tfma.EXAMPLE_WEIGHTS_KEY: fov.reshape(-1),
          tfma.PREDICTIONS_KEY: {model: m[1].reshape(-1) for model, m in maps.items()},
          tfma.FEATURES_KEY: {DATASET: np.array([dataset.encode()]),
                              'image_id': np.array([str(seed).encode()])}})
  with beam.Pipeline() as pipeline:
    _ = (pipeline | gate_evaluation(extracts, config)
         | tfma.writers.MetricsPlotsAndValidationsWriter(
             output_paths={key: str(tmp_path / key) for key in (
                 tfma.METRICS_KEY, tfma.PLOTS_KEY, tfma.VALIDATIONS_KEY)},
             eval_config=config).ptransform)
  change = history.metric_values(str(tmp_path))[1]
  return change, history.failed_thresholds(str(tmp_path))


def test_the_gate_names_the_dataset_that_got_worse_and_blesses_an_honest_candidate(tmp_path):
  baseline = {'DRIVE': 2.0, 'STARE': 2.0}
  better_on_drive_worse_on_stare = {'DRIVE': 1.0, 'STARE': 2.1}
  change, reasons = _evaluate(tmp_path / 'mixed', {CANDIDATE: better_on_drive_worse_on_stare,
                                                   BASELINE: baseline})
  assert change > 0.002   # the pooled AUC rose, yet:
  assert len(reasons) == 1 and reasons[0].startswith('auc on dataset STARE changed by -'), reasons
  change, reasons = _evaluate(tmp_path / 'honest', {CANDIDATE: {'DRIVE': 1.0, 'STARE': 1.9},
                                                    BASELINE: baseline})
  assert change > 0 and reasons == []
