"""What every command shows on the terminal: one-line errors, progress bars, and for pipeline runs a
short per-component progress display while the full logs go to a file."""
import contextlib
import logging
import os
import re
import sys
import time

_RUNNING = re.compile(r'Component (\S+) is running\.')
_FINISHED = re.compile(r'Component (\S+) is finished\.')
_EPOCH = re.compile(r'Trainer: epoch \d+: .*')  # models.training.ProgressLog, once per epoch
_BASE_MODEL = re.compile(r'Trainer: base model.*')  # what the training starts from (warm start)
NAME_WIDTH = 30  # fits every component id of the pipeline, the resolver's included


class CommandError(ValueError):
  """A problem the user can fix, said in one line (main prints it and exits with 1)."""


def progress_bar(done: int, total: int, label: str, out=None) -> None:
  out = out or sys.stdout
  width = 30
  filled = width * done // total
  print(f'\r  [{"#" * filled}{"." * (width - filled)}] {done}/{total} {label[:40]:<40}', end='',
        file=out, flush=True)
  if done == total:
    print(file=out)


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
    elif _BASE_MODEL.fullmatch(message):
      print(f'    {message[len("Trainer: "):]}', flush=True)
    elif _EPOCH.fullmatch(message):
      print(f'    {message[len("Trainer: "):]} ({time.monotonic() - self.started:.0f} s)', flush=True)


@contextlib.contextmanager
def logging_to_file(log_path: str):
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


def user_message(error: BaseException) -> str:
  """The one line (or anomaly list) a user needs, dug out of Beam/TFX exception wrapping."""
  from components.fundus_example_gen import files
  text = '\n'.join(str(e) for e in _chain(error))
  if match := re.search(re.escape(files.ERROR_PREFIX) + r"(.+?)(?: \[while running '.*)?$", text,
                        flags=re.MULTILINE):
    return match.group(1).rstrip("'\" ")
  return str(error).strip() or type(error).__name__


def _chain(error: BaseException):
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    yield error
    error = error.__cause__ or error.__context__
