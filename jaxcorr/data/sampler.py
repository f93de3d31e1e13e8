"""A seeded sampler of N-view cone-beam geometries: the paper's data variation.

Each view is an RTK circular-geometry projection (see `jaxcorr.projection.geometry`) whose
parameters are drawn independently per view, as the authors' generator does:

  gantry        the first rotation axis. A nominal angle is picked from `gantry_modes`
                (0/90/180/270 deg) with probabilities `gantry_probs` (0.4/0.3/0.2/0.1),
                then Gaussian noise of std `gantry_spread` deg is added. Canonical AP/lateral
                acquisitions dominate; oblique ones still occur.
  out_of_plane  the second rotation axis: `out_of_plane_nominal` + N(0, `out_of_plane_spread`).
  sid           source to isocentre, uniform in `sid_range` (1000-1100 mm).
  idd           isocentre to detector, uniform in `idd_range` (800-1200 mm); sdd = sid + idd.
and, shared by the views of one sample (the patient does not move between views):
  translation   volume translation, uniform in [-max_translation, +max_translation] mm per axis.

Sources of the defaults: the gantry modes and probabilities, the sid and idd ranges and the
+-50 mm translations are those the issue quotes from the authors' generator; the two spreads
(10 and 5 deg) are jaxcorr's choice (the paper gives no figure) and are config fields.

The sampler is NumPy and cheap: it runs in the input pipeline's workers with the rng Grain
hands to `random_map`. Rendering the views and labels from these parameters is done by JAX
kernels (`jaxcorr.data.render`), on the host or on the accelerator.
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

  def sample(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One sample's parameters: float32 `gantry`, `out_of_plane`, `sid`, `sdd` [N]; `translation` [3]."""
    n = self.n_views
    modes = rng.choice(np.asarray(self.gantry_modes), size=n, p=np.asarray(self.gantry_probs))
    gantry = modes + rng.normal(0.0, self.gantry_spread, n)
    oop = self.out_of_plane_nominal + rng.normal(0.0, self.out_of_plane_spread, n)
    sid = rng.uniform(*self.sid_range, n)
    sdd = sid + rng.uniform(*self.idd_range, n)
    t = rng.uniform(-self.max_translation, self.max_translation, 3)
    return {"gantry": np.mod(gantry, 360.0).astype(np.float32),
            "out_of_plane": oop.astype(np.float32), "sid": sid.astype(np.float32),
            "sdd": sdd.astype(np.float32), "translation": t.astype(np.float32)}


def views_from_params(params, *, extent_mm: float, detector_size: tuple[int, int],
                      fov_scale: float = 1.0, orbit: str = "rtk") -> geometry.Views:
  """The `Views` of one sample's parameters (jittable; fields may be traced).

  The pixel spacing of each view is set so that the volume's cube (edge `extent_mm`) fits the
  detector at that view's magnification (`geometry.fit_pixel_spacing`) times `fov_scale`
  (below 1 zooms in). `orbit` is 'rtk' (gantry about world +y) or 'patient' (about the long
  axis, `geometry.LPS_FROM_IEC`).
  """
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  h, w = detector_size
  sid, sdd = params["sid"], params["sdd"]
  spacing = fov_scale * geometry.fit_pixel_spacing(extent_mm, sid, sdd, (h, w))
  views = geometry.circular_views(
      sid=sid, sdd=sdd, gantry_angles=params["gantry"],
      out_of_plane_angles=params["out_of_plane"], detector_size=(h, w),
      pixel_spacing=jnp.stack([spacing, spacing], -1))
  rotation = geometry.LPS_FROM_IEC if orbit == "patient" else None
  return geometry.transform_views(views, rotation, -params["translation"])
