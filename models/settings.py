"""The model side's settings: plain dataclasses, free of TensorFlow, so that the pipeline's
configuration (pipeline/configs.py) and the command line load in a blink. They travel to the
Transform and Trainer executors as custom_config dicts."""
import dataclasses
from typing import Any, Dict, Mapping, Optional, Tuple

UNET = 'unet'
SINE_NET = 'sine_net'
# Set by the local orchestrator for the Trainer: ids of its interrupted executions (ML-Metadata),
# newest first, comma-separated. The Trainer resumes the one with its own settings and inputs.
INTERRUPTED_TRAINER_RUNS_ENV = 'RETINA_TFX_INTERRUPTED_TRAINER_RUNS'


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  architecture: str = UNET
  base_filters: int = 16
  depth: int = 3            # U-Net: poolings; Sine-Net: levels below full resolution
  dropout: float = 0.1


def model_stride(config: ModelConfig) -> int:
  """Input sides must be multiples of this (every pooling halves them)."""
  return 2 ** config.depth


@dataclasses.dataclass(frozen=True)
class PreprocessingConfig:
  clahe_clip_limit: float = 2.0
  clahe_tile_grid: int = 8      # tiles per side (OpenCV's tileGridSize=(8, 8))
  gamma: float = 1.2

  @classmethod
  def from_custom_config(cls, custom_config: Optional[Mapping[str, Any]]) -> 'PreprocessingConfig':
    fields = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in (custom_config or {}).items() if k in fields})


@dataclasses.dataclass(frozen=True)
class AugmentationConfig:
  """Random changes to each training patch, drawn anew every epoch. Geometry (flips, 90-degree
  turns, zoom) moves image, label and FOV together; the intensity changes touch the image only.
  The defaults are mild: photos from other cameras differ by more (see the drive profile)."""
  max_zoom: float = 1.0          # zoom by a log-uniform factor in [1/max_zoom, max_zoom]; 1: none
  contrast: float = 0.1          # contrast factor uniform in [1 - contrast, 1 + contrast]
  brightness: float = 0.05       # offset uniform in [-brightness, brightness]
  max_gamma: float = 1.0         # gamma log-uniform in [1/max_gamma, max_gamma]; 1: none
  max_blur_sigma: float = 0.0    # Gaussian blur, sigma uniform in [0, max_blur_sigma] pixels
  max_noise_sigma: float = 0.0   # additive Gaussian noise, sigma uniform in [0, max_noise_sigma]


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
  batch_size: int = 32
  epochs: int = 20
  steps_per_epoch: int = 200
  validation_steps: int = 40
  learning_rate: float = 2e-3
  early_stopping_patience: int = 5
  max_minutes: Optional[float] = None   # wall-time budget of the epochs (see TimeBudget)
  dice_weight: float = 0.5
  weight_average_momentum: Optional[float] = None   # EMA of the weights per step; None: off
  seed: int = 0
  # (dataset, share of the training stream) pairs; datasets not named share the rest equally
  # (models/patches.stream_shares). Pairs, not a dict: a profile stays hashable.
  dataset_shares: Tuple[Tuple[str, float], ...] = ()
  model: ModelConfig = ModelConfig()
  augmentation: AugmentationConfig = AugmentationConfig()

  def to_custom_config(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_custom_config(cls, custom_config: Dict[str, Any]) -> 'TrainingConfig':
    values = dict(custom_config)
    values['model'] = ModelConfig(**values.get('model', {}))
    values['augmentation'] = AugmentationConfig(**values.get('augmentation', {}))
    values['dataset_shares'] = tuple(tuple(pair) for pair in values.get('dataset_shares', ()))
    return cls(**{f.name: values[f.name] for f in dataclasses.fields(cls) if f.name in values})


@dataclasses.dataclass(frozen=True)
class ExportConfig:
  """How the Trainer exports the serving model."""
  flip_average: bool = True   # average each map with the prediction on the mirrored image


# In the Trainer's custom config: it was given a base model to start from (TFX's base_model), which
# may still be missing (latest-blessed before any model was blessed).
WARM_START_KEY = 'warm_start'
# In the Transform's custom config, with a base model: the statistics its transform graph holds
# (models/transform.STATISTICS_KEYS), which this run's graph then keeps instead of analysing its own
# training images: the base's weights learnt them (a new camera's few photos would shift them).
BASE_STATISTICS_KEY = 'base_model_statistics'


def trainer_custom_config(training: TrainingConfig, export: ExportConfig,
                          warm_start: bool = False) -> Dict[str, Any]:
  return {'training': training.to_custom_config(), 'export': dataclasses.asdict(export),
          WARM_START_KEY: warm_start}


def from_trainer_custom_config(custom_config: Mapping[str, Any]):
  """(TrainingConfig, ExportConfig) of a trainer_custom_config dict."""
  return (TrainingConfig.from_custom_config(custom_config.get('training', {})),
          ExportConfig(**custom_config.get('export', {})))
