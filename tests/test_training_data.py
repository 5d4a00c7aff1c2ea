"""The Trainer's input pipeline over PatchGen's files: shapes, targets, augmentation only in training."""
import numpy as np
import pytest
import tensorflow as tf

from models import patches, training


def _write_patches(path, count, size):
  rng = np.random.default_rng(0)
  with tf.io.TFRecordWriter(str(path), options='GZIP') as writer:
    for i in range(count):
      label = (rng.random((size, size)) > 0.8).astype(np.float32)
      image = np.where(label > 0, 0.8, 0.2)
      writer.write(patches.encode(b'21', i, 0, image, label, np.ones((size, size))))


def test_batches_carry_image_and_label_with_fov(tmp_path):
  _write_patches(tmp_path / 'p.gz', 10, 8)
  config = training.TrainingConfig(patch_size=8, batch_size=4)
  for is_training in (True, False):
    image, y_true = next(iter(training.make_dataset([str(tmp_path / '*.gz')], config, is_training)))
    assert image.shape == (4, 8, 8, 1) and y_true.shape == (4, 8, 8, 2)
    np.testing.assert_array_equal(y_true[..., 1], 1.0)
    # Augmentation keeps vessels the bright pixels (see test_model); validation is untouched.
    np.testing.assert_array_equal(image.numpy()[..., 0] > 0.5, y_true.numpy()[..., 0] > 0.5)
    if not is_training:
      np.testing.assert_allclose(np.unique(image.numpy()), [51 / 255, 204 / 255], atol=1e-6)


def test_missing_patch_files_are_a_clear_error(tmp_path):
  with pytest.raises(ValueError, match='no patch files match'):
    training.make_dataset([str(tmp_path / '*.gz')], training.TrainingConfig(), True)
