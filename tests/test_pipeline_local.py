"""The pipeline end to end under LocalDagRunner, through the CLI, with what ML-Metadata records."""
import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
from ml_metadata.proto import metadata_store_pb2
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils, standard_artifacts

import bad_inputs
from conftest import (COMPONENTS, PIPELINE_ARGS, copy_run, gzip_records, split_records,
                      tree_digest)
from models import constants, patches, preprocessing, transform
from cli import history
from cli.main import main
from components.patch_gen import component as patch_gen
from components.patch_gen import executor as patch_gen_executor
from pipeline import configs

LIVE = metadata_store_pb2.Artifact.LIVE
SMOKE = configs.PROFILES['smoke']


def _run(capsys, data, root, *extra):
  paths = [str(path) for path in (data if isinstance(data, list) else [data])]
  code = main(['run', '--data', *paths, '--pipeline-root', str(root), *extra])
  out, err = capsys.readouterr()
  return code, out, err


def _live_artifacts(root, type_name):
  store = history.open_store(str(root))
  return [a for a in store.get_artifacts_by_type(type_name) if a.state == LIVE]


def _node_runs(root):
  return {r.node_id: r for r in history.latest_node_runs(history.open_store(str(root)))}


def test_pipeline_runs_end_to_end_and_mlmd_records_every_component(demo_run):
  runs = _node_runs(demo_run)
  assert sorted(runs) == sorted(COMPONENTS)
  assert {r.state for r in runs.values()} == {'COMPLETE'}
  examples_uri = runs['FundusExampleGen'].outputs['examples'][0]
  counts = {s: len(split_records(os.path.join(examples_uri, f'Split-{s}')))
            for s in constants.SPLITS}
  # DRIVE: 5 training images (1 held out), 2 test; STARE: 4 images, 2 for test, 1 held out.
  assert counts == {'train': 4 + 1, 'eval': 1 + 1, 'test': 2 + 2}
  transformed_uri = runs['Transform'].outputs['transformed_examples'][0]
  # One output row per image, images of two sizes.
  assert {s: len(split_records(os.path.join(transformed_uri, f'Split-{s}')))
          for s in constants.SPLITS} == counts
  # Each dataset gets half of a split's patches, however many images it has.
  patches_uri = runs['PatchGen'].outputs['patches'][0]
  for split, images in (('train', {b'DRIVE': 4, b'STARE': 1}), ('eval', {b'DRIVE': 1, b'STARE': 1})):
    split_dir = os.path.join(patches_uri, f'Split-{split}')
    parsed = patches.parse(tf.constant(split_records(split_dir)), SMOKE.patches.size)
    image_ids = parsed[constants.IMAGE_ID_KEY].numpy()
    per_dataset = {dataset: sum(image_id.startswith(b'im') == (dataset == b'STARE')
                                for image_id in image_ids) for dataset in images}
    share = SMOKE.patches.per_image * sum(images.values()) / 2
    assert all(abs(count - share) <= images[d] for d, count in per_dataset.items()), per_dataset


def test_transformed_examples_take_at_most_4_bytes_per_pixel_on_disk(demo_run):
  """Image, label and FOV as one byte per pixel each (gzip shrinks the binary maps further);
  as float32 they took 12 bytes before compression."""
  uri = _node_runs(demo_run)['Transform'].outputs['transformed_examples'][0]
  for split in constants.SPLITS:
    split_dir = os.path.join(uri, f'Split-{split}')
    rows = [tf.train.Example.FromString(r).features.feature for r in split_records(split_dir)]
    pixels = sum(row[constants.HEIGHT_KEY].int64_list.value[0] *
                 row[constants.WIDTH_KEY].int64_list.value[0] for row in rows)
    on_disk = sum(os.path.getsize(os.path.join(split_dir, f)) for f in os.listdir(split_dir))
    assert on_disk / pixels <= 4, split


def test_patch_files_hold_one_image_each_and_the_trainer_reads_them_mixed(demo_run):
  """PatchGen writes each image's patches to a file of their own (no stage holds many images);
  the Trainer's reader draws from all of them at once (a patch of each of the two datasets in
  turn): its shuffle buffer is smaller than one image's patches, so reading image by image would
  give one-image batches."""
  split_dir = os.path.join(_node_runs(demo_run)['PatchGen'].outputs['patches'][0], 'Split-train')
  files = [os.path.join(split_dir, name) for name in os.listdir(split_dir)]
  image_ids = lambda records: set(patches.parse(tf.constant(records), SMOKE.patches.size)[
      constants.IMAGE_ID_KEY].numpy())
  assert len(files) == 5 and all(len(image_ids(gzip_records(f))) == 1 for f in files)
  first = [r.numpy() for r in patches.mixed_records(files, seed=0).take(2 * len(files))]
  assert len(image_ids(first)) == 5


def test_until_runs_only_a_component_and_what_it_needs(demo_run, demo_data, tmp_path, capsys):
  root = copy_run(demo_run, tmp_path)
  code, out, err = _run(capsys, demo_data, root, *PIPELINE_ARGS, '--until', 'DataGate')
  assert code == 0, err
  ran = re.findall(r'^  (\S+) +done in', out, flags=re.MULTILINE)
  assert sorted(ran) == sorted(['FundusExampleGen', 'ImportSchemaGen', 'StatisticsGen',
                                'ExampleValidator', 'DataGate'])
  assert 'release gate' not in out


def test_no_cache_runs_components_again_instead_of_reusing_their_outputs(demo_run, demo_data,
                                                                       tmp_path, capsys):
  root = copy_run(demo_run, tmp_path)
  for extra in ((), ('--no-cache',)):
    code, _, err = _run(capsys, demo_data, root, *PIPELINE_ARGS, '--until', configs.EXAMPLE_GEN,
                        *extra)
    assert code == 0, err
  store = history.open_store(str(root))
  first, cached, again = history.node_executions(store, configs.EXAMPLE_GEN)
  examples = [history.artifacts_by_key(store, e.id, metadata_store_pb2.Event.OUTPUT)['examples'].uri
              for e in (first, cached, again)]
  states = [metadata_store_pb2.Execution.State.Name(e.last_known_state)
            for e in (first, cached, again)]
  # Without --no-cache the rerun reuses demo_run's examples; with it, it writes them anew.
  assert states == ['COMPLETE', 'CACHED', 'COMPLETE']
  assert examples[1] == examples[0] and examples[2] != examples[0]
  assert sorted(split_records(os.path.join(examples[2], 'Split-test'))) == sorted(
      split_records(os.path.join(examples[0], 'Split-test')))


def test_serving_transform_matches_materialised_patches(demo_run):
  """No training/serving skew: the transform graph, fed only the raw image as serving will feed it,
  gives at every patch location exactly the pixels the Trainer reads (for STARE, whose FOV
  ingestion computed, too)."""
  runs = _node_runs(demo_run)
  raws = [tf.train.Example.FromString(r) for r in split_records(
      os.path.join(runs['FundusExampleGen'].outputs['examples'][0], 'Split-train'))]
  tft_output = tft.TFTransformOutput(runs['Transform'].outputs['transform_graph'][0])
  patch_records = split_records(os.path.join(runs['PatchGen'].outputs['patches'][0], 'Split-train'))
  parsed = patches.parse(tf.constant(patch_records), SMOKE.patches.size)
  per_image = patch_gen_executor.patches_per_dataset({b'DRIVE': 4, b'STARE': 1},
                                                     SMOKE.patches.per_image)
  for dataset in (b'DRIVE', b'STARE'):
    raw = next(r for r in raws if r.features.feature[constants.DATASET_KEY].bytes_list.value[0]
               == dataset)
    image_id = raw.features.feature[constants.IMAGE_ID_KEY].bytes_list.value[0]
    encoded = {key: raw.features.feature[key].bytes_list.value[0]
               for key in (constants.IMAGE_KEY, constants.LABEL_KEY)}
    served = tft_output.transform_features_layer()(
        transform.raw_features(tf.constant([encoded[constants.IMAGE_KEY]])))
    served_image = transform.row_map(served, constants.IMAGE_KEY, 0).numpy()
    label = preprocessing.decode_mask(encoded[constants.LABEL_KEY]).numpy()
    mine = np.flatnonzero(parsed[constants.IMAGE_ID_KEY].numpy() == image_id)
    assert len(mine) == per_image[dataset]
    size = SMOKE.patches.size
    for i in mine:
      row, col = int(parsed[patches.ROW_KEY][i]), int(parsed[patches.COL_KEY][i])
      window = np.s_[row:row + size, col:col + size]
      np.testing.assert_allclose(parsed[constants.IMAGE_KEY][i, ..., 0].numpy(),
                                 served_image[window], rtol=0, atol=1e-5)
      np.testing.assert_array_equal(parsed[constants.LABEL_KEY][i, ..., 0].numpy(), label[window])


def test_multi_processing_beam_gives_the_same_patches(demo_run, tmp_path):
  """PatchGen on demo_run's Transform output under Beam's multi-processing DirectRunner (where Beam
  2.59 once lost patches) writes exactly the patches the in-process runner wrote in demo_run."""
  runs = _node_runs(demo_run)
  transformed = standard_artifacts.Examples()
  transformed.uri = runs[configs.TRANSFORM].outputs['transformed_examples'][0]
  transformed.split_names = artifact_utils.encode_split_names(list(constants.SPLITS))
  output = standard_artifacts.Examples()
  output.uri = str(tmp_path / 'patches')
  splits = [constants.TRAIN_SPLIT, constants.EVAL_SPLIT]
  patch_gen_executor.Executor(base_beam_executor.BaseBeamExecutor.Context(beam_pipeline_args=[
      '--direct_running_mode=multi_processing', '--direct_num_workers=2'])).Do(
      {patch_gen.TRANSFORMED_EXAMPLES_KEY: [transformed]}, {patch_gen.PATCHES_KEY: [output]}, {
          patch_gen.PATCHES_PER_IMAGE_KEY: SMOKE.patches.per_image,
          patch_gen.PATCH_SIZE_KEY: SMOKE.patches.size, patch_gen.SEED_KEY: SMOKE.patches.seed,
          patch_gen.SPLITS_KEY: json.dumps(splits)})

  def patch_keys(uri, split):
    parsed = patches.parse(tf.constant(split_records(os.path.join(uri, f'Split-{split}'))),
                           SMOKE.patches.size)
    return sorted(zip(parsed[constants.IMAGE_ID_KEY].numpy(), parsed[patches.ROW_KEY].numpy(),
                      parsed[patches.COL_KEY].numpy()))

  for split in splits:
    assert patch_keys(output.uri, split) == patch_keys(
        runs[configs.PATCH_GEN].outputs['patches'][0], split)


@pytest.mark.slow
def test_schema_gate_stops_the_run_and_names_the_anomaly(tiny_drive, tmp_path, capsys):
  # tiny_drive is well-formed DRIVE layout, so ingestion succeeds, but its 64x60 images break the
  # curated schema's image geometry: the gate must stop the run and say which features are wrong.
  root = tmp_path / 'root'
  code, out, err = _run(capsys, tiny_drive, root, *PIPELINE_ARGS)
  assert code == 1
  assert 'DataGate failed' in err
  assert "feature 'height'" in err and "feature 'width'" in err
  assert 'Out-of-range values' in err
  runs = {r.node_id: r.state for r in history.latest_node_runs(history.open_store(str(root)))}
  assert runs['ExampleValidator'] == 'COMPLETE' and runs['DataGate'] == 'FAILED'
  assert _live_artifacts(root, 'Schema') and not [
      a for a in _live_artifacts(root, 'Schema') if 'DataGate' in a.uri]


# Every case is tested at source level (test_drive_source.py); these two go through the CLI and
# ML-Metadata: one found while listing the files, one while Beam decodes them.
@pytest.mark.slow
@pytest.mark.parametrize('case', ['missing label', 'truncated TIFF'])
def test_bad_input_fails_cleanly_without_recording_examples(case, tiny_drive, tmp_path, capsys):
  data, culprit, problem = bad_inputs.CASES[case](tiny_drive, tmp_path)
  before = tree_digest(data) if os.path.exists(data) else None
  root = tmp_path / 'root'
  code, out, err = _run(capsys, data, root, *PIPELINE_ARGS)
  assert code == 1
  error_lines = [line for line in err.splitlines() if line.startswith('retina-tfx: error:')]
  assert len(error_lines) == 1, err
  assert str(culprit) in error_lines[0] and problem in error_lines[0]
  assert 'Traceback' not in err
  assert not _live_artifacts(root, 'Examples')
  runs = history.latest_node_runs(history.open_store(str(root)))
  assert [(r.node_id, r.state) for r in runs] == [('FundusExampleGen', 'FAILED')]
  if before is not None:
    assert tree_digest(data) == before  # the user's data is only read
