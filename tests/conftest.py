"""Shared fixtures: small generated DRIVE-like datasets (the real DRIVE is never needed here)."""
import hashlib
import os
import shutil
import zipfile

import pytest

from pipeline import demo_data

# The real DRIVE lives beside the repository (never inside it); tests that need it skip without it.
REAL_DRIVE = os.environ.get(
    'DRIVE_DIR', os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'shared', 'data', 'DRIVE'))


@pytest.fixture(scope='session')
def tiny_drive(tmp_path_factory):
  """A 3+2 image DRIVE-like dataset at 64x60 pixels: enough for ingestion logic, fast to decode."""
  out = tmp_path_factory.mktemp('tiny') / 'DRIVE'
  demo_data.generate(str(out), seed=1, n_train=3, n_test=2, height=60, width=64)
  return out


# What the pipeline tests run: the smoke profile keeps training to seconds.
PIPELINE_ARGS = ('--eval-count', '1', '--profile', 'smoke')


@pytest.fixture(scope='session')
def demo_drive(tmp_path_factory):
  """Full DRIVE geometry (the schema pins it), few images to keep runs short."""
  out = tmp_path_factory.mktemp('demo') / 'DRIVE'
  demo_data.generate(str(out), seed=3, n_train=5, n_test=2)
  return out


@pytest.fixture(scope='session')
def demo_run(demo_drive, tmp_path_factory):
  """One in-memory run of the whole pipeline; the tests that inspect artifacts share it."""
  from pipeline import cli
  root = tmp_path_factory.mktemp('run') / 'root'
  assert cli.main(['run', '--data', str(demo_drive), '--pipeline-root', str(root),
                   *PIPELINE_ARGS]) == 0
  return root


def copy_run(root, tmp_path):
  """A private copy of a pipeline root and the serving folder beside it, to run the pipeline again
  without changing what other tests read (its ML-Metadata still points at the original artifacts)."""
  copy = tmp_path / 'run-copy'
  shutil.copytree(root.parent, copy)
  return copy / root.name


@pytest.fixture
def drive_copy(tiny_drive, tmp_path):
  """A private, modifiable copy of tiny_drive."""
  copy = tmp_path / 'DRIVE'
  shutil.copytree(tiny_drive, copy)
  return copy


def zip_folder(folder, zip_path, prefix='DRIVE/'):
  with zipfile.ZipFile(zip_path, 'w') as archive:
    for root, _, files in os.walk(folder):
      for name in sorted(files):
        full = os.path.join(root, name)
        archive.write(full, prefix + os.path.relpath(full, folder))
  return zip_path


def tree_digest(path) -> str:
  """Names, modes and contents of everything under path: proves a run left the input untouched."""
  digest = hashlib.sha256()
  paths = [path] if os.path.isfile(path) else sorted(
      os.path.join(root, name) for root, dirs, files in os.walk(path) for name in dirs + files)
  for entry in paths:
    stat = os.stat(entry)
    digest.update(f'{entry}:{stat.st_mode}:{stat.st_mtime_ns}\n'.encode())
    if os.path.isfile(entry):
      with open(entry, 'rb') as f:
        digest.update(f.read())
  return digest.hexdigest()
