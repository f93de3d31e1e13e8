"""Views framed on the anatomy (`views.framing='anatomy'`), as a collimated radiograph.

With `views.framing='cube'` every view's field of view fits the volume's whole cube and is
centred on the isocentre's ray, so a limb fills a small part of the image. Anatomy framing
fits each view's field of view to the projection of the anatomy's box instead, with a margin
and a random zoom and shift. The framing is part of the view's geometry (the sample parameters
`detector_mm` and `detector_offset`, `sampler.GEOMETRY_KEYS`), so images and labels rendered
from it stay exact.

Notation (mm; frames and signs as in `jaxcorr.projection.geometry`):
  box        [2, 3]  (lo, hi) world box of a volume's anatomy, before the sample's translation
             (`anatomy_box`): the voxels with HU >= `views.framing_hu` (default 300: bone),
             counted only in the k^3 blocks (k = `labels.patch`) holding at least
             `MIN_BLOCK_FRACTION` of such voxels, so lone noisy voxels do not widen it.
  (u, v)     where a ray meets the detector plane, in the rotating frame (x', y'), i.e. RTK's
             detector coordinates with no projection offset.
  [u_lo, u_hi] x [v_lo, v_hi]   per view, the bounding box of the projections of the box's 8
             corners (with the translation, the orbit and the angles of the sample).
  H, W       detector rows and columns; s the pixel spacing (the field of view is W s x H s).

Per view, with a zoom z = zoom_lo + (zoom_hi - zoom_lo) r, r ~ U(0, 1), and a shift
(a, b) = shift (2 q - 1), q ~ U(0, 1)^2:
  s               = max((u_hi - u_lo) / W, (v_hi - v_lo) / H) (1 + margin) z
  detector_mm     = s max(H, W)                      (`views_from_params`: spacing = this / max)
  detector_offset = ((u_lo + u_hi) / 2 + a W s, (v_lo + v_hi) / 2 + b H s)
so the detector's centre is the box's projected centre moved by a fraction a (b) of the field
of view. Given the cube's edge, s is at least s_cube / `max_zoom`, with s_cube the spacing of
cube framing (`geometry.fit_pixel_spacing`): a small anatomy is not magnified without bound, so
a coarse voxel's footprint stays within `label_window` patches (the sparse labels' tile, exact
for it: footprints grow as 1 / s). The box's projection stays inside the detector when
  shift <= (1 - 1 / ((1 + margin) zoom_lo)) / 2      (0.045 for margin 0.1, zoom_lo 1)
`views.fov_scale` still scales the field of view afterwards, about the detector's centre.

`frame` is JAX (jittable, vmappable) and is the one implementation used by both recipe paths:
the host (`samples.RecipeMaker`, with NumPy uniforms from Grain's rng) and the device
(`device_recipes`, with `jax.random` uniforms), so both draw the same distribution.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxcorr.data import sampler
from jaxcorr.projection import geometry, labels

# `views.framing`: 'cube' (the whole cube, centred) | 'anatomy' (this module).
FRAMINGS = ("cube", "anatomy")
# A k^3 block counts towards the box when at least this fraction of its voxels is anatomy.
MIN_BLOCK_FRACTION = 0.01


@dataclasses.dataclass(frozen=True)
class AnatomyFit:
  """The margin and jitter of anatomy framing (`views.framing_*`; formulas in the docstring).

  Attributes:
    margin: the field of view is (1 + margin) times the projected box's longer side (>= 0).
    zoom: (lo, hi), the field of view is further times z ~ U(lo, hi) (0 < lo <= hi).
    shift: the detector's centre moves by up to this fraction of the field of view (>= 0).
    max_zoom: the field of view is at least the cube framing's divided by this (>= 1).
  """

  margin: float = 0.1
  zoom: tuple[float, float] = (1.0, 1.3)
  shift: float = 0.04
  max_zoom: float = 2.0

  @property
  def label_window(self) -> int:
    """The sparse labels' tile (patches) for views magnified up to `max_zoom` times the cube
    framing's: `labels.DEFAULT_WINDOW` scaled, plus one for a footprint straddling a border."""
    return int(np.ceil(labels.DEFAULT_WINDOW * self.max_zoom)) + 1


def anatomy_box(hu: np.ndarray, origin, spacing, *, hu_min: float, patch: int) -> np.ndarray:
  """The world box (lo, hi) of a cube's anatomy, [2, 3] float32 mm (module docstring).

  Voxel centres are origin + index * spacing; the box runs from the first kept voxel's lower
  face to the last one's upper face on each axis. No anatomy: the whole cube.

  Args:
    hu: [X, Y, Z] HU cube (`preprocess.to_cube`).
    origin, spacing: (3,) world position of voxel (0, 0, 0) and voxel size, mm.
    hu_min: anatomy is HU >= hu_min.
    patch: block edge k in voxels (`labels.patch`) for the noise filter.
  """
  mask = np.asarray(hu) >= hu_min
  shape = mask.shape
  padded = np.pad(mask, [(0, -n % patch) for n in shape])
  c = [n // patch for n in padded.shape]
  blocks = padded.reshape(c[0], patch, c[1], patch, c[2], patch)
  keep = blocks.mean(axis=(1, 3, 5)) >= MIN_BLOCK_FRACTION
  kept = (blocks & keep[:, None, :, None, :, None]).reshape(padded.shape)
  origin, spacing = np.asarray(origin, np.float64), np.asarray(spacing, np.float64)
  lo, hi = np.zeros(3), np.asarray(shape, np.float64) - 1
  if kept.any():
    for axis in range(3):
      idx = np.flatnonzero(kept.any(axis=tuple(a for a in range(3) if a != axis)))
      lo[axis], hi[axis] = idx[0], idx[-1]
  return np.stack([origin + (lo - 0.5) * spacing, origin + (hi + 0.5) * spacing]).astype(
      np.float32)


def corners(box) -> jnp.ndarray:
  """The 8 corners of a box (lo, hi) [2, 3]: [8, 3]."""
  box = jnp.asarray(box, jnp.float32)
  pick = jnp.asarray([[(i >> a) & 1 for a in range(3)] for i in range(8)])   # [8, 3] of 0/1
  return jnp.where(pick == 1, box[1], box[0])


def detector_box(params: dict, box, *, detector_size: tuple[int, int],
                 orbit: str = "rtk") -> tuple[jnp.ndarray, jnp.ndarray]:
  """Per view, the (u, v) box of the anatomy box's projection: (lo [N, 2], hi [N, 2]), mm.

  The views are those of `params` (`views_from_params`) with 1 mm pixels and no offset, so a
  pixel index c is u = c - (W - 1) / 2 (and v likewise).
  """
  h, w = detector_size
  sid = jnp.asarray(params["sid"], jnp.float32)
  centred = {**params, "detector_mm": jnp.full_like(sid, max(h, w)),
             "detector_offset": jnp.zeros(sid.shape + (2,), jnp.float32)}
  views = sampler.views_from_params(centred, extent_mm=1.0, detector_size=(h, w), orbit=orbit)
  mats = geometry.views_to_matrices(views)                                    # [N, 3, 4]
  pts = corners(box)
  hom = jnp.concatenate([pts, jnp.ones_like(pts[:, :1])], -1)                 # [8, 4]
  p = jnp.einsum("nij,aj->nai", mats, hom)                                    # [N, 8, 3]
  uv = p[..., :2] / p[..., 2:] - jnp.asarray([(w - 1) / 2, (h - 1) / 2], jnp.float32)
  return uv.min(axis=1), uv.max(axis=1)


def frame(params: dict, box, zoom_u, shift_u, *, detector_size: tuple[int, int],
          orbit: str = "rtk", fit: AnatomyFit = AnatomyFit(), extent_mm=None) -> dict:
  """`params` with `detector_mm` and `detector_offset` framing the anatomy (module docstring).

  Args:
    params: one sample's `GEOMETRY_KEYS` (NumPy or JAX, N views).
    box: [2, 3] the volume's anatomy box (`anatomy_box`), before the translation.
    zoom_u: [N] U(0, 1) draws for the zoom; shift_u: [N, 2] U(0, 1) draws for the shift
      (`uniforms_numpy` or `uniforms_jax`).
    detector_size: (H, W); orbit: 'rtk' | 'patient' (`views.orbit`); fit: margin and jitter.
    extent_mm: the volume's cube edge, for the `max_zoom` bound (None: no bound).

  Returns:
    A new dict; the other parameters unchanged (as JAX arrays).
  """
  h, w = detector_size
  lo, hi = detector_box(params, box, detector_size=(h, w), orbit=orbit)
  size, centre = hi - lo, (lo + hi) / 2
  zoom = fit.zoom[0] + (fit.zoom[1] - fit.zoom[0]) * jnp.asarray(zoom_u, jnp.float32)
  spacing = jnp.maximum(size[:, 0] / w, size[:, 1] / h) * (1 + fit.margin) * zoom       # [N]
  if extent_mm is not None:
    cube = geometry.fit_pixel_spacing(extent_mm, jnp.asarray(params["sid"], jnp.float32),
                                      jnp.asarray(params["sdd"], jnp.float32), (h, w))
    spacing = jnp.maximum(spacing, cube / fit.max_zoom)
  fov = spacing[:, None] * jnp.asarray([w, h], jnp.float32)                              # [N, 2]
  offset = centre + fit.shift * (2 * jnp.asarray(shift_u, jnp.float32) - 1) * fov
  return {**{k: jnp.asarray(v, jnp.float32) for k, v in params.items()},
          "detector_mm": spacing * max(h, w), "detector_offset": offset}


def uniforms_numpy(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
  """The framing's draws from Grain's rng: zoom_u [N], shift_u [N, 2], U(0, 1)."""
  return rng.random(n).astype(np.float32), rng.random((n, 2)).astype(np.float32)


def uniforms_jax(key, n: int) -> tuple[jnp.ndarray, jnp.ndarray]:
  """The same draws from a JAX key (device recipes)."""
  k_zoom, k_shift = jax.random.split(key)
  return jax.random.uniform(k_zoom, (n,)), jax.random.uniform(k_shift, (n, 2))
