"""Memory of a process together with all its descendants (Beam's multi-processing workers are child
processes of the run), sampled from /proc while it runs; and which samples fall in which interval.

Linux only, no dependency: /proc/<pid>/stat gives each process's parent, /proc/<pid>/status its
resident memory. A tree's RSS sums its processes' VmRSS, which counts shared pages (libraries,
TensorFlow's code) once per process; RssAnon, summed alongside, is the private part."""
import dataclasses
import os
import threading
import time
from typing import Dict, List, Optional, Sequence, Tuple


@dataclasses.dataclass(frozen=True)
class TreeSample:
  time: float        # seconds since the epoch (comparable with ML-Metadata's timestamps)
  rss: int           # bytes, summed over the tree
  anon: int          # bytes of anonymous (private) memory, summed over the tree
  processes: int


def _parents() -> Dict[int, int]:
  """pid -> parent pid of every process alive."""
  parents = {}
  for entry in os.listdir('/proc'):
    if not entry.isdigit():
      continue
    try:
      with open(f'/proc/{entry}/stat') as f:
        # The command name, in parentheses, may itself hold spaces and parentheses.
        parents[int(entry)] = int(f.read().rsplit(')', 1)[1].split()[1])
    except (FileNotFoundError, ProcessLookupError, IndexError):
      continue  # exited while we looked
  return parents


def tree(pid: int) -> List[int]:
  """`pid` and its descendants (none once it has exited)."""
  parents = _parents()
  children: Dict[int, List[int]] = {}
  for child, parent in parents.items():
    children.setdefault(parent, []).append(child)
  found, pending = [], [pid] if pid in parents else []
  while pending:
    current = pending.pop()
    found.append(current)
    pending.extend(children.get(current, ()))
  return found


def _memory(pid: int) -> Tuple[int, int]:
  """(VmRSS, RssAnon) of one process in bytes; zeros once it has exited (or is a zombie)."""
  values = {}
  try:
    with open(f'/proc/{pid}/status') as f:
      for line in f:
        key, _, value = line.partition(':')
        if key in ('VmRSS', 'RssAnon'):
          values[key] = int(value.split()[0]) * 1024  # reported in kB
  except (FileNotFoundError, ProcessLookupError):
    pass
  return values.get('VmRSS', 0), values.get('RssAnon', 0)


def sample(pid: int) -> TreeSample:
  pids = tree(pid)
  memory = [_memory(p) for p in pids]
  return TreeSample(time.time(), sum(m[0] for m in memory), sum(m[1] for m in memory), len(pids))


class Sampler:
  """Samples the tree of `pid` every `interval` seconds on a thread, until stopped."""

  def __init__(self, pid: int, interval: float = 0.2):
    self.pid, self.interval = pid, interval
    self.samples: List[TreeSample] = []
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, daemon=True)

  def _run(self):
    while True:
      self.samples.append(sample(self.pid))
      if self._stop.wait(self.interval):
        return

  def __enter__(self):
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()


def peak(samples: Sequence[TreeSample], start: float = float('-inf'), end: float = float('inf')
         ) -> Optional[TreeSample]:
  """The sample of largest tree RSS taken between `start` and `end` (epoch seconds), or None when
  the interval was shorter than the sampling interval and holds no sample."""
  inside = [s for s in samples if start <= s.time <= end]
  return max(inside, key=lambda s: s.rss) if inside else None
