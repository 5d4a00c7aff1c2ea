"""The exported model: image bytes in, same-size vessel map out; TFMA and transform signatures;
the FOV window, tiles and the pixel bound (`retina-tfx predict` on files: test_predict.py)."""
import io
import json
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from sklearn.metrics import roc_auc_score
from tensorflow.core.protobuf import saved_model_pb2
from tfx.utils import path_utils

from cli import history, predict
from cli.main import main
from conftest import PIPELINE_ARGS, demo_pixels, split_records
from models import constants, serving, settings
from models import model as model_lib
from models.settings import model_stride
from pipeline import configs


@pytest.fixture(scope='module')
def saved_model(demo_run):
  runs = {r.node_id: r for r in history.latest_node_runs(history.open_store(str(demo_run)))}
  return path_utils.serving_model_path(runs[configs.TRAINER].outputs['model'][0])


@pytest.fixture(scope='module')
def signatures(saved_model):
  loaded = tf.saved_model.load(saved_model)
  return loaded, loaded.signatures


def _encode(pixels, fmt):
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format=fmt)
  return buffer.getvalue()


@pytest.mark.parametrize('fmt', ['PNG', 'JPEG', 'BMP'])
@pytest.mark.parametrize('crop', [None, (100, 130), (61, 77)])
def test_any_size_image_gives_a_same_size_map(signatures, demo_drive, fmt, crop):
  rgb = demo_pixels(demo_drive)
  if crop:
    rgb = np.ascontiguousarray(rgb[200:200 + crop[0], 150:150 + crop[1]])
  outputs = signatures[1][serving.SERVE](images=tf.constant([_encode(rgb, fmt)]))
  probabilities = outputs[serving.PROBABILITIES_KEY].numpy()
  assert probabilities.shape == (1, *rgb.shape[:2])
  assert 0 <= probabilities.min() and probabilities.max() <= 1
  assert outputs[constants.FOV_KEY].shape == (1, *rgb.shape[:2])


def test_a_given_fov_is_used_and_a_missing_one_is_computed(signatures, demo_drive):
  rgb = demo_pixels(demo_drive)
  mask = np.asarray(Image.open(demo_drive / 'test/mask/01_test_mask.gif').convert('L'))
  given = signatures[1][serving.SERVE_WITH_FOV](images=tf.constant([_encode(rgb, 'PNG')]),
                                            fovs=tf.constant([_encode(mask, 'PNG')]))
  np.testing.assert_array_equal(given[constants.FOV_KEY][0].numpy(), mask / 255)
  computed = signatures[1][serving.SERVE](images=tf.constant([_encode(rgb, 'PNG')]))
  agreement = (computed[constants.FOV_KEY][0].numpy() == mask / 255).mean()
  assert agreement > 0.98


# The model under test: demo_run trains the tests' profile (conftest.PIPELINE_ARGS).
_TESTED_MODEL = configs.PROFILES[PIPELINE_ARGS[PIPELINE_ARGS.index('--profile') + 1]].training.model
# Pixels one output pixel depends on in each direction, at most: two 3x3 convolutions per level at
# strides 1, 2, ..., 2^depth on the way down and 2^(depth-1), ..., 1 on the way up, plus one stride
# for the poolings' and upsamplings' cells (52 for a depth-3 U-Net).
_MODEL_REACH = (2 * sum(2 ** level for level in range(_TESTED_MODEL.depth + 1))
                + 2 * sum(2 ** level for level in range(_TESTED_MODEL.depth))
                + model_stride(_TESTED_MODEL))


def _window(mask, shrink=0):
  """The model's window for one FOV mask (as serving picks it), `shrink` pixels in from each side,
  as a boolean map."""
  stride = model_stride(_TESTED_MODEL)
  fov = tf.constant(mask > 0, tf.float32)
  top, bottom, left, right = (int(v) for v in serving.fov_window(fov, stride))
  window = np.zeros(mask.shape, bool)
  window[top + shrink:bottom - shrink, left + shrink:right - shrink] = True
  return window


def test_the_model_runs_on_the_fov_window_and_scores_the_fov_as_on_the_whole_image(signatures,
                                                                                demo_drive):
  rgb = _encode(demo_pixels(demo_drive), 'PNG')
  mask = np.asarray(Image.open(demo_drive / 'test/mask/01_test_mask.gif').convert('L'))
  serve_with_fov = signatures[1][serving.SERVE_WITH_FOV]
  windowed = serve_with_fov(images=tf.constant([rgb]), fovs=tf.constant([_encode(mask, 'PNG')]))
  whole = serve_with_fov(images=tf.constant([rgb]),
                         fovs=tf.constant([_encode(np.full_like(mask, 255), 'PNG')]))
  windowed, whole = (m[serving.PROBABILITIES_KEY][0].numpy() for m in (windowed, whole))
  window = _window(mask)
  assert (windowed[~window] == 0).all() and (whole[~window] > 0).any()
  # The window's zero padding stands in for the dark rim of the whole image. The window is aligned
  # to the model's pooling grid, so only pixels within the model's reach of its edge can differ.
  inside = mask > 0
  far_from_edge = _window(mask, shrink=_MODEL_REACH)
  np.testing.assert_allclose(windowed[inside & far_from_edge], whole[inside & far_from_edge],
                             atol=1e-4)
  assert np.abs(windowed[inside] - whole[inside]).mean() < 1e-3


@pytest.mark.parametrize('fov, align, box', [
    ([[0, 0, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0]], 1, (1, 3, 1, 3)),
    ([[0, 0, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0]], 2, (0, 3, 0, 3)),   # top-left on the grid
    ([[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]], 2, (2, 3, 2, 4)),
    ([[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], 2, (0, 3, 0, 4)),   # no FOV: the whole image
])
def test_fov_window_is_the_grid_aligned_bounding_box_of_the_fov(fov, align, box):
  window = serving.fov_window(tf.constant(fov, tf.float32), align)
  assert tuple(int(v) for v in window) == box


def test_garbage_bytes_are_a_clear_error(signatures):
  with pytest.raises(tf.errors.InvalidArgumentError, match='Unknown image file format') as error:
    signatures[1][serving.SERVE](images=tf.constant([b'definitely not an image']))
  # What predict says when the model refuses an input: the graph's words, not TF's preamble.
  assert predict._model_problem(error.value.message).startswith('Unknown image file format')


def test_tfma_and_transform_signatures_take_serialized_examples(signatures, demo_run):
  runs = {r.node_id: r for r in history.latest_node_runs(history.open_store(str(demo_run)))}
  examples = split_records(os.path.join(runs['FundusExampleGen'].outputs['examples'][0],
                                        'Split-test'))
  predicted = signatures[1][serving.PREDICT_EXAMPLES](examples=tf.constant(examples))
  transformed = signatures[1][serving.TRANSFORM_FEATURES](examples=tf.constant(examples))
  # Two datasets, two sizes: every row as long as the largest image, padded with FOV 0.
  sizes = [tf.train.Example.FromString(e).features.feature for e in examples]
  sizes = [f[constants.HEIGHT_KEY].int64_list.value[0] * f[constants.WIDTH_KEY].int64_list.value[0]
           for f in sizes]
  assert len(set(sizes)) == 2
  for key, maps in ((serving.PROBABILITIES_KEY, predicted), (constants.LABEL_KEY, transformed),
                    (constants.FOV_KEY, transformed)):
    assert maps[key].shape == (len(examples), max(sizes)), key
  for i, pixels in enumerate(sizes):
    assert not transformed[constants.FOV_KEY][i, pixels:].numpy().any()
    # An image's map does not depend on the other images of the call (TFMA batches as it likes).
    alone = signatures[1][serving.PREDICT_EXAMPLES](examples=tf.constant([examples[i]]))
    np.testing.assert_array_equal(alone[serving.PROBABILITIES_KEY][0],
                                  predicted[serving.PROBABILITIES_KEY][i, :pixels])


def test_the_signatures_that_run_the_network_share_one_copy_of_it(saved_model):
  """Three signatures run the model; traced into each, the network tripled the SavedModel and
  every load (TFMA loads a model three times per evaluation) and export paid for the copies."""
  proto = saved_model_pb2.SavedModel()
  with open(os.path.join(saved_model, 'saved_model.pb'), 'rb') as f:
    proto.ParseFromString(f.read())
  library = proto.meta_graphs[0].graph_def.library.function
  with_convolutions = [f.signature.name for f in library
                       if any(node.op == 'Conv2D' for node in f.node_def)]
  assert len(with_convolutions) == 1, with_convolutions


def test_predict_with_fov_masks_takes_each_image_s_own_mask_not_the_computed_fov(
    saved_model, signatures, demo_drive, tmp_path):
  inputs, masks, out = tmp_path / 'in', tmp_path / 'masks', tmp_path / 'out'
  inputs.mkdir()
  masks.mkdir()
  shutil.copy(demo_drive / 'test/images/01_test.tif', inputs)
  # A band of the published FOV: as wide, so the image keeps its scale (models/transform.py).
  mask = np.asarray(Image.open(demo_drive / 'test/mask/01_test_mask.gif').convert('L')).copy()
  mask[:200], mask[380:] = 0, 0
  Image.fromarray(mask).save(masks / '01_test_mask.png')   # DRIVE's naming: <stem>_mask
  assert main(['predict', '--model', saved_model, '--input', str(inputs), '--fov', str(masks),
               '--output', str(out), '--format', 'npy']) == 0
  given = np.load(out / '01_test.npy')
  image = _encode(demo_pixels(demo_drive), 'PNG')
  computed = signatures[1][serving.SERVE](images=tf.constant([image]))
  computed = computed[serving.PROBABILITIES_KEY][0].numpy()
  # The map is 0 outside the given FOV's window; the image's own FOV would have scored it there.
  window = _window(mask)
  assert (given[~window] == 0).all() and (computed[~window] > 0.5).any()
  assert (given[window] > 0.5).any()


def test_an_image_and_its_3x_upsampled_copy_give_maps_that_agree(shipped_model, demo_drive):
  """The transform graph brings both to the training scale: the network sees nearly the same
  pixels, and the big map, shrunk back, is the small one (scores included). The shipped model's
  scale (919 px) lies between the two (~540 and ~1,620 px): one is enlarged, the other shrunk."""
  serve = tf.saved_model.load(shipped_model).signatures[serving.SERVE]
  rgb = demo_pixels(demo_drive)
  label = np.asarray(Image.open(demo_drive / 'test/1st_manual/01_manual1.gif').convert('L')) > 127
  big = cv2.resize(rgb, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)
  small_out, big_out = (serve(images=tf.constant([_encode(image, 'PNG')])) for image in (rgb, big))
  small_map = small_out[serving.PROBABILITIES_KEY][0].numpy()
  big_map = big_out[serving.PROBABILITIES_KEY][0].numpy()
  assert big_map.shape == big.shape[:2] and big_out[constants.FOV_KEY].shape == (1, *big.shape[:2])
  back = cv2.resize(big_map, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_AREA)
  inside = small_out[constants.FOV_KEY][0].numpy() > 0.5
  # Measured: maps 0.0045 apart on average, AUC 0.9861 vs 0.9854.
  assert np.abs(back - small_map)[inside].mean() < 0.01
  assert roc_auc_score(label[inside], back[inside]) == pytest.approx(
      roc_auc_score(label[inside], small_map[inside]), abs=0.002)


# Serves a small image, then a decompression bomb, in a fresh process: its peak memory tells
# whether the bomb was decoded before it was refused.
_BOMB_PROBE = """
import json, resource, sys
import tensorflow as tf
from models import serving
serve = tf.saved_model.load(sys.argv[1]).signatures[serving.SERVE]
small, bomb = (open(path, 'rb').read() for path in sys.argv[2:])
serve(images=tf.constant([small]))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
  serve(images=tf.constant([bomb]))
  error = None
except tf.errors.InvalidArgumentError as e:
  error = e.message
growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak) / 1024
print(json.dumps({'error': error, 'growth_mb': growth_mb}))
"""


@pytest.mark.slow
def test_an_image_beyond_the_pixel_bound_is_refused_before_it_is_decoded(shipped_model,
                                                                          demo_drive, tmp_path):
  small = tmp_path / 'small.png'
  small.write_bytes(_encode(demo_pixels(demo_drive), 'PNG'))
  bomb = tmp_path / 'bomb.png'
  Image.new('1', (20000, 15000)).save(bomb)   # 300 M pixels in ~40 KB: 900 MB decoded as RGB
  probe = subprocess.run([sys.executable, '-c', _BOMB_PROBE, shipped_model, str(small),
                          str(bomb)],
                         capture_output=True, text=True, check=True,
                         env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '3'})
  result = json.loads(probe.stdout.strip().splitlines()[-1])
  assert predict._model_problem(result['error']) == (
      'image has more than 40,000,000 pixels; its height and width: 15000 20000')
  assert result['growth_mb'] < 200


@pytest.mark.parametrize('architecture, depth', [(settings.UNET, 3), (settings.SINE_NET, 3),
                                                 (settings.UNET, 4)])
def test_a_map_predicted_in_tiles_equals_the_whole_window_s(architecture, depth):
  """Tiles with the margin of context keep the pooling grid and cover the network's reach: the
  stitched map is the one the whole window gives (here tiles of 64 on a 208x272 window)."""
  config = settings.ModelConfig(architecture=architecture, base_filters=4, depth=depth)
  network = model_lib.build_model(config)
  predict = lambda image: network(image[tf.newaxis, ..., tf.newaxis], training=False)[0, ..., 0]
  image = tf.constant(np.random.default_rng(0).random((208, 272)), tf.float32)
  whole = predict(image).numpy()
  # As exported: traced once for any window size, without AutoGraph.
  margin = serving.TILE_MARGIN_STRIDES * model_stride(config)
  in_graph = tf.function(lambda window: serving.predict_in_tiles(
      predict, window, margin, tile_side=64),
      input_signature=[tf.TensorSpec([None, None], tf.float32)], autograph=False)
  tiled = in_graph(image).numpy()
  assert tiled.shape == whole.shape
  np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-5)
  # Without the margin the seams show: the test can tell.
  seams = serving.predict_in_tiles(predict, image, 0, tile_side=64).numpy()
  assert np.abs(seams - whole).max() > 1e-3
