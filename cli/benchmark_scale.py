"""`retina-tfx benchmark-scale`: how the pipeline's cost grows with the dataset.

For each image count N: a synthetic DRIVE-layout dataset of N square images (a quarter of them
test), then `retina-tfx run` through the Pusher in a child process while a thread samples the memory
of the child and its Beam worker processes (cli/process_tree.py). ML-Metadata's execution times say
when each component ran: its wall time, and its peak memory is the largest sample in that interval.
Bytes on disk are summed under each output artifact's URI.
"""
import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Dict, List, Sequence, Tuple

from cli import benchmark, console, history, process_tree
from pipeline import configs
from synthetic_drive import dataset

RESULT_FILE = 'benchmark_scale.json'
SCALE_TABLE_HEADER = '## Pipeline cost by dataset size (`retina-tfx benchmark-scale`)'
_COLUMNS = ('N', 'component', 'wall s', 's / image', 'peak RSS GB', 'peak anon GB', 'on disk MB',
            'MB / image')
WHOLE_RUN = 'whole run'
_GB, _MB = 1e9, 1e6


def split_counts(n: int) -> Tuple[int, int, int]:
  """(training, test, validation hold-out) images for N: a quarter test, a fifth of training for
  validation, at least one of each."""
  if n < 3:
    raise console.CommandError(f'N={n}: need at least 3 images (training, validation and test)')
  n_test = max(1, n // 4)
  n_train = n - n_test
  return n_train, n_test, max(1, n_train // 5)


def bytes_under(path: str) -> int:
  """Sum of the sizes of the files at or under `path` (0 if it does not exist)."""
  if os.path.isfile(path):
    return os.path.getsize(path)
  return sum(os.path.getsize(os.path.join(folder, name))
             for folder, _, names in os.walk(path) for name in names
             if not os.path.islink(os.path.join(folder, name)))


def component_costs(runs: Sequence[history.NodeRun], samples: Sequence[process_tree.TreeSample]
                    ) -> List[Dict]:
  """Each component's wall time, peak tree memory (None: it ran between two samples) and bytes
  written per output key."""
  costs = []
  for run in runs:
    peak = process_tree.peak(samples, run.started, run.finished)
    outputs = {key: sum(bytes_under(uri) for uri in uris) for key, uris in run.outputs.items()}
    costs.append({'component': run.node_id, 'state': run.state,
                  'seconds': run.finished - run.started,
                  'peak_rss_bytes': peak.rss if peak else None,
                  'peak_anon_bytes': peak.anon if peak else None,
                  'processes_at_peak': peak.processes if peak else None,
                  'output_bytes': outputs, 'bytes': sum(outputs.values())})
  return costs


def _run_pipeline(n: int, args, case_dir: str, data_dir: str) -> Dict:
  """`retina-tfx run` on `data_dir` in a child process, sampled: its costs, overall and per
  component."""
  pipeline_root = os.path.join(case_dir, configs.DEFAULT_PIPELINE_ROOT)
  command = [sys.executable, '-m', 'cli.main', 'run', '--data', data_dir,
             '--pipeline-root', pipeline_root,
             '--serving-dir', os.path.join(case_dir, configs.SERVING_DIR),
             '--profile', args.profile, '--eval-count', str(split_counts(n)[2])]
  if args.beam_args:
    command += ['--beam-args', *args.beam_args]
  sys.stdout.flush()
  started = time.monotonic()
  child = subprocess.Popen(command)  # its progress lines go straight to the terminal
  with process_tree.Sampler(child.pid, args.interval) as sampler:
    exit_code = child.wait()
  seconds = time.monotonic() - started
  if exit_code != 0:
    raise console.CommandError(f'N={n}: the pipeline run failed (exit code {exit_code}); its '
                               f'log is under {os.path.join(pipeline_root, configs.LOG_DIR)}')
  runs = history.latest_node_runs(history.open_store(pipeline_root))
  peak = process_tree.peak(sampler.samples)
  components = component_costs(runs, sampler.samples)
  return {'process_seconds': seconds,
          'pipeline_seconds': max(r.finished for r in runs) - min(r.started for r in runs),
          'peak_rss_bytes': peak.rss, 'peak_anon_bytes': peak.anon,
          'processes_at_peak': peak.processes,
          'components': components, 'bytes': sum(c['bytes'] for c in components),
          # (epoch seconds, tree RSS, tree anonymous RSS, processes): memory over time.
          'samples': [(s.time, s.rss, s.anon, s.processes) for s in sampler.samples]}


def _discard_bulk(case_dir: str) -> None:
  """Deletes the dataset and the artifacts; keeps ML-Metadata and the logs."""
  pipeline_root = os.path.join(case_dir, configs.DEFAULT_PIPELINE_ROOT)
  for name in os.listdir(pipeline_root):
    if name not in (configs.METADATA_FILE, configs.LOG_DIR):
      path = os.path.join(pipeline_root, name)
      if os.path.isdir(path):
        shutil.rmtree(path)
      else:
        os.remove(path)
  for name in ('data', configs.SERVING_DIR):
    shutil.rmtree(os.path.join(case_dir, name), ignore_errors=True)


def measure(n: int, args) -> Dict:
  """Generates N images, runs the pipeline on them and returns what it cost."""
  case_dir = os.path.join(args.output, f'N{n}')
  data_dir = os.path.join(case_dir, 'data')
  n_train, n_test, eval_count = split_counts(n)
  print(f'retina-tfx: N={n}: generating {n_train} training + {n_test} test images of '
        f'{args.size}x{args.size} in {data_dir}', flush=True)
  started = time.monotonic()
  dataset.generate(data_dir, n_train=n_train, n_test=n_test, height=args.size, width=args.size,
                   distinct=args.distinct, progress=lambda done, total: console.progress_bar(
                       done, total, f'N={n}: image {done}'))
  result = {'n': n, 'n_train': n_train, 'n_test': n_test, 'eval_count': eval_count,
            'generation_seconds': time.monotonic() - started,
            'dataset_bytes': bytes_under(data_dir)}
  print(f'retina-tfx: N={n}: generated in {result["generation_seconds"]:.0f} s '
        f'({result["dataset_bytes"] / _MB:.0f} MB); running the pipeline (profile {args.profile})',
        flush=True)
  result.update(_run_pipeline(n, args, case_dir, data_dir))
  if not args.keep_data:
    _discard_bulk(case_dir)
  return result


def _gigabytes(value) -> str:
  return '-' if value is None else f'{value / _GB:.2f}'


def table_rows(results: Sequence[Dict]) -> List[Tuple[str, ...]]:
  """One row per component and one for the whole run (the child process) of every N."""
  rows = []
  for result in results:
    n = result['n']
    for cost in result['components'] + [{'component': WHOLE_RUN, **result,
                                         'seconds': result['process_seconds']}]:
      rows.append((str(n), cost['component'], f'{cost["seconds"]:.1f}',
                   f'{cost["seconds"] / n:.2f}', _gigabytes(cost['peak_rss_bytes']),
                   _gigabytes(cost['peak_anon_bytes']), f'{cost["bytes"] / _MB:.1f}',
                   f'{cost["bytes"] / n / _MB:.2f}'))
  return rows


def format_table(results: Sequence[Dict]) -> str:
  widths = [max(len(cell) for cell in column) for column in zip(_COLUMNS, *table_rows(results))]
  lines = [' '.join(cell.ljust(w) if i == 1 else cell.rjust(w)
                    for i, (cell, w) in enumerate(zip(row, widths)))
           for row in (_COLUMNS, *table_rows(results))]
  lines.insert(1, '-' * len(lines[0]))
  lines.append('peak: the largest sample of the run process and its Beam workers together; '
               "'-': the component ran between two samples")
  return '\n'.join(lines)


def _conditions(summary: Dict) -> str:
  beam = ' '.join(summary['beam_args']) or "the run's default"
  return (f'{summary["size"]}x{summary["size"]} images ({summary["distinct"]} rendered, the others '
          f'their mirror images), profile {summary["profile"]}, Beam args: {beam}, memory '
          f'sampled every {summary["interval"]} s')


def append_table(benchmarks_file: str, summary: Dict) -> None:
  """A dated block per invocation: the command, the machine, the conditions and the table."""
  with open(benchmarks_file, 'a+') as f:
    f.seek(0)
    if SCALE_TABLE_HEADER not in f.read():
      f.write(f'\n{SCALE_TABLE_HEADER}\n\nWall time from ML-Metadata (component registered to its '
              'outcome); peak RSS: the largest sample in that interval of the RSS summed over the '
              "run process and its Beam workers (anon: their private memory; '-': no sample fell "
              'in it); bytes under the output artifacts. Whole run: the `retina-tfx run` process, '
              'report included.\n')
    f.write(f'\n{summary["date"]}: `{summary["command"]}`. Machine: {summary["machine"]}. '
            f'{_conditions(summary)}.\n\n| {" | ".join(_COLUMNS)} |\n|{"---|" * len(_COLUMNS)}\n')
    for row in table_rows(summary['results']):
      f.write(f'| {" | ".join(row)} |\n')


def command(args) -> int:
  args.counts = sorted(set(args.counts))
  for n in args.counts:
    split_counts(n)
    if os.path.exists(os.path.join(args.output, f'N{n}')):
      raise console.CommandError(f'{os.path.join(args.output, f"N{n}")} exists: its ML-Metadata '
                                 'would serve cached components (delete it or choose another '
                                 '--output)')
  summary = {'command': 'retina-tfx ' + ' '.join(args.argv), 'machine': benchmark.machine(),
             'date': datetime.date.today().isoformat(), 'size': args.size,
             'distinct': args.distinct, 'profile': args.profile, 'beam_args': args.beam_args,
             'interval': args.interval, 'results': []}
  path = os.path.join(args.output, RESULT_FILE)
  try:
    for n in args.counts:
      summary['results'].append(measure(n, args))
      with open(path, 'w') as f:  # after each N: a later failure keeps the earlier results
        json.dump(summary, f, indent=1)
  finally:
    if summary['results']:
      print(f'\n{_conditions(summary)}\n{format_table(summary["results"])}')
      append_table(args.benchmarks_file, summary)
      print(f'results: {path}; table appended to {args.benchmarks_file}')
  return 0
