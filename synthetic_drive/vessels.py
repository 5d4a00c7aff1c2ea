"""Geometry of a synthetic fundus and its vessel trees: where the field of view, optic disc and macula
sit, and 3-4 trees (two arcades around the macula, one or two nasal) grown from the optic disc as
branching random walks."""
import dataclasses
import math
from typing import List, Optional, Tuple

import numpy as np

from models.constants import IMAGE_WIDTH



@dataclasses.dataclass
class Fundus:
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
class Branch:
  """One vessel segment between branch points, as the polyline a random walk traced."""
  points: List[Tuple[float, float]]
  widths: List[float]
  contrast: float           # darkening of the green channel at full width
  reflex: bool              # shows a central light reflex (thick arteries)
  second_width_delta: int   # the 2nd observer draws it this many pixels wider (-1, 0 or +1)
  second_drops: bool        # the 2nd observer misses it (and so everything that branches off it)
  second_extension: List[Tuple[float, float]]  # the 2nd observer traces the tip a bit further


def place_fundus(rng: np.random.Generator, height: int, width: int) -> Fundus:
  scale = min(height, width) / IMAGE_WIDTH
  # DRIVE's field of view is a disc about 0.95 of the width across, centred with a few pixels' play.
  centre = np.array([width / 2, height / 2]) + rng.normal(0, 3 * scale, 2)
  radius = 0.475 * min(height, width) * rng.uniform(0.98, 1.01)
  # Left and right eyes: the optic disc sits on either side, the macula near the centre.
  side = rng.choice([-1.0, 1.0])
  optic_disc = centre + np.array([side * radius * rng.uniform(0.62, 0.72), rng.normal(0, 0.06 * radius)])
  macula = centre + np.array([-side * radius * rng.uniform(0.0, 0.08), rng.normal(0, 0.05 * radius)])
  return Fundus(height, width, scale, centre, radius, optic_disc, rng.uniform(30, 38) * scale, macula)


@dataclasses.dataclass(frozen=True)
class _Arcade:
  """Course of a major temporal vessel around the macula: v = side * reach * sqrt(tanh(u / d)).

  (u, v) are optic-disc-centred coordinates with u pointing at the macula and d the disc-to-macula
  distance. Near the disc this is the classic parabolic arcade model (vessels leave the disc at right
  angles); past the macula the arcade levels off at `reach` pixels from the axis, as in DRIVE.
  """
  side: float
  reach: float


class VesselGrower:
  """Grows vessel trees as random walks with smoothly varying direction, branching recursively.

  Arcade trunks steer along their course; every other vessel follows a random curvature. A coarse
  occupancy grid remembers which branch passed where, so that thin vessels stop when they run into
  another vessel, as in real retinas, instead of weaving an unrealistic mesh.
  """

  def __init__(self, rng: np.random.Generator, fundus: Fundus):
    self.rng, self.fundus = rng, fundus
    self.branches: List[Branch] = []
    self.cell = 5.0 * fundus.scale
    grid = (int(fundus.height / self.cell) + 1, int(fundus.width / self.cell) + 1)
    self.owner = np.full(grid, -1, np.int32)
    self.owner_width = np.zeros(grid, np.float32)
    axis = fundus.macula - fundus.optic_disc
    self.disc_to_macula = float(np.hypot(*axis))
    self.u_axis = axis / self.disc_to_macula
    self.v_axis = np.array([-self.u_axis[1], self.u_axis[0]])

  def grow_trees(self) -> List[Branch]:
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
    branch = Branch([tuple(start)], [width], contrast, reflex,
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
