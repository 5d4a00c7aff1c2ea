"""Every knob of the pipeline, in one TensorFlow-free module: names, component ids, where things
go, the code the components run, and the run profiles (patches, training, export, release gate)."""
import dataclasses
import os
from typing import Dict, List, Optional

from models import constants
from models.settings import (AugmentationConfig, ExportConfig, ModelConfig, PreprocessingConfig,
                             TrainingConfig)

PIPELINE_NAME = 'retina-tfx'
DEFAULT_PIPELINE_ROOT = 'pipeline_root'
METADATA_FILE = 'metadata.sqlite'   # ML-Metadata store of local runs, inside the pipeline root
LOG_DIR = 'logs'                    # full logs of local runs, inside the pipeline root
REPORT_DIR = 'report'               # the latest run's report, inside the pipeline root
LOCK_FILE = 'run.lock'              # held by the one run at a time, inside the pipeline root
SERVING_DIR = 'serving_model'       # blessed models' TF Serving folder, next to the pipeline root
DEFAULT_MAX_AUC_DROP = 0.002        # how far below its baseline (pooled, per dataset) a model may score
LATEST_BLESSED = 'latest-blessed'   # `run --base-model`: start from the latest blessed model
SHIPPED = 'shipped'                 # `run --base-model`: start from the model the project ships
# The model the project ships (models/shipped_model/MODEL_CARD.md: its data and how to reproduce
# it), a TF Serving folder: predict and evaluate use it when no --model is given.
SHIPPED_MODEL_DIR = os.path.join(os.path.dirname(constants.__file__), 'shipped_model')
BASE_MODEL_DIR = 'base_models'      # imported base models, inside the pipeline root (see cli/run.py)

# Component ids: the names ML-Metadata records each component's runs under.
EXAMPLE_GEN = 'FundusExampleGen'
STATISTICS_GEN = 'StatisticsGen'
SCHEMA_IMPORTER = 'ImportSchemaGen'
EXAMPLE_VALIDATOR = 'ExampleValidator'
DATA_GATE = 'DataGate'
TRANSFORM = 'Transform'
PATCH_GEN = 'PatchGen'
TRAINER = 'Trainer'
BASELINE_RESOLVER = 'latest_blessed_model_resolver'
BASE_MODEL_IMPORTER = 'base_model_importer'   # `run --base-model PATH`: the SavedModel at PATH
EVALUATOR = 'Evaluator'
PUSHER = 'Pusher'

# The code Transform and Trainer run, as function paths into the installed package: never a module
# file, which TFX would bundle (and, for Kubeflow, upload at compile time).
PREPROCESSING_FN = 'models.transform.preprocessing_fn'
RUN_FN = 'models.training.run_fn'
# The Evaluator's module: its custom_extractors reduce each image to the gate metric's histograms.
EVALUATOR_MODULE = 'models.vessel_metrics'


@dataclasses.dataclass(frozen=True)
class PatchConfig:
  """What PatchGen cuts; the Trainer reads the size back from the patches themselves."""
  per_image: int
  size: int = constants.PATCH_SIZE
  seed: int = 0       # of the patch positions and their mixing (the eval hold-out has split_seed)


@dataclasses.dataclass(frozen=True)
class Profile:
  """Everything that differs between the quick demo and a DRIVE run that follows the recipe."""
  patches: PatchConfig
  training: TrainingConfig
  min_auc: float             # release gate: the FOV-weighted test AUC a model needs to be blessed
  max_auc_drop: float = DEFAULT_MAX_AUC_DROP
  preprocessing: PreprocessingConfig = PreprocessingConfig()
  export: ExportConfig = ExportConfig()


# Photos from other cameras differ by more than the default's mild changes (see the drive profile).
_STRONG_AUGMENTATION = AugmentationConfig(max_zoom=1.4, max_gamma=1.5, contrast=0.3, brightness=0.1,
                                          max_blur_sigma=1.0, max_noise_sigma=0.03)
FINETUNE_PROFILE = 'finetune'
PROFILES = {
    # Wiring check in about a minute (the tests run it): every component runs for real and the
    # model trains just enough (seconds) to be clearly better than chance, and than one step.
    'smoke': Profile(patches=PatchConfig(per_image=50), min_auc=0.5, training=TrainingConfig(
        epochs=2, steps_per_epoch=20, validation_steps=2, batch_size=16)),
    # Enough to learn the synthetic vessels in well under 3 minutes of training.
    'demo': Profile(patches=PatchConfig(per_image=400), min_auc=0.90, training=TrainingConfig(
        epochs=8, steps_per_epoch=60, validation_steps=10, max_minutes=2.5)),
    # The recipe's preprocessing and patch budget (190,000 48x48 patches from 20 images = 21.9 M
    # pixels per image), cut as 6,000 64x64 patches per image (24.6 M): whole-image inference
    # profits from the larger context, and zero-padded patch borders cover less of each patch.
    # No dropout: in 42 CPU minutes the model underfits (training AUC still rising, above the
    # validation AUC by only ~0.001), and without it a step is ~12 % faster. At most 26 epochs of
    # 400 batches of 32, as many as fit in 43 minutes (the Trainer re-fits the learning-rate decay
    # to them): an epoch with validation took 1.2 min on a Xeon with AMX (bfloat16), 2.1 min in
    # float32 there, and 3.5-4.3 min on a 2-core AVX2 EPYC (10 epochs). Validation reads 4,800 eval
    # patches: fewer made the epoch-to-epoch AUC noise larger than the gains, and a patience of 6
    # stopped a run at epoch 11.
    # Pure FOV-masked cross-entropy (no Dice): the release metric is the AUC, a ranking that Dice's
    # push towards saturated 0/1 outputs does not help.
    # Weight average: from epoch ~14 the validation AUC only jitters (0.9770-0.9774 in the
    # 39.7-min run of BENCHMARKS.md); an EMA over the last ~2,000 steps (~5 epochs) averages that
    # plateau, and the Trainer exports it only if it beats the best epoch on the validation patches.
    # Strong augmentation (zoom by up to 1.4x either way, gamma up to 1.5, contrast +-30 %, blur,
    # noise): the DRIVE-trained model then holds on other cameras, no retraining: STARE 0.9573 ->
    # 0.9846, CHASE_DB1 0.9728 -> 0.9780, DRIVE test 0.9815 -> 0.9808, within the spread of 15
    # DRIVE runs (BENCHMARKS.md, issue 20). It costs ~11 ms of CPU per batch of 32 (18 vs 7).
    'drive': Profile(
        patches=PatchConfig(per_image=6000, size=64), min_auc=0.975, training=TrainingConfig(
            epochs=26, steps_per_epoch=400, validation_steps=150, learning_rate=1e-3,
            max_minutes=43, early_stopping_patience=10, dice_weight=0.0,
            weight_average_momentum=0.9995, model=ModelConfig(dropout=0.0),
            augmentation=_STRONG_AUGMENTATION)),
    # From a base model (`run --base-model`, whose default profile this is), e.g. a drive model,
    # to a new camera's handful of labelled photos in at most 5 minutes of training (issue 27's
    # target). The drive profile's model, loss, patches and augmentation: the base's weights fit,
    # and it keeps being trained on what it was trained on. With 4 photos the augmentation is most
    # of the variety. A tenth of drive's learning rate: the base already sits in a good minimum,
    # and steps as large as a training from scratch takes would carry it away from what it knows
    # of the other cameras, which the gate holds to within max_auc_drop on each dataset. 4 epochs
    # of 100 batches, fewer than demo's 480 (~0.45 s a batch, ~50 s an epoch with validation at
    # the drive profile's pace on 2 EPYC cores: ~3.5 min); the time budget bounds slower machines.
    # 2,000 patches per photo: 6,000 from 3 training photos, each drawn about twice, with fresh
    # augmentation each time. With the old datasets listed too, the new camera has a quarter of
    # the patches and of every epoch, like each of them, unless `--dataset-share NAME=0.5` gives
    # it half (4 CHASE_DB1 photos: test AUC 0.9806 instead of 0.9793, the others within the gate;
    # BENCHMARKS.md). The weight average spans the last ~100 batches, an epoch.
    FINETUNE_PROFILE: Profile(
        patches=PatchConfig(per_image=2000, size=64), min_auc=0.975, training=TrainingConfig(
            epochs=4, steps_per_epoch=100, validation_steps=40, learning_rate=1e-4,
            max_minutes=5, early_stopping_patience=3, dice_weight=0.0,
            weight_average_momentum=0.99, model=ModelConfig(dropout=0.0),
            augmentation=_STRONG_AUGMENTATION)),
}
DEFAULT_PROFILE = 'demo'


def metadata_path(pipeline_root: str) -> str:
  return os.path.join(pipeline_root, METADATA_FILE)


# Components that run Beam pipelines, by component id. Each streams: a worker holds a few images at
# a time, so Dataflow's default workers do (docs/design.md, "Where Beam runs": what one needs).
BEAM_COMPONENTS = (EXAMPLE_GEN, STATISTICS_GEN, TRANSFORM, PATCH_GEN, EVALUATOR)


@dataclasses.dataclass(frozen=True)
class BeamSettings:
  """Where the Beam stages run. direct: this machine, `workers` processes; dataflow: Google Cloud
  Dataflow (project, region, temp_location; workers run `image`); flink: an Apache Flink cluster
  (flink_master), with Beam's SDK worker pool running `image` beside each task manager."""
  runner: str = 'direct'
  workers: int = 2
  project: Optional[str] = None
  region: Optional[str] = None
  temp_location: Optional[str] = None
  flink_master: Optional[str] = None
  image: Optional[str] = None


def component_beam_args(settings: BeamSettings) -> Dict[str, List[str]]:
  """Beam pipeline args for each Beam component (component id -> args)."""
  if settings.runner == 'direct':
    common = ['--direct_running_mode=multi_processing', f'--direct_num_workers={settings.workers}']
    return {component: list(common) for component in BEAM_COMPONENTS}
  if settings.runner == 'dataflow':
    missing = [name for name in ('project', 'region', 'temp_location', 'image')
               if not getattr(settings, name)]
    if missing:
      raise ValueError(f'the Dataflow runner needs {", ".join(missing)}')
    common = ['--runner=DataflowRunner', f'--project={settings.project}',
              f'--region={settings.region}', f'--temp_location={settings.temp_location}',
              f'--sdk_container_image={settings.image}', '--experiments=use_runner_v2',
              f'--max_num_workers={settings.workers}']
    return {component: list(common) for component in BEAM_COMPONENTS}
  if settings.runner == 'flink':
    if not settings.flink_master:
      raise ValueError('the Flink runner needs flink_master (host:port of the JobManager)')
    common = ['--runner=FlinkRunner', f'--flink_master={settings.flink_master}',
              f'--parallelism={settings.workers}', '--environment_type=EXTERNAL',
              '--environment_config=localhost:50000']
    return {component: list(common) for component in BEAM_COMPONENTS}
  raise ValueError(f'unknown Beam runner {settings.runner!r}: direct, dataflow or flink')
