"""Pictures people look at instead of reading numbers: the preprocessing strip of one image."""
from typing import Sequence, Tuple

import cv2
import numpy as np

_TITLE_HEIGHT = 28


def _to_uint8(values: np.ndarray) -> np.ndarray:
  """Any float map -> 0..255 by its own min/max (for display only)."""
  values = values.astype(np.float32)
  low, high = float(values.min()), float(values.max())
  return np.round((values - low) / max(high - low, 1e-6) * 255).astype(np.uint8)


def _panel(title: str, pixels: np.ndarray) -> np.ndarray:
  rgb = pixels if pixels.ndim == 3 else np.repeat(pixels[..., None], 3, axis=2)
  header = np.full((_TITLE_HEIGHT, rgb.shape[1], 3), 255, np.uint8)
  cv2.putText(header, title, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
  return np.concatenate([header, rgb], axis=0)


def grid(panels: Sequence[Tuple[str, np.ndarray]], columns: int) -> np.ndarray:
  """Titled panels of one size, row by row, padded with white."""
  tiles = [_panel(title, pixels) for title, pixels in panels]
  blank = np.full_like(tiles[0], 255)
  tiles += [blank] * (-len(tiles) % columns)
  rows = [np.concatenate(tiles[i:i + columns], axis=1) for i in range(0, len(tiles), columns)]
  return np.concatenate(rows, axis=0)


def preprocessing_strip(rgb: np.ndarray, fov: np.ndarray, steps: dict, caption: str) -> np.ndarray:
  """The raw image, its FOV and every preprocessing step (models.preprocessing.preprocessing_steps)."""
  panels = [
      ('raw', rgb),
      ('FOV', _to_uint8(fov)),
      ('gray (BT.601)', _to_uint8(steps['gray'])),
      ('standardised', _to_uint8(steps['standardised'])),
      ('rescaled 0..255', np.clip(steps['rescaled'], 0, 255).astype(np.uint8)),
      ('CLAHE', steps['clahe'].astype(np.uint8)),
      ('gamma = model input', steps['gamma'].astype(np.uint8)),
  ]
  image = grid(panels, columns=4)
  # The empty last cell carries the numbers behind the pictures.
  height, width = rgb.shape[0] + _TITLE_HEIGHT, rgb.shape[1]
  for i, line in enumerate(caption.splitlines()):
    cv2.putText(image, line, (3 * width + 10, height + 50 + 24 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                (0, 0, 0), 1, cv2.LINE_AA)
  return image


def write_png(path: str, rgb: np.ndarray) -> None:
  if not cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
    raise OSError(f'could not write {path}')
