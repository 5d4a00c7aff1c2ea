"""`retina-tfx predict`: vessel maps for image files from an exported model (a SavedModel or a
pushed serving folder)."""
import os
import re
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import tensorflow as tf

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

  def predict(self, image: bytes,
              fov_png: Optional[bytes] = None) -> Tuple[np.ndarray, np.ndarray]:
    """PNG, JPEG, BMP or GIF bytes (and optional FOV mask PNG) -> probabilities [H, W] and the FOV
    used [H, W]."""
    if fov_png is None:
      outputs = self._serve(images=tf.constant([image]))
    else:
      outputs = self._serve_with_fov(images=tf.constant([image]), fovs=tf.constant([fov_png]))
    return (outputs[serving.PROBABILITIES_KEY][0].numpy(), outputs[constants.FOV_KEY][0].numpy())

  def predict_pixels(self, rgb: np.ndarray,
                     fov: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    """decode_image's RGB pixels (and optional 0/255 FOV map) -> as predict. The image goes as an
    uncompressed BMP: lossless like a PNG, so the model sees exactly these pixels, but encoded and
    decoded as a copy, in hundredths of a second for a 3504x2336 photo, where a zlib-default PNG
    takes seconds. A photo's own JPEG bytes would not do: TF decodes them with a coarser IDCT than
    PIL, to other pixels. The FOV map stays a PNG, the one format the graph reads masks in."""
    bmp = cv2.imencode('.bmp', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()
    return self.predict(bmp, None if fov is None else files.encode_png(fov))


def read_image(path: str, expect_binary: bool = False) -> np.ndarray:
  """An image file (TIFF too, which TF cannot decode) decoded as ingestion decodes it: RGB pixels,
  or a 0/255 map."""
  try:
    with open(path, 'rb') as f:
      files.check_file_size(os.fstat(f.fileno()).st_size, path)
      return files.decode_image(f.read(), path, expect_binary)
  except OSError as error:
    raise PredictError(f'{path}: cannot be read ({error.strerror or error})') from error
  except files.FundusInputError as error:
    raise PredictError(error.message) from error


# The PNG formats' sample types; probabilities are stored as round(p * the type's maximum).
_PNG_TYPES = {'png8': np.uint8, 'png16': np.uint16}


def write_map(path_without_suffix: str, probabilities: np.ndarray, map_format: str) -> None:
  """One probability map in one of constants.MAP_FORMATS: float32 .npy, or an 8- or 16-bit PNG."""
  if map_format == 'npy':
    np.save(f'{path_without_suffix}.npy', probabilities.astype(np.float32))
  else:
    sample_type = _PNG_TYPES[map_format]
    levels = np.round(probabilities * np.iinfo(sample_type).max).astype(sample_type)
    visualize.write_png(f'{path_without_suffix}.png', levels)


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


def _model_problem(message: str) -> str:
  """The graph's own words in a TF error: its last unindented line (after TF's preamble and stack,
  before the indented node name), with an assertion's bracketed message and data unwrapped."""
  lines = [line for line in message.splitlines() if line.strip() and not line[0].isspace()]
  problem = lines[-1] if lines else message.strip()
  if problem.startswith('assertion failed: '):
    return ' '.join(re.findall(r'\[([^\[\]]*)\]', problem)) or problem
  return problem


def predict_files(model: VesselModel, inputs: Sequence[str], output_dir: str,
                  fov_dir: Optional[str] = None, with_overlay: bool = False,
                  map_format: str = constants.MAP_FORMATS[0],
                  progress: Callable = console.progress_bar) -> Dict[str, str]:
  """Writes <stem>.png or .npy (see write_map) and optionally <stem>_overlay.png for every input.
  Returns {input: message naming it} for the files that failed; the others are all written."""
  os.makedirs(output_dir, exist_ok=True)
  failures, paths = {}, list_inputs(inputs)
  started = time.monotonic()
  for done, path in enumerate(paths, 1):
    try:
      rgb = read_image(path)
      fov = read_image(find_fov(fov_dir, path), expect_binary=True) if fov_dir else None
      probabilities, _ = model.predict_pixels(rgb, fov)
      base = os.path.join(output_dir, os.path.splitext(os.path.basename(path))[0])
      write_map(base, probabilities, map_format)
      if with_overlay:
        visualize.write_png(f'{base}_overlay.png',
                            visualize.probability_overlay(rgb, probabilities))
    except PredictError as error:
      failures[path] = str(error)
    except tf.errors.InvalidArgumentError as error:
      failures[path] = f'{path}: the model rejected it ({_model_problem(error.message)})'
    progress(done, len(paths), os.path.basename(path))
  print(f'  {len(paths) - len(failures)} maps written to {output_dir} in '
        f'{time.monotonic() - started:.1f} s')
  return failures


def command(args) -> int:
  model = VesselModel(args.model)
  print(f'retina-tfx: predicting with {model.path}')
  failures = predict_files(model, args.input, args.output, fov_dir=args.fov,
                           with_overlay=args.overlay, map_format=args.format)
  for problem in failures.values():
    print(f'retina-tfx: error: {problem}', file=sys.stderr)
  return 1 if failures else 0
