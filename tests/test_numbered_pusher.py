"""Serving versions are numbered 1, 2, 3 past whatever numbered versions the folder holds."""
from components.numbered_pusher.executor import next_version


def test_first_version_is_one_even_without_the_folder(tmp_path):
  assert next_version(str(tmp_path / 'missing')) == 1
  assert next_version(str(tmp_path)) == 1


def test_next_version_follows_the_highest_number_and_ignores_other_entries(tmp_path):
  for name in ('1', '2', '10', 'README', 'tmp-3'):
    (tmp_path / name).mkdir()
  (tmp_path / '11.txt').write_text('not a version')
  assert next_version(str(tmp_path)) == 11
