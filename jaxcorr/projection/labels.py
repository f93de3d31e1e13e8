"""Correspondence ground truth from CT: patch-to-patch labels C_ij between views (paper, 3.1).

Notation.
  k          patch size in detector pixels, and the pooling factor of the volume (default 16).
  w          [X', Y', Z'] coarse weights: the correspondence intensity (e.g. `bone_sigmoid` of HU
             with x0 = 850, k = 0.005) pooled over k^3 blocks (`pool_weights`), X' = ceil(X / k).
  coarse     the grid of w (`coarse_grid`): spacing k * spacing, origin + (k - 1) / 2 * spacing,
             so coarse voxel v covers exactly the k^3 fine voxels it pools.
  views      N views with an H x W detector; H and W must be multiples of k. The patch grid is
             `geometry.coarsen(views, k)`: an h x w detector (h = H / k, w = W / k) whose pixel
             (r, c) is the centre of the k x k patch (r, c).
  L          h * w patches per view, flattened row-major (index r * w + c), as DRR images are.
  p_i^v      [L] the Joseph projection (`jaxcorr.projection.drr`) onto view i's patch grid of
             the coarse volume that holds 1 in voxel v and 0 elsewhere (column v of the system
             matrix A_i), min-max normalised over the L patches: (p - min) / (max - min); a constant
             footprint (all zero, i.e. v is not seen, or, on tiny grids, equal everywhere) -> 0.
  C_ij       [L, L] = max over v with w_v > threshold of w_v p_i^v (p_j^v)^T, in [0, max w].
             For a pair (i, j): rows are view i's patches, columns view j's. C_ji = C_ij^T.
  pairs      i < j in the order (0, 1), (0, 2), ..., (0, N-1), (1, 2), ... (`pair_indices`);
             the output is [P, L, L], P = N (N - 1) / 2.

Exactness of the fast paths. Every term is >= 0 and C starts at 0, so voxels at or below the
threshold are dropped by zeroing their weight, with static shapes. Both paths build p_i^v from
Joseph's samples of the patch rays (`drr.ray_samples`: the ray of a patch reads S = 4 max(X',
Y', Z') voxels, so the system matrix has at most S nonzeros per row), the same numbers
`drr.project` sums.
  'dense'   scatters them into the dense [N, V, L] matrix, normalises each column (min and max
            over all L patches) and takes the max over the voxels above the threshold (sorted
            first, walked `chunk` at a time by a while loop): L^2 products per voxel (268M for
            all of a 16^3 grid and 16 x 16 patches), the simple choice on accelerators.
  'sparse'  (default) stores each voxel's footprint as a `window` x `window` tile of patches
            anchored at its bounding box's top-left corner (clipped to the grid): one scatter-max
            of the samples' patch coordinates gives every bounding box, one scatter-add the
            tiles. The tile holds every nonzero of p_i^v whenever the footprint's extent is at
            most `window` patches in rows and columns, so its max is the column max, and its min
            is the column min (0 when the tile is smaller than the grid, which then has a patch
            outside the footprint; the tile's own min when it covers the grid). C_ij is then a
            scatter-max of w_v tile_i(v) (x) tile_j(v) at the two anchors: window^4 products per
            voxel, over the voxels above the threshold only (the same while loop). Exact, with
            no truncation, when the footprint of every voxel above the threshold fits; when one
            does not, the sample's labels are NaN and (check=True) a host callback raises a
            ValueError naming the needed window (`footprint_span` bounds it for any weights).
            At the paper's geometry
            (256^3 CT, 16^3 grid, 256^2 detector fitted with `fit_pixel_spacing`, sid 1000 mm,
            sdd 1500 mm) a coarse voxel's support (+-1 voxel around it, Joseph's bilinear reach)
            projects onto ~1.0-1.3 patch pitches, so footprints span at most 2 patches and most
            voxels touch a single patch; the default window of 4 leaves room for 2x zoom.

Reference. `correspondence_reference` loops over voxels in Python and calls `drr.project` on a
one-voxel volume: obviously correct, for tiny volumes and for tests only.
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from jaxcorr.core.choices import check_choice
from jaxcorr.projection import drr
from jaxcorr.projection.geometry import coarsen, Views

POOLINGS = ("mean", "max")
METHODS = ("sparse", "dense")
# Footprints at the paper's geometry span at most 2 patches (see the module docstring).
DEFAULT_WINDOW = 4
# Coarse voxels whose pooled weight is at most this are air for the labels: the paper's
# intensity (bone_sigmoid with x0 = 850, i.e. 0.5 at -150 HU) is ~0.007 in air and > 0.6 in soft
# tissue, so 0.1 keeps every block that is at least ~1/7 tissue.
DEFAULT_THRESHOLD = 0.1
DEFAULT_K = 16


def pair_indices(n: int) -> np.ndarray:
  """The view pairs of the output, [P, 2] int32: (0, 1), (0, 2), ..., (0, n-1), (1, 2), ..."""
  pairs = list(itertools.combinations(range(int(n)), 2))
  return np.asarray(pairs, np.int32).reshape(-1, 2)




def pool_weights(intensity: jnp.ndarray, k: int = DEFAULT_K, pooling: str = "mean") -> jnp.ndarray:
  """Pools the correspondence intensity over k^3 blocks.

  A dimension that is not a multiple of k is padded with zeros at its end (the high-index side)
  to the next multiple; the mean of a padded block counts the padding (it divides by k^3), so
  border blocks are weighted by how much of them is inside the volume. `coarse_grid` needs no
  change for the padding.

  Args:
    intensity: [X, Y, Z] correspondence intensity (>= 0), NumPy or JAX.
    k: block edge in voxels (static).
    pooling: 'mean' or 'max'.

  Returns:
    float32 [ceil(X / k), ceil(Y / k), ceil(Z / k)].
  """
  check_choice("pooling", pooling, POOLINGS)
  x = jnp.asarray(intensity, jnp.float32)
  if x.ndim != 3:
    raise ValueError(f"intensity must be [X, Y, Z], got shape {x.shape}")
  pad = [(0, -n % k) for n in x.shape]
  x = jnp.pad(x, pad)
  c = [n // k for n in x.shape]
  x = x.reshape(c[0], k, c[1], k, c[2], k)
  return x.mean(axis=(1, 3, 5)) if pooling == "mean" else x.max(axis=(1, 3, 5))


def coarse_grid(origin, spacing, k: int = DEFAULT_K) -> tuple[jnp.ndarray, jnp.ndarray]:
  """The grid of `pool_weights`' output: (origin + (k - 1) / 2 * spacing, k * spacing), mm."""
  origin = jnp.asarray(origin, jnp.float32)
  spacing = jnp.asarray(spacing, jnp.float32)
  return origin + (k - 1) / 2 * spacing, k * spacing


def _patch_grid(height: int, width: int, k: int) -> tuple[int, int]:
  if height % k or width % k:
    raise ValueError(f"The detector ({height} x {width} pixels) must be a multiple of the patch "
                     f"size k = {k} in both dimensions.")
  return height // k, width // k


def _footprints(dims, origin, spacing, views: Views, h: int, w: int):
  """Joseph's samples of every patch ray as unpadded voxel indices.

  Returns:
    idx: int32 [N, L, S] voxel index (row-major in dims) of each sample, V = prod(dims) for
      samples outside the volume or masked.
    val: float32 [N, L, S] their system-matrix weights (0 where idx == V).
  """
  n = views.source.shape[0]
  flat, val = drr.pixel_samples(dims, origin, spacing, views, height=h, width=w)
  ijk = [c - drr.PAD[0] for c in jnp.unravel_index(flat, drr.padded_shape(dims))]
  inside = (val > 0)
  for a in range(3):
    inside &= (ijk[a] >= 0) & (ijk[a] < dims[a])
  v = (ijk[0] * dims[1] + ijk[1]) * dims[2] + ijk[2]
  n_vox = int(np.prod(dims))
  v = jnp.where(inside, v, n_vox)
  val = jnp.where(inside, val, 0.0)
  return v.reshape(n, h * w, -1), val.reshape(n, h * w, -1)


def _dense_columns(idx, val, n_vox):
  """Dense normalised footprints [N, V + 1, L] (row V, the sink, is zero)."""
  n, l, _ = idx.shape
  a = jnp.zeros((n, n_vox + 1, l), jnp.float32)
  a = a.at[jnp.arange(n)[:, None, None], idx, jnp.arange(l)[None, :, None]].add(val)
  return _min_max(a, a.min(axis=-1, keepdims=True), a.max(axis=-1, keepdims=True))


def _min_max(a, lo, hi):
  """(a - lo) / (hi - lo), 0 where hi == lo."""
  ok = hi > lo
  return (a - lo) * jnp.where(ok, 1.0 / jnp.where(ok, hi - lo, 1.0), 0.0)


def _tiles(idx, val, active, h, w, window):
  """Each voxel's footprint as a window x window tile of patches (clipped to the grid).

  Returns:
    tiles: float32 [N, V + 1, kh, kw] normalised footprints, kh = min(window, h) (same for kw);
      tiles[n, v, a, b] = p_n^v at patch (r0 + a, c0 + b).
    r0, c0: int32 [N, V + 1] the tiles' top-left patch, inside the grid.
    span: int32 scalar, the largest extent (rows or columns) of an `active` voxel's footprint
      that does not fit, 0 when all fit (then the tiles hold every nonzero of their p_n^v).
  """
  n, l, _ = idx.shape
  n_vox = active.shape[0] - 1
  kh, kw = min(window, h), min(window, w)
  shape = idx.shape
  pr = jnp.broadcast_to((jnp.arange(l) // w)[None, :, None], shape)
  pc = jnp.broadcast_to((jnp.arange(l) % w)[None, :, None], shape)
  big = np.int32(1 << 20)
  # One scatter-max for the bounding box (-rmin, rmax, -cmin, cmax) of every footprint.
  upd = jnp.where((val > 0)[..., None], jnp.stack([-pr, pr, -pc, pc], -1), -big)
  vn = jnp.arange(n)[:, None, None]
  box = jnp.full((n, n_vox + 1, 4), -big, jnp.int32).at[vn, idx].max(upd)
  r0 = jnp.clip(-box[..., 0], 0, h - kh)
  c0 = jnp.clip(-box[..., 2], 0, w - kw)
  rows, cols = box[..., 1] - r0 + 1, box[..., 3] - c0 + 1
  extent = jnp.maximum(box[..., 1] + box[..., 0], box[..., 3] + box[..., 2]) + 1
  span = jnp.max(jnp.where(active & ((rows > kh) | (cols > kw)), extent, 0))
  t = jnp.zeros((n, n_vox + 1, kh, kw), jnp.float32)
  t = t.at[vn, idx, pr - r0[vn, idx], pc - c0[vn, idx]].add(val, mode="drop")
  hi = t.max(axis=(2, 3), keepdims=True)
  # A footprint inside a tile smaller than the grid leaves some patch at 0: the min is 0. Only a
  # tile covering the whole grid can hold a footprint without zeros.
  lo = t.min(axis=(2, 3), keepdims=True) if (kh, kw) == (h, w) else jnp.zeros_like(hi)
  return _min_max(t, lo, hi), r0, c0, span


def _active_chunks(w_ext, chunk, step, init):
  """Folds `step(carry, voxels)` over the voxels with weight > 0, `chunk` at a time.

  Voxels are sorted by weight so the active ones come first, and a while loop walks them up to
  their count (under vmap, up to the batch's largest); the padding and the inactive voxels that
  share the last chunk have weight 0 and so add nothing.
  """
  n_ext = w_ext.shape[0]
  order = jnp.argsort(-w_ext)
  order = jnp.pad(order, (0, -n_ext % chunk), constant_values=n_ext - 1)  # the zero sink
  n_active = jnp.sum(w_ext > 0)

  def body(carry):
    start, c = carry
    return start + chunk, step(c, jax.lax.dynamic_slice_in_dim(order, start, chunk))

  return jax.lax.while_loop(lambda carry: carry[0] < n_active, body, (0, init))[1]


def _pairs_sparse(tiles, r0, c0, w_ext, pairs, h, w, chunk):
  """C for all pairs: scatter-max of each active voxel's tile outer products."""
  dnums = jax.lax.ScatterDimensionNumbers(update_window_dims=(1, 2, 3, 4),
                                          inserted_window_dims=(),
                                          scatter_dims_to_operand_dims=(0, 1, 2, 3))

  def one_pair(c, i, j, o):
    upd = (w_ext[o][:, None, None, None, None] * tiles[i, o][:, :, :, None, None]
           * tiles[j, o][:, None, None, :, :])                          # [chunk, kh, kw, kh, kw]
    at = jnp.stack([r0[i, o], c0[i, o], r0[j, o], c0[j, o]], -1)
    return jax.lax.scatter_max(c, at, upd, dnums)

  step = lambda c, o: jax.vmap(one_pair, in_axes=(0, 0, 0, None))(c, pairs[:, 0], pairs[:, 1], o)
  c = _active_chunks(w_ext, chunk, step, jnp.zeros((pairs.shape[0], h, w, h, w), jnp.float32))
  return c.reshape(pairs.shape[0], h * w, h * w)


def _pairs_dense(a_hat, w_ext, pairs, chunk):
  """C for all pairs as a max over all active voxels' full outer products."""
  pi, pj = pairs[:, 0], pairs[:, 1]
  l = a_hat.shape[-1]

  def step(c, o):
    left = a_hat[pi[:, None], o] * w_ext[o][None, :, None]               # [P, chunk, L]
    return jnp.maximum(c, jnp.max(left[..., :, None] * a_hat[pj[:, None], o][..., None, :],
                                  axis=1))

  return _active_chunks(w_ext, chunk, step, jnp.zeros((pairs.shape[0], l, l), jnp.float32))


def _raise_if_overflow(span, window):
  span = int(np.asarray(span).max())  # NumPy only: calling JAX inside a callback can deadlock
  if span:
    raise ValueError(f"A voxel's footprint spans {span} patches, more than window={window}: pass "
                     f"window >= {span} (see `footprint_span`) or method='dense'.")


@functools.partial(jax.jit, static_argnames=("dims", "h", "w"))
def _max_extent(dims, coarse_origin, coarse_spacing, views, h, w):
  idx, val = _footprints(dims, coarse_origin, coarse_spacing, views, h, w)
  active = jnp.ones(int(np.prod(dims)) + 1, bool)
  return _tiles(idx, val, active, h, w, window=1)[-1]


def footprint_span(dims, coarse_origin, coarse_spacing, views: Views, *, height: int, width: int,
                   k: int = DEFAULT_K) -> int:
  """The largest extent (rows or columns, in patches) of any coarse voxel's footprint.

  A `window` for which `method='sparse'` is exact on this geometry whatever the weights (the
  sparse method only checks the voxels above the threshold). Arguments as `correspondence`,
  with the coarse grid's shape `dims` instead of its weights.

  Returns:
    The extent as a Python int (at least 1).
  """
  h, w = _patch_grid(height, width, k)
  dims = tuple(int(d) for d in dims)
  return max(int(_max_extent(dims, coarse_origin, coarse_spacing, coarsen(views, k), h, w)), 1)


def correspondence(weights_coarse: jnp.ndarray, coarse_origin, coarse_spacing, views: Views, *,
                   height: int, width: int, k: int = DEFAULT_K,
                   threshold: float = DEFAULT_THRESHOLD, method: str = "sparse",
                   window: int = DEFAULT_WINDOW, chunk: int = 128,
                   check: bool = True) -> jnp.ndarray:
  """Correspondence labels C_ij of one sample (the fast path; jit it, vmap it over samples).

  Args:
    weights_coarse: [X', Y', Z'] pooled weights (`pool_weights`).
    coarse_origin, coarse_spacing: (3,) their grid (`coarse_grid`), mm.
    views: `Views` with leading shape [N] of the full-resolution detector.
    height, width: detector size in pixels (static), multiples of k.
    k: patch size in pixels (static).
    threshold: voxels with weight <= threshold are ignored (may be traced).
    method: 'sparse' (tiles of window x window patches per voxel; exact when every footprint
      fits, see the module docstring) or 'dense' (max over all voxels; no window).
    window: tile edge in patches of the sparse method (static).
    chunk: voxels per loop step (static); bounds memory to P * chunk * window^4 floats (sparse)
      or P * chunk * L^2 floats (dense).
    check: sparse method only: raise (through a host callback, so also under jit and vmap) when
      a footprint does not fit the window. The labels of such a sample are NaN either way.

  Returns:
    float32 [P, L, L], P = N (N - 1) / 2 in `pair_indices` order, L = (H / k)(W / k).

  Raises:
    ValueError: a detector size not divisible by k, an unknown method, or (check=True, raised as
      a JaxRuntimeError carrying the message under jit) a footprint wider than the window.
  """
  check_choice("method", method, METHODS)
  h, w = _patch_grid(height, width, k)
  dims = tuple(int(d) for d in weights_coarse.shape)
  n_vox = int(np.prod(dims))
  pairs = jnp.asarray(pair_indices(views.source.shape[0]))
  idx, val = _footprints(dims, coarse_origin, coarse_spacing, coarsen(views, k), h, w)
  wv = jnp.asarray(weights_coarse, jnp.float32).reshape(-1)
  w_ext = jnp.append(jnp.where(wv > threshold, wv, 0.0), 0.0)
  if method == "dense":
    return _pairs_dense(_dense_columns(idx, val, n_vox), w_ext, pairs, chunk)
  tiles, r0, c0, span = _tiles(idx, val, w_ext > 0, h, w, window)
  if check:
    jax.debug.callback(functools.partial(_raise_if_overflow, window=window), span)
  c = _pairs_sparse(tiles, r0, c0, w_ext, pairs, h, w, chunk)
  return jnp.where(span > 0, jnp.nan, c)


correspondence_jit = jax.jit(correspondence, static_argnames=(
    "height", "width", "k", "method", "window", "chunk", "check"))
correspondence_jit.__doc__ = "`correspondence`, compiled once per shape and static argument."


def correspondence_from_volume(intensity, origin, spacing, views: Views, *, height: int,
                               width: int, k: int = DEFAULT_K, pooling: str = "mean",
                               threshold: float = DEFAULT_THRESHOLD, **kwargs) -> jnp.ndarray:
  """Pools a full-resolution intensity volume, then `correspondence_jit`.

  Args:
    intensity: [X, Y, Z] correspondence intensity (e.g. bone_sigmoid(hu, x0=850)).
    origin, spacing: (3,) its grid, mm.
    views, height, width, k, threshold: as `correspondence`.
    pooling: 'mean' or 'max' (`pool_weights`).
    **kwargs: method, window, chunk, check of `correspondence`.

  Returns:
    float32 [P, L, L] as `correspondence`.
  """
  wc = pool_weights(intensity, k, pooling)
  c_origin, c_spacing = coarse_grid(origin, spacing, k)
  return correspondence_jit(wc, c_origin, c_spacing, views, height=height, width=width, k=k,
                            threshold=threshold, **kwargs)


def correspondence_batch(weights_coarse, coarse_origin, coarse_spacing, views: Views, **kwargs):
  """`correspondence` vmapped over a leading sample axis B of every argument (not jitted).

  Args:
    weights_coarse: [B, X', Y', Z'].
    coarse_origin, coarse_spacing: [B, 3].
    views: `Views` with [B, N, 3] fields.
    **kwargs: the keyword arguments of `correspondence`.

  Returns:
    float32 [B, P, L, L].
  """
  fn = functools.partial(correspondence, **kwargs)
  return jax.vmap(fn)(weights_coarse, coarse_origin, coarse_spacing, views)


def correspondence_reference(weights_coarse, coarse_origin, coarse_spacing, views: Views, *,
                             height: int, width: int, k: int = DEFAULT_K,
                             threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
  """The slow oracle: one `drr.project` per voxel above the threshold. Tiny volumes only.

  Arguments and result as `correspondence` (NumPy float32 [P, L, L]).
  """
  h, w = _patch_grid(height, width, k)
  weights = np.asarray(weights_coarse, np.float32)
  patches = coarsen(views, k)
  n = views.source.shape[0]
  pairs = pair_indices(n)
  out = np.zeros((len(pairs), h * w, h * w), np.float32)
  for v in zip(*np.nonzero(weights > threshold)):
    one = np.zeros(weights.shape, np.float32)
    one[v] = 1.0
    # The dense kernel: the oracle stays independent of the clipped marcher's bookkeeping.
    p = np.asarray(drr.project_jit(jnp.asarray(one), coarse_origin, coarse_spacing, patches,
                                   height=h, width=w, method="dense")).reshape(n, -1)
    lo, hi = p.min(axis=1, keepdims=True), p.max(axis=1, keepdims=True)
    p = np.where(hi > lo, (p - lo) / np.where(hi > lo, hi - lo, 1.0), 0.0).astype(np.float32)
    for q, (i, j) in enumerate(pairs):
      out[q] = np.maximum(out[q], weights[v] * np.outer(p[i], p[j]))
  return out
