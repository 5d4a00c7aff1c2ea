"""The release gate's TFMA configuration: FOV-pixel metrics of whole maps on the test images.

The model's `predict_examples` signature returns each image's flattened probability map and
`transform_features` its flattened label and FOV maps; `models.vessel_metrics` scores each
example's maps at once with the FOV as per-pixel weight (pixels outside it weigh
nothing), overall, per dataset and per image. The AUC decides the blessing: over all test pixels
it must reach `min_auc`, and neither it nor any dataset's AUC may fall more than `max_auc_drop`
below the latest blessed model's on the same images; the other metrics and the per-image slices are
reported.
"""
import json

import tensorflow_model_analysis as tfma

from models import constants, serving, vessel_metrics

GATED_METRIC = vessel_metrics.AUC
# Reported next to the gate; the plot's confusion matrices draw the report's ROC and PR curves.
REPORTED_METRICS = tuple(name for name in vessel_metrics.METRIC_NAMES if name != GATED_METRIC) + (
    vessel_metrics.CURVES,)


def _metric(name: str, **kwargs) -> tfma.MetricConfig:
  return tfma.MetricConfig(class_name=vessel_metrics.FovPixelMetric.__name__,
                           module=vessel_metrics.__name__, config=json.dumps({'name': name}),
                           **kwargs)


def eval_config(min_auc: float, max_auc_drop: float) -> tfma.EvalConfig:
  """min_auc: absolute lower bound; max_auc_drop: how far below the latest blessed model's AUC a
  candidate may fall (TFX's Evaluator skips this check while no blessed baseline exists)."""
  no_regression = tfma.GenericChangeThreshold(direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                                              absolute={'value': -max_auc_drop})
  overall_gate = tfma.MetricThreshold(
      value_threshold=tfma.GenericValueThreshold(lower_bound={'value': min_auc}),
      change_threshold=no_regression)
  return tfma.EvalConfig(
      model_specs=[tfma.ModelSpec(
          signature_name=serving.PREDICT_EXAMPLES,
          preprocessing_function_names=[serving.TRANSFORM_FEATURES],
          prediction_key=serving.PROBABILITIES_KEY,
          label_key=constants.LABEL_KEY,
          example_weight_key=constants.FOV_KEY)],
      slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=[constants.DATASET_KEY]),
                     tfma.SlicingSpec(feature_keys=[constants.IMAGE_ID_KEY])],
      metrics_specs=[tfma.MetricsSpec(
          metrics=[_metric(vessel_metrics.AUC, per_slice_thresholds=[
                      tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()],
                                                   threshold=overall_gate),
                      # A better pooled AUC must not hide a camera that got worse. Not per image:
                      # a hard image must not veto a model better on the test set as a whole.
                      tfma.PerSliceMetricThreshold(
                          slicing_specs=[tfma.SlicingSpec(feature_keys=[constants.DATASET_KEY])],
                          threshold=tfma.MetricThreshold(change_threshold=no_regression))])]
                  + [_metric(name) for name in REPORTED_METRICS],
          example_weights=tfma.ExampleWeightOptions(weighted=True))])
