"""Model builders, strategy choice, augmentation and the loss/metric plumbing of the Trainer."""
import json

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from models import model as model_lib
from models import augmentation, settings, training


@pytest.mark.parametrize('architecture', [settings.UNET, settings.SINE_NET])
@pytest.mark.parametrize('size', [(48, 48), (64, 96), (592, 568)])
def test_models_are_fully_convolutional(architecture, size):
  config = settings.ModelConfig(architecture=architecture)
  model = model_lib.build_model(config)
  assert all(side % settings.model_stride(config) == 0 for side in size)
  out = model(tf.random.uniform([2, *size, 1]), training=False)
  assert out.shape == (2, *size, 1)
  assert 0 <= float(tf.reduce_min(out)) and float(tf.reduce_max(out)) <= 1


def test_parameter_counts_are_small():
  # Recorded in the README; a change of architecture should be a visible decision.
  counts = {a: model_lib.build_model(settings.ModelConfig(architecture=a)).count_params()
            for a in (settings.UNET, settings.SINE_NET)}
  assert counts == {settings.UNET: 505_729, settings.SINE_NET: 513_753}


def test_unknown_architecture_is_a_clear_error():
  with pytest.raises(ValueError, match="unknown architecture 'vgg'"):
    model_lib.build_model(settings.ModelConfig(architecture='vgg'))


@pytest.fixture
def restores_float32_policy():
  yield
  keras.mixed_precision.set_global_policy('float32')


@pytest.mark.parametrize('flags, policy', [
    (frozenset(), 'float32'),
    (frozenset({'avx2', 'avx512f', 'avx512bw'}), 'float32'),   # bfloat16 would be emulated
    (frozenset({'avx512f', 'avx512_bf16'}), 'mixed_bfloat16'),
    (frozenset({'avx512f', 'amx_tile', 'amx_bf16'}), 'mixed_bfloat16'),
])
def test_cpu_gets_default_strategy_and_bfloat16_only_where_native(flags, policy,
                                                                   restores_float32_policy):
  strategy = training.choose_strategy(flags)
  assert not isinstance(strategy, tf.distribute.MirroredStrategy)
  assert keras.mixed_precision.global_policy().name == policy


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
  cpuinfo = tmp_path / 'cpuinfo'
  cpuinfo.write_text('processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 amx_bf16 avx2\n')
  assert training.cpu_flags(str(cpuinfo)) == {'fpu', 'sse2', 'amx_bf16', 'avx2'}
  assert training.cpu_flags(str(tmp_path / 'missing')) == frozenset()


def test_mixed_precision_models_are_exported_as_float32_with_the_same_weights(
    restores_float32_policy):
  config = settings.ModelConfig(base_filters=4, depth=2)
  keras.mixed_precision.set_global_policy('mixed_bfloat16')
  trained = model_lib.build_model(config)
  assert trained.compute_dtype == 'bfloat16'
  exported = training.float32_copy(trained, config)
  assert exported.compute_dtype == 'float32'
  assert keras.mixed_precision.global_policy().name == 'float32'
  for ours, theirs in zip(exported.get_weights(), trained.get_weights()):
    np.testing.assert_array_equal(ours, theirs)
  images = tf.random.uniform([1, 32, 32, 1], seed=1)
  np.testing.assert_allclose(exported(images, training=False),
                             trained(images, training=False), atol=0.02)
  assert training.float32_copy(exported, config) is exported


def test_gpus_get_mirrored_strategy_and_mixed_precision(monkeypatch, restores_float32_policy):
  created = []
  fake_gpus = [tf.config.PhysicalDevice('/physical_device:GPU:0', 'GPU'),
               tf.config.PhysicalDevice('/physical_device:GPU:1', 'GPU')]
  monkeypatch.setattr(tf.config, 'list_physical_devices',
                      lambda kind=None: fake_gpus if kind == 'GPU' else [])
  monkeypatch.setattr(tf.distribute, 'MirroredStrategy', lambda: created.append(1) or 'mirrored')
  assert training.choose_strategy() == 'mirrored'
  assert created == [1]
  assert keras.mixed_precision.global_policy().name == 'mixed_float16'


def test_augmentation_moves_image_label_and_fov_together():
  rng = np.random.default_rng(0)
  label = (rng.random((16, 16, 1)) > 0.7).astype(np.float32)
  fov = np.zeros((16, 16, 1), np.float32)
  fov[2:9, 3:14] = 1
  image = np.where(label > 0, 0.8, 0.2).astype(np.float32)
  seen = set()
  for seed in range(12):
    aug_image, aug_label, aug_fov = (t.numpy() for t in augmentation.augment(
        tf.constant(image), tf.constant(label), tf.constant(fov), tf.constant([seed, 7])))
    # The jitter is monotonic, so vessel pixels stay the bright ones, wherever the geometry went.
    np.testing.assert_array_equal(aug_image > aug_image.mean(), aug_label > 0.5)
    assert aug_label.sum() == label.sum() and aug_fov.sum() == fov.sum()
    seen.add(aug_fov.tobytes())
    assert 0 <= aug_image.min() and aug_image.max() <= 1
  assert len(seen) > 3  # several distinct geometric transforms occur


def test_zoom_keeps_image_and_label_aligned_and_borders_out_of_the_fov():
  rng = np.random.default_rng(1)
  label = (rng.random((32, 32, 1)) > 0.6).astype(np.float32)
  fov = np.ones((32, 32, 1), np.float32)
  zoom_only = settings.AugmentationConfig(max_zoom=1.5, contrast=0.0, brightness=0.0)
  shrunk = enlarged = 0
  for seed in range(20):
    aug_image, aug_label, aug_fov = (t.numpy() for t in augmentation.augment(
        tf.constant(label), tf.constant(label), tf.constant(fov), tf.constant([seed, 3]), zoom_only))
    assert aug_image.shape == aug_label.shape == aug_fov.shape == (32, 32, 1)
    assert set(np.unique(aug_label)) <= {0.0, 1.0} and set(np.unique(aug_fov)) <= {0.0, 1.0}
    # The image went through the label's own resampling: thresholded, they are the same map.
    np.testing.assert_array_equal(aug_image > 0.5, aug_label > 0.5)
    if aug_fov.sum() < fov.sum():
      shrunk += 1      # a zero border: outside the FOV, and no vessel there
      assert aug_label[aug_fov == 0].sum() == 0
    else:
      enlarged += 1
  assert shrunk and enlarged


def test_intensity_augmentation_changes_the_image_only_within_bounds():
  rng = np.random.default_rng(2)
  image = rng.random((24, 24, 1)).astype(np.float32)
  label = (image > 0.7).astype(np.float32)
  fov = np.ones_like(image)
  strong = settings.AugmentationConfig(max_gamma=1.5, contrast=0.3, brightness=0.1,
                                       max_blur_sigma=1.0, max_noise_sigma=0.05)
  changes = []
  for seed in range(8):
    aug_image, aug_label, aug_fov = (t.numpy() for t in augmentation.augment(
        tf.constant(image), tf.constant(label), tf.constant(fov), tf.constant([seed, 5]), strong))
    assert 0 <= aug_image.min() and aug_image.max() <= 1
    # Flips and turns only, for the label and FOV: same pixel counts.
    assert aug_label.sum() == label.sum() and aug_fov.sum() == fov.sum()
    changes.append(float(np.abs(np.sort(aug_image, None) - np.sort(image, None)).mean()))
  assert min(changes) > 0.005 and len(set(np.round(changes, 4))) == len(changes)


def test_blur_of_a_constant_is_the_constant_and_spreads_an_impulse():
  flat = tf.fill([9, 9, 1], 0.4)
  np.testing.assert_allclose(augmentation._blur(flat, tf.constant(1.0)).numpy(), 0.4,
                             atol=1e-6)
  impulse = np.zeros((9, 9, 1), np.float32)
  impulse[4, 4] = 1.0
  blurred = augmentation._blur(tf.constant(impulse), tf.constant(1.0)).numpy()
  assert blurred[4, 4] < 0.2 and blurred[4, 5] > 0.05 and blurred.sum() == pytest.approx(1.0, 1e-5)
  np.testing.assert_allclose(augmentation._blur(tf.constant(impulse), tf.constant(0.0)).numpy(),
                             impulse, atol=1e-6)


def test_loss_and_auc_ignore_pixels_outside_the_fov():
  label = tf.constant([[[[1.0], [0.0]], [[1.0], [0.0]]]])
  fov = tf.constant([[[[1.0], [1.0]], [[0.0], [0.0]]]])
  y_true = tf.concat([label, fov], axis=-1)
  good_inside = tf.constant([[[[0.9], [0.1]], [[0.0], [1.0]]]])   # wrong only outside the FOV
  perfect = tf.constant([[[[0.9], [0.1]], [[0.9], [0.1]]]])
  loss = training.FovLoss()
  assert float(loss(y_true, good_inside)) == pytest.approx(float(loss(y_true, perfect)), rel=1e-6)
  auc = training.FovAUC()
  auc.update_state(y_true, good_inside)
  assert float(auc.result()) == pytest.approx(1.0)


def test_trainer_settings_round_trip_through_custom_config():
  config = settings.TrainingConfig(epochs=3, model=settings.ModelConfig(architecture='sine_net'),
                                   augmentation=settings.AugmentationConfig(max_zoom=1.3))
  export = settings.ExportConfig(flip_average=False)
  custom_config = json.loads(json.dumps(settings.trainer_custom_config(config, export)))
  assert settings.from_trainer_custom_config(custom_config) == (config, export)


def test_learning_rate_decays_over_the_steps_it_is_refit_to():
  schedule = training.BudgetCosineDecay(1e-3, decay_steps=100, alpha=0.05)
  assert float(schedule(0)) == pytest.approx(1e-3)
  assert float(schedule(50)) == pytest.approx(0.525e-3)
  assert float(schedule(100)) == pytest.approx(0.05e-3) == float(schedule(500))
  schedule.decay_steps.assign(50.0)
  assert float(schedule(50)) == pytest.approx(0.05e-3)
  assert float(schedule(25)) == pytest.approx(0.525e-3)


class _FakeClock:
  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now


def _run_epochs(budget: training.TimeBudget, epochs: int, epoch_minutes) -> int:
  """Drives the callback as fit would, with epochs of the given lengths; returns epochs run."""
  clock, model = budget.clock, keras.Sequential()
  model.stop_training = False
  budget.set_model(model)
  budget.set_params({'epochs': epochs})
  budget.on_train_begin()
  for epoch in range(epochs):
    budget.on_epoch_begin(epoch)
    clock.now += 60 * epoch_minutes(epoch)
    budget.on_epoch_end(epoch)
    if model.stop_training:
      return epoch + 1
  return epochs


def test_time_budget_refits_the_decay_to_the_epochs_that_fit_and_stops_after_them():
  schedule = training.BudgetCosineDecay(1e-3, decay_steps=26 * 400, alpha=0.05)
  budget = training.TimeBudget(42, schedule, steps_per_epoch=400, clock=_FakeClock())
  # A first epoch of 4.5 min (tracing), then 3.8 min each: 1 + 37.5 // 4.5 = 9 epochs, then
  # 2 + 33.7 // 3.8 = 10 epochs, which end at 4.5 + 9 * 3.8 = 38.7 min.
  ran = _run_epochs(budget, 26, lambda epoch: 4.5 if epoch == 0 else 3.8)
  assert ran == 10
  assert budget.clock.now <= 42 * 60
  assert float(schedule.decay_steps) == 10 * 400


def test_time_budget_leaves_a_run_that_fits_alone():
  schedule = training.BudgetCosineDecay(1e-3, decay_steps=26 * 400, alpha=0.05)
  budget = training.TimeBudget(42, schedule, steps_per_epoch=400, clock=_FakeClock())
  assert _run_epochs(budget, 26, lambda epoch: 1.2) == 26
  assert float(schedule.decay_steps) == 26 * 400
  unbudgeted = training.TimeBudget(None, schedule, steps_per_epoch=400, clock=_FakeClock())
  assert _run_epochs(unbudgeted, 5, lambda epoch: 60) == 5


def test_time_budget_of_a_resumed_training_counts_the_time_already_spent():
  schedule = training.BudgetCosineDecay(1e-3, decay_steps=26 * 400, alpha=0.05)
  budget = training.TimeBudget(42, schedule, steps_per_epoch=400, clock=_FakeClock(),
                               spent_seconds=30 * 60)
  # 12 minutes left at 4 min an epoch: 3 epochs.
  assert _run_epochs(budget, 26, lambda epoch: 4.0) == 3
  assert budget.elapsed_seconds() == 42 * 60
