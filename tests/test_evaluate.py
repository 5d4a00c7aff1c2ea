"""`retina-tfx evaluate`: an exported model on other datasets, scored per dataset and pooled with
the gate's metrics, equal to scikit-learn on the same FOV pixels."""
import gzip
import json
import shutil

import numpy as np
import pytest

from cli import predict
from cli.main import main
from components.fundus_example_gen import files, layouts, source
from conftest import sklearn_metrics
from models import constants, vessel_metrics
from pipeline import configs
from synthetic_drive import dataset as synthetic


@pytest.fixture(scope='module')
def other_datasets(tmp_path_factory):
  root = tmp_path_factory.mktemp('others')
  synthetic.generate(str(root / 'STARE'), seed=4, layout='stare', count=4, height=200, width=230)
  synthetic.generate(str(root / 'HRF'), seed=4, layout='hrf', count=3, height=180, width=270)
  return [root / 'STARE', root / 'HRF']


@pytest.mark.slow
def test_evaluate_scores_each_dataset_and_all_pooled_like_sklearn(other_datasets, tmp_path, capsys):
  out = tmp_path / 'eval'
  # Without --model: the shipped model.
  assert main(['evaluate', '--data', *map(str, other_datasets), '--all', '-o', str(out)]) == 0
  printed = capsys.readouterr().out
  result = json.loads((out / 'evaluation.json').read_text())
  assert list(result['datasets']) == ['HRF', 'STARE', 'all datasets'] and result['all_images']
  assert result['model'] == predict.resolve_saved_model(configs.SHIPPED_MODEL_DIR)

  model = predict.VesselModel(configs.SHIPPED_MODEL_DIR)
  pixels = {}
  for record in layouts.list_datasets([str(p) for p in other_datasets]):
    decoded = source.decode_record(record)
    probabilities, _ = model.predict(files.encode_png(decoded[constants.IMAGE_KEY]),
                                     files.encode_png(decoded[constants.FOV_KEY]))
    maps = (decoded[constants.LABEL_KEY] > 127, probabilities, decoded[constants.FOV_KEY] > 127)
    for name in (record.dataset, 'all datasets'):
      pixels.setdefault(name, []).append(maps)
    assert result['per_image_auc'][f'{record.dataset}/{record.image_id}'] == pytest.approx(
        sklearn_metrics(*maps)[vessel_metrics.AUC], abs=1e-4)
  for name, maps in pixels.items():
    expected = sklearn_metrics(*(np.concatenate([m[i].reshape(-1) for m in maps]) for i in range(3)))
    assert result['datasets'][name]['metrics'] == pytest.approx(expected, abs=1e-4), name
    assert result['datasets'][name]['images'] == len(maps)
    assert f'{result["datasets"][name]["metrics"]["auc"]:.4f}' in printed
  page = (out / 'index.html').read_text()
  assert page.count('<figure>') == 7 and (out / 'overlay_STARE_im0001.png').exists()


# The tests that pass --model give the shipped model's serving folder: any exported model serves
# them, and this one needs no pipeline run.
@pytest.mark.slow
def test_evaluate_without_all_scores_the_test_splits_and_bad_data_is_one_line(
    other_datasets, tmp_path, capsys):
  model_dir = configs.SHIPPED_MODEL_DIR
  assert main(['evaluate', '--model', model_dir, '--data', str(other_datasets[0]),
               '-o', str(tmp_path / 'a')]) == 0
  result = json.loads((tmp_path / 'a' / 'evaluation.json').read_text())
  assert list(result['datasets']) == ['STARE'] and result['datasets']['STARE']['images'] == 2
  capsys.readouterr()
  (tmp_path / 'photos').mkdir()
  assert main(['evaluate', '--model', model_dir, '--data', str(tmp_path / 'photos'),
               '-o', str(tmp_path / 'b')]) == 1
  error = capsys.readouterr().err
  assert error.startswith('retina-tfx: error: ') and 'Traceback' not in error


@pytest.mark.slow
def test_a_refused_image_is_named_at_the_end_after_the_others_are_scored(other_datasets, tmp_path,
                                                                         capsys):
  model_dir = configs.SHIPPED_MODEL_DIR
  stare = tmp_path / 'STARE'
  shutil.copytree(other_datasets[0], stare)
  culprit = stare / 'stare-images/im0002.ppm.gz'
  culprit.write_bytes(gzip.compress(b''))
  assert main(['evaluate', '--model', model_dir, '--data', str(stare), '--all',
               '-o', str(tmp_path / 'out')]) == 1
  result = json.loads((tmp_path / 'out' / 'evaluation.json').read_text())
  assert sorted(result['per_image_auc']) == ['STARE/im0001', 'STARE/im0003', 'STARE/im0004']
  problem = f'{culprit}: is empty (0 bytes)'
  assert result['datasets']['STARE']['images'] == 3 and result['refused_files'] == [problem]
  errors = capsys.readouterr().err.splitlines()
  assert [line for line in errors if line.startswith('retina-tfx: error: ')] == [
      f'retina-tfx: error: {problem}']
