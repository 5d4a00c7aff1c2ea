"""The pipeline end to end under LocalDagRunner, through the CLI, with what ML-Metadata records."""
import os
import re

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
from ml_metadata.proto import metadata_store_pb2

import bad_inputs
from conftest import PIPELINE_ARGS, copy_run, tree_digest
from models import constants, patches, preprocessing
from pipeline import cli, configs, metadata

COMPONENTS = ['DriveExampleGen', 'ImportSchemaGen', 'StatisticsGen', 'ExampleValidator', 'DataGate',
              'Transform', 'PatchGen', 'Trainer', 'latest_blessed_model_resolver', 'Evaluator',
              'Pusher']
# Re-judged on a rerun: the first run's model became the blessed baseline they compare against.
GATE = ('latest_blessed_model_resolver', 'Evaluator', 'Pusher')
LIVE = metadata_store_pb2.Artifact.LIVE
SMOKE = configs.PROFILES['smoke']


def _run(capsys, data, root, *extra):
  code = cli.main(['run', '--data', str(data), '--pipeline-root', str(root), *extra])
  out, err = capsys.readouterr()
  return code, out, err


def _records(split_dir):
  files = [os.path.join(split_dir, f) for f in os.listdir(split_dir)]
  return [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type='GZIP')]


def _live_artifacts(root, type_name):
  store = metadata.open_store(str(root))
  return [a for a in store.get_artifacts_by_type(type_name) if a.state == LIVE]


def _node_runs(root):
  return {r.node_id: r for r in metadata.latest_node_runs(metadata.open_store(str(root)),
                                                           configs.PIPELINE_NAME)}


def test_pipeline_runs_end_to_end_and_mlmd_records_every_component(demo_run):
  runs = _node_runs(demo_run)
  assert sorted(runs) == sorted(COMPONENTS)
  assert {r.state for r in runs.values()} == {'COMPLETE'}
  examples_uri = runs['DriveExampleGen'].outputs['examples'][0]
  counts = {s: len(_records(os.path.join(examples_uri, f'Split-{s}'))) for s in constants.SPLITS}
  assert counts == {'train': 4, 'eval': 1, 'test': 2}
  transformed_uri = runs['Transform'].outputs['transformed_examples'][0]
  assert {s: len(_records(os.path.join(transformed_uri, f'Split-{s}'))) for s in constants.SPLITS} \
      == counts  # one output row per image
  patches_uri = runs['PatchGen'].outputs['patches'][0]
  assert {s: len(_records(os.path.join(patches_uri, f'Split-{s}'))) for s in ('train', 'eval')} == {
      'train': 4 * SMOKE.patches_per_image, 'eval': SMOKE.patches_per_image}


def test_patch_files_mix_the_images(demo_run):
  """Any stretch of the patch file is a draw from all images: the Trainer's shuffle buffer is
  smaller than one image's patches, so image-by-image files would give one-image batches."""
  uri = _node_runs(demo_run)['PatchGen'].outputs['patches'][0]
  first = patches.parse(tf.constant(_records(os.path.join(uri, 'Split-train'))[:SMOKE.patches_per_image]),
                        SMOKE.training.patch_size)
  assert len(set(first[constants.IMAGE_ID_KEY].numpy())) == 4


def test_cli_reports_progress_and_artifacts_and_reuses_the_cache(demo_run, demo_drive, tmp_path,
                                                                 capsys):
  root = copy_run(demo_run, tmp_path)   # demo_run stays a pipeline root with a single run
  code, out, err = _run(capsys, demo_drive, root, *PIPELINE_ARGS)
  assert code == 0, err
  for component in COMPONENTS:
    assert f'{component:<{cli.NAME_WIDTH}} done in' in out  # progress per component
  runs = _node_runs(root)
  # Unchanged data: nothing recomputed up to the model.
  assert {r.state for node, r in runs.items() if node not in GATE} == {'CACHED'}
  assert runs['Trainer'].outputs['model'] == _node_runs(demo_run)['Trainer'].outputs['model']
  assert runs['PatchGen'].outputs['patches'][0] in out  # the CLI says where the artifacts are
  # The same model, blessed again against itself, is the serving folder's second release.
  assert sorted(os.listdir(root.parent / configs.SERVING_DIR)) == ['1', '2']


def test_until_runs_only_a_component_and_what_it_needs(demo_run, demo_drive, tmp_path, capsys):
  root = copy_run(demo_run, tmp_path)
  code, out, err = _run(capsys, demo_drive, root, *PIPELINE_ARGS, '--until', 'DataGate')
  assert code == 0, err
  ran = re.findall(r'^  (\S+) +done in', out, flags=re.MULTILINE)
  assert sorted(ran) == sorted(['DriveExampleGen', 'ImportSchemaGen', 'StatisticsGen',
                                'ExampleValidator', 'DataGate'])
  assert 'release gate' not in out


def test_serving_transform_matches_materialised_patches(demo_run):
  """No training/serving skew: the transform graph, fed only the raw image as serving will feed it,
  gives at every patch location exactly the pixels the Trainer reads."""
  runs = _node_runs(demo_run)
  raw = [tf.train.Example.FromString(r) for r in _records(
      os.path.join(runs['DriveExampleGen'].outputs['examples'][0], 'Split-train'))][0]
  image_id = raw.features.feature[constants.IMAGE_ID_KEY].bytes_list.value[0]
  encoded = {key: raw.features.feature[key].bytes_list.value[0]
             for key in (constants.IMAGE_KEY, constants.LABEL_KEY, constants.FOV_KEY)}
  tft_output = tft.TFTransformOutput(runs['Transform'].outputs['transform_graph'][0])
  served = tft_output.transform_features_layer()(
      preprocessing.raw_features(tf.constant([encoded[constants.IMAGE_KEY]])))
  served_image = preprocessing.unflatten(served, constants.IMAGE_KEY)[0].numpy()
  label = preprocessing.decode_mask(encoded[constants.LABEL_KEY]).numpy()

  patch_records = _records(os.path.join(runs['PatchGen'].outputs['patches'][0], 'Split-train'))
  parsed = patches.parse(tf.constant(patch_records), SMOKE.training.patch_size)
  mine = np.flatnonzero(parsed[constants.IMAGE_ID_KEY].numpy() == image_id)
  assert len(mine) == SMOKE.patches_per_image
  size = SMOKE.training.patch_size
  for i in mine:
    row, col = int(parsed[patches.ROW_KEY][i]), int(parsed[patches.COL_KEY][i])
    window = np.s_[row:row + size, col:col + size]
    np.testing.assert_allclose(parsed[constants.IMAGE_KEY][i, ..., 0].numpy(), served_image[window],
                               rtol=0, atol=1e-5)
    np.testing.assert_array_equal(parsed[constants.LABEL_KEY][i, ..., 0].numpy(), label[window])


def test_multi_processing_beam_gives_the_same_patches(demo_run, demo_drive, tmp_path, capsys):
  root = tmp_path / 'mp'
  code, out, err = _run(capsys, demo_drive, root, *PIPELINE_ARGS, '--beam-args',
                        '--direct_running_mode=multi_processing', '--direct_num_workers=2')
  assert code == 0, err

  def patch_keys(run_root, split):
    uri = _node_runs(run_root)['PatchGen'].outputs['patches'][0]
    parsed = patches.parse(tf.constant(_records(os.path.join(uri, f'Split-{split}'))), SMOKE.training.patch_size)
    return sorted(zip(parsed[constants.IMAGE_ID_KEY].numpy(), parsed[patches.ROW_KEY].numpy(),
                      parsed[patches.COL_KEY].numpy()))

  for split in ('train', 'eval'):
    assert patch_keys(root, split) == patch_keys(demo_run, split)


def test_schema_gate_stops_the_run_and_names_the_anomaly(tiny_drive, tmp_path, capsys):
  # tiny_drive is well-formed DRIVE layout, so ingestion succeeds, but its 64x60 images break the
  # curated schema's image geometry: the gate must stop the run and say which features are wrong.
  root = tmp_path / 'root'
  code, out, err = _run(capsys, tiny_drive, root, *PIPELINE_ARGS)
  assert code == 1
  assert 'DataGate failed' in err
  assert "feature 'height'" in err and "feature 'width'" in err
  assert 'Out-of-range values' in err
  runs = {r.node_id: r.state for r in metadata.latest_node_runs(metadata.open_store(str(root)),
                                                                  configs.PIPELINE_NAME)}
  assert runs['ExampleValidator'] == 'COMPLETE' and runs['DataGate'] == 'FAILED'
  assert _live_artifacts(root, 'Schema') and not [
      a for a in _live_artifacts(root, 'Schema') if 'DataGate' in a.uri]


@pytest.mark.parametrize('case', sorted(bad_inputs.CASES))
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
  runs = metadata.latest_node_runs(metadata.open_store(str(root)), configs.PIPELINE_NAME)
  assert [(r.node_id, r.state) for r in runs] == [('DriveExampleGen', 'FAILED')]
  if before is not None:
    assert tree_digest(data) == before  # the user's data is only read
