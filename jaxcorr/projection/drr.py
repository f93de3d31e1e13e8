"""Digitally reconstructed radiographs: a Joseph ray-marching projector in pure JAX.

Notation (units and frames).
  world      LPS patient frame, mm (see `jaxcorr.ct.volume`).
  voxel idx  continuous index x = (p - origin) / spacing; voxel (i, j, k) has its centre at the
             integer point (i, j, k) and covers [i - 1/2, i + 1/2] (and so on): the volume's box
             is [-1/2, X - 1/2] x [-1/2, Y - 1/2] x [-1/2, Z - 1/2].
  ray        from the source s to the centre q of one detector pixel, r(t) = s + t (q - s),
             t in [0, 1]. Only the part of the volume between source and pixel is integrated.
  value      the line integral  I = int mu(r) dl  in (volume units) x mm: with mu in 1/mm this is
             the log attenuation -ln(I/I0) of a radiograph.

Joseph's method (Joseph 1982, as in RTK's JosephForwardProjectionImageFilter). For each ray let
a = argmax_k |d_k| be its dominant axis in voxel units (d = q - s in voxel index). The ray meets
every voxel plane x_a = m (m = 0 .. n_a - 1) once; there the volume is bilinearly interpolated
in the two other axes (zero outside the volume), and each sample stands for the segment between
two planes, whose length is dl = |d_mm| / |d_a| (d_mm = d * spacing). So

    I = sum_m  dl * bilinear(mu[plane m], r(t_m)),   t_m = (m - s_a) / d_a,  0 <= t_m <= 1.

The integrand is linear in the volume, so the projector is an exact linear operator (its
Jacobian is the system matrix used for the correspondence labels) and it is differentiable
with respect to the volume and, through the sample positions and dl, the geometry.

Two ways to walk the sum, with the same result up to float32 rounding:
  dense      every ray reads max(X, Y, Z) planes (static shapes); planes beyond the dominant
             axis' own size, or outside [0, 1] in t, are masked. The ray function is written
             for one ray and vmapped; `lax.map(..., batch_size=...)` walks the rays in chunks
             so a 512^3 volume and a 512^2 detector fit in memory. Differentiable (jvp, vjp).
  clipped    (the default) each ray reads only the planes where it crosses the box of the
             voxels that differ from the background (`content_box`; the background, the
             corners' common value, is summed in closed form), in tiles of neighbouring rays
             sorted by length (`jaxcorr.projection.ray_march`). On CTs padded to a cube with air
             this skips most of the samples (95% for a 256^3 pelvis CT), whatever the
             intensity model. Its derivatives are the dense ones.
  fused      the clipped walk as one Pallas kernel for GPUs (`jaxcorr.projection.pallas_drr`):
             a program per 16 x 16 pixel tile loops over the planes and accumulates in
             registers, so the samples never go to memory (on a CPU it runs in Pallas'
             interpret mode, for tests). Its derivatives are the dense ones.
Accumulation is float32 whatever the volume's dtype (bfloat16 halves its memory and gather
bandwidth).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxcorr.core.choices import check_choice
from jaxcorr.projection import pallas_drr, ray_march
from jaxcorr.projection.geometry import Views

# For each dominant axis a, the two other axes (b, c) in increasing order.
_OTHER_AXES = np.array([[1, 2], [0, 2], [0, 1]], np.int32)
# Padding of the flattened volume: one zero plane before each axis, two after, so every
# bilinear neighbour of a coordinate clipped to [-1, n] is a valid (zero) index.
PAD = ray_march.PAD


def pad(volume: jnp.ndarray) -> jnp.ndarray:
  """The volume with the projector's zero border ([X + 3, Y + 3, Z + 3]).

  `project(..., padded=True)` takes this instead of the volume: pad once when the same volume
  is rendered many times (a training bank), since padding a 256^3 volume costs about as much
  as rendering a view on a CPU.
  """
  return jnp.pad(volume, [PAD] * 3)


def padded_shape(dims) -> tuple[int, int, int]:
  """The shape of a volume of shape `dims` with the projector's zero border (`pad`)."""
  return tuple(int(d) + sum(PAD) for d in dims)


def padded_strides(dims) -> np.ndarray:
  """int32 (3,) row-major strides of the padded volume of unpadded shape `dims`: the flat index
  of padded voxel (i, j, k) is i * s[0] + j * s[1] + k."""
  shape = padded_shape(dims)
  return np.array([shape[1] * shape[2], shape[2], 1], np.int32)


def pixel_rays(views: Views, height: int, width: int):
  """(sources, targets), each [N, H, W, 3] world mm: the ray of every detector pixel."""
  targets = views.pixel_centers(height, width)
  return jnp.broadcast_to(views.source[:, None, None, :], targets.shape), targets


def _padded_flat(volume: jnp.ndarray, padded: bool = False):
  """(flat padded volume, strides of the padded array, unpadded dims)."""
  padded_volume = volume if padded else pad(volume)
  dims = tuple(int(n) - sum(PAD) for n in padded_volume.shape)
  return padded_volume.reshape(-1), padded_strides(dims), dims


def _ray_setup(dims, strides, spacing, s, q):
  """Joseph's planes for one ray: the flat index of each sample's (0, 0) bilinear corner, the
  strides to its other corners, the bilinear fractions, the validity mask and dl (mm)."""
  n_planes = max(dims)
  dims_arr = jnp.asarray(dims, jnp.float32)
  d = q - s
  a = jnp.argmax(jnp.abs(d))
  bc = jnp.asarray(_OTHER_AXES)[a]
  d_a = d[a]
  d_a = jnp.where(jnp.abs(d_a) < 1e-12, 1e-12, d_a)
  m = jnp.arange(n_planes, dtype=jnp.float32)
  t = (m - s[a]) / d_a                                               # [M]
  valid = (t >= 0.0) & (t <= 1.0) & (m < dims_arr[a])
  # Coordinates in the two other axes, clipped to [-1, n] where the padding is zero.
  x_bc = s[bc][None, :] + t[:, None] * d[bc][None, :]                 # [M, 2]
  x_bc = jnp.clip(x_bc, -1.0, dims_arr[bc][None, :])
  i_bc = jnp.floor(x_bc)
  f_bc = x_bc - i_bc
  i_bc = i_bc.astype(jnp.int32) + PAD[0]
  st = jnp.asarray(strides)
  base = (m.astype(jnp.int32) + PAD[0]) * st[a] + i_bc[:, 0] * st[bc[0]] + i_bc[:, 1] * st[bc[1]]
  base = jnp.where(valid, base, 0)  # masked samples read the (zero) first element
  step_mm = jnp.linalg.norm(d * spacing) / jnp.abs(d_a)
  return base, st[bc[0]], st[bc[1]], f_bc[:, 0], f_bc[:, 1], valid, step_mm


def ray_integral(flat: jnp.ndarray, dims: tuple[int, int, int], strides: np.ndarray,
                 spacing: jnp.ndarray, s: jnp.ndarray, q: jnp.ndarray) -> jnp.ndarray:
  """Joseph line integral along one ray.

  Args:
    flat: the zero-padded, flattened volume from `_padded_flat`.
    dims: the unpadded volume shape (X, Y, Z), static.
    strides: int32 (3,) strides of the padded volume, static.
    spacing: (3,) voxel size in mm.
    s: (3,) source in continuous voxel index coordinates.
    q: (3,) pixel centre in continuous voxel index coordinates.

  Returns:
    The float32 line integral from s to q (volume units x mm).
  """
  base, sb, sc, fb, fc, valid, step_mm = _ray_setup(dims, strides, spacing, s, q)
  # Every index is inside the padded volume by construction (coordinates clipped to [-1, n],
  # masked samples read element 0), so the gathers skip bounds handling (~10% on CPU).
  def read(i):
    return flat.at[i].get(mode="promise_in_bounds").astype(jnp.float32)

  # Four separate [M] gathers: XLA fuses them with the weights (a stacked [M, 4] gather of the
  # same indices ran 3-5x slower on CPU).
  val = (read(base) * ((1 - fb) * (1 - fc)) + read(base + sb) * (fb * (1 - fc))
         + read(base + sc) * ((1 - fb) * fc) + read(base + sb + sc) * (fb * fc))
  return jnp.sum(jnp.where(valid, val, 0.0)) * step_mm


def ray_samples(dims: tuple[int, int, int], strides: np.ndarray, spacing: jnp.ndarray,
                s: jnp.ndarray, q: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
  """Joseph's samples of one ray as (flat indices, weights) into the padded volume.

  `ray_integral` equals sum(flat[indices] * weights): this is the ray's row of the system
  matrix. Arguments as `ray_integral`, without the volume.

  Returns:
    int32 [M, 4] flat indices and float32 [M, 4] weights (bilinear weight x segment length in
    mm, zero for masked samples), M = max(dims).
  """
  base, sb, sc, fb, fc, valid, step_mm = _ray_setup(dims, strides, spacing, s, q)
  idx = jnp.stack([base, base + sb, base + sc, base + sb + sc], axis=-1)
  w = jnp.stack([(1 - fb) * (1 - fc), fb * (1 - fc), (1 - fb) * fc, fb * fc], axis=-1)
  return idx, jnp.where(valid[:, None], w, 0.0) * step_mm


METHODS = ("clipped", "dense", "fused")
# The kernel `method="auto"` means on each platform: the clipped marcher is 1.8-3.6x faster
# than RTK on a CPU; on a GPU its while loop over ray groups launches work too small for the
# device, where the dense kernel rendered ~5,000 views/s against ~600 (H200, 256^3 -> 256^2).
# The fused kernel is not measured on a GPU yet, so auto does not pick it (docs/benchmarks.md).
AUTO = {"cpu": "clipped", "gpu": "dense", "cuda": "dense", "rocm": "dense", "tpu": "dense"}


def resolve_method(method: str, platform: str | None = None) -> str:
  """The kernel `method` names: itself, or for 'auto' the fastest one measured on `platform`
  (default: JAX's default backend; `AUTO`)."""
  if method != "auto":
    return check_choice("drr method", method, METHODS)
  platform = platform or jax.default_backend()
  return AUTO.get(platform, "dense")


_DENSE_CHUNK = 16384   # rays per chunk of the dense kernel unless the caller says otherwise


def _dense_rays(flat, dims, strides, spacing, s_idx, q_idx, batch_size):
  fn = functools.partial(ray_integral, flat, dims, strides, spacing)
  if batch_size is None or batch_size >= s_idx.shape[0]:
    return jax.vmap(fn)(s_idx, q_idx)
  return jax.lax.map(lambda sq: fn(*sq), (s_idx, q_idx), batch_size=batch_size)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2, 6, 9))
def _marched_rays(flat, dims, strides, spacing, s_idx, q_idx, batch_size, box, bg, method):
  """The box's planes only: 'clipped' (XLA, `ray_march.march`) or 'fused' (Pallas)."""
  if method == "fused":
    return pallas_drr.march_fused(flat, dims, strides, spacing, s_idx, q_idx, box, bg,
                                  block=batch_size or pallas_drr.BLOCK)
  return ray_march.march(flat, dims, np.asarray(strides), spacing, s_idx, q_idx, box, bg,
                         group=batch_size or 4096)


@_marched_rays.defjvp
def _marched_rays_jvp(dims, strides, batch_size, method, primals, tangents):
  # The marching loops have data-dependent trip counts; derivatives (forward and, by
  # transposition, reverse) come from the dense formulation of the same sum. The background
  # split is an identity for any value, so its tangent is not needed.
  flat, spacing, s_idx, q_idx, box, bg = primals
  out = _marched_rays(flat, dims, strides, spacing, s_idx, q_idx, batch_size, box, bg, method)
  dense = lambda f, sp, s_, q_: _dense_rays(f, dims, np.asarray(strides), sp, s_, q_,
                                                _DENSE_CHUNK)
  _, tangent = jax.jvp(dense, (flat, spacing, s_idx, q_idx), tangents[:4])
  return out, tangent


def project_rays(volume: jnp.ndarray, origin: jnp.ndarray, spacing: jnp.ndarray,
                 sources: jnp.ndarray, targets: jnp.ndarray, *,
                 batch_size: int | None = None, padded: bool = False,
                 method: str = "clipped", box: jnp.ndarray | None = None) -> jnp.ndarray:
  """Line integrals of `volume` along rays from `sources` to `targets` (world mm).

  Args:
    volume: [X, Y, Z] float32 or bfloat16 values (e.g. mu in 1/mm).
    origin: (3,) world position of voxel (0, 0, 0)'s centre.
    spacing: (3,) voxel size in mm.
    sources: [R, 3] ray start points (world mm).
    targets: [R, 3] ray end points (world mm).
    batch_size: rays per step: per chunk for 'dense' (memory ~ batch_size x max(X, Y, Z)
      samples; None vmaps all rays at once, default 16384), per marching group for
      'clipped' (default 4096), per program for 'fused' (a power of two, default 256).
    padded: `volume` is already `pad(volume)` (origin and spacing still describe the
      unpadded grid).
    method: 'clipped' (default) walks each ray only through the planes of `box`
      (`jaxcorr.projection.ray_march`); 'fused' does the same in one Pallas kernel
      (`jaxcorr.projection.pallas_drr`; GPU, or interpret mode on a CPU); 'dense' walks
      every ray through max(X, Y, Z) planes. All give the same sum; derivatives always come
      from the dense formulation.
    box: int32 [2, 3] voxel box (rows lo, hi) outside which every voxel equals the
      background (the 8 corner voxels' common value, else 0: the air around the patient),
      for 'clipped' and 'fused'. None computes `content_box(volume)`, one pass over the
      volume: pass it in when the same volume is rendered many times. Any box holding all
      the other voxels gives the same image.

  Returns:
    [R] float32 line integrals.
  """
  check_choice("drr method", method, METHODS)
  flat, strides, dims = _padded_flat(volume, padded)
  spacing = jnp.asarray(spacing, jnp.float32)
  origin = jnp.asarray(origin, jnp.float32)
  s_idx = (sources - origin) / spacing
  q_idx = (targets - origin) / spacing
  if method == "dense":
    return _dense_rays(flat, dims, strides, spacing, s_idx, q_idx,
                       _DENSE_CHUNK if batch_size is None else batch_size)
  padded_volume = flat.reshape(padded_shape(dims))
  if box is None:
    box = ray_march.content_box(padded_volume)
  return _marched_rays(flat, dims, tuple(int(x) for x in strides), spacing, s_idx, q_idx,
                       batch_size, jnp.asarray(box, jnp.int32),
                       ray_march.background(padded_volume), method)


def content_box(volume: jnp.ndarray, *, padded: bool = False) -> jnp.ndarray:
  """int32 [2, 3]: the box (rows lo, hi, voxel indices) of the voxels of `volume` that differ
  from its background (the 8 corner voxels' common value, else 0), for
  `project(..., box=...)`; see `jaxcorr.projection.ray_march.content_box`."""
  return ray_march.content_box(volume if padded else pad(volume))


def _tiled(x, tile):
  """[N, H, W, ...] -> [N * H' * W' * th * tw, ...]: pixels in tiles of tile = (th, tw), the
  detector padded at the far edges (by repeating the last row/column) to whole tiles."""
  n, h, w = x.shape[:3]
  th, tw = tile
  hp, wp = -(-h // th) * th, -(-w // tw) * tw
  widths = [(0, 0), (0, hp - h), (0, wp - w)] + [(0, 0)] * (x.ndim - 3)
  x = jnp.pad(x, widths, mode="edge")
  x = x.reshape((n, hp // th, th, wp // tw, tw) + x.shape[3:])
  x = jnp.moveaxis(x, 3, 2)
  return x.reshape((-1,) + x.shape[5:])


def _untiled(x, n, h, w, tile):
  """Inverse of `_tiled` for [R] values: [N, H, W]."""
  th, tw = tile
  hp, wp = -(-h // th) * th, -(-w // tw) * tw
  x = x.reshape(n, hp // th, wp // tw, th, tw)
  x = jnp.moveaxis(x, 2, 3).reshape(n, hp, wp)
  return x[:, :h, :w]


def _tile(method, batch_size):
  """Rays go in tiles of neighbouring pixels, which cross the same planes: 8 x 8 for the
  clipped marcher's sort, one tile per program of the fused kernel (16 x 16 for its default
  256 rays); None for the dense kernel, which does not care."""
  if method == "clipped":
    return (8, 8)
  if method == "fused":
    block = batch_size or pallas_drr.BLOCK
    rows = 2 ** (max(block.bit_length() - 1, 0) // 2)
    return (rows, max(block // rows, 1))
  return None


def project(volume: jnp.ndarray, origin: jnp.ndarray, spacing: jnp.ndarray, views: Views, *,
            height: int, width: int, batch_size: int | None = None,
            padded: bool = False, method: str = "clipped",
            box: jnp.ndarray | None = None) -> jnp.ndarray:
  """Renders DRRs (line integrals) of one volume for N views.

  Args:
    volume: [X, Y, Z] values in the LPS grid of `jaxcorr.ct.volume` (float32 or bfloat16).
    origin: (3,) world position of voxel (0, 0, 0)'s centre, mm.
    spacing: (3,) voxel size, mm.
    views: `Views` with leading shape [N].
    height, width: detector rows and columns (static).
    batch_size, padded, method, box: see `project_rays`.

  Returns:
    [N, H, W] float32 line integrals, rows and columns in RTK's projection array order.
  """
  sources, targets = pixel_rays(views, height, width)                  # [N, H, W, 3]
  n = targets.shape[0]
  tile = _tile(method, batch_size)
  if tile is None:
    out = project_rays(volume, origin, spacing, sources.reshape(-1, 3), targets.reshape(-1, 3),
                       batch_size=batch_size, padded=padded, method=method)
    return out.reshape(n, height, width)
  out = project_rays(volume, origin, spacing, _tiled(sources, tile), _tiled(targets, tile),
                     batch_size=batch_size, padded=padded, method=method, box=box)
  return _untiled(out, n, height, width, tile)


@functools.partial(jax.jit, static_argnames=("height", "width", "batch_size", "padded",
                                             "method"))
def project_jit(volume, origin, spacing, views, *, height, width, batch_size=None,
                padded=False, method="clipped", box=None):
  """`project`, compiled once per (volume shape, N, H, W); the usual entry point."""
  return project(volume, origin, spacing, views, height=height, width=width,
                 batch_size=batch_size, padded=padded, method=method, box=box)


def pixel_samples(dims: tuple[int, int, int], origin: jnp.ndarray, spacing: jnp.ndarray,
                  views: Views, *, height: int, width: int):
  """Joseph's samples of every pixel ray of `views`: the non-zeros of the system matrix.

  Args: as `system_matrix`.

  Returns:
    idx: int32 [N * H * W, S] flat indices into the padded volume (`padded_strides`).
    weight: float32 [N * H * W, S] their weights (mm of ray per sample, bilinear share).
  """
  spacing = jnp.asarray(spacing, jnp.float32)
  origin = jnp.asarray(origin, jnp.float32)
  sources, targets = pixel_rays(views, height, width)
  s_idx = ((sources - origin) / spacing).reshape(-1, 3)
  q_idx = ((targets - origin) / spacing).reshape(-1, 3)
  strides = padded_strides(dims)
  return jax.vmap(functools.partial(ray_samples, dims, strides, spacing))(s_idx, q_idx)


def system_matrix(dims: tuple[int, int, int], origin: jnp.ndarray, spacing: jnp.ndarray,
                  views: Views, *, height: int, width: int) -> jnp.ndarray:
  """The projector as a dense matrix, for small volumes (e.g. the coarse label grid).

  Args:
    dims: volume shape (X, Y, Z), static.
    origin, spacing: the volume grid, as in `project`.
    views: `Views` with leading shape [N].
    height, width: detector shape (static).

  Returns:
    A: float32 [N, H * W, X * Y * Z] with project(vol)[n].ravel() == A[n] @ vol.ravel(); pixels
    and voxels in row-major (C) order.
  """
  padded_dims = padded_shape(dims)
  n = views.source.shape[0]
  idx, w = pixel_samples(dims, origin, spacing, views, height=height, width=width)
  rows = jnp.broadcast_to(jnp.arange(idx.shape[0])[:, None, None], idx.shape)
  a = jnp.zeros((idx.shape[0], int(np.prod(padded_dims))), jnp.float32)
  a = a.at[rows, idx].add(w)
  a = a.reshape((n * height * width,) + padded_dims)
  lo = PAD[0]
  a = a[:, lo:lo + dims[0], lo:lo + dims[1], lo:lo + dims[2]]
  return a.reshape(n, height * width, -1)


def project_sharded(volume, origin, spacing, views: Views, mesh, *, height: int, width: int,
                    axis: str = "data", batch_size: int | None = None, padded: bool = False,
                    method: str = "clipped"):
  """`project` with the N views split over the devices of `mesh` along `axis`.

  The volume (and grid) is replicated; each device renders N / devices views. N must be a
  multiple of the axis size. On a CPU host with one JAX device per core
  (XLA_FLAGS=--xla_force_host_platform_device_count=<cores>) this uses every core.
  """
  from jax.sharding import PartitionSpec as P  # pylint: disable=import-outside-toplevel
  fn = functools.partial(project, height=height, width=width, batch_size=batch_size,
                         padded=padded, method=method)
  sharded = jax.shard_map(fn, mesh=mesh, in_specs=(P(), P(), P(), P(axis)), out_specs=P(axis))
  return jax.jit(sharded)(volume, jnp.asarray(origin, jnp.float32),
                          jnp.asarray(spacing, jnp.float32), views)
