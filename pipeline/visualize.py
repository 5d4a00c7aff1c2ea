"""Pictures people look at instead of reading numbers: the preprocessing strip of one image, ROC and
PR curves, and prediction-vs-ground-truth overlays."""
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

_TITLE_HEIGHT = 28
# Error overlay colours (RGB): hits, false alarms and misses must read apart at a glance.
TP_RGB, FP_RGB, FN_RGB = (255, 255, 255), (255, 40, 200), (0, 200, 255)
TP_HEX, FP_HEX, FN_HEX = ('%02x%02x%02x' % colour for colour in (TP_RGB, FP_RGB, FN_RGB))


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


def preprocessing_figure(rgb: np.ndarray, fov: np.ndarray, image_name: str, fov_source: str,
                         config, transform_graph_uri: Optional[str] = None) -> np.ndarray:
  """The preprocessing strip of `rgb`, standardised with the dataset statistics of a Transform
  output (what the model saw) or, without one, with the image's own FOV statistics."""
  import tensorflow as tf
  import tensorflow_transform as tft
  from models import preprocessing
  gray = preprocessing.to_gray(rgb)
  if transform_graph_uri:
    outputs = tft.TFTransformOutput(transform_graph_uri).transform_features_layer()(
        preprocessing.raw_features(tf.io.encode_png(rgb)))
    mean = float(outputs[preprocessing.FOV_GRAY_MEAN_KEY][0])
    std = float(outputs[preprocessing.FOV_GRAY_STD_KEY][0])
    stats_source = 'train split, Transform run'
  else:
    fov_pixels = gray.numpy()[fov > 0.5]
    mean, std, stats_source = float(fov_pixels.mean()), float(fov_pixels.std()), "this image's FOV"
  steps = {k: v.numpy() for k, v in preprocessing.preprocessing_steps(gray, mean, std, config).items()}
  caption = (f'{image_name}\nFOV: {fov_source}\n'
             f'standardised with mean {mean:.2f}, std {std:.2f}\n  of FOV gray: {stats_source}\n'
             f'CLAHE clip {config.clahe_clip_limit}, grid {config.clahe_tile_grid}x'
             f'{config.clahe_tile_grid}\ngamma {config.gamma}')
  return preprocessing_strip(rgb, fov, steps, caption)


def error_overlay(rgb: np.ndarray, predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
  """The dimmed image with true positives, false positives and false negatives (boolean [H, W]
  maps) painted in TP_RGB, FP_RGB and FN_RGB."""
  out = (rgb.astype(np.float32) * 0.45).astype(np.uint8)
  out[predicted & truth] = TP_RGB
  out[predicted & ~truth] = FP_RGB
  out[~predicted & truth] = FN_RGB
  return out


def curve_plot(x: np.ndarray, y: np.ndarray, title: str, x_label: str, y_label: str,
               size: int = 420) -> np.ndarray:
  """A curve on the unit square with a grid every 0.2, its title and axis labels."""
  margin_left, margin_bottom, margin_top, margin_right = 62, 52, 36, 16
  plot = size - margin_left - margin_right
  image = np.full((margin_top + plot + margin_bottom, size, 3), 255, np.uint8)
  to_pixel = lambda u, v: (int(round(margin_left + u * plot)), int(round(margin_top + (1 - v) * plot)))
  font = cv2.FONT_HERSHEY_SIMPLEX
  for tick in np.linspace(0, 1, 6):
    cv2.line(image, to_pixel(tick, 0), to_pixel(tick, 1), (225, 225, 225), 1)
    cv2.line(image, to_pixel(0, tick), to_pixel(1, tick), (225, 225, 225), 1)
    x_tick, y_tick = to_pixel(tick, 0), to_pixel(0, tick)
    cv2.putText(image, f'{tick:.1f}', (x_tick[0] - 10, x_tick[1] + 18), font, 0.4, (0, 0, 0), 1,
                cv2.LINE_AA)
    cv2.putText(image, f'{tick:.1f}', (y_tick[0] - 30, y_tick[1] + 4), font, 0.4, (0, 0, 0), 1,
                cv2.LINE_AA)
  cv2.rectangle(image, to_pixel(0, 1), to_pixel(1, 0), (0, 0, 0), 1)
  order = np.argsort(x, kind='stable')
  points = np.array([to_pixel(u, v) for u, v in zip(np.clip(x[order], 0, 1), np.clip(y[order], 0, 1))],
                    np.int32)
  cv2.polylines(image, [points], False, (200, 40, 40), 2, cv2.LINE_AA)
  cv2.putText(image, title, (margin_left, 24), font, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
  cv2.putText(image, x_label, (margin_left + plot // 2 - 60, image.shape[0] - 10), font, 0.45,
              (0, 0, 0), 1, cv2.LINE_AA)
  label = np.full((24, plot, 3), 255, np.uint8)
  cv2.putText(label, y_label, (plot // 2 - 80, 17), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
  image[margin_top:margin_top + plot, 4:28] = np.rot90(label)
  return image


def write_png(path: str, rgb: np.ndarray) -> None:
  if not cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
    raise OSError(f'could not write {path}')
