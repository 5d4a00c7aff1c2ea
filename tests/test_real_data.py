"""The real_data marker (tests/real_data.py), in pytest runs of its own: with CI set a missing dataset
fails the run before any test, naming its folder; without CI its tests skip and the run counts them."""
import os
import shutil
import time

import pytest

import real_data

pytest_plugins = ['pytester']

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TESTS = '''
import os
import pytest
import real_data

@pytest.mark.real_data('DRIVE')
def test_drive():
  assert os.path.isdir(real_data.path('DRIVE', 'training'))

@pytest.mark.real_data('HRF', 'STARE')
def test_hrf_and_stare():
  assert os.path.isdir(real_data.path('HRF')) and os.path.isdir(real_data.path('STARE'))

def test_without_data():
  pass
'''


@pytest.fixture
def inner(pytester, monkeypatch):
  """A pytest run in a fresh interpreter with this repository's settings and the real_data plugin."""
  shutil.copy(os.path.join(_REPO, 'pyproject.toml'), pytester.path)
  monkeypatch.setenv('PYTHONPATH', os.path.join(_REPO, 'tests'))
  return lambda *args: pytester.runpytest_subprocess('-p', 'real_data', *args)


@pytest.fixture
def run(inner, pytester, monkeypatch, tmp_path):
  """Runs _TESTS with the datasets `present` (folders) in a data root of their own and CI set or
  not; -> (result, seconds)."""
  pytester.makepyfile(test_example=_TESTS)
  monkeypatch.setenv('RETINA_REAL_DATA', str(tmp_path / 'data'))

  def run_with(present, ci, *args):
    for name in present:
      (tmp_path / 'data' / name / 'training').mkdir(parents=True)
    if ci:
      monkeypatch.setenv('CI', 'true')
    else:
      monkeypatch.delenv('CI', raising=False)
    start = time.monotonic()
    result = inner(*args)
    return result, time.monotonic() - start
  return run_with


def test_with_ci_a_missing_dataset_fails_the_run_before_any_test_naming_its_folder(run, tmp_path):
  result, seconds = run(['DRIVE'], True)
  assert result.ret == pytest.ExitCode.USAGE_ERROR
  assert result.stderr.str().strip() == (
      f'ERROR: real data missing (CI is set): {tmp_path}/data/HRF, {tmp_path}/data/STARE; tests '
      'that need it: 1; set RETINA_REAL_DATA')
  result.assert_outcomes()   # none ran, not even the test that needs no data
  assert seconds < 30        # interpreter start and collection


def test_with_ci_a_run_that_selects_no_real_data_test_needs_none(run):
  result, _ = run([], True, '-k', 'without')
  result.assert_outcomes(passed=1, deselected=2)


def test_without_ci_a_missing_dataset_skips_its_tests_and_the_run_counts_them(run, tmp_path):
  result, _ = run(['STARE'], False, '-rs')
  assert result.ret == pytest.ExitCode.OK
  result.assert_outcomes(passed=1, skipped=2)
  result.stdout.fnmatch_lines([
      f'real-data tests skipped: 2 (not found: {tmp_path}/data/DRIVE, {tmp_path}/data/HRF; '
      'set RETINA_REAL_DATA, or CI to fail)',
      f'SKIPPED * test_example.py:5: real data not found: {tmp_path}/data/DRIVE',
      f'SKIPPED * test_example.py:9: real data not found: {tmp_path}/data/HRF'])


def test_in_parallel_with_ci_the_controller_asks_for_every_dataset_before_any_test(run, tmp_path):
  result, _ = run(['DRIVE'], True, '-n', '2')
  assert result.ret == pytest.ExitCode.USAGE_ERROR
  assert result.stderr.str().strip() == (
      f'ERROR: real data missing (CI is set): {tmp_path}/data/CHASE_DB1, {tmp_path}/data/HRF, '
      f'{tmp_path}/data/STARE; tests in parallel (-n) need every dataset; set RETINA_REAL_DATA')
  assert 'passed' not in result.stdout.str()   # no worker started


def test_in_parallel_without_ci_the_workers_skips_are_counted(run, tmp_path):
  result, _ = run(['STARE'], False, '-n', '2')
  assert result.ret == pytest.ExitCode.OK
  result.assert_outcomes(passed=1, skipped=2)
  result.stdout.fnmatch_lines([
      f'real-data tests skipped: 2 (not found: {tmp_path}/data/DRIVE, {tmp_path}/data/HRF; '
      'set RETINA_REAL_DATA, or CI to fail)'])


def test_with_the_data_present_every_test_runs(run):
  result, _ = run(['DRIVE', 'HRF', 'STARE'], True)
  result.assert_outcomes(passed=3)
  assert 'real-data' not in result.stdout.str()


def test_a_dataset_the_marker_does_not_know_is_an_error(inner, pytester):
  pytester.makepyfile('import pytest\n\n@pytest.mark.real_data("CHASE")\ndef test_x():\n  pass\n')
  result = inner()
  assert result.ret == pytest.ExitCode.USAGE_ERROR
  assert result.stderr.str().strip().endswith(
      f"::test_x: real_data takes dataset names from {real_data.DATASETS}, got ('CHASE',)")


def test_the_root_is_the_environments_or_the_folder_beside_the_repository(monkeypatch):
  monkeypatch.setenv('RETINA_REAL_DATA', '/data/sets')
  assert real_data.path('HRF', 'mask') == '/data/sets/HRF/mask'
  monkeypatch.delenv('RETINA_REAL_DATA')
  assert real_data.root() == os.path.join(os.path.dirname(_REPO), 'shared', 'data')
