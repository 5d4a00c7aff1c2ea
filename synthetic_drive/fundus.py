"""Renders one synthetic DRIVE-like image with its 1st_manual and 2nd_manual labels and FOV mask.

A fundus-like photo (dark surround, circular field of view, orange-red retina with optic disc,
macula, vignetting, uneven illumination, texture, noise, haemorrhage- and exudate-like distractors)
with the vessel trees of vessels.py. The 1st_manual label is exactly the drawn vessel pixels; test
images also get a 2nd_manual from a simulated second observer (misses some thin vessels, traces
some tips further, draws some vessels a pixel wider or narrower).

Vessels are only subtly darker than their surroundings (thin ones near noise level) and
illumination varies more than vessel contrast, so a global threshold does poorly while a CNN has
real signal to learn.
"""
import math
from typing import List, Tuple

import cv2
import numpy as np

from models.constants import IMAGE_HEIGHT, IMAGE_WIDTH
from synthetic_drive.vessels import Branch, Fundus, VesselGrower, place_fundus

TRAINING, TEST = 'training', 'test'
_FOLDER_KEYS = {TRAINING: 0, TEST: 1}  # part of the random key, so ids shared by both folders still differ

# Relative darkening of R, G, B where a vessel (or haemorrhage) has contrast 1: blood absorbs green most.
_VESSEL_CHANNEL_WEIGHTS = np.array([0.3, 1.0, 0.75], np.float32)
_HAEMORRHAGE_CHANNEL_WEIGHTS = np.array([0.45, 1.0, 0.8], np.float32)
# Exudates are yellow-white: they brighten green and red more than blue.
_EXUDATE_CHANNEL_WEIGHTS = np.array([0.35, 1.0, 0.5], np.float32)
_OPTIC_DISC_CHANNEL_WEIGHTS = np.array([0.35, 1.0, 1.1], np.float32)
_SUPERSAMPLING = 4  # vessels are drawn this many times finer, then averaged down


def _draw_polyline(canvas: np.ndarray, points, widths, value: float, width_delta: float = 0.0,
                   width_factor: float = 1.0):
  """Draws a polyline whose width follows `widths` (image pixels) on a _SUPERSAMPLING times finer canvas.

  cv2's thick lines come only in odd widths; drawing finer and averaging down gives any width.
  """
  fine_points = np.rint(np.asarray(points) * _SUPERSAMPLING + (_SUPERSAMPLING - 1) / 2).astype(np.int32)
  fine_widths = np.maximum(1.0, np.asarray(widths) * width_factor + width_delta) * _SUPERSAMPLING
  # A cv2 line of thickness t covers about t + 1 pixels across.
  thickness = np.maximum(1, np.rint(fine_widths - 1)).astype(int)
  # One cv2 call per run of equal thickness (segment i ends at point i).
  run_starts = np.flatnonzero(np.diff(thickness[1:], prepend=-1)) + 1
  for start, end in zip(run_starts, list(run_starts[1:]) + [len(fine_points)]):
    cv2.polylines(canvas, [fine_points[start - 1:end]], False, value, int(thickness[start]), cv2.LINE_8)


def _draw_centreline(canvas: np.ndarray, points):
  """One-pixel 8-connected centreline in image pixels: keeps the thinnest vessels unbroken."""
  cv2.polylines(canvas, [np.rint(np.asarray(points)).astype(np.int32)], False, 255, 1, cv2.LINE_8)


def _draw_vessels(branches: List[Branch], fundus: Fundus) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Returns the 1st observer's label, the 2nd observer's label and the vessels' green darkening map."""
  shape = (fundus.height, fundus.width)
  fine_shape = (fundus.height * _SUPERSAMPLING, fundus.width * _SUPERSAMPLING)
  fine_label, fine_second_label = np.zeros(fine_shape, np.uint8), np.zeros(fine_shape, np.uint8)
  fine_darkening = np.zeros(fine_shape, np.float32)
  label, second_label = np.zeros(shape, np.uint8), np.zeros(shape, np.uint8)
  # Fainter vessels first, so that at crossings and branch points the darker vessel shows on top.
  for branch in sorted(branches, key=lambda b: b.contrast):
    if len(branch.points) < 2:
      continue
    _draw_polyline(fine_label, branch.points, branch.widths, 255)
    _draw_centreline(label, branch.points)
    if not branch.second_drops:
      _draw_polyline(fine_second_label, branch.points, branch.widths, 255,
                     width_delta=branch.second_width_delta)
      _draw_centreline(second_label, branch.points + branch.second_extension)
    # Thin vessels are fainter: contrast falls with width, down to near the noise level at 1 px.
    relative_width = min(1.0, float(np.mean(branch.widths)) / (5.0 * fundus.scale))
    contrast = branch.contrast * (0.3 + 0.7 * relative_width)
    # A rounded profile: the rim is lighter than the core.
    _draw_polyline(fine_darkening, branch.points, branch.widths, 0.6 * contrast)
    _draw_polyline(fine_darkening, branch.points, branch.widths, contrast, width_factor=0.55)
    if branch.reflex:
      thick = [i for i, width in enumerate(branch.widths) if width > 5 * fundus.scale]
      if len(thick) > 1:
        reflex_points = branch.points[thick[0]:thick[-1] + 1]
        _draw_polyline(fine_darkening, reflex_points, [1.0] * len(reflex_points), 0.45 * contrast)

  def downsample(fine: np.ndarray) -> np.ndarray:
    return cv2.resize(fine, (fundus.width, fundus.height), interpolation=cv2.INTER_AREA)

  # A pixel is vessel when the drawn vessel covers at least half of it.
  label |= np.where(downsample(fine_label) >= 128, 255, 0).astype(np.uint8)
  second_label |= np.where(downsample(fine_second_label) >= 128, 255, 0).astype(np.uint8)
  # Real vessel edges are blurred by the optics; the label keeps the sharp drawn outline.
  darkening = cv2.GaussianBlur(downsample(fine_darkening), (0, 0), 0.7 * max(fundus.scale, 0.5))
  return label, second_label, darkening


def _smooth_noise(rng: np.random.Generator, shape: Tuple[int, int], cells: int) -> np.ndarray:
  """Zero-mean, unit-ish random field varying over about 1/`cells` of the image."""
  grid = rng.normal(0, 1, (cells + 1, cells + 1)).astype(np.float32)
  return cv2.resize(grid, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


def _background(rng: np.random.Generator, fundus: Fundus) -> np.ndarray:
  """Vessel-free retina as float RGB: base colour, illumination, optic disc, macula and texture."""
  shape = (fundus.height, fundus.width)
  ys, xs = np.mgrid[0:fundus.height, 0:fundus.width].astype(np.float32)
  # DRIVE's retinas: red high, green about half of red, blue a little over half of green.
  red = rng.uniform(185, 235)
  green = red * rng.uniform(0.42, 0.62)
  base = np.array([red, green, green * rng.uniform(0.5, 0.66)], np.float32)

  # Illumination: radial vignetting, a tilted plane and a smooth random field.
  radial = np.hypot(xs - fundus.centre[0], ys - fundus.centre[1]) / fundus.radius
  tilt = rng.normal(0, 0.08, 2)
  illumination = (1 - rng.uniform(0.25, 0.45) * radial ** 3
                  + tilt[0] * (xs - fundus.centre[0]) / fundus.radius
                  + tilt[1] * (ys - fundus.centre[1]) / fundus.radius
                  + 0.06 * _smooth_noise(rng, shape, 3))

  macula_distance = np.hypot(xs - fundus.macula[0], ys - fundus.macula[1]) / fundus.radius
  macula = (rng.uniform(0.15, 0.3) * np.exp(-(macula_distance / 0.2) ** 2)
            + rng.uniform(0.05, 0.12) * np.exp(-(macula_distance / 0.04) ** 2))
  # Choroidal mottling: texture at the scale of thin vessels' spacing, the main source of false positives.
  texture = (0.015 * _smooth_noise(rng, shape, 20) + 0.02 * _smooth_noise(rng, shape, 70)
             + 0.025 * _smooth_noise(rng, shape, 150))
  rgb = base * (illumination * (1 - macula) * (1 + texture))[..., None]

  disc_distance = np.hypot(xs - fundus.optic_disc[0], ys - fundus.optic_disc[1]) / fundus.optic_disc_radius
  disc = 0.5 * (1 - np.tanh((disc_distance - 1) * 4)) + 0.6 * np.exp(-(disc_distance / 0.45) ** 2)
  rgb *= 1 + rng.uniform(0.5, 0.8) * disc[..., None] * _OPTIC_DISC_CHANNEL_WEIGHTS
  return rgb


def _blobs(rng: np.random.Generator, fundus: Fundus, count: int, radius_range: Tuple[float, float],
           strength_range: Tuple[float, float]) -> np.ndarray:
  """Soft elliptic spots away from the optic disc, as a strength map."""
  canvas = np.zeros((fundus.height, fundus.width), np.float32)
  for _ in range(count):
    angle, distance = rng.uniform(0, 2 * math.pi), fundus.radius * math.sqrt(rng.uniform(0.02, 0.8))
    centre = fundus.centre + distance * np.array([math.cos(angle), math.sin(angle)])
    if np.hypot(*(centre - fundus.optic_disc)) < 2 * fundus.optic_disc_radius:
      continue
    axes = tuple(max(1, int(round(rng.uniform(*radius_range) * fundus.scale))) for _ in range(2))
    cv2.ellipse(canvas, (int(centre[0]), int(centre[1])), axes, rng.uniform(0, 180), 0, 360,
                float(rng.uniform(*strength_range)), -1, cv2.LINE_8)
  return cv2.GaussianBlur(canvas, (0, 0), 1.2 * max(fundus.scale, 0.5))


def render(seed: int, folder: str, image_id: int, height: int = IMAGE_HEIGHT, width: int = IMAGE_WIDTH
           ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """One image: (RGB uint8 [H, W, 3], 1st label, 2nd label, FOV mask), the maps uint8 0/255 [H, W]."""
  rng = np.random.default_rng([seed, _FOLDER_KEYS[folder], image_id])
  fundus = place_fundus(rng, height, width)
  ys, xs = np.mgrid[0:height, 0:width]
  fov = np.hypot(xs - fundus.centre[0], ys - fundus.centre[1]) < fundus.radius

  label, second_label, darkening = _draw_vessels(VesselGrower(rng, fundus).grow_trees(), fundus)
  rgb = _background(rng, fundus)
  rgb *= 1 - darkening[..., None] * _VESSEL_CHANNEL_WEIGHTS
  haemorrhages = _blobs(rng, fundus, rng.integers(0, 7), (2, 7), (0.15, 0.4))
  rgb *= 1 - haemorrhages[..., None] * _HAEMORRHAGE_CHANNEL_WEIGHTS
  exudates = _blobs(rng, fundus, rng.integers(0, 12), (1.5, 4), (0.15, 0.45))
  rgb *= 1 + exudates[..., None] * _EXUDATE_CHANNEL_WEIGHTS
  # Sensor noise, slightly correlated between neighbouring pixels like in the compressed originals.
  noise = rng.normal(0, 1, rgb.shape).astype(np.float32)
  rgb += 4.5 * cv2.GaussianBlur(noise, (0, 0), 0.6)

  # Outside the field of view DRIVE is not black but a dark, noisy grey; the disc edge is slightly soft.
  surround = 8 + 1.5 * rng.normal(0, 1, rgb.shape).astype(np.float32)
  inside = cv2.GaussianBlur(fov.astype(np.float32), (0, 0), 0.8 * max(fundus.scale, 0.5))[..., None]
  rgb = inside * rgb + (1 - inside) * surround
  image = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
  fov_mask = np.where(fov, 255, 0).astype(np.uint8)
  return image, label & fov_mask, second_label & fov_mask, fov_mask
