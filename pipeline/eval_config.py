"""The release gate's TFMA configuration: per-pixel metrics inside the FOV on the test images.

The model's `predict_examples` signature returns each image's flattened probability map and
`transform_features` its flattened label and FOV maps; TFMA pairs them pixel by pixel with the FOV
as the per-pixel example weight, so pixels outside the FOV weigh nothing. Only the FOV-weighted AUC
over all test pixels decides the blessing; the other metrics and the per-image slices are reported.
"""
import tensorflow_model_analysis as tfma

from models import constants, serving

GATED_METRIC = 'auc'   # TFMA's name for its AUC (ROC) metric
# Reported next to the gate; the plot's confusion matrices draw the report's ROC and PR curves.
REPORTED_METRICS = ('AUCPrecisionRecall', 'BinaryAccuracy', 'Precision', 'Recall', 'Specificity',
                    'F1Score', 'ConfusionMatrixPlot')


def eval_config(min_auc: float, max_auc_drop: float) -> tfma.EvalConfig:
  """min_auc: absolute lower bound; max_auc_drop: how far below the latest blessed model's AUC a
  candidate may fall (TFX's Evaluator skips this check while no blessed baseline exists)."""
  gate = tfma.MetricThreshold(
      value_threshold=tfma.GenericValueThreshold(lower_bound={'value': min_auc}),
      change_threshold=tfma.GenericChangeThreshold(
          direction=tfma.MetricDirection.HIGHER_IS_BETTER, absolute={'value': -max_auc_drop}))
  # On the overall slice only: per-image AUCs are reported, and a hard image must not veto a model
  # that is better on the test set as a whole.
  metrics = [tfma.MetricConfig(class_name='AUC', per_slice_thresholds=[
                 tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()], threshold=gate)]),
             tfma.MetricConfig(class_name='ExampleCount')]
  metrics += [tfma.MetricConfig(class_name=name) for name in REPORTED_METRICS]
  return tfma.EvalConfig(
      model_specs=[tfma.ModelSpec(
          signature_name='predict_examples',
          preprocessing_function_names=['transform_features'],
          prediction_key=serving.PROBABILITIES_KEY,
          label_key=constants.LABEL_KEY,
          example_weight_key=constants.FOV_KEY)],
      slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=[constants.IMAGE_ID_KEY])],
      metrics_specs=[tfma.MetricsSpec(
          metrics=metrics, example_weights=tfma.ExampleWeightOptions(weighted=True))])
