"""`retina-tfx benchmark-scale`: the process-tree memory sampler, attribution of samples to
components by time, bytes on disk, the split and the table; no pipeline run."""
import subprocess
import sys
import time

import pytest

from cli import benchmark_scale, history, process_tree
from cli.main import build_parser

_MB = 1 << 20
# A child python that starts a grandchild holding 200 MB, reports both, and ends both when its
# stdin closes.
_PARENT = '''
import subprocess, sys
grandchild = subprocess.Popen([sys.executable, '-c', "import time; block = b'x' * (200 << 20); "
                               "print('ready', flush=True); time.sleep(120)"],
                              stdout=subprocess.PIPE, text=True)
grandchild.stdout.readline()
print(grandchild.pid, flush=True)
sys.stdin.readline()
grandchild.kill()
'''


def test_tree_memory_sums_a_process_and_its_descendants():
  parent = subprocess.Popen([sys.executable, '-c', _PARENT], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
  try:
    grandchild = int(parent.stdout.readline())
    assert sorted(process_tree.tree(parent.pid)) == sorted([parent.pid, grandchild])
    alone = process_tree.sample(grandchild)
    assert alone.processes == 1 and alone.anon > 200 * _MB
    with process_tree.Sampler(parent.pid, interval=0.05) as sampler:
      time.sleep(0.5)
    assert len(sampler.samples) >= 5
    peak = process_tree.peak(sampler.samples)
    assert peak.processes == 2
    # The parent holds a bare interpreter (~10 MB): the tree is the grandchild's 200 MB and more.
    assert peak.rss > alone.rss and peak.anon > 200 * _MB
  finally:
    parent.communicate('done\n')
  gone = process_tree.sample(parent.pid)
  assert (gone.rss, gone.anon, gone.processes) == (0, 0, 0)


def _samples(*rss_by_time):
  return [process_tree.TreeSample(t, rss, rss // 2, 1) for t, rss in rss_by_time]


def test_each_component_gets_the_peak_of_its_own_interval_and_its_bytes(tmp_path):
  samples = _samples((100.0, 5), (100.2, 9), (100.4, 7), (100.6, 3), (100.8, 8), (101.0, 4))
  examples = tmp_path / 'examples'
  (examples / 'Split-train').mkdir(parents=True)
  (examples / 'Split-train' / 'data.gz').write_bytes(b'x' * 1000)
  (examples / 'Split-eval.gz').write_bytes(b'x' * 24)
  stats = tmp_path / 'stats.pb'
  stats.write_bytes(b'x' * 7)
  runs = [history.NodeRun('ExampleGen', 'COMPLETE', {'examples': [str(examples)]}, 100.1, 100.5),
          history.NodeRun('StatisticsGen', 'COMPLETE', {'statistics': [str(stats)],
                                                        'missing': [str(tmp_path / 'none')]},
                          100.6, 101.0),
          history.NodeRun('resolver', 'COMPLETE', {}, 100.61, 100.79)]  # between two samples
  costs = {c['component']: c for c in benchmark_scale.component_costs(runs, samples)}
  assert costs['ExampleGen']['peak_rss_bytes'] == 9 and costs['ExampleGen']['bytes'] == 1024
  assert costs['ExampleGen']['peak_anon_bytes'] == 4
  assert costs['ExampleGen']['seconds'] == pytest.approx(0.4)
  # Interval ends count: 100.6's 3 and 101.0's 4 are in, the peak is 100.8's 8.
  assert costs['StatisticsGen']['peak_rss_bytes'] == 8
  assert costs['StatisticsGen']['output_bytes'] == {'statistics': 7, 'missing': 0}
  assert costs['resolver']['peak_rss_bytes'] is None
  assert process_tree.peak(samples).rss == 9


def test_bytes_under_counts_files_once_and_not_links(tmp_path):
  (tmp_path / 'a' / 'b').mkdir(parents=True)
  (tmp_path / 'a' / 'one').write_bytes(b'1' * 10)
  (tmp_path / 'a' / 'b' / 'two').write_bytes(b'2' * 300)
  (tmp_path / 'a' / 'link').symlink_to(tmp_path / 'a' / 'b' / 'two')
  assert benchmark_scale.bytes_under(str(tmp_path / 'a')) == 310
  assert benchmark_scale.bytes_under(str(tmp_path / 'a' / 'one')) == 10
  assert benchmark_scale.bytes_under(str(tmp_path / 'nothing')) == 0


def test_split_keeps_a_quarter_for_test_and_a_fifth_of_training_for_validation():
  assert benchmark_scale.split_counts(400) == (300, 100, 60)
  assert benchmark_scale.split_counts(25) == (19, 6, 3)
  assert benchmark_scale.split_counts(4) == (3, 1, 1)
  with pytest.raises(ValueError, match='at least 3'):
    benchmark_scale.split_counts(2)


def _result(n, seconds):
  component = {'component': 'Transform', 'state': 'COMPLETE', 'seconds': seconds,
               'peak_rss_bytes': 3e9, 'peak_anon_bytes': 2e9, 'bytes': n * 5e6}
  return {'n': n, 'components': [component], 'process_seconds': 2 * seconds,
          'peak_rss_bytes': 4e9, 'peak_anon_bytes': 2.5e9, 'bytes': n * 6e6}


def test_rows_per_component_and_run_and_one_header_in_the_benchmarks_file(tmp_path):
  assert benchmark_scale.table_rows([_result(4, 10.0)]) == [
      ('4', 'Transform', '10.0', '2.50', '3.00', '2.00', '20.0', '5.00'),
      ('4', 'whole run', '20.0', '5.00', '4.00', '2.50', '24.0', '6.00')]
  table = tmp_path / 'BENCHMARKS.md'
  table.write_text('# Benchmarks\n')
  summary = {'command': 'retina-tfx benchmark-scale --output o', 'machine': 'm', 'date': 'd',
             'size': 512, 'distinct': 8, 'profile': 'smoke', 'beam_args': [], 'interval': 0.2,
             'results': [_result(4, 10.0), _result(8, 30.0)]}
  benchmark_scale.append_table(str(table), summary)
  benchmark_scale.append_table(str(table), summary)
  text = table.read_text()
  assert text.count(benchmark_scale.SCALE_TABLE_HEADER) == 1
  assert text.count('| 8 | whole run | 60.0 | 7.50 |') == 2


def test_command_line_parses_with_beam_args_last():
  args = build_parser().parse_args(['benchmark-scale', '--output', 'o', '--counts', '4', '8',
                                    '--size', '512', '--beam-args', '--direct_num_workers=2'])
  assert (args.command, args.counts, args.size, args.distinct, args.profile, args.keep_data,
          args.beam_args) == ('benchmark_scale', [4, 8], 512, 8, 'smoke', False,
                              ['--direct_num_workers=2'])
