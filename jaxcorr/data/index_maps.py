"""Per-view pixel index maps (flips, quarter turns, patch shifts, patch windows) and their
composition: the transforms that `jaxcorr.data.augment` applies to views and to C.

Notation. A view is an [H, W] array; pixel (r, c) is row r, column c, with row 0 at the top when
shown. Patches are k x k pixel blocks; the patch grid is h x w = (H / k) x (W / k), and patch
(pr, pc) has flat index a = pr * w + pc (row-major).

A map says which input pixel src[p] each output pixel p shows where valid[p]; the output is zero
elsewhere (`IndexMap`). The maps here only move whole patches, so each pixel map induces a patch
map (`patch_map`): output patch a shows input patch src_patch[a] (the patch holding src of a's
top-left pixel) where valid. Maps compose by gathering (`compose`). Parameters (quarter turns,
shifts, rectangles) may be traced: nothing branches in Python on a value, so the maps jit and vmap.

Conventions (all on the [H, W] array of one view).
  flip       axis 1 (horizontal): out[r, c] = in[r, W-1-c];
             axis 0 (vertical): out[r, c] = in[H-1-r, c].
  rot90      `np.rot90(image, times)`: counter-clockwise as displayed (row 0 on top), one turn is
             out[r, c] = in[c, W-1-r]; square images only.
  shift      (dr, dc) patches: out[r, c] = in[r - dr k, c - dc k], i.e. positive moves the
             content down / right; pixels shifted in from outside are zero.
  crop       keeps the patch rectangle [r0, r0 + hh) x [c0, c0 + ww), zero outside (the shape is
             unchanged: a masked crop).
  cutout     zeroes the patch rectangle [r0, r0 + hh) x [c0, c0 + ww).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class IndexMap(NamedTuple):
  """Per-view pixel index maps; a pytree.

  Attributes:
    src: int32 [..., H, W]; output pixel (r, c) shows the input pixel with flat index src
      (row-major, r' * W + c'). Always a valid index (0 where `valid` is False).
    valid: bool [..., H, W]; False where the output pixel is zero (shifted in, cut out, cropped).
  """

  src: jnp.ndarray
  valid: jnp.ndarray


def _from_coords(rows, cols, valid, height, width) -> IndexMap:
  """An IndexMap from source coordinates; out-of-image sources are invalid."""
  valid = valid & (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
  src = jnp.where(valid, rows * width + cols, 0).astype(jnp.int32)
  return IndexMap(src, valid)


def _grid(height, width):
  r = jnp.arange(height, dtype=jnp.int32)[:, None]
  c = jnp.arange(width, dtype=jnp.int32)[None, :]
  return jnp.broadcast_to(r, (height, width)), jnp.broadcast_to(c, (height, width))


def identity_map(height: int, width: int) -> IndexMap:
  """The map that changes nothing, [H, W]."""
  r, c = _grid(height, width)
  return _from_coords(r, c, jnp.ones((height, width), bool), height, width)


def flip_map(height: int, width: int, axis: int) -> IndexMap:
  """Mirror image of one view: axis 1 flips columns (horizontal), axis 0 rows (vertical).

  Args:
    height, width: image shape (static).
    axis: 0 or 1 (static).

  Returns:
    IndexMap [H, W].
  """
  if axis not in (0, 1):
    raise ValueError(f"flip axis must be 0 (vertical) or 1 (horizontal); got {axis!r}")
  r, c = _grid(height, width)
  if axis == 0:
    r = height - 1 - r
  else:
    c = width - 1 - c
  return _from_coords(r, c, jnp.ones((height, width), bool), height, width)


def rot90_map(size: int, times) -> IndexMap:
  """`np.rot90(image, times)` of a square view (counter-clockwise as displayed).

  Args:
    size: H = W (static).
    times: int, possibly traced; taken modulo 4.

  Returns:
    IndexMap [H, W].
  """
  r, c = _grid(size, size)
  t = jnp.mod(jnp.asarray(times, jnp.int32), 4)
  m = size - 1
  # Source (row, column) of output (r, c) after t turns: (r, c), (c, m-r), (m-r, m-c), (m-c, r).
  rows = jnp.select([t == 0, t == 1, t == 2], [r, c, m - r], m - c)
  cols = jnp.select([t == 0, t == 1, t == 2], [c, m - r, m - c], r)
  return _from_coords(rows, cols, jnp.ones((size, size), bool), size, size)


def shift_map(height: int, width: int, shift, *, k: int) -> IndexMap:
  """Moves a view's content by whole patches: out[r, c] = in[r - dr k, c - dc k].

  Args:
    height, width: image shape (static).
    shift: int (dr, dc) in patches, possibly traced; positive moves the content down / right.
    k: patch size in pixels (static).

  Returns:
    IndexMap [H, W]; pixels whose source lies outside the image are invalid.
  """
  shift = jnp.asarray(shift, jnp.int32)
  r, c = _grid(height, width)
  return _from_coords(r - shift[0] * k, c - shift[1] * k, jnp.ones((height, width), bool),
                      height, width)


def window_map(height: int, width: int, start, size, *, k: int, keep_inside: bool) -> IndexMap:
  """Masks a patch-aligned rectangle: a masked crop (keep_inside) or a cutout (not keep_inside).

  Args:
    height, width: image shape (static).
    start: int (r0, c0), the rectangle's top-left patch, possibly traced.
    size: int (hh, ww) in patches, possibly traced.
    k: patch size in pixels (static).
    keep_inside: True keeps only the rectangle (crop); False zeroes it (cutout). Static.

  Returns:
    IndexMap [H, W] with src the identity.
  """
  start, size = jnp.asarray(start, jnp.int32), jnp.asarray(size, jnp.int32)
  r, c = _grid(height, width)
  pr, pc = r // k, c // k
  inside = ((pr >= start[0]) & (pr < start[0] + size[0])
            & (pc >= start[1]) & (pc < start[1] + size[1]))
  return _from_coords(r, c, inside if keep_inside else ~inside, height, width)


def compose(first: IndexMap, second: IndexMap) -> IndexMap:
  """The map of applying `first`, then `second` (same leading shape; per view).

  Args:
    first, second: IndexMap [..., H, W].

  Returns:
    IndexMap [..., H, W]: output p shows input first.src[second.src[p]].
  """
  shape = second.src.shape
  f_src = first.src.reshape(shape[:-2] + (-1,))
  f_valid = first.valid.reshape(shape[:-2] + (-1,))
  s_src = second.src.reshape(shape[:-2] + (-1,))
  src = jnp.take_along_axis(f_src, s_src, axis=-1)
  valid = second.valid.reshape(s_src.shape) & jnp.take_along_axis(f_valid, s_src, axis=-1)
  return IndexMap(jnp.where(valid, src, 0).reshape(shape), valid.reshape(shape))


def select_map(pred, on_true: IndexMap, on_false: IndexMap) -> IndexMap:
  """Elementwise choice between two maps; pred broadcasts against [..., H, W] (e.g. [N, 1, 1])."""
  return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def patch_map(maps: IndexMap, *, k: int) -> tuple[jnp.ndarray, jnp.ndarray]:
  """The patch-grid map induced by pixel maps that move whole patches.

  Args:
    maps: IndexMap [..., H, W].
    k: patch size (static); H and W must be multiples of k.

  Returns:
    (src, valid): int32 [..., L] flat source patch indices (0 where invalid) and bool [..., L],
    read off each output patch's top-left pixel.
  """
  height, width = maps.src.shape[-2:]
  src = maps.src[..., ::k, ::k]
  valid = maps.valid[..., ::k, ::k]
  patch = (src // width // k) * (width // k) + (src % width) // k
  lead = src.shape[:-2]
  return (jnp.where(valid, patch, 0).reshape(lead + (-1,)).astype(jnp.int32),
          valid.reshape(lead + (-1,)))
