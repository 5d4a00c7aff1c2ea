"""The model the project ships (models/shipped_model): one serving version with its card, the
signatures and model settings this code serves and fine-tunes, and still finding the vessels of the
demo data, so it cannot go stale unnoticed."""
import os

import pytest
import tensorflow as tf
from PIL import Image

from cli import benchmark, predict
from cli.main import main
from components.fundus_example_gen import layouts
from models import model as model_lib
from models import serving, transform, warm_start
from pipeline import configs

# Measured 2026-12-06: 0.9862 on the demo data the tests generate (demo_data), 0.9866 on
# make-demo-data's default set; a model (or a change to how photos are decoded and fed to it) that
# no longer reads the demo photos as this one did falls below.
MIN_DEMO_AUC = 0.98


def test_one_serving_version_with_its_card():
  assert sorted(os.listdir(configs.SHIPPED_MODEL_DIR)) == ['1', 'MODEL_CARD.md']
  card = open(os.path.join(configs.SHIPPED_MODEL_DIR, 'MODEL_CARD.md')).read()
  for needed in ('DRIVE', 'STARE', 'CHASE_DB1', 'HRF', 'retina-tfx benchmark --data',
                 'research', 'Test AUC'):
    assert needed in card, needed


def test_its_signatures_serve_and_its_weights_and_statistics_fit_the_fine_tuning_model():
  path = predict.resolve_saved_model(configs.SHIPPED_MODEL_DIR)
  loaded = tf.saved_model.load(path)
  signatures = loaded.signatures
  assert set(signatures) == {serving.SERVE, serving.SERVE_WITH_FOV, serving.PREDICT_EXAMPLES,
                             serving.TRANSFORM_FEATURES}
  assert set(signatures[serving.SERVE].structured_input_signature[1]) == {'images'}
  assert set(signatures[serving.SERVE_WITH_FOV].structured_input_signature[1]) == {'images', 'fovs'}
  # `run --base-model shipped` builds the finetune profile's model and loads these weights into it.
  config = configs.PROFILES[configs.FINETUNE_PROFILE].training.model
  assert serving.read_model_config(path) == config
  warm_start.load_base_weights(model_lib.build_model(config), config, path)
  # ... and its Transform keeps the statistics the model's file records, which the export read off
  # its own transform graph (test_base_model_commands checks that for every export): the training
  # scale is the median training FOV width of the four datasets, CHASE_DB1's.
  statistics = serving.read_transform_statistics(path)
  assert set(statistics) == set(transform.STATISTICS_KEYS)
  assert statistics[transform.REFERENCE_FOV_WIDTH_KEY] == 919


@pytest.mark.slow
def test_it_finds_the_vessels_of_the_demo_data_and_predict_uses_it_by_default(demo_data, tmp_path):
  scores = benchmark.score_test_images(predict.VesselModel(configs.SHIPPED_MODEL_DIR), demo_data)
  assert scores['auc_roc'] >= MIN_DEMO_AUC, scores
  image = next(r for r in layouts.list_datasets(demo_data) if r.split == layouts.TEST).image.path
  assert main(['predict', '--input', image, '--output', str(tmp_path)]) == 0
  [written] = os.listdir(tmp_path)
  assert Image.open(tmp_path / written).size == Image.open(image).size
