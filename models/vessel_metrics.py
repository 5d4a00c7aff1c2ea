"""The release gate's metrics: FOV-pixel scores of whole probability maps, as one TFMA metric.

TFMA's built-in metrics flatten every map into per-pixel (label, prediction, weight) triples and
feed them one by one through Python combiners: over 9 minutes to gate DRIVE's 20 test images
against a baseline, linear in pixels. These metrics take each example's maps at once and accumulate with numpy, per slice and
model, two weighted histograms of the predicted probability over the bins between `THRESHOLDS`
(background and vessel pixels, the FOV map as weight) and each bin's lowest and highest
probability; merging adds histograms and keeps extremes. Every reported number derives from them:

- AUC-ROC: the ROC through all thresholds, trapezoidal; pixels whose probabilities fall between the
  same two neighbouring thresholds count as ties (half a correctly ordered pair).
- AUC-PR: average precision, scikit-learn's step-wise sum of precision over recall increments
  (see `_average_precision` for the pixels inside a bin).
- accuracy, precision, recall (sensitivity), specificity, F1: with vessel meaning probability >= 0.5.
- the FOV pixel count, and confusion matrices at every `PLOT_STRIDE`-th threshold (a TFMA plot) for
  the report's ROC and PR curves.
Each is its own TFMA metric (`FovPixelMetric(name)`), derived from one shared histogram computation.
A metric that is undefined on a slice (an AUC without vessel or without background pixels, a
precision without predicted vessels) is NaN, which fails any threshold on it.

Memory: `custom_extractors` (the Evaluator's hook) hands the model one example at a time and
reduces each image's maps to its histograms (~0.9 MB per model, whatever the image's size) before
slicing and combining (BENCHMARKS.md, "Scale").
"""
import gc
from typing import Dict, Iterable, Iterator, Sequence

import apache_beam as beam
import numpy as np
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.metrics import metric_types, metric_util
from tensorflow_model_analysis.proto import metrics_for_slice_pb2

# Metric names, as the gate, `status` and the report read them.
AUC = 'auc'
AUC_PR = 'auc_precision_recall'
ACCURACY = 'binary_accuracy'
PRECISION = 'precision'
RECALL = 'recall'
SPECIFICITY = 'specificity'
F1 = 'f1_score'
FOV_PIXELS = 'fov_pixel_count'
CURVES = 'fov_confusion_matrices'   # the plot
METRIC_NAMES = (AUC, AUC_PR, ACCURACY, PRECISION, RECALL, SPECIFICITY, F1, FOV_PIXELS)

DECISION_THRESHOLD = 0.5   # where accuracy, precision, recall, specificity and F1 are read
# Thresholds evenly spaced in logit, 0.002 apart, from -40 to 17: a relative step of 0.2 % in the
# odds everywhere, near 0 and 1 too, where a trained model puts most pixels (evenly spaced
# probabilities, as in TFMA's own AUC, lump every pixel below 1e-4 into one bin). Above logit 16.6
# float32 probabilities are exactly 1; below -40 (p < 4e-18) all are lumped. Logit 0 is one of
# them, so DECISION_THRESHOLD is a threshold exactly. 28,501 thresholds: 0.9 MB of accumulator
# per slice and model; on maps of DRIVE's size the AUCs then differ from scikit-learn's exact
# ones by ~1e-5 at most (tests/test_vessel_metrics.py), even where most pixels crowd within
# 0.45-0.55.
_LOGIT_STEP = 0.002
_LOGITS = np.arange(round(-40 / _LOGIT_STEP), round(17 / _LOGIT_STEP) + 1) * _LOGIT_STEP
THRESHOLDS = 1.0 / (1.0 + np.exp(-_LOGITS))
_DECISION_INDEX = int(np.flatnonzero(_LOGITS == 0)[0])
PLOT_STRIDE = 150   # 191 confusion matrices per slice: enough to draw the curves


# Rows of the accumulator, one column per bin (len(THRESHOLDS) + 1 of them; column k holds the
# probabilities p with THRESHOLDS[k-1] <= p < THRESHOLDS[k]).
_BACKGROUND, _VESSEL = 0, 1   # weighted pixel counts
_LOWEST, _HIGHEST = 2, 3      # extreme probabilities seen in the bin (weight > 0): a bin holds
                              # ties (one value) when they are equal
_COLUMNS = len(THRESHOLDS) + 1


def empty_histograms() -> np.ndarray:
  counts = np.zeros((2, _COLUMNS))
  return np.concatenate([counts, np.full((1, _COLUMNS), np.inf), np.full((1, _COLUMNS), -np.inf)])


def merge(total: np.ndarray, more: np.ndarray) -> np.ndarray:
  """Adds `more` (from `histograms`) into `total`, in place."""
  total[[_BACKGROUND, _VESSEL]] += more[[_BACKGROUND, _VESSEL]]
  np.minimum(total[_LOWEST], more[_LOWEST], out=total[_LOWEST])
  np.maximum(total[_HIGHEST], more[_HIGHEST], out=total[_HIGHEST])
  return total


def histograms(labels: np.ndarray, predictions: np.ndarray, weights: np.ndarray) -> np.ndarray:
  """One image's maps (any shape, the same for all three; vessel where label > 0.5) -> its
  accumulator: [4, bins] background and vessel pixel counts (weighted) and extreme probabilities."""
  labels, predictions, weights = (np.asarray(a).reshape(-1) for a in (labels, predictions, weights))
  if not labels.size == predictions.size == weights.size:
    raise ValueError(f'label, prediction and weight maps differ in size: {labels.size}, '
                     f'{predictions.size}, {weights.size} values')
  if np.isnan(predictions).any():
    raise ValueError('the model predicted NaN probabilities')
  predictions = predictions.astype(np.float64)
  bins = np.searchsorted(THRESHOLDS, predictions, side='right')
  result = empty_histograms()
  result[[_BACKGROUND, _VESSEL]] = np.bincount(
      bins + _COLUMNS * (labels > 0.5), weights=weights.astype(np.float64),
      minlength=2 * _COLUMNS).reshape(2, _COLUMNS)
  inside = weights > 0
  np.minimum.at(result[_LOWEST], bins[inside], predictions[inside])
  np.maximum.at(result[_HIGHEST], bins[inside], predictions[inside])
  return result


def _ratio(numerator: float, denominator: float) -> float:
  return numerator / denominator if denominator > 0 else float('nan')


def _average_precision(vessel: np.ndarray, background: np.ndarray, tied: np.ndarray) -> float:
  """Average precision from per-bin pixel counts in descending order of probability; `tied`: the
  bin holds a single probability value.

  Tied pixels share one threshold: scikit-learn's step-wise sum takes the precision at the bin's
  lower end for all of its vessel pixels, and so does this. In a bin of distinct values the order
  inside is lost; there the precision is integrated along the bin's straight segment (vessel and
  background pixels taken in equal proportion): the expected step-wise sum over their orders."""
  true_pos, called = np.cumsum(vessel), np.cumsum(vessel + background)   # at each bin's lower end
  useful = vessel > 0
  gain, size = vessel[useful], (vessel + background)[useful]
  tp_end, called_end = true_pos[useful], called[useful]
  tp_start, called_start = tp_end - gain, called_end - size
  with np.errstate(invalid='ignore', divide='ignore'):
    # The integral over t in [0, 1] of (tp_start + gain t) / (called_start + size t).
    integrated = (gain / size + (tp_start - gain * called_start / size) / size
                  * np.log1p(size / called_start))
  precision = np.where(tied[useful] | (called_start == 0), tp_end / called_end, integrated)
  return _ratio(np.sum(gain * precision), true_pos[-1])


def scores(accumulator: np.ndarray) -> Dict[str, float]:
  """An accumulator (`histograms` merged over images) -> every metric in METRIC_NAMES."""
  background, vessel = accumulator[_BACKGROUND], accumulator[_VESSEL]
  # Pixels at or above each threshold, from the highest threshold down, starting with none.
  false_pos = np.concatenate([[0.0], np.cumsum(background[::-1])])
  true_pos = np.concatenate([[0.0], np.cumsum(vessel[::-1])])
  negatives, positives = false_pos[-1], true_pos[-1]
  auc = _ratio(np.sum(np.diff(false_pos) * (true_pos[1:] + true_pos[:-1]) / 2.0),
               positives * negatives)
  tied = (accumulator[_LOWEST] == accumulator[_HIGHEST])[::-1]
  auc_pr = _average_precision(vessel[::-1], background[::-1], tied)
  above = len(THRESHOLDS) - _DECISION_INDEX   # columns at or above the decision threshold
  tp, fp = true_pos[above], false_pos[above]
  fn, tn = positives - tp, negatives - fp
  return {
      AUC: auc, AUC_PR: auc_pr,
      ACCURACY: _ratio(tp + tn, positives + negatives),
      PRECISION: _ratio(tp, tp + fp), RECALL: _ratio(tp, positives),
      SPECIFICITY: _ratio(tn, negatives), F1: _ratio(2 * tp, 2 * tp + fp + fn),
      FOV_PIXELS: float(positives + negatives),
  }


def confusion_matrices(accumulator: np.ndarray
                       ) -> metrics_for_slice_pb2.ConfusionMatrixAtThresholds:
  """The confusion matrix at every PLOT_STRIDE-th threshold, in TFMA's plot format."""
  background, vessel = accumulator[_BACKGROUND], accumulator[_VESSEL]
  # Pixels at or above THRESHOLDS[k]: columns k+1 and up.
  false_pos = np.cumsum(background[::-1])[::-1][1:]
  true_pos = np.cumsum(vessel[::-1])[::-1][1:]
  negatives, positives = background.sum(), vessel.sum()
  plot = metrics_for_slice_pb2.ConfusionMatrixAtThresholds()
  for k in range(0, len(THRESHOLDS), PLOT_STRIDE):
    tp, fp = true_pos[k], false_pos[k]
    plot.matrices.add(
        threshold=THRESHOLDS[k], true_positives=tp, false_positives=fp,
        false_negatives=positives - tp, true_negatives=negatives - fp,
        # Above every prediction nothing is called vessel: precision 1 by the usual convention.
        precision=tp / (tp + fp) if tp + fp > 0 else 1.0,
        recall=_ratio(tp, positives), false_positive_rate=_ratio(fp, negatives))
  return plot


HISTOGRAMS_KEY = 'fov_histograms'   # extract: {model name: `histograms` of the image's maps}


def reduce_to_histograms(extracts: tfma.Extracts, model_names: Sequence[str],
                         slice_features: Sequence[str]) -> tfma.Extracts:
  """One image's extracts -> the features it is sliced by and, per model, the FOV-weighted
  `histograms` of its maps (labels, predictions, and the FOV as example weight): nothing per pixel
  goes on."""
  inputs = metric_types.StandardMetricInputs(extracts)
  features = extracts[tfma.FEATURES_KEY]
  return {tfma.FEATURES_KEY: {key: features[key] for key in slice_features if key in features},
          HISTOGRAMS_KEY: {name: histograms(inputs.get_labels(name), inputs.get_predictions(name),
                                            inputs.get_example_weights(name))
                           for name in model_names}}


def HistogramsExtractor(eval_config: tfma.EvalConfig) -> tfma.extractors.Extractor:  # pylint: disable=invalid-name
  """The extractor that reduces each image to its histograms and slicing features; TFMA's slice key
  extractor comes after it (the metrics evaluator runs right after that one)."""
  model_names = [spec.name for spec in eval_config.model_specs]
  slice_features = sorted({key for spec in eval_config.slicing_specs for key in spec.feature_keys})
  return tfma.extractors.Extractor(
      stage_name='ReduceToFovHistograms',
      ptransform=beam.Map(reduce_to_histograms, model_names, slice_features))


def one_image_per_batch(extracts: tfma.Extracts) -> Iterator[tfma.Extracts]:
  """A batch of input examples (an Arrow RecordBatch, as TFX's reader batches them: up to 1,000
  rows) -> one batch per example, so the maps predicted from them exist one image at a time.

  TFMA 0.47's batching closures (tfma.utils.util's batch_size, split_extracts) leave each image's
  extracts in reference cycles: without a (~1 ms, young-generation) collection here, earlier maps
  pile up until the collector happens to run (+28 MB of peak RSS per 2048x2048 image; +4 with)."""
  batch = extracts[tfma.constants.ARROW_RECORD_BATCH_KEY]
  for row in range(batch.num_rows):
    gc.collect(generation=1)
    yield {**extracts, tfma.constants.ARROW_RECORD_BATCH_KEY: batch.slice(row, 1)}


def OneImagePerBatchExtractor() -> tfma.extractors.Extractor:  # pylint: disable=invalid-name
  return tfma.extractors.Extractor(stage_name='OneImagePerBatch',
                                   ptransform=beam.FlatMap(one_image_per_batch))


def custom_extractors(eval_shared_model, eval_config: tfma.EvalConfig, tensor_adapter_config):
  """TFX Evaluator's hook (its module_path is this module): TFMA's own extractors, fed one image
  per batch, with the reduction to histograms just before the slice keys are extracted."""
  extractors = tfma.default_extractors(eval_shared_model=eval_shared_model,
                                       eval_config=eval_config,
                                       tensor_adapter_config=tensor_adapter_config)
  slicing = [e.stage_name for e in extractors].index(
      tfma.extractors.SLICE_KEY_EXTRACTOR_STAGE_NAME)
  return ([OneImagePerBatchExtractor()] + extractors[:slicing] + [HistogramsExtractor(eval_config)]
          + extractors[slicing:])


class FovPixelMetric(metric_types.Metric):
  """One of METRIC_NAMES, or CURVES (the plot), for every model and slice of an evaluation.

  All of them derive from one histogram computation per model, which TFMA runs once however many
  of them an EvalConfig lists, from the histograms HistogramsExtractor leaves in the extracts. The
  example weight (the FOV map) weighs each pixel: configure the model spec's example_weight_key and
  weighted metrics."""

  def __init__(self, name: str):
    if name not in (*METRIC_NAMES, CURVES):
      raise ValueError(f'unknown FOV pixel metric {name!r}: one of {", ".join(METRIC_NAMES)} or '
                       f'{CURVES}')
    super().__init__(metric_util.merge_per_key_computations(_computations), name=name)


metric_types.register_metric(FovPixelMetric)

_HISTOGRAMS = '_fov_histograms'   # private (leading _): TFMA does not write it out


def _computations(name: str, model_name: str = '', output_name: str = '',
                  example_weighted: bool = False) -> metric_types.MetricComputations:
  if not example_weighted:
    raise ValueError(f'{name}: FOV pixel metrics weigh each pixel by the FOV map: configure the '
                     'model spec\'s example_weight_key and weighted metrics')

  def key(key_type, key_name):
    return key_type(name=key_name, model_name=model_name, output_name=output_name,
                    example_weighted=example_weighted)
  histograms_key = key(metric_types.MetricKey, _HISTOGRAMS)
  if name == CURVES:
    result_key = key(metric_types.PlotKey, name)
    derive = confusion_matrices
  else:
    result_key = key(metric_types.MetricKey, name)
    derive = lambda counts: scores(counts)[name]
  return [
      metric_types.MetricComputation(
          keys=[histograms_key],
          preprocessors=[metric_types.StandardMetricInputsPreprocessor(
              include_filter=[HISTOGRAMS_KEY], include_default_inputs=False)],
          combiner=_HistogramCombiner(histograms_key)),
      metric_types.DerivedMetricComputation(
          keys=[result_key],
          result=lambda metrics: {result_key: derive(metrics[histograms_key])}),
  ]


class _HistogramCombiner(beam.CombineFn):
  """Images' histograms in (see HistogramsExtractor), their sum out."""

  def __init__(self, key: metric_types.MetricKey):
    self._key = key

  def create_accumulator(self) -> np.ndarray:
    return empty_histograms()

  def add_input(self, accumulator: np.ndarray, element: metric_types.StandardMetricInputs
                ) -> np.ndarray:
    if HISTOGRAMS_KEY not in element:
      raise ValueError(f'no {HISTOGRAMS_KEY} in the extracts: FOV pixel metrics need '
                       f'{__name__}.HistogramsExtractor before the slice key extractor')
    return merge(accumulator, element[HISTOGRAMS_KEY][self._key.model_name])

  def merge_accumulators(self, accumulators: Iterable[np.ndarray]) -> np.ndarray:
    accumulators = iter(accumulators)
    total = next(accumulators)
    for accumulator in accumulators:
      merge(total, accumulator)
    return total

  def extract_output(self, accumulator: np.ndarray) -> Dict[metric_types.MetricKey, np.ndarray]:
    return {self._key: accumulator}
