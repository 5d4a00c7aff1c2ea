"""retina-tfx: command-line entry point.

  retina-tfx make-demo-data OUT     write a synthetic DRIVE-like dataset in DRIVE's layout
  retina-tfx run --data PATH ...    run the pipeline locally (LocalDagRunner, SQLite ML-Metadata)
"""
import argparse
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


class _ProgressPrinter(logging.Handler):
  """Turns LocalDagRunner's per-component log lines into a short progress display on stdout."""

  def __init__(self, out=sys.stdout):
    super().__init__(level=logging.INFO)
    self.out = out
    self.current = None
    self.started = 0.0

  def emit(self, record):
    message = record.getMessage()
    if match := _RUNNING.fullmatch(message):
      self.current, self.started = match.group(1), time.monotonic()
      print(f'  {self.current:<24} running ...', file=self.out, flush=True)
    elif match := _FINISHED.fullmatch(message):
      print(f'  {match.group(1):<24} done in {time.monotonic() - self.started:.1f} s',
            file=self.out, flush=True)
      self.current = None


def _log_to_file(log_path: str) -> _ProgressPrinter:
  """Full logs (TFX, Beam, TF, warnings) go to `log_path`; the terminal shows progress only."""
  from absl import logging as absl_logging
  os.makedirs(os.path.dirname(log_path), exist_ok=True)
  root = logging.getLogger()
  for handler in list(root.handlers):
    root.removeHandler(handler)
  file_handler = logging.FileHandler(log_path)
  file_handler.setFormatter(logging.Formatter('%(asctime)s %(levelname)s %(name)s: %(message)s'))
  root.addHandler(file_handler)
  root.setLevel(logging.INFO)
  absl_logging.set_verbosity(absl_logging.INFO)
  logging.captureWarnings(True)
  progress = _ProgressPrinter()
  logging.getLogger('absl').addHandler(progress)
  return progress


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

  summary = demo_data.generate(args.out, seed=args.seed, n_train=args.train_count,
                               n_test=args.test_count, progress=progress)
  print(f'wrote a synthetic DRIVE-like dataset to {args.out}: {summary}')
  return 0


def _cmd_run(args) -> int:
  from pipeline import configs, local_runner, metadata
  stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S')
  log_path = os.path.join(os.path.abspath(args.pipeline_root), configs.LOG_DIR, f'run-{stamp}.log')
  progress = _log_to_file(log_path)
  print(f'retina-tfx: running pipeline on {", ".join(args.data)}\n'
        f'  pipeline root: {os.path.abspath(args.pipeline_root)}\n  full log: {log_path}')
  try:
    local_runner.run(args.data, args.pipeline_root, beam_pipeline_args=args.beam_args,
                     eval_count=args.eval_count, split_seed=args.split_seed,
                     enable_cache=not args.no_cache)
  except Exception as error:  # pylint: disable=broad-except
    logging.exception('pipeline failed')
    where = f'{progress.current} failed: ' if progress.current else ''
    print(f'retina-tfx: error: {where}{_user_message(error)}\n  (full log: {log_path})',
          file=sys.stderr)
    return 1
  print('artifacts:')
  for run in metadata.latest_node_runs(metadata.open_store(args.pipeline_root), configs.PIPELINE_NAME):
    for key, uris in run.outputs.items():
      for uri in uris:
        print(f'  {run.node_id:<24} {run.state:<9} {key:<18} {uri}')
  return 0


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
  demo.set_defaults(func=_cmd_make_demo_data)

  run = commands.add_parser('run', help='run the pipeline locally')
  run.add_argument('--data', nargs='+', required=True,
                   help='DRIVE folder(s) and/or the official zip archive(s)')
  run.add_argument('--pipeline-root', default=configs.DEFAULT_PIPELINE_ROOT,
                   help='where artifacts, ML-Metadata (metadata.sqlite) and logs go')
  run.add_argument('--eval-count', type=int, default=constants.DEFAULT_EVAL_COUNT,
                   help='training images held out for validation')
  run.add_argument('--split-seed', type=int, default=0, help='seed of the eval hold-out choice')
  run.add_argument('--no-cache', action='store_true', help='re-run every component')
  run.add_argument('--beam-args', nargs=argparse.REMAINDER, default=[],
                   help='Beam pipeline args, e.g. --direct_running_mode=multi_processing '
                        '--direct_num_workers=2 (must come last)')
  run.set_defaults(func=_cmd_run)
  return parser


def main(argv=None) -> int:
  args = build_parser().parse_args(argv)
  return args.func(args)


if __name__ == '__main__':
  sys.exit(main())
