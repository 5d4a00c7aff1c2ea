"""Pipeline-wide settings: names, where things go, and the run profiles."""
import dataclasses
import os

from models import constants
from models.preprocessing import PreprocessingConfig

PIPELINE_NAME = 'retina-tfx'
DEFAULT_PIPELINE_ROOT = 'pipeline_root'
METADATA_FILE = 'metadata.sqlite'   # ML-Metadata store of local runs, inside the pipeline root
LOG_DIR = 'logs'                    # full logs of local runs, inside the pipeline root


@dataclasses.dataclass(frozen=True)
class Profile:
  """Everything that differs between the quick demo and a DRIVE run that follows the recipe."""
  name: str
  patches_per_image: int
  patch_size: int = constants.PATCH_SIZE
  preprocessing: PreprocessingConfig = PreprocessingConfig()


PROFILES = {
    # Enough patches to learn vessels on the synthetic data in a few minutes.
    'demo': Profile(name='demo', patches_per_image=400),
    # The recipe: 190,000 random 48x48 patches from 20 images = 9,500 per image.
    'drive': Profile(name='drive', patches_per_image=9500),
}
DEFAULT_PROFILE = 'demo'


def metadata_path(pipeline_root: str) -> str:
  return os.path.join(pipeline_root, METADATA_FILE)
