"""The command line starts without TensorFlow: help and argument errors answer at once."""
import subprocess
import sys

import pytest

_HEAVY = ('tensorflow', 'tfx', 'apache_beam', 'tensorflow_model_analysis')


@pytest.mark.parametrize('argv', [['--help'], ['run', '--help'], ['run'], ['status', '--nope'],
                                  ['benchmark-scale', '--help']])
def test_help_and_argument_errors_import_no_tensorflow(argv):
  # A fresh interpreter: this one has imported TensorFlow for other tests.
  code = ('import sys\nfrom cli.main import main\ntry:\n  main(%r)\nexcept SystemExit:\n  pass\n'
          'print("loaded:", *(m for m in %r if m in sys.modules))' % (argv, _HEAVY))
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                       check=True).stdout
  assert out.splitlines()[-1] == 'loaded:', out
