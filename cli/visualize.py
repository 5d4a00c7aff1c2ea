"""Pictures people look at instead of reading numbers: the preprocessing strip of one image, ROC and
PR curves, and overlays of predictions on the image."""
import html
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

_TITLE_HEIGHT = 28
# Error overlay colours (RGB): hits, false alarms and misses must read apart at a glance.
TP_RGB, FP_RGB, FN_RGB = (255, 255, 255), (255, 40, 200), (0, 200, 255)
TP_HEX, FP_HEX, FN_HEX = ('%02x%02x%02x' % colour for colour in (TP_RGB, FP_RGB, FN_RGB))
VESSEL_TINT_RGB = np.array([0, 255, 64], np.float32)  # probability overlays of `predict`


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
  from models import preprocessing, transform
  gray = preprocessing.to_gray(rgb)
  if transform_graph_uri:
    outputs = tft.TFTransformOutput(transform_graph_uri).transform_features_layer()(
        transform.raw_features(tf.io.encode_png(rgb)))
    mean = float(outputs[transform.FOV_GRAY_MEAN_KEY][0])
    std = float(outputs[transform.FOV_GRAY_STD_KEY][0])
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


def probability_overlay(rgb: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
  """Tints the image towards VESSEL_TINT_RGB in proportion to the vessel probability."""
  alpha = probabilities[..., None].astype(np.float32) * 0.7
  return np.round(rgb * (1 - alpha) + VESSEL_TINT_RGB * alpha).astype(np.uint8)


def write_curves(path: str, false_positive_rate: np.ndarray, recall: np.ndarray,
                 precision: np.ndarray, auc: float, auc_pr: float) -> None:
  """ROC and precision-recall curves side by side, as a PNG (matplotlib, no display needed)."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  figure = Figure(figsize=(9, 4.2), dpi=100, layout='constrained')
  FigureCanvasAgg(figure)
  roc, pr = figure.subplots(1, 2)
  order = np.argsort(false_positive_rate, kind='stable')
  roc.plot(false_positive_rate[order], recall[order], color='tab:red')
  roc.plot([0, 1], [0, 1], color='0.7', linestyle='--', linewidth=0.8)   # chance
  roc.set(title=f'ROC, FOV pixels: AUC {auc:.4f}', xlabel='false positive rate',
          ylabel='true positive rate (Se)')
  order = np.argsort(recall, kind='stable')
  pr.plot(recall[order], precision[order], color='tab:blue')
  pr.set(title=f'Precision-recall: AUC {auc_pr:.4f}', xlabel='recall (Se)', ylabel='precision')
  for axes in (roc, pr):
    axes.set(xlim=(0, 1), ylim=(0, 1.01), aspect='equal')
    axes.grid(alpha=0.3)
  figure.savefig(path, format='png')


_STYLE = """body { font-family: sans-serif; margin: 2em; max-width: 1250px; }
table { border-collapse: collapse; }
td, th { border: 1px solid #bbb; padding: 3px 9px; text-align: right; }
.ok { color: #080; font-weight: bold; } .bad { color: #b00; font-weight: bold; }
figure { display: inline-block; margin: 4px; } .legend span { padding: 0 6px; }"""
ERROR_LEGEND_HTML = (f'<p class="legend"><span style="background:#{TP_HEX}">true positive</span>\n'
                     f'<span style="background:#{FP_HEX}">false positive</span>\n'
                     f'<span style="background:#{FN_HEX}">false negative (missed vessel)</span></p>')


def html_page(title: str, body: str) -> str:
  """A self-contained HTML page in the one style of the report and evaluate's page."""
  return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>\n'
          f'<style>\n{_STYLE}\n</style></head><body>\n{body}\n</body></html>\n')


def overlay_figure(file_name: str, caption: str) -> str:
  """One overlay PNG as a linked thumbnail with its caption (plain text)."""
  return (f'<figure><a href="{file_name}"><img src="{file_name}" width="282"></a>'
          f'<figcaption>{html.escape(caption)}</figcaption></figure>')


def write_png(path: str, pixels: np.ndarray) -> None:
  """Writes an RGB [H, W, 3] uint8 image, or a gray [H, W] uint8 or uint16 one, fast: OpenCV's
  default is zlib level 1 with run-length matching, ~6x faster than PIL's default level on a
  3504x2336 map, for ~40 % more bytes."""
  if not cv2.imwrite(path, pixels if pixels.ndim == 2 else cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)):
    raise OSError(f'could not write {path}')
