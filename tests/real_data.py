"""The published datasets the real-data tests read, and the marker that says which ones a test needs:
`@pytest.mark.real_data('DRIVE', ...)`, with the files at `path('DRIVE', ...)`.

They live in $RETINA_REAL_DATA, else ../shared/data beside the repository (never in it), as their
publishers ship them. Where a dataset's folder is missing, its tests skip and the run ends with a
line counting them. With CI set, a missing folder stops the run after collection, before any test
has run, with one line naming it: CI has the data, so its absence there is a broken machine, not a
pass.
"""
import os

import pytest

DATASETS = ('DRIVE', 'STARE', 'CHASE_DB1', 'HRF')
_SKIPPED = pytest.StashKey[dict]()   # node id -> the missing folders it was skipped for


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


def pytest_collection_finish(session):
  """Runs on the selected tests only (after -m and -k), so a run without real-data tests never
  asks for the data."""
  missing = {item: folders for item in session.items if (folders := _missing(item))}
  if not missing:
    return
  folders = sorted({folder for item_folders in missing.values() for folder in item_folders})
  if os.environ.get('CI'):
    raise pytest.UsageError(f'real data missing (CI is set): {", ".join(folders)}; tests that '
                            f'need it: {len(missing)}; set RETINA_REAL_DATA')
  for item, item_folders in missing.items():
    item.add_marker(pytest.mark.skip(reason=f'real data not found: {", ".join(item_folders)}'))
  session.config.stash[_SKIPPED] = {item.nodeid: item_folders
                                    for item, item_folders in missing.items()}


def pytest_terminal_summary(terminalreporter, config):
  missing = config.stash.get(_SKIPPED, {})
  skipped = [r for r in terminalreporter.stats.get('skipped', []) if r.nodeid in missing]
  if skipped:
    folders = sorted({folder for r in skipped for folder in missing[r.nodeid]})
    terminalreporter.write_line(f'real-data tests skipped: {len(skipped)} (not found: '
                                f'{", ".join(folders)}; set RETINA_REAL_DATA, or CI to fail)')
