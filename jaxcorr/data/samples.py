"""Training samples: host-side recipes (volume + view parameters + seed) and their rendering.

A sample is made in two steps so that the expensive one can run on the accelerator:

  recipe (host, NumPy, in Grain's `random_map` with its per-record rng)
      volume      int32 []      index into the `VolumeBank`
      gantry, out_of_plane, in_plane, sid, sdd, detector_mm   float32 [N]   view parameters
      detector_offset   float32 [N, 2]   (`sampler.GEOMETRY_KEYS`, drawn by the `views.preset`
                  sampler, framed by `views.framing`)
      translation float32 [3]   volume translation, mm
      seed        uint32 []     seeds every later random choice (augmentations)
      rejected    int32 []      views drawn and rejected for seeing mostly air (logged)
  rendering (JAX, jitted, vmapped over the batch; `render_batch`)
      views       float32 [B, N, H, W]   DRR line integrals
      corr        float32 [B, P, L, L]   correspondence labels, pairs in `labels.pair_indices`

Framing: with `Framing.anatomy` set (`views.framing='anatomy'`), each drawn sample's
`detector_mm` and `detector_offset` are then set to frame the volume's anatomy box
(`anatomy_framing.frame`, after the sampler's draws, from the same rng); else the views frame
the whole cube (the sampler's own `detector_mm`, no offset).

Rejection: a view is kept when the anatomy (the coarse voxels above the label threshold)
projects onto at least `min_coverage` of the patches of its (framed) view; otherwise the whole
sample is redrawn, at most `max_tries` times (the last draw is kept and counted).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxcorr.data import anatomy_framing, sampler as sampler_lib
from jaxcorr.projection import drr, geometry, labels

RECIPE_KEYS = ("volume",) + sampler_lib.GEOMETRY_KEYS + ("seed", "rejected")


@dataclasses.dataclass(frozen=True)
class Framing:
  """How a sample's views are framed; fields are `config.views` / `config.labels` keys.

  `anatomy`: None frames the whole cube (`views.framing='cube'`); an `AnatomyFit` frames each
  view on the volume's anatomy box (`views.framing='anatomy'`, `anatomy_framing`).
  """

  detector_size: tuple[int, int] = (256, 256)
  patch: int = 16
  fov_scale: float = 1.0
  orbit: str = "rtk"
  anatomy: anatomy_framing.AnatomyFit | None = None


def frame(params: dict, box, zoom_u, shift_u, framing: Framing, extent=None) -> dict:
  """`params` framed on the anatomy `box` as `framing.anatomy` says (`anatomy_framing.frame`;
  `extent`, the cube's edge in mm, bounds the zoom)."""
  return anatomy_framing.frame(params, box, zoom_u, shift_u,
                               detector_size=tuple(framing.detector_size), orbit=framing.orbit,
                               fit=framing.anatomy, extent_mm=extent)


_frame_jit = jax.jit(frame, static_argnames=("framing",))


@dataclasses.dataclass(frozen=True)
class Projector:
  """Which kernels render a sample (static under jit): `config.drr` and `config.labels`.

  Attributes:
    method: the DRR kernel, 'clipped' | 'dense' (`drr.project`; 'auto' is resolved before,
      `from_config.projector`).
    ray_batch: rays per marching group (clipped) or per chunk (dense); None = the kernel's own.
    label_method: the labels' path, 'sparse' | 'dense' (`labels.correspondence`).
  """

  method: str = "clipped"
  ray_batch: int | None = None
  label_method: str = "sparse"


def _views(params, extent, framing: Framing) -> geometry.Views:
  return sampler_lib.views_from_params(params, extent_mm=extent,
                                       detector_size=tuple(framing.detector_size),
                                       fov_scale=framing.fov_scale, orbit=framing.orbit)


@functools.partial(jax.jit, static_argnames=("framing",))
def _coverage(points, count, params, extent, framing: Framing):
  """Fraction of each view's patches hit by the first `count` anatomy points, [N]."""
  views = _views(params, extent, framing)
  h = framing.detector_size[0] // framing.patch
  w = framing.detector_size[1] // framing.patch
  mats = geometry.views_to_matrices(geometry.coarsen(views, framing.patch))   # [N, 3, 4]
  hom = jnp.concatenate([points, jnp.ones_like(points[:, :1])], -1)            # [A, 4]
  p = jnp.einsum("nij,aj->nai", mats, hom)
  col = jnp.round(p[..., 0] / p[..., 2]).astype(jnp.int32)
  row = jnp.round(p[..., 1] / p[..., 2]).astype(jnp.int32)
  ok = ((jnp.arange(points.shape[0]) < count)[None] & (p[..., 2] > 0)
        & (row >= 0) & (row < h) & (col >= 0) & (col < w))
  flat = jnp.where(ok, row * w + col, h * w)
  hit = jax.vmap(lambda f: jnp.zeros(h * w + 1, bool).at[f].set(True)[:-1])(flat)
  return hit.mean(axis=-1)


def anatomy_arrays(anatomy: list) -> tuple[np.ndarray, np.ndarray]:
  """The anatomy points of each volume padded to one power-of-two count: (points [V, A, 3],
  counts [V]), so the coverage check compiles once."""
  size = max(1, max(len(a) for a in anatomy))
  size = 1 << (size - 1).bit_length()
  points = np.zeros((len(anatomy), size, 3), np.float32)
  counts = np.zeros(len(anatomy), np.int32)
  for i, a in enumerate(anatomy):
    points[i, :len(a)] = a
    counts[i] = len(a)
  return points, counts


class RecipeMaker:
  """Grain `random_map` transform: {'volume': i} + rng -> a recipe (see the module docstring)."""

  def __init__(self, view_sampler: sampler_lib.ViewSampler | sampler_lib.AuthorsSampler,
               anatomy: list, extent: np.ndarray,
               framing: Framing, *, min_coverage: float = 0.02, max_tries: int = 10,
               anatomy_box: np.ndarray | None = None):
    if framing.anatomy is not None and anatomy_box is None:
      raise ValueError("views.framing='anatomy' needs the volumes' anatomy boxes "
                       "(VolumeBank.anatomy_box)")
    self.sampler = view_sampler
    self.framing = framing
    self.extent = np.asarray(extent, np.float32)
    self.anatomy_box = None if anatomy_box is None else np.asarray(anatomy_box, np.float32)
    self.min_coverage = min_coverage
    self.max_tries = max(1, int(max_tries))
    self.points, self.counts = anatomy_arrays(anatomy)

  def coverage(self, volume: int, params: dict) -> np.ndarray:
    # This process's own CPU device: with several processes jax.devices() lists them all.
    with jax.default_device(jax.local_devices(backend="cpu")[0]):
      return np.asarray(_coverage(self.points[volume], self.counts[volume], params,
                                  self.extent[volume], self.framing))

  def draw(self, volume: int, rng: np.random.Generator) -> dict:
    """One sample's parameters from the sampler, framed (`views.framing`); no rejection."""
    params = self.sampler.sample(rng, float(self.extent[volume]))
    if self.framing.anatomy is None:
      return params
    zoom_u, shift_u = anatomy_framing.uniforms_numpy(rng, len(params["sid"]))
    with jax.default_device(jax.local_devices(backend="cpu")[0]):
      framed = _frame_jit(params, self.anatomy_box[volume], zoom_u, shift_u, self.framing,
                          self.extent[volume])
      return {k: np.asarray(v, np.float32) for k, v in framed.items()}

  def __call__(self, record, rng: np.random.Generator) -> dict:
    volume = int(record["volume"] if isinstance(record, dict) else record)
    for tries in range(self.max_tries):
      params = self.draw(volume, rng)
      if self.min_coverage <= 0 or self.coverage(volume, params).min() >= self.min_coverage:
        break
    return {"volume": np.int32(volume), **params,
            "seed": np.uint32(rng.integers(0, 2 ** 32, dtype=np.uint64)),
            "rejected": np.int32(tries)}


def _recipe_views(bank: dict, recipe: dict, framing: Framing):
  params = {k: recipe[k] for k in sampler_lib.GEOMETRY_KEYS}
  return _views(params, bank["extent"][recipe["volume"]], framing)


def render_images(bank: dict, recipe: dict, *, framing: Framing,
                  projector: Projector = Projector()) -> jnp.ndarray:
  """The DRRs of one recipe from the device-resident bank: [N, H, W]."""
  i = recipe["volume"]
  h, w = framing.detector_size
  return drr.project(bank["images"][i], bank["origin"][i], bank["spacing"][i],
                     _recipe_views(bank, recipe, framing), height=h, width=w, padded=True,
                     box=bank["box"][i], method=projector.method,
                     batch_size=projector.ray_batch)


def render_labels(bank: dict, recipe: dict, *, framing: Framing, threshold: float,
                  projector: Projector = Projector()) -> jnp.ndarray:
  """The correspondence labels of one recipe: [P, L, L]."""
  i = recipe["volume"]
  h, w = framing.detector_size
  c_origin, c_spacing = labels.coarse_grid(bank["origin"][i], bank["spacing"][i], framing.patch)
  return labels.correspondence(bank["weights"][i], c_origin, c_spacing,
                               _recipe_views(bank, recipe, framing), height=h, width=w,
                               k=framing.patch, threshold=threshold,
                               method=projector.label_method, window=label_window(framing))


def label_window(framing: Framing) -> int:
  """The sparse labels' tile for these views: the default, or anatomy framing's wider one."""
  return labels.DEFAULT_WINDOW if framing.anatomy is None else framing.anatomy.label_window


def render_one(bank: dict, recipe: dict, *, framing: Framing, threshold: float,
               projector: Projector = Projector()) -> tuple[jnp.ndarray, jnp.ndarray]:
  """Renders one recipe from the device-resident bank: (views [N, H, W], corr [P, L, L])."""
  return (render_images(bank, recipe, framing=framing, projector=projector),
          render_labels(bank, recipe, framing=framing, threshold=threshold,
                        projector=projector))


@functools.partial(jax.jit, static_argnames=("framing", "threshold", "projector"))
def render_batch(bank: dict, recipes: dict, *, framing: Framing, threshold: float,
                 projector: Projector = Projector()) -> tuple[jnp.ndarray, jnp.ndarray]:
  """`render_one` over a batch of recipes: views [B, N, H, W], corr [B, P, L, L].

  Labels are vmapped. With the clipped marcher the DRRs go one sample after another
  (`lax.map`), since its loops run as long as their longest ray, which a vmapped batch would
  share (measured 1.3x faster at the paper's size on a CPU); the dense kernel, whose work is
  the same for every sample, is vmapped over the batch (one program for the accelerator).
  """
  one = functools.partial(render_images, bank, framing=framing, projector=projector)
  images = (jax.lax.map(one, recipes) if projector.method == "clipped"
            else jax.vmap(one)(recipes))
  corr = jax.vmap(lambda r: render_labels(bank, r, framing=framing, threshold=threshold,
                                          projector=projector))(recipes)
  return images, corr


def bank_arrays(bank, dtype=jnp.float32) -> dict:
  """The bank's arrays as device arrays, ready for `render_batch`; images in `dtype`, padded
  once for the projector (`drr.pad`) rather than at every sample, with the box of each
  image's voxels that differ from its background (`drr.content_box`), found once too, and the
  anatomy points (`anatomy_arrays`: `points`, `counts`) and boxes (`anatomy_box` [V, 2, 3])
  for recipes drawn on the device."""
  # Padded on the host into one preallocated array, then moved once: no second full copy.
  k, x, y, z = bank.images.shape
  p0 = drr.PAD[0]
  padded = np.zeros((k,) + drr.padded_shape((x, y, z)), np.float32)
  padded[:, p0:p0 + x, p0:p0 + y, p0:p0 + z] = bank.images
  images = jnp.asarray(padded, dtype)
  del padded
  box = jax.lax.map(lambda img: drr.content_box(img, padded=True), images)
  points, counts = anatomy_arrays(bank.anatomy)
  return {"images": images, "box": box, "weights": jnp.asarray(bank.weights),
          "origin": jnp.asarray(bank.origin), "spacing": jnp.asarray(bank.spacing),
          "extent": jnp.asarray(bank.extent), "points": jnp.asarray(points),
          "counts": jnp.asarray(counts), "anatomy_box": jnp.asarray(bank.anatomy_box)}
