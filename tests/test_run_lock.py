"""One run per pipeline root: a second `run` or `benchmark` on a root in use stops at once, naming
the process that holds it; a lock left by a process that died is taken over, and said so."""
import json
import os
import subprocess
import sys
import time

import pytest

from cli import run_lock
from conftest import PIPELINE_ARGS
from pipeline import configs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_HOLDER = '''import sys, time
from cli import run_lock
with run_lock.holding(sys.argv[1]):
  print('holding', flush=True)
  time.sleep(600)
'''


@pytest.fixture
def holder_of():
  """Starts a process that holds a root's lock until it is killed (after the test at the latest)."""
  processes = []

  def start(root):
    process = subprocess.Popen([sys.executable, '-c', _HOLDER, str(root)], cwd=REPO,
                               stdout=subprocess.PIPE, text=True)
    processes.append(process)
    assert process.stdout.readline() == 'holding\n'
    return process

  yield start
  for process in processes:
    process.kill()
    process.wait()


def _dead_pid() -> int:
  process = subprocess.Popen([sys.executable, '-c', 'pass'])
  process.wait()
  return process.pid


def test_a_held_root_is_refused_at_once_naming_the_holder_and_taken_once_it_died(
    tmp_path, holder_of, capsys):
  root = tmp_path / 'root'
  holder = holder_of(root)
  started = time.monotonic()
  with pytest.raises(run_lock.RootInUse) as refused:
    with run_lock.holding(str(root)):
      pytest.fail('two processes held one root')
  assert time.monotonic() - started < 1
  message = str(refused.value)
  assert message.startswith(f'pipeline root {root} is in use by process {holder.pid} on '), message
  assert f'(`-c {root}`, since ' in message   # what it runs: `python -c CODE ROOT`

  holder.kill()   # no clean end: the file still names it, the kernel dropped its lock
  holder.wait()
  with run_lock.holding(str(root)):
    assert json.loads((root / configs.LOCK_FILE).read_text())['pid'] == os.getpid()
  assert (f'retina-tfx: taking over the lock of process {holder.pid} on '
          in capsys.readouterr().err)


def test_a_lock_file_naming_a_dead_process_is_taken_over_with_a_message(tmp_path, capsys):
  root = tmp_path / 'root'
  root.mkdir()
  dead = _dead_pid()
  (root / configs.LOCK_FILE).write_text(json.dumps(
      {'pid': dead, 'host': 'here', 'command': 'retina-tfx run --data DRIVE',
       'started': '2024-05-01 10:00:00'}))
  with run_lock.holding(str(root)):
    pass
  assert capsys.readouterr().err == (
      f'retina-tfx: taking over the lock of process {dead} on here (`retina-tfx run --data DRIVE`, '
      'since 2024-05-01 10:00:00), which is no longer running\n')


def test_runs_one_after_the_other_take_the_lock_silently(tmp_path, capsys):
  for _ in range(2):
    with run_lock.holding(str(tmp_path / 'root')):
      pass
  assert capsys.readouterr().err == ''
  assert (tmp_path / 'root' / configs.LOCK_FILE).read_text() == ''


# The command in a fresh interpreter (this one has imported TensorFlow for other tests): its exit
# status, then the heavy modules it loaded.
_COMMAND = """import sys
from cli.main import main
status = main(sys.argv[1:])
print(status, *(m for m in ('tensorflow', 'tfx', 'apache_beam') if m in sys.modules))
"""


@pytest.mark.parametrize('command', ['run', 'benchmark'])
def test_run_and_benchmark_refuse_a_root_in_use_before_writing_into_it_or_loading_tensorflow(
    command, tiny_drive, tmp_path, holder_of):
  if command == 'run':
    root = tmp_path / 'root'
    args = ['run', '--pipeline-root', str(root), '--until', configs.EXAMPLE_GEN]
  else:
    root = tmp_path / 'out' / 'pipeline_root'
    args = ['benchmark', '--output', str(root.parent),
            '--benchmarks-file', str(tmp_path / 'BENCHMARKS.md')]
  holder = holder_of(root)
  refused = subprocess.run([sys.executable, '-c', _COMMAND, *args, '--data', str(tiny_drive),
                            *PIPELINE_ARGS], cwd=REPO, capture_output=True, text=True, timeout=60)
  assert refused.stdout == '1\n', refused   # exit status 1, and no TensorFlow loaded
  assert refused.stderr.startswith(f'retina-tfx: error: pipeline root {root} is in use by process '
                                   f'{holder.pid} on ') and refused.stderr.count('\n') == 1, (
                                       refused.stderr)
  assert os.listdir(root) == [configs.LOCK_FILE]   # no ML-Metadata, no logs
  assert not (tmp_path / 'BENCHMARKS.md').exists()
