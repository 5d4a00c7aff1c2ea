"""retina-tfx: command-line entry point.

  retina-tfx make-demo-data OUT                write a synthetic DRIVE-like dataset in DRIVE's layout
  retina-tfx run --data PATH ...               run the pipeline locally (LocalDagRunner, SQLite MLMD)
  retina-tfx show-preprocessing IMAGE -o PNG   picture every preprocessing step of one image
  retina-tfx predict --model DIR --input ...   vessel probability maps for image files
  retina-tfx benchmark --data DRIVE --output D run on DRIVE and score the model on its test images
  retina-tfx benchmark-gate --pipeline-root R  replay the latest Evaluator run: wall time, peak RSS
  retina-tfx status [--pipeline-root DIR]      release history: models, metrics, blessings, pushes
  retina-tfx report [--run latest] -o DIR      HTML report of a run's evaluation, with pictures
  retina-tfx compile-kfp --image I ... -o F    compile the pipeline for Kubeflow Pipelines v2 (offline)
"""
import argparse
import contextlib
import dataclasses
import datetime
import logging
import os
import re
import sys
import time

# Before TensorFlow is imported anywhere: TFT/TFMA 1.16 need Keras 2, and TF's C++ chatter goes to the log.
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

_RUNNING = re.compile(r'Component (\S+) is running\.')
_FINISHED = re.compile(r'Component (\S+) is finished\.')
_EPOCH = re.compile(r'Trainer: epoch \d+: .*')  # models.training.ProgressLog, once per epoch
NAME_WIDTH = 30  # fits every component id of the pipeline, the resolver's included


class _ProgressPrinter(logging.Handler):
  """Turns LocalDagRunner's per-component log lines into a short progress display on stdout."""

  def __init__(self):
    super().__init__(level=logging.INFO)
    self.current = None
    self.started = 0.0

  def emit(self, record):
    message = record.getMessage()
    if match := _RUNNING.fullmatch(message):
      self.current, self.started = match.group(1), time.monotonic()
      print(f'  {self.current:<{NAME_WIDTH}} running ...', flush=True)
    elif match := _FINISHED.fullmatch(message):
      print(f'  {match.group(1):<{NAME_WIDTH}} done in {time.monotonic() - self.started:.1f} s',
            flush=True)
      self.current = None
    elif _EPOCH.fullmatch(message):
      print(f'    {message[len("Trainer: "):]} ({time.monotonic() - self.started:.0f} s)', flush=True)


@contextlib.contextmanager
def _logging_to_file(log_path: str):
  """Full logs (TFX, Beam, TF, warnings) go to `log_path`; the terminal shows progress only."""
  from absl import logging as absl_logging
  os.makedirs(os.path.dirname(log_path), exist_ok=True)
  root, absl_logger, tf_logger = (logging.getLogger(name) for name in ('', 'absl', 'tensorflow'))
  saved_handlers, saved_level = list(root.handlers), root.level
  saved_verbosity = absl_logging.get_verbosity()
  saved_tf_handlers, saved_tf_propagate = list(tf_logger.handlers), tf_logger.propagate
  file_handler = logging.FileHandler(log_path)
  file_handler.setFormatter(logging.Formatter('%(asctime)s %(levelname)s %(name)s: %(message)s'))
  progress = _ProgressPrinter()
  for handler in saved_handlers:
    root.removeHandler(handler)
  for handler in saved_tf_handlers:  # TensorFlow's logger prints to stderr on its own
    tf_logger.removeHandler(handler)
  tf_logger.propagate = True
  root.addHandler(file_handler)
  root.setLevel(logging.INFO)
  absl_logging.set_verbosity(absl_logging.INFO)
  absl_logger.addHandler(progress)
  logging.captureWarnings(True)
  try:
    yield progress
  finally:
    logging.captureWarnings(False)
    absl_logger.removeHandler(progress)
    root.removeHandler(file_handler)
    file_handler.close()
    for handler in saved_handlers:
      root.addHandler(handler)
    root.setLevel(saved_level)
    # Or absl's INFO records (MLMD connections of `status` after a run) reach the terminal.
    absl_logging.set_verbosity(saved_verbosity)
    for handler in saved_tf_handlers:
      tf_logger.addHandler(handler)
    tf_logger.propagate = saved_tf_propagate


def _user_message(error: BaseException) -> str:
  """The one line (or anomaly list) a user needs, dug out of Beam/TFX exception wrapping."""
  from components.drive_example_gen import source
  text = '\n'.join(str(e) for e in _chain(error))
  if match := re.search(re.escape(source.ERROR_PREFIX) + r"(.+?)(?: \[while running '.*)?$", text,
                        flags=re.MULTILINE):
    return match.group(1).rstrip("'\" ")
  return str(error).strip() or type(error).__name__


def _chain(error: BaseException):
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    yield error
    error = error.__cause__ or error.__context__


def _cmd_make_demo_data(args) -> int:
  from pipeline import demo_data

  def progress(done, total):
    print(f'\r  generating images: {done}/{total}', end='\n' if done == total else '', flush=True)

  try:
    summary = demo_data.generate(args.out, seed=args.seed, n_train=args.train_count,
                                 n_test=args.test_count, height=args.height, width=args.width,
                                 progress=progress)
  except (ValueError, FileExistsError) as error:
    print(f'retina-tfx: error: {error}', file=sys.stderr)
    return 1
  print(f'wrote a synthetic DRIVE-like dataset to {args.out}: {summary}')
  return 0


def _profile(args):
  """The chosen profile with the release gate options the command line overrides."""
  from pipeline import configs
  gate = {k: v for k, v in (('min_auc', args.min_auc), ('max_auc_drop', args.max_auc_drop))
          if v is not None}
  return dataclasses.replace(configs.PROFILES[args.profile], **gate)


def _run_pipeline(args):
  """Runs the pipeline with progress on the terminal; returns MLMD's node runs, or None on failure."""
  from pipeline import configs, local_runner, metadata
  stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S')
  log_path = os.path.join(os.path.abspath(args.pipeline_root), configs.LOG_DIR, f'run-{stamp}.log')
  print(f'retina-tfx: running pipeline on {", ".join(args.data)} (profile {args.profile})\n'
        f'  pipeline root: {os.path.abspath(args.pipeline_root)}\n  full log: {log_path}')
  if not args.serving_dir:
    args.serving_dir = os.path.join(os.path.dirname(os.path.abspath(args.pipeline_root)),
                                    configs.SERVING_DIR)
  profile = _profile(args)
  with _logging_to_file(log_path) as progress:
    try:
      local_runner.run(args.data, args.pipeline_root, profile, args.serving_dir,
                       beam_pipeline_args=args.beam_args,
                       eval_count=args.eval_count, split_seed=args.split_seed,
                       enable_cache=not args.no_cache, until=getattr(args, 'until', None))
    except Exception as error:  # pylint: disable=broad-except
      logging.exception('pipeline failed')
      where = f'{progress.current} failed: ' if progress.current else ''
      print(f'retina-tfx: error: {where}{_user_message(error)}\n  (full log: {log_path})',
            file=sys.stderr)
      return None
    return metadata.latest_node_runs(metadata.open_store(args.pipeline_root), configs.PIPELINE_NAME)


def _print_release_decision(pipeline_root: str) -> None:
  from pipeline import configs, eval_config, metadata, status
  rows = status.decisions(metadata.open_store(pipeline_root), configs.PIPELINE_NAME)
  if not rows:
    return
  latest = rows[-1]
  auc = latest.metrics.get(eval_config.GATED_METRIC, float('nan'))
  if latest.blessed:
    where = (f'pushed as version {latest.pushed_version} to {latest.pushed_to}'
             if latest.pushed_version else 'not pushed')
    print(f'release gate: model {latest.model_id} BLESSED (test FOV AUC {auc:.4f}); {where}')
  else:
    print(f'release gate: model {latest.model_id} REJECTED (test FOV AUC {auc:.4f}), not pushed:')
    for reason in latest.reasons:
      print(f'  - {reason}')


def _cmd_run(args) -> int:
  from pipeline import configs
  runs = _run_pipeline(args)
  if runs is None:
    return 1
  print('artifacts:')
  for run in runs:
    for key, uris in run.outputs.items():
      for uri in uris:
        print(f'  {run.node_id:<{NAME_WIDTH}} {run.state:<9} {key:<18} {uri}')
  if args.until:
    return 0
  _print_release_decision(args.pipeline_root)
  return _write_report(args.pipeline_root, os.path.join(args.pipeline_root, configs.REPORT_DIR))


def _cmd_predict(args) -> int:
  from pipeline import predict
  try:
    model = predict.VesselModel(args.model)
    print(f'retina-tfx: predicting with {model.path}')
    failures = predict.predict_files(model, args.input, args.output, fov_dir=args.fov,
                                     with_overlay=args.overlay)
  except predict.PredictError as error:
    print(f'retina-tfx: error: {error}', file=sys.stderr)
    return 1
  for problem in failures.values():
    print(f'retina-tfx: error: {problem}', file=sys.stderr)
  return 1 if failures else 0


def _cmd_benchmark(args) -> int:
  import json
  from pipeline import benchmark, configs, eval_config, metadata, predict, status
  args.pipeline_root = os.path.join(args.output, 'pipeline_root')
  args.serving_dir = os.path.join(args.output, configs.SERVING_DIR)
  runs = _run_pipeline(args)
  if runs is None:
    return 1
  trainer = next(r for r in runs if r.node_id == 'Trainer')
  with open(os.path.join(trainer.outputs['model_run'][0], 'training.json')) as f:
    training = json.load(f)
  # The Trainer's own export is scored, blessed or not; the Pusher put it in serving_dir if blessed.
  model_dir = os.path.join(trainer.outputs['model'][0], 'Format-Serving')
  print(f'retina-tfx: scoring {model_dir} on the test images')
  scores = benchmark.score_test_images(predict.VesselModel(model_dir), args.data)
  gate = status.decisions(metadata.open_store(args.pipeline_root), configs.PIPELINE_NAME)[-1]
  result = {
      'command': 'retina-tfx ' + ' '.join(args.argv),
      'profile': args.profile, 'architecture': training['config']['model']['architecture'],
      'parameters': training['parameters'], 'training_seconds': training['training_seconds'],
      'model': model_dir, 'scores': scores,
      'evaluator': {'auc': gate.metrics.get(eval_config.GATED_METRIC), 'blessed': gate.blessed,
                    'reasons': gate.reasons, 'pushed_version': gate.pushed_version,
                    'pushed_to': gate.pushed_to},
  }
  path = benchmark.write_result(args.output, result)
  benchmark.append_row(args.benchmarks_file, result)
  print(f'  training wall time  {training["training_seconds"] / 60:.1f} min')
  for key in ('auc_roc', 'auc_pr', 'accuracy', 'sensitivity', 'specificity', 'f1',
              'predict_seconds_per_image'):
    print(f'  {key:<19} {scores[key]:.4f}')
  print(f'  Evaluator (TFMA) AUC {result["evaluator"]["auc"]:.4f}, '
        f'{"BLESSED" if gate.blessed else "REJECTED"}'
        + (f', pushed to {gate.pushed_to}' if gate.pushed_to else ''))
  print(f'  scores: {path}; row appended to {args.benchmarks_file}')
  return 0


def _cmd_benchmark_gate(args) -> int:
  import json
  from pipeline import gate_benchmark
  try:
    recorded = gate_benchmark.recorded_evaluation(args.pipeline_root)
    if args.data:
      examples_uri = os.path.join(os.path.abspath(args.output), 'examples')
      print(f'retina-tfx: ingesting {", ".join(args.data)} into {examples_uri}', flush=True)
      try:
        gate_benchmark.ingest(args.data, examples_uri)
      except Exception as error:  # pylint: disable=broad-except
        raise gate_benchmark.GateBenchmarkError(_user_message(error)) from error
      recorded['inputs']['examples'] = examples_uri
    print(f'retina-tfx: replaying the Evaluator on {recorded["inputs"]["examples"]}', flush=True)
    result = gate_benchmark.replay(recorded, os.path.join(args.output, 'evaluator'))
  except gate_benchmark.GateBenchmarkError as error:
    print(f'retina-tfx: error: {error}', file=sys.stderr)
    return 1
  result['command'] = 'retina-tfx ' + ' '.join(args.argv)
  path = os.path.join(args.output, 'gate_benchmark.json')
  with open(path, 'w') as f:
    json.dump(result, f, indent=2)
  models = 'candidate + baseline' if result['baseline'] else 'candidate only'
  print(f'  Evaluator ({models}): {result["evaluator_seconds"]:.1f} s wall, peak RSS '
        f'{result["peak_rss_mb"]:.0f} MB, AUC {result["metrics"].get("auc", float("nan")):.4f}, '
        f'{"BLESSED" if result["blessed"] else "REJECTED"}\n  result: {path}')
  return 0


def _cmd_show_preprocessing(args) -> int:
  import numpy as np
  from models import preprocessing
  from pipeline import configs, metadata, predict, visualize
  try:
    _, rgb = predict.read_as_png(args.image)
    if args.fov:
      fov = (predict.read_as_png(args.fov, mode='L')[1] > 127).astype(np.float32)
      fov_source = args.fov
    else:
      fov = preprocessing.fov_from_image(rgb).numpy()
      fov_source = 'computed from the image'
  except predict.PredictError as error:
    print(f'retina-tfx: error: {error}', file=sys.stderr)
    return 1
  if fov.shape != rgb.shape[:2] or not fov.any():
    print(f'retina-tfx: error: {args.fov or args.image}: FOV mask is empty or its size differs '
          'from the image', file=sys.stderr)
    return 1
  transform_graph = None
  if args.pipeline_root:
    transform_graph = metadata.latest_output(metadata.open_store(args.pipeline_root),
                                             configs.PIPELINE_NAME, 'Transform', 'transform_graph')
    if transform_graph is None:
      print(f'retina-tfx: error: {args.pipeline_root}: no completed Transform run recorded',
            file=sys.stderr)
      return 1
  figure = visualize.preprocessing_figure(rgb, fov, os.path.basename(args.image), fov_source,
                                          configs.PROFILES[args.profile].preprocessing,
                                          transform_graph)
  visualize.write_png(args.output, figure)
  print(f'wrote {args.output}')
  return 0


def _cmd_status(args) -> int:
  import json
  from pipeline import configs, metadata, status
  if not os.path.exists(configs.metadata_path(args.pipeline_root)):
    print(f'retina-tfx: error: {args.pipeline_root}: no pipeline runs recorded here '
          f'({configs.METADATA_FILE} missing)', file=sys.stderr)
    return 1
  rows = status.decisions(metadata.open_store(args.pipeline_root), configs.PIPELINE_NAME)
  if args.json:
    print(json.dumps([dataclasses.asdict(row) for row in rows], indent=2))
  else:
    print(status.format_table(rows))
  return 0


def _write_report(pipeline_root: str, output_dir: str, run: str = 'latest') -> int:
  from pipeline import report
  try:
    path = report.write_report(pipeline_root, output_dir, run)
  except report.ReportError as error:
    print(f'retina-tfx: error: report: {error}', file=sys.stderr)
    return 1
  print(f'report: {path}')
  return 0


def _cmd_report(args) -> int:
  return _write_report(args.pipeline_root, args.output, args.run)


def _cmd_compile_kfp(args) -> int:
  from pipeline import configs, kubeflow_runner
  try:
    beam = configs.component_beam_args(configs.BeamSettings(
        runner=args.beam_runner, workers=args.beam_workers, project=args.gcp_project,
        region=args.gcp_region, temp_location=args.temp_location, flink_master=args.flink_master,
        image=args.image))
    gpu = kubeflow_runner.GpuRequest(args.gpu_type, args.gpu_count) if args.gpu_type else None
    path = kubeflow_runner.compile_pipeline(
        args.image, args.pipeline_root, args.data, args.output,
        _profile(args), serving_dir=args.serving_dir, gpu=gpu,
        component_beam_args=beam, eval_count=args.eval_count, split_seed=args.split_seed)
  except ValueError as error:
    print(f'retina-tfx: error: {error}', file=sys.stderr)
    return 1
  print(f'wrote {path}: submit it with the KFP client or to Vertex AI Pipelines (README, '
        '"Deploy to Kubeflow")')
  return 0


def _add_gate_arguments(parser) -> None:
  from pipeline import configs
  parser.add_argument('--min-auc', type=float,
                      help="release gate: lowest FOV test AUC to bless (default: the profile's)")
  parser.add_argument('--max-auc-drop', type=float,
                      help='release gate: largest AUC drop below the latest blessed model '
                           f'(default {configs.DEFAULT_MAX_AUC_DROP})')


def _add_pipeline_arguments(parser, default_profile: str) -> None:
  from models import constants
  from pipeline import configs
  parser.add_argument('--data', nargs='+', required=True,
                      help='DRIVE folder(s) and/or the official zip archive(s)')
  parser.add_argument('--profile', choices=sorted(configs.PROFILES), default=default_profile,
                      help='demo: fast, for the generated data; drive: follows the recipe on DRIVE')
  parser.add_argument('--eval-count', type=int, default=constants.DEFAULT_EVAL_COUNT,
                      help='training images held out for validation')
  parser.add_argument('--split-seed', type=int, default=0, help='seed of the eval hold-out choice')
  _add_gate_arguments(parser)
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

  demo = commands.add_parser('make-demo-data', help='write a synthetic DRIVE-like dataset')
  demo.add_argument('out', help='output folder (must not exist or be empty)')
  demo.add_argument('--seed', type=int, default=0)
  demo.add_argument('--train-count', type=int, default=20)
  demo.add_argument('--test-count', type=int, default=20)
  demo.add_argument('--height', type=int, default=constants.IMAGE_HEIGHT,
                    help="image height (default DRIVE's; the pipeline's schema expects DRIVE's)")
  demo.add_argument('--width', type=int, default=constants.IMAGE_WIDTH)
  demo.set_defaults(func=_cmd_make_demo_data)

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
  run.set_defaults(func=_cmd_run)

  bench = commands.add_parser('benchmark', help='run the pipeline on DRIVE and score the model on '
                              'its test images')
  bench.add_argument('--output', required=True,
                     help='folder for pipeline_root/, serving_model/ and benchmark.json')
  bench.add_argument('--benchmarks-file', default='BENCHMARKS.md', help='table to append a row to')
  _add_pipeline_arguments(bench, default_profile='drive')
  bench.set_defaults(func=_cmd_benchmark)

  gate = commands.add_parser('benchmark-gate', help="replay a pipeline root's latest Evaluator "
                             'run in a child process: wall time and peak RSS')
  gate.add_argument('--pipeline-root', required=True)
  gate.add_argument('--data', nargs='+',
                    help="evaluate on these DRIVE-layout datasets' test images instead")
  gate.add_argument('--output', required=True, help='folder for the evaluation and its timing')
  gate.set_defaults(func=_cmd_benchmark_gate)

  pred = commands.add_parser('predict', help='vessel probability maps for image files')
  pred.add_argument('--model', required=True,
                    help='a SavedModel, or a serving folder of numbered versions (latest is used)')
  pred.add_argument('--input', nargs='+', required=True, help='image files and/or folders')
  pred.add_argument('--output', required=True, help='folder for <stem>.png maps (0..255)')
  pred.add_argument('--fov', help='folder of FOV masks named <stem>.* or <stem>_mask.* '
                    '(default: computed from each image)')
  pred.add_argument('--overlay', action='store_true', help='also write <stem>_overlay.png')
  pred.set_defaults(func=_cmd_predict)

  show = commands.add_parser('show-preprocessing', help='picture every preprocessing step of an image')
  show.add_argument('image', help='fundus image (TIFF, PNG, JPEG, ...)')
  show.add_argument('-o', '--output', required=True, help='PNG to write')
  show.add_argument('--fov', help='FOV mask image (default: computed from the image)')
  show.add_argument('--pipeline-root',
                    help="use the dataset statistics of this pipeline root's latest Transform "
                         "(default: the image's own FOV statistics)")
  show.add_argument('--profile', choices=sorted(configs.PROFILES), default=configs.DEFAULT_PROFILE)
  show.set_defaults(func=_cmd_show_preprocessing)

  stat = commands.add_parser('status', help='release history from ML-Metadata: models, metrics, '
                             'blessing decisions with reasons, pushed versions')
  stat.add_argument('--pipeline-root', default=configs.DEFAULT_PIPELINE_ROOT)
  stat.add_argument('--json', action='store_true', help='machine-readable output')
  stat.set_defaults(func=_cmd_status)

  rep = commands.add_parser('report', help="HTML report of a run's evaluation: curves, per-image "
                            'AUC, overlays, preprocessing')
  rep.add_argument('--pipeline-root', default=configs.DEFAULT_PIPELINE_ROOT)
  rep.add_argument('--run', default='latest', help="pipeline run id (see status) or 'latest'")
  rep.add_argument('-o', '--output', required=True, help='folder for index.html and its images')
  rep.set_defaults(func=_cmd_report)

  kfp = commands.add_parser('compile-kfp', help='compile the pipeline for Kubeflow Pipelines v2 / '
                            'Vertex AI Pipelines (offline; code runs from --image)')
  kfp.add_argument('--image', required=True, help='container image with this project installed')
  kfp.add_argument('--pipeline-root', required=True, help='e.g. gs://bucket/retina-tfx/root')
  kfp.add_argument('--data', nargs='+', required=True, help='DRIVE folder or zip URIs')
  kfp.add_argument('-o', '--output', required=True, help='PipelineJob JSON to write')
  kfp.add_argument('--serving-dir', help='push target (default: <pipeline-root>/serving_model)')
  kfp.add_argument('--profile', choices=sorted(configs.PROFILES), default='drive')
  kfp.add_argument('--eval-count', type=int, default=constants.DEFAULT_EVAL_COUNT)
  kfp.add_argument('--split-seed', type=int, default=0)
  _add_gate_arguments(kfp)
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
  kfp.set_defaults(func=_cmd_compile_kfp)
  return parser


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else list(argv)
  args = build_parser().parse_args(argv)
  args.argv = argv
  if args.func not in (_cmd_run, _cmd_benchmark):  # those send TensorFlow's logs to the run's log
    logging.getLogger('tensorflow').setLevel(logging.ERROR)
  return args.func(args)


if __name__ == '__main__':
  sys.exit(main())
