"""The single effects behind the radiograph look that `appearance.py` draws and chains.

Each is a pure, jittable function of explicit parameters (traced ones are fine), lengths in
pixels, on one view [H, W] (most broadcast over leading axes [..., H, W]). Notation:
G_sigma * a separable Gaussian blur of standard deviation sigma pixels (rows renormalised at the
borders, so a constant stays constant); r(x) = (cos(angle) c + sin(angle) v) / (|cos(angle)| +
|sin(angle)|), with (c, v) the column and row coordinates scaled to [-1, 1] (angle 0: the beam is
stronger towards the last column). Markers are drawn from a 5 x 7 bitmap font (`FONT`, [G, 7, 5],
one glyph per character of `GLYPHS`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# A 5 x 7 bitmap font: side markers, anatomical directions and digits.
GLYPHS = "LRAPHF0123"
_FONT_ROWS = {
    "L": ("#....", "#....", "#....", "#....", "#....", "#....", "#####"),
    "R": ("####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"),
    "A": (".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "P": ("####.", "#...#", "#...#", "####.", "#....", "#....", "#...."),
    "H": ("#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "F": ("#####", "#....", "#....", "####.", "#....", "#....", "#...."),
    "0": (".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."),
    "1": ("..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "2": (".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"),
    "3": ("####.", "....#", "....#", ".###.", "....#", "....#", "####."),
}
FONT = np.array([[[ch == "#" for ch in row] for row in _FONT_ROWS[g]] for g in GLYPHS])  # [G, 7, 5]


def transmission(line_integrals: jnp.ndarray, contrast) -> jnp.ndarray:
  """T = exp(-s I / max I) per view of [..., H, W]; the thickest path transmits exp(-s)."""
  top = line_integrals.max(axis=(-2, -1), keepdims=True)
  u = jnp.where(top > 0, line_integrals / jnp.where(top > 0, top, 1.0), 0.0)
  return jnp.exp(-jnp.asarray(contrast)[..., None, None] * u)


def heel_profile(shape: tuple[int, int], heel, angle) -> jnp.ndarray:
  """[H, W] factor 1 + h r(x) of the open beam; r a linear ramp in [-1, 1] along `angle`."""
  h, w = shape
  v = jnp.linspace(-1.0, 1.0, h)[:, None] if h > 1 else jnp.zeros((1, 1))
  c = jnp.linspace(-1.0, 1.0, w)[None, :] if w > 1 else jnp.zeros((1, 1))
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  return 1.0 + heel * (cos * c + sin * v) / (jnp.abs(cos) + jnp.abs(sin))


def _blur_matrix(n: int, sigma) -> jnp.ndarray:
  """[n, n] Gaussian weights, rows summing to 1 (a constant row stays constant at the borders)."""
  i = jnp.arange(n, dtype=jnp.float32)
  d = (i[:, None] - i[None, :]) / jnp.maximum(sigma, 0.3)
  g = jnp.exp(-0.5 * d * d)
  return g / g.sum(axis=1, keepdims=True)


def gaussian_blur(x: jnp.ndarray, sigma) -> jnp.ndarray:
  """Separable Gaussian blur of [..., H, W] with std `sigma` pixels (>= 0.3; may be traced).

  Two dense matrix products: O(H W (H + W)), a few ms at 256^2, any width, no wrap-around.
  """
  h, w = x.shape[-2:]
  return jnp.einsum("ij,...jk,lk->...il", _blur_matrix(h, sigma), x, _blur_matrix(w, sigma))


def add_scatter(primary: jnp.ndarray, ratio, sigma) -> jnp.ndarray:
  """Primary plus scatter: P + k G_sigma * P (a constant field P becomes (1 + k) P)."""
  return primary + ratio * gaussian_blur(primary, sigma)


def quantum_noise(expected: jnp.ndarray, key: jax.Array) -> jnp.ndarray:
  """Photon counts ~ Poisson(expected), as expected + sqrt(expected) z, floored at 1."""
  z = jax.random.normal(key, expected.shape, jnp.float32)
  return jnp.maximum(expected + jnp.sqrt(expected) * z, 1.0)


def robust_normalize(x: jnp.ndarray, low, high, air=0.0) -> jnp.ndarray:
  """Maps the `low` and `high` quantiles of one view's anatomy [H, W] to 0 and 1 (nearest rank).

  As CR/DX exposure recognition does, the quantiles are taken over the anatomy only: the
  values at least `air` of the way from the view's minimum to its maximum (the rest, direct
  exposure, falls below the window and shows black). They are those of the view averaged
  over step x step blocks (step = max(H, W) // 64, at least 1): ~64^2 values, cheap to sort,
  and not set by single noisy pixels. With step 1 (views up to 127 px), air = 0, low = 0 and
  high = 1 this is min-max scaling.
  """
  h, w = x.shape
  step = max(1, max(h, w) // 64)
  hb, wb = max(h // step, 1), max(w // step, 1)
  blocks = x[:hb * step, :wb * step].reshape(hb, min(step, h), wb, min(step, w)).mean((1, 3))
  v = blocks.reshape(-1)
  floor = v.min() + air * (v.max() - v.min())
  anatomy = v >= floor
  flat = jnp.sort(jnp.where(anatomy, v, jnp.inf))   # the anatomy's values first, ascending
  last = jnp.maximum(anatomy.sum() - 1, 0)
  lo = flat[jnp.round(low * last).astype(jnp.int32)]
  hi = flat[jnp.round(high * last).astype(jnp.int32)]
  return jnp.where(hi > lo, (x - lo) / jnp.where(hi > lo, hi - lo, 1.0), 0.0)


def unsharp_mask(x: jnp.ndarray, amount, radius) -> jnp.ndarray:
  """x + a (x - G_radius * x): edges enhanced by `amount` at the scale `radius` pixels."""
  return x + amount * (x - gaussian_blur(x, radius))


def shutter(x: jnp.ndarray, widths, value) -> jnp.ndarray:
  """Sets the borders of [..., H, W] to `value`; `widths` (top, bottom, left, right) pixels.

  A border covers round(width) rows or columns; width 0 leaves that side untouched.
  """
  h, w = x.shape[-2:]
  widths = jnp.round(jnp.asarray(widths, jnp.float32))
  rows = jnp.arange(h, dtype=jnp.float32)[:, None]
  cols = jnp.arange(w, dtype=jnp.float32)[None, :]
  mask = ((rows < widths[0]) | (rows >= h - widths[1]) |
          (cols < widths[2]) | (cols >= w - widths[3]))
  return jnp.where(mask, jnp.asarray(value, x.dtype), x)


def glyph_mask(shape: tuple[int, int], glyph, top, left, height, mirror=False) -> jnp.ndarray:
  """[H, W] bool strokes of glyph index `glyph` (of GLYPHS), `height` px tall, top-left at
  (`top`, `left`) px, left-right mirrored if `mirror` (a lead marker seen from behind); traced
  arguments are fine (the glyph is placed by comparing a pixel grid with its cells, no loops)."""
  cell = jnp.maximum(height / FONT.shape[1], 1e-3)
  r = jnp.floor((jnp.arange(shape[0], dtype=jnp.float32)[:, None] - top) / cell).astype(jnp.int32)
  c = jnp.floor((jnp.arange(shape[1], dtype=jnp.float32)[None, :] - left) / cell).astype(jnp.int32)
  inside = (r >= 0) & (r < FONT.shape[1]) & (c >= 0) & (c < FONT.shape[2])
  c = jnp.where(mirror, FONT.shape[2] - 1 - c, c)
  font = jnp.asarray(FONT)
  return inside & font[glyph, jnp.clip(r, 0, FONT.shape[1] - 1), jnp.clip(c, 0, FONT.shape[2] - 1)]


def stamp_glyphs(x: jnp.ndarray, glyphs, tops, lefts, height, on, mirror=False,
                 value=1.0) -> jnp.ndarray:
  """Burns glyphs into one view [H, W]: `glyphs`, `tops`, `lefts`, `on`, `mirror` are [G]
  (`mirror` may be a scalar); lengths in pixels."""
  mirror = jnp.broadcast_to(jnp.asarray(mirror), jnp.shape(glyphs))
  masks = jax.vmap(glyph_mask, in_axes=(None, 0, 0, 0, None, 0))(x.shape, glyphs, tops, lefts,
                                                                  height, mirror)
  return jnp.where(jnp.any(masks & jnp.asarray(on)[:, None, None], axis=0), value, x)
