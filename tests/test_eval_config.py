"""The release gate's EvalConfig, judged by TFMA's own validator as TFX's Evaluator uses it."""
import pytest
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.evaluators import metrics_validator
from tensorflow_model_analysis.metrics import metric_types

from pipeline import eval_config

OVERALL = ()
ONE_IMAGE = (('image_id', b'03'),)


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
