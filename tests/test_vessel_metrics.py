"""The release gate's FOV-pixel metrics against scikit-learn, on awkward maps and through TFMA."""
import functools
import gc
import math
import weakref

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest
import tensorflow_model_analysis as tfma
from apache_beam.testing import util as beam_util

from conftest import gate_evaluation, sklearn_metrics, vessel_maps
from models import vessel_metrics as vm
from pipeline import eval_config


def _ours(*maps_per_image):
  return vm.scores(functools.reduce(vm.merge, (vm.histograms(*maps) for maps in maps_per_image),
                                    vm.empty_histograms()))


def _assert_same(ours, expected):
  for name in vm.METRIC_NAMES:
    if math.isnan(expected[name]):
      assert math.isnan(ours[name]), (name, ours[name])
    else:
      assert ours[name] == pytest.approx(expected[name], abs=1e-4), name


@pytest.mark.parametrize('sharpness', [0.1, 1.0, 6.0])
def test_equal_to_sklearn_per_image_and_pooled(sharpness):
  images = [vessel_maps(seed, sharpness) for seed in range(4)]
  for maps in images:
    _assert_same(_ours(maps), sklearn_metrics(*maps))
  pooled = [np.concatenate([image[i].reshape(-1) for image in images]) for i in range(3)]
  _assert_same(_ours(*images), sklearn_metrics(*pooled))


def _adversarial_cases():
  labels, predictions, fov = vessel_maps(7)
  rng = np.random.default_rng(0)
  edges = vm.THRESHOLDS[rng.integers(0, len(vm.THRESHOLDS), labels.shape)].astype(np.float32)
  return {
      'all background': (np.zeros_like(labels), predictions, fov),
      'all vessel': (np.ones_like(labels), predictions, fov),
      'empty FOV': (labels, predictions, np.zeros_like(fov)),
      'constant prediction': (labels, np.full_like(predictions, 0.3), fov),
      'constant 0.5': (labels, np.full_like(predictions, 0.5), fov),
      'predictions on thresholds': (labels, edges, fov),
      'only 0 and 1': (labels, (rng.random(labels.shape) < 0.4).astype(np.float32), fov),
      'perfect': (labels, labels.copy(), fov),
      'inverted': (labels, 1.0 - labels, fov),
  }


@pytest.mark.parametrize('case', sorted(_adversarial_cases()))
def test_equal_to_sklearn_on_adversarial_maps(case):
  maps = _adversarial_cases()[case]
  _assert_same(_ours(maps), sklearn_metrics(*maps))


def test_undefined_metrics_are_nan_and_counts_stay_exact():
  labels, predictions, fov = _adversarial_cases()['all background']
  result = _ours((labels, predictions, fov))
  assert math.isnan(result[vm.AUC]) and math.isnan(result[vm.RECALL])
  assert result[vm.FOV_PIXELS] == fov.sum()
  assert result[vm.SPECIFICITY] == pytest.approx(np.mean(predictions[fov > 0] < 0.5))
  empty = _ours(_adversarial_cases()['empty FOV'])
  assert empty[vm.FOV_PIXELS] == 0 and all(math.isnan(empty[n]) for n in (vm.AUC, vm.ACCURACY))


def test_fov_weighs_pixels_outside_out():
  labels, predictions, fov = vessel_maps(3)
  outside_garbage = np.where(fov > 0, predictions, 1.0 - labels)   # perfectly wrong outside
  assert _ours((labels, outside_garbage, fov)) == _ours((labels, predictions, fov))


def test_bad_maps_are_refused_with_a_clear_error():
  labels, predictions, fov = vessel_maps(1)
  with pytest.raises(ValueError, match='differ in size'):
    vm.histograms(labels, predictions[:-1], fov)
  with pytest.raises(ValueError, match='NaN'):
    vm.histograms(labels, np.full_like(predictions, np.nan), fov)
  with pytest.raises(ValueError, match='unknown FOV pixel metric'):
    vm.FovPixelMetric('auroc')


def test_curves_are_the_confusion_matrices_at_their_thresholds():
  labels, predictions, fov = vessel_maps(5)
  plot = vm.confusion_matrices(vm.histograms(labels, predictions, fov))
  inside = fov > 0
  for matrix in plot.matrices[::20]:
    called = predictions[inside] >= matrix.threshold
    vessel = labels[inside] > 0.5
    assert matrix.true_positives == np.sum(called & vessel)
    assert matrix.false_positives == np.sum(called & ~vessel)
    assert matrix.recall == pytest.approx(np.sum(called & vessel) / vessel.sum())
  assert len(plot.matrices) == len(vm.THRESHOLDS[::vm.PLOT_STRIDE])


def test_tfma_computes_the_same_metrics_overall_and_per_slice():
  """The metrics through TFMA's own evaluation on whole-map examples, sliced as the gate is."""
  images = [vessel_maps(seed) for seed in range(3)]
  extracts = [{
      tfma.LABELS_KEY: labels.reshape(-1), tfma.PREDICTIONS_KEY: predictions.reshape(-1),
      tfma.EXAMPLE_WEIGHTS_KEY: fov.reshape(-1),
      tfma.FEATURES_KEY: {'image_id': np.array([str(i).encode()])}}
      for i, (labels, predictions, fov) in enumerate(images)]
  config = eval_config.eval_config(min_auc=0.5, max_auc_drop=0.01)
  del config.model_specs[0].preprocessing_function_names[:]   # the extracts hold the maps already
  pooled = [np.concatenate([image[i].reshape(-1) for image in images]) for i in range(3)]
  expected = {(): sklearn_metrics(*pooled)} | {
      (('image_id', str(i)),): sklearn_metrics(*maps) for i, maps in enumerate(images)}

  def check(got):   # runs inside the pipeline (Beam pickles it): asserts there
    computed = {slice_key: {key.name: value for key, value in values.items()}
                for slice_key, values in got}
    assert sorted(computed) == sorted(expected)
    for slice_key, values in computed.items():
      _assert_same(values, expected[slice_key])

  with beam.Pipeline() as pipeline:
    results = pipeline | gate_evaluation(extracts, config)
    beam_util.assert_that(results['metrics'], check)


def test_each_image_is_reduced_to_its_histograms_per_model_and_nothing_per_pixel_goes_on():
  (labels, candidate, fov), (_, baseline, _) = vessel_maps(0), vessel_maps(1)
  extracts = {
      tfma.LABELS_KEY: {'candidate': labels, 'baseline': labels},
      tfma.PREDICTIONS_KEY: {'candidate': candidate, 'baseline': baseline},
      tfma.EXAMPLE_WEIGHTS_KEY: {'candidate': fov, 'baseline': fov},
      tfma.FEATURES_KEY: {'image_id': np.array([b'01']), 'image': np.array([b'PNG bytes'])}}
  reduced = vm.reduce_to_histograms(extracts, ['candidate', 'baseline'], ['dataset', 'image_id'])
  assert sorted(reduced) == sorted([tfma.FEATURES_KEY, vm.HISTOGRAMS_KEY])
  assert reduced[tfma.FEATURES_KEY] == {'image_id': extracts[tfma.FEATURES_KEY]['image_id']}
  for name, predictions in (('candidate', candidate), ('baseline', baseline)):
    np.testing.assert_array_equal(reduced[vm.HISTOGRAMS_KEY][name],
                                  vm.histograms(labels, predictions, fov))
  # Per image and model: the same size for maps of any size.
  assert reduced[vm.HISTOGRAMS_KEY]['candidate'].nbytes == vm.empty_histograms().nbytes


def test_the_evaluator_s_extractors_take_one_image_at_a_time_and_reduce_it_before_slicing():
  config = eval_config.eval_config(min_auc=0.5, max_auc_drop=0.01)
  del config.metrics_specs[0].metrics[0].per_slice_thresholds[:]   # no baseline model here
  stages = [e.stage_name for e in vm.custom_extractors(None, config, None)]
  assert stages[0] == 'OneImagePerBatch'
  assert stages.index('ReduceToFovHistograms') + 1 == stages.index(
      tfma.extractors.SLICE_KEY_EXTRACTOR_STAGE_NAME)


def test_a_batch_of_examples_is_split_into_batches_of_one():
  batch = pa.RecordBatch.from_arrays([pa.array([b'a', b'b', b'c'])], ['__raw_record__'])
  split = list(vm.one_image_per_batch({tfma.constants.ARROW_RECORD_BATCH_KEY: batch, 'other': 1}))
  assert [e[tfma.constants.ARROW_RECORD_BATCH_KEY].to_pydict() for e in split] == [
      {'__raw_record__': [value]} for value in (b'a', b'b', b'c')]
  assert all(e['other'] == 1 for e in split)


def test_an_image_s_extracts_left_in_reference_cycles_are_freed_before_the_nextvessel_maps():
  # TFMA's batching leaves each image's extracts in reference cycles (see one_image_per_batch).
  class Maps:
    pass
  batch = pa.RecordBatch.from_arrays([pa.array([b'a', b'b'])], ['__raw_record__'])
  images = vm.one_image_per_batch({tfma.constants.ARROW_RECORD_BATCH_KEY: batch})
  gc.disable()   # the automatic collector must not do the extractor's work
  try:
    next(images)
    maps = Maps()
    maps.cycle = maps
    maps_ref = weakref.ref(maps)
    del maps
    assert maps_ref() is not None
    next(images)
    assert maps_ref() is None
  finally:
    gc.enable()
