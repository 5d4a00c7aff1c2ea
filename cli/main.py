"""retina-tfx: a TFX pipeline for retinal vessel segmentation.

  retina-tfx make-demo-data OUT                write a synthetic dataset (DRIVE's layout, or another's)
  retina-tfx run --data PATH ...               run the pipeline locally (LocalDagRunner, SQLite MLMD)
  retina-tfx run --data NEW --base-model M     fine-tune a model (latest-blessed, shipped or a path)
  retina-tfx show-preprocessing IMAGE -o PNG   picture every preprocessing step of one image
  retina-tfx predict --input ... --output DIR  vessel maps for image files (the shipped model)
  retina-tfx evaluate --data D ...             a model on datasets' test images, per dataset
  retina-tfx benchmark --data DRIVE --output D run on DRIVE and score the model on its test images
  retina-tfx benchmark-gate --pipeline-root R  replay the latest Evaluator run: wall time, peak RSS
  retina-tfx benchmark-scale --output DIR      cost per component as the dataset grows: time, RSS, disk
  retina-tfx status [--pipeline-root DIR]      release history: models, metrics, blessings, pushes
  retina-tfx report [--run latest] -o DIR      HTML report of a run's evaluation, with pictures
  retina-tfx compile-kfp --image I ... -o F    compile the pipeline for Kubeflow Pipelines v2 (offline)
"""
# This module parses and dispatches only: each command is its own module in cli/, imported when it
# runs, so help and argument errors load no TensorFlow.
import argparse
import importlib
import logging
import os
import sys

# Before TensorFlow is imported anywhere: TFT/TFMA 1.16 need Keras 2, and TF's C++ chatter goes to the log.
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

def _dataset_share(text: str):
  """--dataset-share NAME=SHARE -> (NAME, SHARE), SHARE a fraction of the training stream."""
  name, equals, share = text.partition('=')
  try:
    value = float(share)
  except ValueError:
    value = None
  if not (name and equals and value is not None and 0 < value < 1):
    raise argparse.ArgumentTypeError(f'{text!r}: expected NAME=SHARE with 0 < SHARE < 1, '
                                     'e.g. CHASE_DB1=0.5')
  return name, value


def _add_profile_arguments(parser) -> None:
  """What the command line changes of a profile: the training stream and the release gate."""
  from pipeline import configs
  parser.add_argument('--dataset-share', metavar='NAME=SHARE', type=_dataset_share,
                      action='append', default=[],
                      help='give dataset NAME this share of the training stream (repeatable); the '
                           'datasets not named share the rest equally (default: all equally). '
                           'E.g. a new camera fine-tuned with the old datasets listed too: '
                           'CHASE_DB1=0.5')
  parser.add_argument('--min-auc', type=float,
                      help="release gate: lowest FOV test AUC to bless (default: the profile's)")
  parser.add_argument('--max-auc-drop', type=float,
                      help='release gate: largest AUC drop below the latest blessed model '
                           f'(default {configs.DEFAULT_MAX_AUC_DROP})')


def _add_pipeline_arguments(parser, default_profile: str) -> None:
  from models import constants
  from pipeline import configs
  parser.add_argument('--data', nargs='+', required=True,
                      help='datasets, each a folder or zip archive(s): DRIVE, STARE, CHASE_DB1, '
                           'HRF as published, or images/ + labels/ (+ masks/)')
  parser.add_argument('--profile', choices=sorted(configs.PROFILES),
                      help='demo: fast, for the generated data; drive: follows the recipe on DRIVE; '
                           f'{configs.FINETUNE_PROFILE}: from a base model (default '
                           f'{default_profile}, {configs.FINETUNE_PROFILE} with --base-model)')
  parser.set_defaults(default_profile=default_profile)
  parser.add_argument('--base-model', metavar=f'{configs.LATEST_BLESSED}|{configs.SHIPPED}|PATH',
                      help="start training from this model's weights: the pipeline root's latest "
                           'blessed model (from scratch while there is none), the model the '
                           'project ships, or a SavedModel folder, or a serving folder of numbered '
                           'versions (the latest is used); an imported model is also the gate\'s '
                           'baseline')
  parser.add_argument('--eval-count', type=int, default=constants.DEFAULT_EVAL_COUNT,
                      help='training images held out for validation')
  parser.add_argument('--split-seed', type=int, default=0, help='seed of the eval hold-out choice')
  _add_profile_arguments(parser)
  parser.add_argument('--no-cache', action='store_true', help='re-run every component')
  parser.add_argument('--beam-args', nargs=argparse.REMAINDER, default=[],
                      help='Beam pipeline args, e.g. --direct_running_mode=multi_processing '
                           '--direct_num_workers=2 (must come last)')


def build_parser() -> argparse.ArgumentParser:
  from models import constants
  from pipeline import configs
  parser = argparse.ArgumentParser(prog='retina-tfx', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  commands = parser.add_subparsers(dest='command', required=True)

  from synthetic_drive import layouts  # names and sizes only: imports no numpy
  demo = commands.add_parser('make-demo-data', help='write a synthetic dataset in the published '
                             'layout of DRIVE, STARE, CHASE_DB1 or HRF')
  demo.add_argument('out', help='output folder (must not exist or be empty)')
  demo.add_argument('--layout', choices=layouts.NAMES, default=layouts.DRIVE,
                    help='whose folder layout, file names and formats to write (default drive)')
  demo.add_argument('--seed', type=int, default=0)
  demo.add_argument('--train-count', type=int, help='drive: training images (default 20)')
  demo.add_argument('--test-count', type=int, help='drive: test images (default 20)')
  demo.add_argument('--count', type=int, help='stare, chase_db1, hrf: images, in published order '
                    '(default all: 20, 28, 45)')
  demo.add_argument('--height', type=int, help="image height (default the layout's real one; the "
                    'schema accepts sides of 128 to 8192)')
  demo.add_argument('--width', type=int, help="image width (default the layout's real one)")
  demo.set_defaults(command='make_demo_data')

  run = commands.add_parser('run', help='run the pipeline locally')
  run.add_argument('--pipeline-root', default=configs.DEFAULT_PIPELINE_ROOT,
                   help='where artifacts, ML-Metadata (metadata.sqlite), logs and the report go')
  run.add_argument('--until', metavar='COMPONENT',
                   help='run only COMPONENT and what it depends on, e.g. PatchGen for the data '
                        'stages')
  run.add_argument('--serving-dir',
                   help='where blessed models are pushed, one numbered version each '
                        '(default: serving_model/ next to the pipeline root)')
  _add_pipeline_arguments(run, default_profile=configs.DEFAULT_PROFILE)
  run.set_defaults(command='run')

  bench = commands.add_parser('benchmark', help='run the pipeline on DRIVE and score the model on '
                              'its test images')
  bench.add_argument('--output', required=True,
                     help='folder for pipeline_root/, serving_model/ and benchmark.json')
  bench.add_argument('--benchmarks-file', default='BENCHMARKS.md', help='table to append a row to')
  _add_pipeline_arguments(bench, default_profile='drive')
  bench.set_defaults(command='benchmark')

  gate = commands.add_parser('benchmark-gate', help="replay a pipeline root's latest Evaluator "
                             'run in a child process: wall time and peak RSS')
  gate.add_argument('--pipeline-root', required=True)
  gate.add_argument('--data', nargs='+',
                    help="evaluate on these datasets' test images instead")
  gate.add_argument('--output', required=True, help='folder for the evaluation and its timing')
  gate.set_defaults(command='benchmark_gate')

  scale = commands.add_parser('benchmark-scale', help='run the pipeline on generated datasets of '
                              'growing size: wall time, peak RSS (Beam workers included) and bytes '
                              'on disk per component')
  scale.add_argument('--output', required=True, help='folder for N<count>/ and benchmark_scale.json')
  scale.add_argument('--counts', type=int, nargs='+', default=[25, 100, 400],
                     help='dataset sizes N, a quarter of each test images (default 25 100 400)')
  scale.add_argument('--size', type=int, default=2048,
                     help="images' side in pixels (default 2048, FIVES' images)")
  scale.add_argument('--distinct', type=int, default=8,
                     help='pictures rendered (2 s each at 2048x2048); the other images are their '
                          'mirror images (default 8)')
  scale.add_argument('--profile', choices=sorted(configs.PROFILES), default='smoke',
                     help='training budget (default smoke: the data stages dominate)')
  scale.add_argument('--interval', type=float, default=0.2, help='memory sampling period, seconds')
  scale.add_argument('--keep-data', action='store_true',
                     help="keep each N's dataset and artifacts (default: only ML-Metadata and logs)")
  scale.add_argument('--benchmarks-file', default='BENCHMARKS.md', help='table to append to')
  scale.add_argument('--beam-args', nargs=argparse.REMAINDER, default=[],
                     help="passed to each run's --beam-args (must come last)")
  scale.set_defaults(command='benchmark_scale')

  pred = commands.add_parser('predict', help='vessel probability maps for image files')
  pred.add_argument('--model', default=configs.SHIPPED_MODEL_DIR,
                    help='a SavedModel, or a serving folder of numbered versions (latest is used); '
                         'default: the model the project ships (models/shipped_model)')
  pred.add_argument('--input', nargs='+', required=True, help='image files and/or folders')
  pred.add_argument('--output', required=True, help='folder for the <stem>.png or .npy maps')
  pred.add_argument('--format', choices=constants.MAP_FORMATS, default=constants.MAP_FORMATS[0],
                    help='png16: probability x 65535, lossless to 1.5e-5 (default); png8: x 255, '
                    'smaller; npy: float32, exact')
  pred.add_argument('--fov', help='folder of FOV masks named <stem>.* or <stem>_mask.* '
                    '(default: computed from each image)')
  pred.add_argument('--overlay', action='store_true', help='also write <stem>_overlay.png')
  pred.set_defaults(command='predict')

  ev = commands.add_parser('evaluate', help="score an exported model on datasets' test images "
                           '(or all their images), per dataset and pooled, with the gate\'s metrics')
  ev.add_argument('--model', default=configs.SHIPPED_MODEL_DIR,
                  help='a SavedModel, or a serving folder of numbered versions (latest is used); '
                       'default: the model the project ships (models/shipped_model)')
  ev.add_argument('--data', nargs='+', required=True,
                  help='datasets: DRIVE, STARE, CHASE_DB1, HRF as published, or images/ + labels/')
  ev.add_argument('--all', action='store_true', help='every image, not only the test splits')
  ev.add_argument('-o', '--output', required=True,
                  help='folder for evaluation.json, index.html and the overlays')
  ev.set_defaults(command='evaluate')

  show = commands.add_parser('show-preprocessing', help='picture every preprocessing step of an image')
  show.add_argument('image', help='fundus image (TIFF, PNG, JPEG, ...)')
  show.add_argument('-o', '--output', required=True, help='PNG to write')
  show.add_argument('--fov', help='FOV mask image (default: computed from the image)')
  show.add_argument('--pipeline-root',
                    help="use the dataset statistics of this pipeline root's latest Transform "
                         "(default: the image's own FOV statistics)")
  show.add_argument('--profile', choices=sorted(configs.PROFILES), default=configs.DEFAULT_PROFILE)
  show.set_defaults(command='show_preprocessing')

  stat = commands.add_parser('status', help='release history from ML-Metadata: models, metrics, '
                             'blessing decisions with reasons, pushed versions')
  stat.add_argument('--pipeline-root', default=configs.DEFAULT_PIPELINE_ROOT)
  output = stat.add_mutually_exclusive_group()
  output.add_argument('--json', action='store_true', help='machine-readable output')
  output.add_argument('--require-blessed', action='store_true',
                      help="print the latest run's release decision in one line; exit 1 unless "
                           'it blessed its model (for CI)')
  stat.set_defaults(command='status')

  rep = commands.add_parser('report', help="HTML report of a run's evaluation: curves, per-image "
                            'AUC, overlays, preprocessing')
  rep.add_argument('--pipeline-root', default=configs.DEFAULT_PIPELINE_ROOT)
  rep.add_argument('--run', default='latest', help="pipeline run id (see status) or 'latest'")
  rep.add_argument('-o', '--output', required=True, help='folder for index.html and its images')
  rep.set_defaults(command='report')

  kfp = commands.add_parser('compile-kfp', help='compile the pipeline for Kubeflow Pipelines v2 / '
                            'Vertex AI Pipelines (offline; code runs from --image)')
  kfp.add_argument('--image', required=True, help='container image with this project installed')
  kfp.add_argument('--pipeline-root', required=True, help='e.g. gs://bucket/retina-tfx/root')
  kfp.add_argument('--data', nargs='+', required=True, help='dataset folder or zip URIs')
  kfp.add_argument('-o', '--output', required=True, help='PipelineJob JSON to write')
  kfp.add_argument('--serving-dir', help='push target (default: <pipeline-root>/serving_model)')
  kfp.add_argument('--profile', choices=sorted(configs.PROFILES),
                   help=f'default drive, {configs.FINETUNE_PROFILE} with --base-model')
  kfp.set_defaults(default_profile='drive')
  kfp.add_argument('--base-model', metavar=f'{configs.LATEST_BLESSED}|URI',
                   help="start training from this model's weights: the latest blessed model in "
                        "the cluster's ML-Metadata when the run starts (from scratch while there "
                        "is none), or a model artifact's URI (a folder holding "
                        'Format-Serving/saved_model.pb); an imported model is also the baseline')
  kfp.add_argument('--eval-count', type=int, default=constants.DEFAULT_EVAL_COUNT)
  kfp.add_argument('--split-seed', type=int, default=0)
  _add_profile_arguments(kfp)
  kfp.add_argument('--gpu-type', help='accelerator for the Trainer task, e.g. NVIDIA_TESLA_T4')
  kfp.add_argument('--gpu-count', type=int, default=1)
  kfp.add_argument('--beam-runner', choices=('direct', 'dataflow', 'flink'), default='direct',
                   help='where Beam stages run: in their task (multi-process), Dataflow or Flink')
  kfp.add_argument('--beam-workers', type=int, default=2,
                   help='processes (direct), max workers (dataflow) or parallelism (flink)')
  kfp.add_argument('--gcp-project')
  kfp.add_argument('--gcp-region')
  kfp.add_argument('--temp-location', help='gs:// folder for Dataflow staging')
  kfp.add_argument('--flink-master', help='host:port of the Flink JobManager')
  kfp.set_defaults(command='compile_kfp')
  return parser


_RUNS_PIPELINE = ('run', 'benchmark')   # the commands that hold a pipeline root's run lock


def parse_args(argv) -> argparse.Namespace:
  """The command line's arguments; a pipeline run's profile is, unless given, the command's default
  or, from a base model, the fine-tuning one. Dataset shares are checked against each other here
  (compile-kfp has no data to check them against), against the datasets of --data by `run` before
  the pipeline starts, and against the patch files by the Trainer (models/patches.stream_shares)."""
  from pipeline import configs
  parser = build_parser()
  args = parser.parse_args(argv)
  named = getattr(args, 'dataset_share', [])
  if len(dict(named)) < len(named):
    parser.error('--dataset-share: a dataset named twice')
  if sum(share for _, share in named) > 1:
    parser.error('--dataset-share: the shares add up to more than 1')
  if getattr(args, 'default_profile', None) and args.profile is None:
    args.profile = configs.FINETUNE_PROFILE if args.base_model else args.default_profile
  return args


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else list(argv)
  args = parse_args(argv)
  args.argv = argv
  if args.command not in _RUNS_PIPELINE:  # those send TensorFlow's logs to the run's log
    logging.getLogger('tensorflow').setLevel(logging.ERROR)
  from cli import console, run_lock
  from pipeline import configs
  try:
    if args.command not in _RUNS_PIPELINE:
      return importlib.import_module(f'cli.{args.command}').command(args)
    if args.command == 'benchmark':
      args.pipeline_root = os.path.join(args.output, configs.DEFAULT_PIPELINE_ROOT)
    # Before the command's (TensorFlow's) imports, so a second run stops within a blink.
    with run_lock.holding(args.pipeline_root):
      return importlib.import_module(f'cli.{args.command}').command(args)
  except console.CommandError as error:
    print(f'retina-tfx: error: {error}', file=sys.stderr)
    return 1


if __name__ == '__main__':
  sys.exit(main())
