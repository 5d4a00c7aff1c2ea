"""The published datasets the real-data tests read, and the marker that says which ones a test needs:
`@pytest.mark.real_data('DRIVE', ...)`, with the files at `path('DRIVE', ...)`.

They live in $RETINA_REAL_DATA, else ../shared/data beside the repository (never in it), as their
publishers ship them. Where a dataset's folder is missing, its tests skip and the run ends with a
line counting them. With CI set, a missing folder stops the run after collection, before any test
has run, with one line naming it: CI has the data, so its absence there is a broken machine, not a
pass. Under pytest-xdist (`make test`) the controller, which collects no tests, asks for every
dataset before the workers start.
"""
import os

import pytest

DATASETS = ('DRIVE', 'STARE', 'CHASE_DB1', 'HRF')
_NOT_FOUND = 'real data not found: '   # a skipped test's reason, then the folders


def root() -> str:
  return os.path.abspath(os.environ.get('RETINA_REAL_DATA') or os.path.join(
      os.path.dirname(os.path.abspath(__file__)), '..', '..', 'shared', 'data'))


def path(dataset: str, *parts: str) -> str:
  return os.path.join(root(), dataset, *parts)


def _missing(item) -> list:
  """The folders of the datasets `item` needs that are not there."""
  needed = set()
  for mark in item.iter_markers('real_data'):
    if not mark.args or not set(mark.args) <= set(DATASETS):
      raise pytest.UsageError(f'{item.nodeid}: real_data takes dataset names from {DATASETS}, '
                              f'got {mark.args}')
    needed.update(mark.args)
  return [path(name) for name in sorted(needed) if not os.path.isdir(path(name))]


def _fail_in_ci(folders, tests: str) -> None:
  if folders and os.environ.get('CI'):
    raise pytest.UsageError(f'real data missing (CI is set): {", ".join(folders)}; {tests}; set '
                            'RETINA_REAL_DATA')


def pytest_sessionstart(session):
  """The xdist controller: its workers collect, so it cannot tell which datasets they need."""
  config = session.config
  if getattr(config.option, 'numprocesses', None) and not hasattr(config, 'workerinput'):
    _fail_in_ci(sorted(path(name) for name in DATASETS if not os.path.isdir(path(name))),
                'tests in parallel (-n) need every dataset')


def pytest_collection_finish(session):
  """Runs on the selected tests only (after -m and -k), so a run without real-data tests never
  asks for the data."""
  missing = {item: folders for item in session.items if (folders := _missing(item))}
  folders = sorted({folder for item_folders in missing.values() for folder in item_folders})
  _fail_in_ci(folders, f'tests that need it: {len(missing)}')
  for item, item_folders in missing.items():
    item.add_marker(pytest.mark.skip(reason=_NOT_FOUND + ', '.join(item_folders)))


def pytest_terminal_summary(terminalreporter, config):
  """From the skip reasons, which reach an xdist controller too."""
  reasons = [r.longrepr[2] for r in terminalreporter.stats.get('skipped', [])
             if isinstance(r.longrepr, tuple) and _NOT_FOUND in r.longrepr[2]]
  if reasons:
    folders = sorted({f for reason in reasons for f in reason.split(_NOT_FOUND, 1)[1].split(', ')})
    terminalreporter.write_line(f'real-data tests skipped: {len(reasons)} (not found: '
                                f'{", ".join(folders)}; set RETINA_REAL_DATA, or CI to fail)')
