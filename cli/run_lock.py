"""One `run` or `benchmark` per pipeline root at a time: two would record into one SQLite
ML-Metadata store and number pushes into one serving folder at once.

The lock is an flock on a file inside the root, so the kernel releases it when its holder ends,
however it ends. The holder writes who it is into the file, for the error a second run gets; a
clean end empties it, so a file that still names a process when the lock is free was left by a run
that died.
"""
import contextlib
import datetime
import fcntl
import json
import os
import shlex
import socket
import sys
from typing import Dict

from cli import console
from pipeline import configs


class RootInUse(console.CommandError):
  """Another process holds the pipeline root's lock."""


@contextlib.contextmanager
def holding(pipeline_root: str):
  """Holds the root's lock for the body; raises RootInUse at once if another process holds it."""
  os.makedirs(pipeline_root, exist_ok=True)
  root = os.path.abspath(pipeline_root)
  with open(os.path.join(root, configs.LOCK_FILE), 'a+') as lock_file:
    try:
      fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      raise RootInUse(f'pipeline root {root} is in use by {describe(read_holder(lock_file))}; '
                      'wait for it to end, or stop it') from None
    if crashed := read_holder(lock_file):
      print(f'retina-tfx: taking over the lock of {describe(crashed)}, which is no longer running',
            file=sys.stderr)
    lock_file.truncate(0)
    json.dump({'pid': os.getpid(), 'host': socket.gethostname(),
               'command': shlex.join([os.path.basename(sys.argv[0]), *sys.argv[1:]]),
               'started': datetime.datetime.now().isoformat(sep=' ', timespec='seconds')},
              lock_file)
    lock_file.flush()
    try:
      yield
    finally:
      lock_file.truncate(0)


def read_holder(lock_file) -> Dict:
  """Who the lock file names; {} if nobody, or if its holder is still writing it."""
  lock_file.seek(0)
  try:
    return json.loads(lock_file.read() or '{}')
  except ValueError:
    return {}


def describe(holder: Dict) -> str:
  if not holder:
    return 'another process'
  return (f'process {holder["pid"]} on {holder["host"]} (`{holder["command"]}`, '
          f'since {holder["started"]})')
