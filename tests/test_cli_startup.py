"""The command line starts without TensorFlow: help and argument errors answer at once, with
argparse's exit codes and messages."""
import subprocess
import sys

import pytest

_HEAVY = ('tensorflow', 'tfx', 'apache_beam', 'tensorflow_model_analysis')


@pytest.mark.parametrize('argv, code, usage, error', [
    (['--help'], 0, 'usage: retina-tfx [-h]', None),
    (['run', '--help'], 0, 'usage: retina-tfx run [-h]', None),
    (['benchmark-scale', '--help'], 0, 'usage: retina-tfx benchmark-scale [-h] --output OUTPUT',
     None),
    (['run'], 2, 'usage: retina-tfx run [-h]',
     'retina-tfx run: error: the following arguments are required: --data'),
    (['status', '--nope'], 2, 'usage: retina-tfx [-h]',
     'retina-tfx: error: unrecognized arguments: --nope'),
])
def test_help_and_argument_errors_import_no_tensorflow(argv, code, usage, error):
  # A fresh interpreter, started as the retina-tfx script starts (this one has imported TensorFlow
  # for other tests); it lists the heavy modules loaded when it exits.
  script = ('import atexit, sys\n'
            'atexit.register(lambda: print("loaded:", *(m for m in %r if m in sys.modules)))\n'
            'sys.argv = ["retina-tfx", *%r]\n'
            'from cli.main import main\n'
            'sys.exit(main())\n' % (_HEAVY, argv))
  child = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True)
  out, err = child.stdout.splitlines(), child.stderr.splitlines()
  assert child.returncode == code, child.stderr
  assert out[-1] == 'loaded:', child.stdout
  if error is None:   # help: usage and options on stdout, nothing on stderr
    assert out[0].startswith(usage) and len(out) > 3 and not err, child.stdout
  else:               # usage, then the error, on stderr; nothing on stdout
    assert err[0].startswith(usage) and err[-1] == error and out == ['loaded:'], child.stderr
