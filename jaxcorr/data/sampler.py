"""Seeded samplers of N-view cone-beam geometries: the paper's data variation (`views.preset`).

Each view is an RTK circular-geometry projection (see `jaxcorr.projection.geometry`); a sample's
parameters (`GEOMETRY_KEYS`, all float32) are
  gantry, out_of_plane, in_plane [N]  RTK's gantryAngle, outOfPlaneAngle, inPlaneAngle, degrees
  sid, sdd [N]                        source to isocentre and to detector, mm
  detector_mm [N]                     the detector's side, mm; 0 = the spacing that fits the cube
                                      at that view's magnification (`fit_pixel_spacing`)
  detector_offset [N, 2]              RTK's projection offset (px, py), mm: the detector's centre
                                      sits at (px, py) in the rotating frame; 0 = centred on the
                                      isocentre's ray (records written before it lack the key:
                                      read as 0). The samplers draw 0; anatomy framing sets it
                                      with `detector_mm` (`jaxcorr.data.anatomy_framing`)
  translation [3]                     volume translation, world mm (the patient does not move
                                      between the views of a sample)

`ViewSampler` (preset 'jaxcorr', drawn per view):
  gantry        a nominal angle from `gantry_modes` (0/90/180/270 deg) with probabilities
                `gantry_probs` (0.4/0.3/0.2/0.1), plus Gaussian noise of std `gantry_spread`.
  out_of_plane  `out_of_plane_nominal` + N(0, `out_of_plane_spread`); in_plane 0.
  sid           uniform in `sid_range` (1000-1100 mm); sdd = sid + uniform in `idd_range`.
  translation   uniform in [-max_translation, +max_translation] mm per axis.
The gantry modes, the ranges and the +-50 mm translations are those quoted from the authors'
generator; the two spreads (10 and 5 deg) are jaxcorr's choice, and views never roll.

`AuthorsSampler` (preset 'authors') draws the authors' distribution (their `create_csv.py` and
`utils_drr_fast.py`): per view a mode m uniform in {0, 1, 2} and
  m = 0:  a = (k + N(0, 45)) mod 360,         b = clip(N(180, 15), 150, 210)
  m = 1:  a = clip(N(0, 15), -20, 20) mod 360, b = clip(N(180, 45), 0, 360)
  m = 2:  a = (k + N(0, 45)) mod 360,         b = clip(N(180, 60), 0, 360)
with the key angle k in {0, 90, 180, 270} w.p. {0.4, 0.3, 0.2, 0.1}, then RTK's
AddProjection(sid, sid + idd, gantry 90, 0, 0, out_of_plane a + 90, in_plane 90 - b), sid an
integer uniform in 1000..1100 and idd in 800..1200; and per sample one translation along the
volume array's last axis (world x) of 0, -U{1..50} or +U{1..50} voxels, each w.p. 1/3. Lengths
are in the authors' voxels: their cube is 256 voxels of 1 mm and their detector 256 pixels of
2 mm, so with u = cube edge / 256 (mm) the views here have sid u, (sid + idd) u, a detector
side of 512 u (at any `views.detector_size`) and a translation of t u mm. Their shift crops
what leaves the cube; here the whole volume moves (air padding, mostly the same). The draws, in
order, from the rng: m [N], k [N], N(0, 1) for a [N], N(0, 1) for b [N], sid [N], idd [N], the
translation's mode and size.

The samplers are NumPy and cheap: they run in the input pipeline's workers with the rng Grain
hands to `random_map`. Rendering the views and labels from these parameters is done by JAX
kernels (`jaxcorr.data.samples`), on the host or on the accelerator.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxcorr.projection import geometry


@dataclasses.dataclass(frozen=True)
class ViewSampler:
  """Draws the parameters of N views; fields are `config.views` keys."""

  n_views: int = 2
  gantry_modes: tuple[float, ...] = (0.0, 90.0, 180.0, 270.0)
  gantry_probs: tuple[float, ...] = (0.4, 0.3, 0.2, 0.1)
  gantry_spread: float = 10.0
  out_of_plane_nominal: float = 0.0
  out_of_plane_spread: float = 5.0
  sid_range: tuple[float, float] = (1000.0, 1100.0)
  idd_range: tuple[float, float] = (800.0, 1200.0)
  max_translation: float = 50.0

  def __post_init__(self):
    if self.n_views < 2:
      raise ValueError(f"views.n_views={self.n_views}: need at least 2 views for correspondences")
    if len(self.gantry_modes) != len(self.gantry_probs):
      raise ValueError(f"views.gantry_modes {self.gantry_modes} and views.gantry_probs "
                       f"{self.gantry_probs} must have the same length")
    if not np.isclose(sum(self.gantry_probs), 1.0) or min(self.gantry_probs) < 0:
      raise ValueError(f"views.gantry_probs={self.gantry_probs} must be >= 0 and sum to 1")
    for name in ("sid_range", "idd_range"):
      lo, hi = getattr(self, name)
      if not 0 < lo <= hi:
        raise ValueError(f"views.{name}={(lo, hi)}: need 0 < low <= high (mm)")
    if self.max_translation < 0:
      raise ValueError(f"views.max_translation={self.max_translation} must be >= 0 (mm)")

  def sample(self, rng: np.random.Generator, extent_mm: float = 0.0) -> dict[str, np.ndarray]:
    """One sample's parameters (`GEOMETRY_KEYS`); `extent_mm` is unused (lengths are mm)."""
    del extent_mm
    n = self.n_views
    modes = rng.choice(np.asarray(self.gantry_modes), size=n, p=np.asarray(self.gantry_probs))
    gantry = modes + rng.normal(0.0, self.gantry_spread, n)
    oop = self.out_of_plane_nominal + rng.normal(0.0, self.out_of_plane_spread, n)
    sid = rng.uniform(*self.sid_range, n)
    sdd = sid + rng.uniform(*self.idd_range, n)
    t = rng.uniform(-self.max_translation, self.max_translation, 3)
    return _params(gantry=np.mod(gantry, 360.0), out_of_plane=oop, in_plane=np.zeros(n),
                   sid=sid, sdd=sdd, detector_mm=np.zeros(n), detector_offset=np.zeros((n, 2)),
                   translation=t)


# The authors' generator, in their voxels (see the module docstring).
KEY_ANGLES = (0.0, 90.0, 180.0, 270.0)
KEY_PROBS = (0.4, 0.3, 0.2, 0.1)
AUTHORS_VOXELS = 256          # their cube edge, in voxels of 1 mm
AUTHORS_DETECTOR = 512.0      # their detector side: 256 pixels of 2 mm


@dataclasses.dataclass(frozen=True)
class AuthorsSampler:
  """The authors' view distribution (preset 'authors'; formulas in the module docstring)."""

  n_views: int = 2

  def __post_init__(self):
    if self.n_views < 2:
      raise ValueError(f"views.n_views={self.n_views}: need at least 2 views for correspondences")

  def sample(self, rng: np.random.Generator, extent_mm: float) -> dict[str, np.ndarray]:
    """One sample's parameters (`GEOMETRY_KEYS`) for a cube of edge `extent_mm`."""
    n = self.n_views
    m = rng.integers(0, 3, n)
    key = rng.choice(np.asarray(KEY_ANGLES), size=n, p=np.asarray(KEY_PROBS))
    za, zb = rng.standard_normal(n), rng.standard_normal(n)
    sid = rng.integers(1000, 1101, n)
    idd = rng.integers(800, 1201, n)
    t_mode, t_size = rng.integers(0, 3), rng.integers(1, 51)
    a = np.mod(np.where(m == 1, np.clip(15.0 * za, -20.0, 20.0), key + 45.0 * za), 360.0)
    b = np.select([m == 0, m == 1], [np.clip(180.0 + 15.0 * zb, 150.0, 210.0),
                                     np.clip(180.0 + 45.0 * zb, 0.0, 360.0)],
                  np.clip(180.0 + 60.0 * zb, 0.0, 360.0))
    t = (0, -t_size, t_size)[t_mode]
    u = float(extent_mm) / AUTHORS_VOXELS
    return _params(gantry=np.full(n, 90.0), out_of_plane=a + 90.0, in_plane=90.0 - b,
                   sid=sid * u, sdd=(sid + idd) * u, detector_mm=np.full(n, AUTHORS_DETECTOR * u),
                   detector_offset=np.zeros((n, 2)), translation=np.array([t * u, 0.0, 0.0]))


# `views.preset` -> its sampler class.
PRESETS = {"jaxcorr": ViewSampler, "authors": AuthorsSampler}
GEOMETRY_KEYS = ("gantry", "out_of_plane", "in_plane", "sid", "sdd", "detector_mm",
                 "detector_offset", "translation")


def _params(**arrays) -> dict[str, np.ndarray]:
  return {k: np.asarray(arrays[k], np.float32) for k in GEOMETRY_KEYS}


def views_from_params(params, *, extent_mm: float, detector_size: tuple[int, int],
                      fov_scale: float = 1.0, orbit: str = "rtk") -> geometry.Views:
  """The `Views` of one sample's parameters (jittable; fields may be traced).

  The pixel spacing of each view is `detector_mm` / max(H, W) where `detector_mm` > 0, else
  the spacing at which the volume's cube (edge `extent_mm`) fits the detector at that view's
  magnification (`geometry.fit_pixel_spacing`); times `fov_scale` (below 1 zooms in, about
  the detector's centre). The detector's centre sits at RTK's projection offset
  `detector_offset` ([N, 2] mm, rotating frame). `orbit` is 'rtk' (gantry about world +y) or
  'patient' (about the long axis, `geometry.LPS_FROM_IEC`). `in_plane`, `detector_mm` and
  `detector_offset` may be absent (0).
  """
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  h, w = detector_size
  sid, sdd = params["sid"], params["sdd"]
  given = jnp.asarray(params.get("detector_mm", 0.0), jnp.float32) / max(h, w)
  fit = geometry.fit_pixel_spacing(extent_mm, sid, sdd, (h, w))
  spacing = fov_scale * jnp.where(given > 0, given, fit)
  views = geometry.circular_views(
      sid=sid, sdd=sdd, gantry_angles=params["gantry"],
      out_of_plane_angles=params["out_of_plane"],
      in_plane_angles=params.get("in_plane", 0.0),
      projection_offset=params.get("detector_offset", 0.0), detector_size=(h, w),
      pixel_spacing=jnp.stack([spacing, spacing], -1))
  rotation = geometry.LPS_FROM_IEC if orbit == "patient" else None
  return geometry.transform_views(views, rotation, -params["translation"])
