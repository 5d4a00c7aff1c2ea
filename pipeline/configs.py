"""Pipeline-wide settings: names, where things go, and the run profiles."""
import dataclasses
import os

from models.preprocessing import PreprocessingConfig
from models.training import TrainingConfig

PIPELINE_NAME = 'retina-tfx'
DEFAULT_PIPELINE_ROOT = 'pipeline_root'
METADATA_FILE = 'metadata.sqlite'   # ML-Metadata store of local runs, inside the pipeline root
LOG_DIR = 'logs'                    # full logs of local runs, inside the pipeline root


@dataclasses.dataclass(frozen=True)
class Profile:
  """Everything that differs between the quick demo and a DRIVE run that follows the recipe."""
  name: str
  patches_per_image: int
  training: TrainingConfig   # its patch_size is also what PatchGen cuts
  preprocessing: PreprocessingConfig = PreprocessingConfig()


PROFILES = {
    # Wiring check in about a minute: every component runs for real, the model learns next to nothing.
    'smoke': Profile(name='smoke', patches_per_image=50, training=TrainingConfig(
        epochs=1, steps_per_epoch=4, validation_steps=2, batch_size=8)),
    # Enough to learn the synthetic vessels in well under 3 minutes of training.
    'demo': Profile(name='demo', patches_per_image=400, training=TrainingConfig(
        epochs=8, steps_per_epoch=60, validation_steps=10, max_minutes=2.5)),
    # The recipe's preprocessing and patch budget (190,000 48x48 patches from 20 images = 21.9 M
    # pixels per image), cut as 6,000 64x64 patches per image (24.6 M): whole-image inference
    # profits from the larger context, and zero-padded patch borders cover less of each patch.
    # ~0.3 s per batch of 32 here: 22 x 400 steps fit the 42-minute budget with the cosine decay
    # nearly complete; training stops earlier if the validation FOV AUC stops improving.
    'drive': Profile(name='drive', patches_per_image=6000, training=TrainingConfig(
        patch_size=64, epochs=22, steps_per_epoch=400, validation_steps=50, learning_rate=1e-3,
        max_minutes=42, early_stopping_patience=6)),
}
DEFAULT_PROFILE = 'demo'


def metadata_path(pipeline_root: str) -> str:
  return os.path.join(pipeline_root, METADATA_FILE)
