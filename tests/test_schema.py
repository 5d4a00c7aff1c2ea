"""The curated schema and the constants module state the same contract."""
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

import schemas
from models import constants


def _schema() -> schema_pb2.Schema:
  with open(schemas.SCHEMA_FILE) as f:
    return text_format.Parse(f.read(), schema_pb2.Schema())


def test_schema_names_every_raw_feature_and_bounds_the_image_sides():
  features = {feature.name: feature for feature in _schema().feature}
  assert set(features) == {constants.DATASET_KEY, constants.IMAGE_ID_KEY, constants.IMAGE_KEY, constants.LABEL_KEY,
                           constants.LABEL2_KEY, constants.FOV_KEY, constants.HEIGHT_KEY,
                           constants.WIDTH_KEY, constants.SOURCE_FILE_KEY}
  for key in (constants.HEIGHT_KEY, constants.WIDTH_KEY):
    domain = features[key].int_domain
    assert (domain.min, domain.max) == (constants.MIN_IMAGE_SIDE, constants.MAX_IMAGE_SIDE), key
  required = {name for name, feature in features.items() if feature.presence.min_fraction == 1.0}
  assert required == set(features) - {constants.LABEL2_KEY}  # second observer: where published
