"""Serving versions are numbered 1, 2, 3 past whatever numbered versions the folder holds, and a
version folder appears whole or not at all."""
import json
import os

import pytest
from tfx.dsl.io import fileio
from tfx.types import standard_artifacts, standard_component_specs

from components.numbered_pusher import executor
from components.numbered_pusher.executor import next_version

MODEL_FILES = {'saved_model.pb': 'graph', 'fingerprint.pb': 'fp', 'assets/note.txt': 'asset',
               'variables/variables.index': 'index',
               'variables/variables.data-00000-of-00001': 'weights'}


def test_first_version_is_one_even_without_the_folder(tmp_path):
  assert next_version(str(tmp_path / 'missing')) == 1
  assert next_version(str(tmp_path)) == 1


def test_next_version_follows_the_highest_number_and_ignores_other_entries(tmp_path):
  for name in ('1', '2', '10', 'README', 'tmp-3'):
    (tmp_path / name).mkdir()
  (tmp_path / '11.txt').write_text('not a version')
  assert next_version(str(tmp_path)) == 11


def _files(folder):
  return {os.path.relpath(os.path.join(d, f), folder): open(os.path.join(d, f)).read()
          for d, _, names in os.walk(folder) for f in names}


def _push(tmp_path, serving_dir):
  """Runs the Pusher's executor on a blessed model of MODEL_FILES; returns the push artifact."""
  model = standard_artifacts.Model()
  model.uri = str(tmp_path / 'model')
  for name, text in MODEL_FILES.items():
    path = tmp_path / 'model' / 'Format-Serving' / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
  blessing = standard_artifacts.ModelBlessing()
  blessing.set_int_custom_property('blessed', 1)
  pushed = standard_artifacts.PushedModel()
  pushed.uri = str(tmp_path / 'pushed')
  destination = {'filesystem': {'base_directory': str(serving_dir)}}
  executor.Executor().Do(
      {standard_component_specs.MODEL_KEY: [model],
       standard_component_specs.MODEL_BLESSING_KEY: [blessing]},
      {standard_component_specs.PUSHED_MODEL_KEY: [pushed]},
      {standard_component_specs.PUSH_DESTINATION_KEY: json.dumps(destination)})
  return pushed


def test_a_version_folder_appears_only_when_complete(tmp_path, monkeypatch):
  serving_dir = tmp_path / 'serving'
  seen_while_copying = []
  copy = fileio.copy

  def watched_copy(src, dst, overwrite=False):
    if str(dst).startswith(str(serving_dir)):
      seen_while_copying.append(sorted(os.listdir(serving_dir)))
    copy(src, dst, overwrite)

  monkeypatch.setattr(fileio, 'copy', watched_copy)
  pushed = _push(tmp_path, serving_dir)
  assert len(seen_while_copying) == len(MODEL_FILES)
  assert not any(name.isdigit() for names in seen_while_copying for name in names), \
      seen_while_copying
  assert os.listdir(serving_dir) == ['1']
  assert _files(serving_dir / '1') == MODEL_FILES
  assert _files(pushed.uri) == MODEL_FILES
  assert pushed.get_string_custom_property('pushed_version') == '1'
  assert pushed.get_string_custom_property('pushed_destination') == str(serving_dir / '1')


def test_a_push_that_dies_mid_copy_leaves_no_version_and_the_next_push_takes_its_number(
    tmp_path, monkeypatch):
  serving_dir = tmp_path / 'serving'
  (serving_dir / '1').mkdir(parents=True)
  copy = fileio.copy
  copied = []

  def dying_copy(src, dst, overwrite=False):
    if len(copied) == 2:
      raise OSError('disk full')
    copied.append(dst)
    copy(src, dst, overwrite)

  monkeypatch.setattr(fileio, 'copy', dying_copy)
  with pytest.raises(OSError, match='disk full'):
    _push(tmp_path, serving_dir)
  [leftover] = [n for n in os.listdir(serving_dir) if n != '1']
  assert not leftover.isdigit() and leftover.startswith(executor.PARTIAL_PUSH_PREFIX)
  assert executor.versions(str(serving_dir)) == [1]

  monkeypatch.setattr(fileio, 'copy', copy)
  pushed = _push(tmp_path, serving_dir)
  assert pushed.get_string_custom_property('pushed_version') == '2'
  assert sorted(os.listdir(serving_dir)) == ['1', '2']  # the leftover is gone
  assert _files(serving_dir / '2') == MODEL_FILES


def test_leftovers_of_crashed_pushes_are_not_versions_and_the_next_push_removes_them(tmp_path):
  serving_dir = tmp_path / 'serving'
  for name in ('1', '2', f'{executor.PARTIAL_PUSH_PREFIX}3-0badc0de/variables', 'README'):
    (serving_dir / name).mkdir(parents=True)
  assert next_version(str(serving_dir)) == 3
  pushed = _push(tmp_path, serving_dir)
  assert pushed.get_string_custom_property('pushed_version') == '3'
  assert sorted(os.listdir(serving_dir)) == ['1', '2', '3', 'README']
  assert _files(serving_dir / '3') == MODEL_FILES
