"""Geometric augmentations that keep the views and their correspondence matrices consistent.

Notation.
  images    float [N, H, W]: N views (DRRs); pixel (r, c) of a view is row r, column c, with
            row 0 at the top when shown (`jaxcorr.pictures.viz`) and the detector point
            det_origin + c * det_u + r * det_v (`jaxcorr.projection.geometry.Views`).
  patches   k x k pixel blocks; the view's patch grid is h x w = (H / k) x (W / k), and patch
            (pr, pc) has flat index a = pr * w + pc (row-major); L = h * w.
  corr      float [P, L, L]: C_ij for the pairs i < j in the order (0, 1), (0, 2), ..., (0, N-1),
            (1, 2), ... (`np.triu_indices(N, 1)`, P = N (N - 1) / 2). Row a of C_ij is patch a of
            view i, column b patch b of view j (C_ji = C_ij^T is not stored).

Every transform here is a per-view index map on the pixel grid (`jaxcorr.data.index_maps`, which
also states the flip, rot90, shift, crop and cutout conventions): output pixel p shows input pixel
src[p] where valid[p], and zero elsewhere. The maps only move whole patches, so each induces a
patch map. Applying the maps (`apply_maps`) gathers the image pixels and, for every pair (i, j),
the rows of C_ij with view i's patch map and its columns with view j's:

    C'_ij[a, b] = C_ij[src_i[a], src_j[b]] * valid_i[a] * valid_j[b].

`random_geometric` draws every view's transforms, composes them into one map per view and gathers
once. Parameters (the view, the number of quarter turns, shifts, rectangles) may be traced:
nothing branches in Python on a value, so the functions jit and vmap, e.g. inside a jitted train
step or under `jax.vmap` over a batch.

For a detector (`Views`) the same maps are detector moves: a horizontal flip is
det_origin + (W-1) det_u with det_u negated (vertical: (H-1) det_v, det_v negated), one quarter
turn is det_origin + (W-1) det_u with (det_u, det_v) -> (det_v, -det_u), a shift by (dr, dc)
patches is det_origin - k (dc det_u + dr det_v). Re-rendering and re-labelling under the moved
detector gives the transformed images and C: exactly (up to float rounding) for flips and turns;
for shifts on the valid region, as long as every labelled voxel's footprint stays on both
detectors (`jaxcorr.projection.labels` normalises each footprint over the whole detector). Crops and
cutouts are masks with no detector move. tests/augment_test.py checks this against `drr` and
`labels`.

Grain's `random_map` hands a `np.random.Generator`; draw a key from it, e.g.
`random_geometric(x, c, jax.random.key(rng.integers(2 ** 31)), k=16)`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxcorr.data.index_maps import (compose, flip_map, identity_map, IndexMap, patch_map,
                                     rot90_map, select_map, shift_map, window_map)


def _check_shapes(images, corr, k):
  """Static shape checks; returns (N, H, W, L)."""
  if images.ndim != 3:
    raise ValueError(f"images must be [N, H, W]; got shape {images.shape}")
  n, height, width = images.shape
  if height % k or width % k:
    raise ValueError(f"image size {height}x{width} is not a multiple of the patch size {k}")
  length = (height // k) * (width // k)
  pairs = n * (n - 1) // 2
  if corr.shape != (pairs, length, length):
    raise ValueError(f"corr must be [P, L, L] = [{pairs}, {length}, {length}] for {n} views of "
                     f"{height}x{width} with k={k}; got shape {corr.shape}")
  return n, height, width, length


def apply_maps(images: jnp.ndarray, corr: jnp.ndarray, maps: IndexMap, *, k: int):
  """Applies one pixel index map per view to the images and to every C_ij.

  Args:
    images: [N, H, W].
    corr: [P, L, L], pairs in `np.triu_indices(N, 1)` order.
    maps: IndexMap [N, H, W] moving whole k x k patches.
    k: patch size in pixels (static).

  Returns:
    (images, corr) of the same shapes and dtypes; C'_ij[a, b] = C_ij[src_i[a], src_j[b]] where
    both patches are valid, else 0.
  """
  n, height, width, _ = _check_shapes(images, corr, k)
  if maps.src.shape != (n, height, width):
    raise ValueError(f"maps must be [N, H, W] = {(n, height, width)}; got {maps.src.shape}")
  flat = images.reshape(n, -1)
  moved = jnp.take_along_axis(flat, maps.src.reshape(n, -1), axis=-1)
  images = jnp.where(maps.valid.reshape(n, -1), moved, 0).reshape(images.shape).astype(
      images.dtype)
  if corr.shape[0] == 0:
    return images, corr
  src, valid = patch_map(maps, k=k)                                    # [N, L]
  first, second = np.triu_indices(n, 1)
  rows, cols = src[first], src[second]                                 # [P, L]
  pair = jnp.arange(corr.shape[0])[:, None, None]
  moved = corr[pair, rows[:, :, None], cols[:, None, :]]
  keep = valid[first][:, :, None] & valid[second][:, None, :]
  return images, jnp.where(keep, moved, 0).astype(corr.dtype)


def _one_view(images, view, single: IndexMap) -> IndexMap:
  """Maps for all N views: `single` [H, W] at `view` (possibly traced), identity elsewhere."""
  n, height, width = images.shape
  ident = identity_map(height, width)
  is_view = (jnp.arange(n) == view)[:, None, None]
  return select_map(is_view, single, ident)


def flip_view(images, corr, view, axis: int, *, k: int):
  """Flips view `view` (axis 1 horizontally, axis 0 vertically) and the C axes of that view.

  Args:
    images: [N, H, W].
    corr: [P, L, L].
    view: int view index, possibly traced.
    axis: 0 (vertical: rows reversed) or 1 (horizontal: columns reversed), static.
    k: patch size (static).

  Returns:
    (images, corr), transformed.
  """
  _, height, width = images.shape
  maps = _one_view(images, view, flip_map(height, width, axis))
  return apply_maps(images, corr, maps, k=k)


def rot90_view(images, corr, view, times, *, k: int):
  """Turns view `view` by `times` quarter turns like `np.rot90` (counter-clockwise as shown).

  Args:
    images: [N, H, W] with H == W.
    corr: [P, L, L].
    view: int view index, possibly traced.
    times: int number of quarter turns (mod 4), possibly traced.
    k: patch size (static).

  Returns:
    (images, corr), transformed.
  """
  _, height, width = images.shape
  if height != width:
    raise ValueError(f"rot90 needs square views; got {height}x{width}")
  maps = _one_view(images, view, rot90_map(height, times))
  return apply_maps(images, corr, maps, k=k)


def shift_view(images, corr, view, shift, *, k: int):
  """Shifts view `view` by (dr, dc) whole patches (positive: down / right), zero-filling.

  Args:
    images: [N, H, W].
    corr: [P, L, L].
    view: int view index, possibly traced.
    shift: int (dr, dc) in patches, possibly traced.
    k: patch size (static).

  Returns:
    (images, corr), transformed; rows / columns of patches shifted in from outside are zero.
  """
  _, height, width = images.shape
  maps = _one_view(images, view, shift_map(height, width, shift, k=k))
  return apply_maps(images, corr, maps, k=k)


def window_view(images, corr, view, start, size, *, k: int, keep_inside: bool):
  """Masks view `view` to (keep_inside) or out of (not keep_inside) a patch rectangle.

  The rectangle is [r0, r0 + hh) x [c0, c0 + ww) in patches; masked pixels and the C rows /
  columns of masked patches become zero; shapes are unchanged.

  Args:
    images: [N, H, W].
    corr: [P, L, L].
    view: int view index, possibly traced.
    start: int (r0, c0) in patches, possibly traced.
    size: int (hh, ww) in patches, possibly traced.
    k: patch size (static).
    keep_inside: True for a masked crop, False for a cutout.

  Returns:
    (images, corr), transformed.
  """
  _, height, width = images.shape
  single = window_map(height, width, start, size, k=k, keep_inside=keep_inside)
  return apply_maps(images, corr, _one_view(images, view, single), k=k)


def cutout_view(images, corr, view, start, size, *, k: int):
  """Zeroes a patch rectangle of one view and its C axes (`window_view`, keep_inside=False)."""
  return window_view(images, corr, view, start, size, k=k, keep_inside=False)


def crop_view(images, corr, view, start, size, *, k: int):
  """Masked crop: keeps only a patch rectangle of one view (`window_view`, keep_inside=True)."""
  return window_view(images, corr, view, start, size, k=k, keep_inside=True)


def _uniform_int(u, lo, hi):
  """Integers uniform in [lo, hi] (inclusive, hi >= lo) from uniforms u in [0, 1)."""
  return jnp.minimum(lo + jnp.floor(u * (hi - lo + 1)).astype(jnp.int32), hi)


def _random_view_map(key, *, height, width, k, p_flip, p_rot90, p_shift, max_shift, p_cutout,
                     max_cutout, p_crop, min_crop) -> IndexMap:
  """One view's random transforms composed into one map, in the order of `random_geometric`."""
  # One draw of uniforms for every decision keeps the compiled graph small (a threefry per
  # `randint` call made compiling several times slower).
  u = jax.random.uniform(key, (17,))
  grid = jnp.array([height // k, width // k], jnp.int32)
  ident = identity_map(height, width)

  def maybe(p, ui, m):
    return select_map(ui < p, m, ident)

  maps = [maybe(p_flip, u[0], flip_map(height, width, 1)),
          maybe(p_flip, u[1], flip_map(height, width, 0))]
  if p_rot90 > 0:
    maps.append(maybe(p_rot90, u[2], rot90_map(height, _uniform_int(u[3], 1, 3))))
  shift = _uniform_int(u[4:6], -max_shift, max_shift)
  maps.append(maybe(p_shift, u[6], shift_map(height, width, shift, k=k)))
  # Masked crop: a window of at least ceil(min_crop * grid) patches per axis.
  lo = jnp.maximum(jnp.ceil(min_crop * grid).astype(jnp.int32), 1)
  size = _uniform_int(u[7:9], lo, grid)
  start = _uniform_int(u[9:11], 0, grid - size)
  maps.append(maybe(p_crop, u[11], window_map(height, width, start, size, k=k,
                                               keep_inside=True)))
  # Cutout: a rectangle of 1 .. max(1, floor(max_cutout * grid)) patches per axis.
  hi = jnp.maximum(jnp.floor(max_cutout * grid).astype(jnp.int32), 1)
  size = _uniform_int(u[12:14], 1, hi)
  start = _uniform_int(u[14:16], 0, grid - size)
  maps.append(maybe(p_cutout, u[16], window_map(height, width, start, size, k=k,
                                                keep_inside=False)))
  return functools.reduce(compose, maps)


def random_geometric(images, corr, rng, *, k: int, p_flip: float = 0.5, p_rot90: float = 0.5,
                     p_shift: float = 0.5, max_shift: int = 2, p_crop: float = 0.25,
                     min_crop: float = 0.5, p_cutout: float = 0.25, max_cutout: float = 0.5):
  """Random C-consistent geometric augmentation, drawn independently for every view.

  Each view, in this order: a horizontal flip with probability p_flip; a vertical flip with
  probability p_flip; with probability p_rot90, 1, 2 or 3 quarter turns (uniform); with
  probability p_shift, a shift by (dr, dc) patches, each uniform in [-max_shift, max_shift];
  with probability p_crop, a masked crop to a window of hh x ww patches, each side uniform in
  [ceil(min_crop * grid), grid], placed uniformly; with probability p_cutout, a cutout of
  hh x ww patches, each side uniform in [1, max(1, floor(max_cutout * grid))], placed
  uniformly. All probabilities zero returns the inputs unchanged.

  Args:
    images: [N, H, W].
    corr: [P, L, L], pairs in `np.triu_indices(N, 1)` order, L = (H / k) (W / k).
    rng: a JAX PRNG key.
    k: patch size in pixels (static).
    p_flip, p_rot90, p_shift, p_crop, p_cutout: probabilities in [0, 1] (static Python floats).
    max_shift: largest shift in patches (static).
    min_crop: smallest crop side as a fraction of the patch grid, in (0, 1].
    max_cutout: largest cutout side as a fraction of the patch grid, in (0, 1].

  Returns:
    (images, corr), transformed consistently; same shapes and dtypes.
  """
  n, height, width, _ = _check_shapes(images, corr, k)
  for name, p in (("p_flip", p_flip), ("p_rot90", p_rot90), ("p_shift", p_shift),
                  ("p_crop", p_crop), ("p_cutout", p_cutout)):
    if not 0.0 <= p <= 1.0:
      raise ValueError(f"{name} must lie in [0, 1]; got {p}")
  for name, f in (("min_crop", min_crop), ("max_cutout", max_cutout)):
    if not 0.0 < f <= 1.0:
      raise ValueError(f"{name} must lie in (0, 1]; got {f}")
  if max_shift < 0:
    raise ValueError(f"max_shift must be >= 0; got {max_shift}")
  if p_rot90 > 0 and height != width:
    raise ValueError(f"rot90 needs square views, got {height}x{width}; set p_rot90=0")
  draw = functools.partial(_random_view_map, height=height, width=width, k=k, p_flip=p_flip,
                           p_rot90=p_rot90, p_shift=p_shift, max_shift=max_shift,
                           p_cutout=p_cutout, max_cutout=max_cutout, p_crop=p_crop,
                           min_crop=min_crop)
  maps = jax.vmap(draw)(jax.random.split(rng, n))
  return apply_maps(images, corr, maps, k=k)
