"""`retina-tfx predict`: vessel maps for image files from an exported model (a SavedModel or a
pushed serving folder)."""
import os
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from PIL import Image, UnidentifiedImageError

from cli import console, visualize
from components.fundus_example_gen import files
from components.numbered_pusher import executor as pusher
from models import constants, serving

IMAGE_SUFFIXES = ('.tif', '.tiff', '.png', '.jpg', '.jpeg', '.bmp', '.gif')


class PredictError(console.CommandError):
  pass


def resolve_saved_model(path: str) -> str:
  """A SavedModel folder, or a TF Serving base folder (<base>/<version>/): its latest version."""
  if tf.io.gfile.exists(os.path.join(path, 'saved_model.pb')):
    return path
  complete = [v for v in pusher.versions(path)
              if tf.io.gfile.exists(os.path.join(path, str(v), 'saved_model.pb'))]
  if not complete:
    raise PredictError(f'{path}: neither a SavedModel nor a serving folder with numbered versions')
  return os.path.join(path, str(complete[-1]))


class VesselModel:
  """The exported model's serving signatures, fed with any image file PIL reads."""

  def __init__(self, path: str):
    self.path = resolve_saved_model(path)
    loaded = tf.saved_model.load(self.path)
    self._serve = loaded.signatures[serving.SERVE]
    self._serve_with_fov = loaded.signatures[serving.SERVE_WITH_FOV]
    self._loaded = loaded  # keeps the signatures' variables alive

  def predict(self, png: bytes, fov_png: Optional[bytes] = None) -> Tuple[np.ndarray, np.ndarray]:
    """PNG bytes (and optional FOV mask PNG) -> probabilities [H, W] and the FOV used [H, W]."""
    if fov_png is None:
      outputs = self._serve(images=tf.constant([png]))
    else:
      outputs = self._serve_with_fov(images=tf.constant([png]), fovs=tf.constant([fov_png]))
    return (outputs[serving.PROBABILITIES_KEY][0].numpy(), outputs[constants.FOV_KEY][0].numpy())


def read_as_png(path: str, mode: str = 'RGB') -> Tuple[bytes, np.ndarray]:
  """Any image PIL reads (TIFF included, which TF cannot decode) -> lossless PNG bytes and pixels."""
  try:
    with Image.open(path) as image:
      pixels = np.asarray(image.convert(mode))
  except (OSError, UnidentifiedImageError, ValueError) as error:
    raise PredictError(f'{path}: cannot be read as an image ({error})') from error
  return files.encode_png(pixels), pixels


def list_inputs(paths: Sequence[str]) -> List[str]:
  files = []
  for path in paths:
    if os.path.isdir(path):
      files += sorted(os.path.join(path, f) for f in os.listdir(path)
                      if f.lower().endswith(IMAGE_SUFFIXES))
    elif os.path.isfile(path):
      files.append(path)
    else:
      raise PredictError(f'{path}: does not exist')
  if not files:
    raise PredictError(f'no image files in {", ".join(paths)}')
  return files


def find_fov(fov_dir: str, image_path: str) -> str:
  """The mask in fov_dir whose name starts with the image's stem (DRIVE: 01_test -> 01_test_mask)."""
  stem = os.path.splitext(os.path.basename(image_path))[0]
  matches = sorted(f for f in os.listdir(fov_dir) if os.path.splitext(f)[0] in (stem, f'{stem}_mask'))
  if not matches:
    raise PredictError(f'{image_path}: no FOV mask named {stem}.* or {stem}_mask.* in {fov_dir}')
  return os.path.join(fov_dir, matches[0])


def predict_files(model: VesselModel, inputs: Sequence[str], output_dir: str,
                  fov_dir: Optional[str] = None, with_overlay: bool = False,
                  progress: Callable = console.progress_bar) -> Dict[str, str]:
  """Writes <stem>.png (probability 0..255) and optionally <stem>_overlay.png for every input.
  Returns {input: message naming it} for the files that failed; the others are all written."""
  os.makedirs(output_dir, exist_ok=True)
  failures, files = {}, list_inputs(inputs)
  started = time.monotonic()
  for done, path in enumerate(files, 1):
    try:
      png, rgb = read_as_png(path)
      fov_png = read_as_png(find_fov(fov_dir, path), mode='L')[0] if fov_dir else None
      probabilities, _ = model.predict(png, fov_png)
      stem = os.path.splitext(os.path.basename(path))[0]
      visualize.write_png(os.path.join(output_dir, f'{stem}.png'),
                          np.round(probabilities * 255).astype(np.uint8))
      if with_overlay:
        visualize.write_png(os.path.join(output_dir, f'{stem}_overlay.png'),
                            visualize.probability_overlay(rgb, probabilities))
    except PredictError as error:
      failures[path] = str(error)
    except tf.errors.InvalidArgumentError as error:
      failures[path] = f'{path}: the model rejected it ({error.message.strip().splitlines()[0]})'
    progress(done, len(files), os.path.basename(path))
  print(f'  {len(files) - len(failures)} maps written to {output_dir} in '
        f'{time.monotonic() - started:.1f} s')
  return failures


def command(args) -> int:
  model = VesselModel(args.model)
  print(f'retina-tfx: predicting with {model.path}')
  failures = predict_files(model, args.input, args.output, fov_dir=args.fov,
                           with_overlay=args.overlay)
  for problem in failures.values():
    print(f'retina-tfx: error: {problem}', file=sys.stderr)
  return 1 if failures else 0
