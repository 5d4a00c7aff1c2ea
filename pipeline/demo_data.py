"""Generates a small synthetic DRIVE-like dataset, in DRIVE's exact folder layout and file formats.

The real DRIVE cannot be redistributed, so demos and tests run on this instead. Each image is a
fundus-like photo (dark surround, circular field of view, orange-red retina with optic disc, macula,
vignetting, uneven illumination, texture, noise, haemorrhage- and exudate-like distractors) with
3-4 vessel trees (two arcades around the macula, one or two nasal) grown from the optic disc as
branching random walks. The 1st_manual label is exactly the drawn vessel pixels; test images also get
a 2nd_manual from a simulated second observer (misses some thin vessels, traces some tips further,
draws some vessels a pixel wider or narrower).

Vessels are only subtly darker than their surroundings (thin ones near noise level) and illumination
varies more than vessel contrast, so a global threshold does poorly while a CNN has real signal to learn.
Everything depends only on (seed, folder, image id): the same seed gives byte-identical files.
"""
import dataclasses
import math
import os
import shutil
import tempfile
from typing import Callable, List, Optional, Tuple

import cv2
import numpy as np
from PIL import Image

from models.constants import IMAGE_HEIGHT, IMAGE_WIDTH

TRAINING, TEST = 'training', 'test'
FIRST_TRAINING_ID = 21  # DRIVE numbers its test images 01-20 and its training images 21-40.
_FOLDER_KEYS = {TRAINING: 0, TEST: 1}  # part of the random key, so ids shared by both folders still differ

# Relative darkening of R, G, B where a vessel (or haemorrhage) has contrast 1: blood absorbs green most.
_VESSEL_CHANNEL_WEIGHTS = np.array([0.3, 1.0, 0.75], np.float32)
_HAEMORRHAGE_CHANNEL_WEIGHTS = np.array([0.45, 1.0, 0.8], np.float32)
# Exudates are yellow-white: they brighten green and red more than blue.
_EXUDATE_CHANNEL_WEIGHTS = np.array([0.35, 1.0, 0.5], np.float32)
_OPTIC_DISC_CHANNEL_WEIGHTS = np.array([0.35, 1.0, 1.1], np.float32)
_SUPERSAMPLING = 4  # vessels are drawn this many times finer, then averaged down


@dataclasses.dataclass
class _Fundus:
  """Where things are in one image, in pixels; `scale` is 1 at DRIVE's size."""
  height: int
  width: int
  scale: float
  centre: np.ndarray        # (x, y) of the field-of-view disc
  radius: float             # of the field-of-view disc
  optic_disc: np.ndarray    # (x, y)
  optic_disc_radius: float
  macula: np.ndarray        # (x, y)

  def inside(self, x: float, y: float, margin: float = 0.0) -> bool:
    return math.hypot(x - self.centre[0], y - self.centre[1]) < self.radius - margin


@dataclasses.dataclass
class _Branch:
  """One vessel segment between branch points, as the polyline a random walk traced."""
  points: List[Tuple[float, float]]
  widths: List[float]
  contrast: float           # darkening of the green channel at full width
  reflex: bool              # shows a central light reflex (thick arteries)
  second_width_delta: int   # the 2nd observer draws it this many pixels wider (-1, 0 or +1)
  second_drops: bool        # the 2nd observer misses it (and so everything that branches off it)
  second_extension: List[Tuple[float, float]]  # the 2nd observer traces the tip a bit further


def _place_fundus(rng: np.random.Generator, height: int, width: int) -> _Fundus:
  scale = min(height, width) / IMAGE_WIDTH
  # DRIVE's field of view is a disc about 0.95 of the width across, centred with a few pixels' play.
  centre = np.array([width / 2, height / 2]) + rng.normal(0, 3 * scale, 2)
  radius = 0.475 * min(height, width) * rng.uniform(0.98, 1.01)
  # Left and right eyes: the optic disc sits on either side, the macula near the centre.
  side = rng.choice([-1.0, 1.0])
  optic_disc = centre + np.array([side * radius * rng.uniform(0.62, 0.72), rng.normal(0, 0.06 * radius)])
  macula = centre + np.array([-side * radius * rng.uniform(0.0, 0.08), rng.normal(0, 0.05 * radius)])
  return _Fundus(height, width, scale, centre, radius, optic_disc, rng.uniform(30, 38) * scale, macula)


@dataclasses.dataclass(frozen=True)
class _Arcade:
  """Course of a major temporal vessel around the macula: v = side * reach * sqrt(tanh(u / d)).

  (u, v) are optic-disc-centred coordinates with u pointing at the macula and d the disc-to-macula
  distance. Near the disc this is the classic parabolic arcade model (vessels leave the disc at right
  angles); past the macula the arcade levels off at `reach` pixels from the axis, as in DRIVE.
  """
  side: float
  reach: float


class _VesselGrower:
  """Grows vessel trees as random walks with smoothly varying direction, branching recursively.

  Arcade trunks steer along their course; every other vessel follows a random curvature. A coarse
  occupancy grid remembers which branch passed where, so that thin vessels stop when they run into
  another vessel, as in real retinas, instead of weaving an unrealistic mesh.
  """

  def __init__(self, rng: np.random.Generator, fundus: _Fundus):
    self.rng, self.fundus = rng, fundus
    self.branches: List[_Branch] = []
    self.cell = 5.0 * fundus.scale
    grid = (int(fundus.height / self.cell) + 1, int(fundus.width / self.cell) + 1)
    self.owner = np.full(grid, -1, np.int32)
    self.owner_width = np.zeros(grid, np.float32)
    axis = fundus.macula - fundus.optic_disc
    self.disc_to_macula = float(np.hypot(*axis))
    self.u_axis = axis / self.disc_to_macula
    self.v_axis = np.array([-self.u_axis[1], self.u_axis[0]])

  def grow_trees(self) -> List[_Branch]:
    """Two arcades around the macula (each soon splitting into an artery and a vein), 1-2 nasal trees."""
    rng, fundus = self.rng, self.fundus
    for side in (-1.0, 1.0):
      arcade = _Arcade(side, self.disc_to_macula * rng.uniform(0.7, 1.0))
      start = fundus.optic_disc + rng.normal(0, 0.2 * fundus.optic_disc_radius, 2)
      self._grow_trunk(start, self._arcade_heading(*start, arcade), arcade, is_artery=rng.random() < 0.5,
                       splits_into_pair=True)
    for _ in range(rng.integers(1, 3)):
      start = fundus.optic_disc + rng.normal(0, 0.2 * fundus.optic_disc_radius, 2)
      away_from_macula = math.atan2(-self.u_axis[1], -self.u_axis[0])
      self._grow_trunk(start, away_from_macula + rng.uniform(-1.2, 1.2), None, is_artery=rng.random() < 0.5,
                       splits_into_pair=False, width_factor=rng.uniform(0.6, 0.85))
    return self.branches

  def _grow_trunk(self, start: Tuple[float, float], heading: float, arcade: Optional[_Arcade],
                  is_artery: bool, splits_into_pair: bool, width_factor: float = 1.0, parent: int = -1):
    rng = self.rng
    # Veins are wider and darker; arteries lighter, and their thick parts may show a light reflex.
    width = rng.uniform(7.0, 8.5) if is_artery else rng.uniform(8.5, 10.0)
    contrast = rng.uniform(0.28, 0.36) if is_artery else rng.uniform(0.36, 0.48)
    # Even thumbnails get a few vessels: trunks are at least two pixels wide.
    width = max(width * width_factor * self.fundus.scale, 2.0)
    self._grow(start, heading, width, contrast, arcade=arcade,
               curvature_target=rng.normal(0, 0.002) / self.fundus.scale, depth=0, parent=parent,
               reflex=is_artery and rng.random() < 0.7, is_artery=is_artery,
               splits_into_pair=splits_into_pair, second_drops=False)

  def _arcade_heading(self, x: float, y: float, arcade: _Arcade) -> float:
    """Direction towards the arcade's course a little ahead of (x, y)."""
    disc = self.fundus.optic_disc
    lookahead = 0.2 * self.disc_to_macula
    u = max(0.0, (x - disc[0]) * self.u_axis[0] + (y - disc[1]) * self.u_axis[1]) + lookahead
    v = arcade.side * arcade.reach * math.sqrt(math.tanh(u / self.disc_to_macula))
    target = disc + u * self.u_axis + v * self.v_axis
    return math.atan2(target[1] - y, target[0] - x)

  def _blocked(self, cell: Tuple[int, int], relatives: set, x: float, y: float, width: float,
               travelled: float) -> bool:
    """Whether a thin vessel has run into another thin one (big vessels may be crossed, as in DRIVE)."""
    fundus = self.fundus
    thin = 2.5 * fundus.scale
    return (self.owner[cell] not in relatives and self.owner_width[cell] < thin and width < thin
            and travelled > 15 * fundus.scale
            and math.hypot(x - fundus.optic_disc[0], y - fundus.optic_disc[1])
            > 2 * fundus.optic_disc_radius)

  def _grow(self, start: Tuple[float, float], heading: float, width: float, contrast: float,
            arcade: Optional[_Arcade], curvature_target: float, depth: int, parent: int, reflex: bool,
            is_artery: bool, splits_into_pair: bool, second_drops: bool, towards_fovea: bool = False):
    rng, fundus = self.rng, self.fundus
    step = 2.0 * fundus.scale
    # Nothing is drawn thinner than a pixel, so smaller images keep fewer thin vessels (as a downscaled
    # photo would) rather than a larger vessel fraction.
    min_width = max(1.3 * fundus.scale, 1.0)
    # Widths shrink exponentially along a vessel, so thin vessels still run a long way.
    taper_length = (rng.uniform(600, 1000) if depth == 0 else rng.uniform(400, 800)) * fundus.scale
    curvature_decay = rng.uniform(150, 250) * fundus.scale
    # Macular vessels stop short of the fovea at varying distances; others just skirt it.
    avascular_radius = (rng.uniform(0.12, 0.3) if towards_fovea else 0.12) * fundus.radius
    # Random turns for every step a vessel can take (no vessel is longer than twice around the FOV):
    # smooth changes of curvature, and for smaller vessels small kinks that make them tortuous.
    max_steps = int(4 * math.pi * fundus.radius / step)
    turn_spread = 0.03 if arcade is not None else (0.0008 if depth == 0 else 0.0025) / fundus.scale
    turns = rng.normal(0, turn_spread, max_steps)
    kinks = rng.normal(0, 0.0 if depth == 0 else 0.08, max_steps)
    index = len(self.branches)
    branch = _Branch([tuple(start)], [width], contrast, reflex,
                     second_width_delta=int(rng.choice([-1, 0, 1])),
                     second_drops=second_drops or (width < 2.2 * fundus.scale and rng.random() < 0.25),
                     second_extension=[])
    self.branches.append(branch)
    (x, y), curvature, travelled = map(float, start), curvature_target, 0.0
    # Near a branch point the vessels involved share cells: only other vessels are obstacles.
    relatives = {-1, index, parent}
    next_branch_at = (rng.uniform(10, 25) if splits_into_pair else rng.uniform(15, 45)) * fundus.scale
    for turn, kink in zip(turns, kinks):
      if width < min_width:
        break
      if arcade is not None:
        heading += 0.15 * math.remainder(self._arcade_heading(x, y, arcade) - heading, 2 * math.pi) + turn
      else:
        target = curvature_target * math.exp(-travelled / curvature_decay)
        curvature += 0.05 * (target - curvature) + turn
        heading += curvature * step + kink
        if towards_fovea:
          # Macular vessels converge on the fovea.
          to_fovea = math.atan2(fundus.macula[1] - y, fundus.macula[0] - x)
          heading += 0.05 * math.remainder(to_fovea - heading, 2 * math.pi)
      x, y = x + step * math.cos(heading), y + step * math.sin(heading)
      travelled += step
      width *= 1 - step / taper_length
      # Vessels end at the edge of the field of view and at the avascular fovea.
      if not fundus.inside(x, y, margin=2 * fundus.scale):
        return
      if math.hypot(x - fundus.macula[0], y - fundus.macula[1]) < avascular_radius:
        return
      cell = (int(y / self.cell), int(x / self.cell))
      if self._blocked(cell, relatives, x, y, width, travelled):
        return
      self.owner[cell], self.owner_width[cell] = index, width
      branch.points.append((x, y))
      branch.widths.append(width)
      if travelled < next_branch_at:
        continue
      relatives.add(len(self.branches))
      if splits_into_pair:
        # An arcade's artery and vein leave the disc together, then follow their own courses.
        reach = arcade.reach * rng.choice([rng.uniform(0.7, 0.85), rng.uniform(1.15, 1.3)])
        self._grow_trunk((x, y), heading, dataclasses.replace(arcade, reach=reach),
                         is_artery=not is_artery, splits_into_pair=False, parent=index)
        splits_into_pair = False
        next_branch_at = travelled + rng.uniform(20, 50) * fundus.scale
        continue
      if width <= 1.4 * min_width or depth >= 8:
        continue
      # Trunks give off thinner side branches; smaller vessels also split nearly evenly at times,
      # which keeps medium-width vessels common, as in DRIVE.
      if depth > 0 and rng.random() < 0.25:
        ratio = rng.uniform(0.7, 0.9)
      else:
        ratio = rng.uniform(0.4, 0.7) if depth == 0 else rng.uniform(0.5, 0.8)
      child_width = max(width * ratio, 1.15 * min_width)
      side = rng.choice([-1.0, 1.0])
      # Arcade branches towards the macula, leaving before they pass it, converge on the fovea.
      to_macula = fundus.macula - (x, y)
      macula_side = 1.0 if math.cos(heading) * to_macula[1] - math.sin(heading) * to_macula[0] > 0 else -1.0
      before_macula = np.dot(to_macula, self.u_axis) > 0.1 * self.disc_to_macula
      child_towards_fovea = towards_fovea or (arcade is not None and side == macula_side and before_macula)
      child_curvature = 0.0 if child_towards_fovea else side * rng.uniform(0.0, 0.003) / fundus.scale
      self._grow((x, y), heading + side * rng.uniform(0.5, 1.3), child_width,
                 contrast * rng.uniform(0.75, 1.0), arcade=None, curvature_target=child_curvature,
                 depth=depth + 1, parent=index, reflex=False, is_artery=is_artery, splits_into_pair=False,
                 second_drops=branch.second_drops, towards_fovea=child_towards_fovea)
      # Murray's law: the parent narrows so that cubes of the widths are conserved, and is pushed aside.
      width = max((width ** 3 - child_width ** 3) ** (1 / 3), 0.75 * width)
      heading -= side * rng.uniform(0.05, 0.25)
      next_branch_at = travelled + (rng.uniform(20, 50) if depth == 0 else rng.uniform(10, 35)) * fundus.scale
    # The vessel faded out rather than ending at an obstacle: the 2nd observer sometimes traces further.
    if rng.random() < 0.5:
      for turn in rng.normal(0, 0.15, int(rng.uniform(3, 12))):
        heading += turn
        x, y = x + step * math.cos(heading), y + step * math.sin(heading)
        if not fundus.inside(x, y, margin=2 * fundus.scale):
          break
        branch.second_extension.append((x, y))


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


def _draw_vessels(branches: List[_Branch], fundus: _Fundus) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
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


def _background(rng: np.random.Generator, fundus: _Fundus) -> np.ndarray:
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


def _blobs(rng: np.random.Generator, fundus: _Fundus, count: int, radius_range: Tuple[float, float],
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
  fundus = _place_fundus(rng, height, width)
  ys, xs = np.mgrid[0:height, 0:width]
  fov = np.hypot(xs - fundus.centre[0], ys - fundus.centre[1]) < fundus.radius

  label, second_label, darkening = _draw_vessels(_VesselGrower(rng, fundus).grow_trees(), fundus)
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


def _save(pixels: np.ndarray, path: str):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  if pixels.ndim == 3:
    # Lossless like DRIVE's own TIFFs.
    Image.fromarray(pixels, 'RGB').save(path, format='TIFF', compression='tiff_lzw')
  else:
    # A full grey-level palette, so that PIL reads it back as mode L like DRIVE's own GIFs.
    Image.fromarray(pixels, 'L').save(path, format='GIF', optimize=False)


MIN_SIDE = 16   # smaller images have too few pixels for a field of view with vessels in it


def generate(out_dir: str, seed: int = 0, n_train: int = 20, n_test: int = 20,
             height: int = IMAGE_HEIGHT, width: int = IMAGE_WIDTH,
             progress: Optional[Callable[[int, int], None]] = None) -> dict:
  """Writes a synthetic DRIVE into `out_dir`, which must not exist or be empty.

  `progress`, if given, is called as progress(done, total) after each image. Returns a summary with
  the image counts and the vessel fraction inside the field of view (1st_manual, all images).
  """
  if n_train < 0 or n_test < 0 or n_train + n_test == 0:
    raise ValueError(f'need at least one image, got n_train={n_train}, n_test={n_test}')
  if min(height, width) < MIN_SIDE:
    raise ValueError(f'images must be at least {MIN_SIDE}x{MIN_SIDE} pixels, got {width}x{height}')
  out_dir = os.path.abspath(out_dir)
  if os.path.exists(out_dir) and (not os.path.isdir(out_dir) or os.listdir(out_dir)):
    raise FileExistsError(f'{out_dir} already exists and is not an empty folder: refusing to write the '
                          'demo dataset over it (delete it or choose another folder)')
  parent = os.path.dirname(out_dir)
  os.makedirs(parent, exist_ok=True)
  # Build everything in a hidden sibling and rename it into place, so a crash leaves no half dataset.
  staging = tempfile.mkdtemp(prefix=f'.{os.path.basename(out_dir)}.partial-', dir=parent)
  jobs = ([(TRAINING, FIRST_TRAINING_ID + i) for i in range(n_train)]
          + [(TEST, 1 + i) for i in range(n_test)])
  vessel_pixels = fov_pixels = 0
  try:
    for done, (folder, image_id) in enumerate(jobs, start=1):
      image, label, second_label, fov = render(seed, folder, image_id, height, width)
      name = f'{image_id:02d}'
      files = {f'images/{name}_{folder}.tif': image, f'1st_manual/{name}_manual1.gif': label,
               f'mask/{name}_{folder}_mask.gif': fov}
      if folder == TEST:
        files[f'2nd_manual/{name}_manual2.gif'] = second_label
      for relative, pixels in files.items():
        _save(pixels, os.path.join(staging, folder, relative))
      vessel_pixels += int(np.count_nonzero(label))
      fov_pixels += int(np.count_nonzero(fov))
      if progress is not None:
        progress(done, len(jobs))
    os.chmod(staging, 0o755)  # mkdtemp makes it private; the dataset should not be
    if os.path.isdir(out_dir):
      os.rmdir(out_dir)  # checked empty above
    os.rename(staging, out_dir)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  return {'out_dir': out_dir, 'seed': seed, 'n_train': n_train, 'n_test': n_test,
          'height': height, 'width': width, 'vessel_fraction': vessel_pixels / fov_pixels}
