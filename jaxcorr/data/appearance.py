"""Appearance randomisation: DRR line integrals -> images that look like CR/DX radiographs.

Used instead of `radiometric.normalize` when `config.augment.appearance.enabled`. One view's
line integrals I [H, W] (>= 0) go through the chain of a real exposure, in physical order:

  u      = I / max I                                   (u = 0 for an all-zero view)
  T      = exp(-s u)            s = -log t_min, t_min the thickest path's transmitted fraction
  lam    = N0 (1 + h r(x)) T                           heel: r in [-1, 1], a ramp along `angle`
  lam    <- lam + k G_sigma * lam                      scatter: k the scatter-to-primary ratio
  N      = max(lam + sqrt(lam) z, 1)    z ~ N(0, 1)    quantum noise (Poisson, Gaussian approx.)
  y      = -log(N / N0)                                the log image (dense = large)
  x      = (y - q_lo) / (q_hi - q_lo)                  display: window on the anatomy's quantiles
  x      <- x + a (x - G_rho * x)                      unsharp mask (edge enhancement)
  x      <- clip(x, 0, 1) ** gamma                     display LUT
  x      <- c on the shutter borders, c in {0, 1}      collimator shutters (1-4 sides)
  x      <- 1 on the strokes of 1-3 glyphs             burned-in markers ('L', 'R', ...; some
                                                       mirrored, as lead markers seen from behind)
  x      <- 1 - x                                      inversion (MONOCHROME1-like display)
  x      <- clip(x, 0, 1)

Notation: N0 photons per pixel of the unattenuated beam; G_sigma (a Gaussian blur) and the heel
ramp r(x) are defined in `radiograph_effects`. Each stage is drawn per view with its own
probability (`Appearance` fields); a stage not drawn is the identity: without attenuation y = I
(heel, scatter and noise act on the beam, so they need attenuation), without display processing
x = `radiometric.normalize(y)`. With every probability 0 the chain is exactly
`radiometric.normalize(I)`.

Shapes: `Appearance.__call__` and `apply` take one sample's views [N, H, W] and return
float32 [N, H, W] in [0, 1]; the per-view effects (`radiograph_effects`, and `detect`, `display`,
`overlay` here) are pure functions of explicit parameters (lengths in pixels) on [H, W] (most
broadcast over leading axes); `Params` holds one draw (lengths as fractions of the image), [N] per
field for `apply`, scalars for `make_params`. Everything is pure and jittable; every draw comes
from the key given.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxcorr.data import radiometric
from jaxcorr.data.radiograph_effects import (add_scatter, FONT, GLYPHS, heel_profile,
                                             quantum_noise, robust_normalize, shutter,
                                             stamp_glyphs, transmission, unsharp_mask)

MAX_GLYPHS = 3
_DRAWS = 48   # uniforms per view behind one `Appearance.sample` (44 used)


class Params(NamedTuple):
  """One appearance draw. Per view: scalars ([N] for `apply`), glyph fields [MAX_GLYPHS] ([N, G]).

  Lengths are fractions: shutter widths of H (top, bottom) and W (left, right), blur widths of
  max(H, W), glyph height of H; glyph_top/left are fractions of the room left by the glyph.
  """

  attenuation: bool = False     # exp(-s u) physics; heel, scatter and noise need it
  contrast: float = 1.0         # s = -log(transmission of the thickest path)
  noise: bool = False
  photons: float = 1e4          # N0, photons per pixel of the open beam
  heel: float = 0.0             # h, relative N0 change at the field edge
  heel_angle: float = 0.0       # radians; direction in which N0 rises
  scatter: float = 0.0          # k, scatter-to-primary ratio of an open field
  scatter_sigma: float = 0.1    # scatter blur std, fraction of max(H, W)
  display: bool = False         # robust window + unsharp mask + gamma (else min-max)
  window_air: float = 0.0       # fraction of y's range below which pixels are direct exposure
  window_low: float = 0.0       # quantile of the anatomy's y mapped to 0
  window_high: float = 1.0      # quantile of the anatomy's y mapped to 1
  gamma: float = 1.0
  sharpen: float = 0.0          # unsharp-mask amount a
  sharpen_radius: float = 0.01  # unsharp-mask blur std, fraction of max(H, W)
  shutter: tuple = (0.0, 0.0, 0.0, 0.0)  # widths of the top, bottom, left, right borders
  shutter_value: float = 0.0    # 0 black, 1 white
  glyphs: tuple = (False,) * MAX_GLYPHS  # which glyph slots are stamped
  glyph_ids: tuple = (0,) * MAX_GLYPHS   # indices into GLYPHS
  glyph_top: tuple = (0.0,) * MAX_GLYPHS
  glyph_left: tuple = (0.0,) * MAX_GLYPHS
  glyph_height: float = 0.05
  glyph_mirror: tuple = (False,) * MAX_GLYPHS
  invert: bool = False


_BOOL_FIELDS = ("attenuation", "noise", "display", "glyphs", "glyph_mirror", "invert")


def make_params(**fields) -> Params:
  """A `Params` of NumPy arrays (a pytree of leaves) for one view; unnamed fields are neutral."""
  p = Params()._replace(**fields)
  return Params(*(np.asarray(v, np.bool_ if k in _BOOL_FIELDS else
                             np.int32 if k == "glyph_ids" else np.float32)
                  for k, v in zip(Params._fields, p)))


NEUTRAL = make_params()

# The fixed 'real-like' look for benchmark images: attenuation contrast (the thickest path
# transmits 2 %), mild noise (N0 = 3e5: ~0.5 % of the window at 256^2, a little above the
# <= 0.3 % of the real CRs in ../shared/data averaged to 256^2; docs/appearance.md), scatter, a
# CR-like window with edge enhancement; no shutters, markers or inversion.
REALISTIC = make_params(
    attenuation=True, contrast=-math.log(0.02), noise=True, photons=3e5, heel=0.08,
    heel_angle=0.0, scatter=0.3, scatter_sigma=0.1, display=True, window_air=0.08,
    window_low=0.01, window_high=0.995, gamma=1.0, sharpen=0.8, sharpen_radius=0.012)


def detect(line_integral: jnp.ndarray, p: Params, key: jax.Array) -> jnp.ndarray:
  """The log image y = -log(N / N0) of one view [H, W] (attenuation, heel, scatter, noise)."""
  shape = line_integral.shape
  size = max(shape)
  expected = (p.photons * heel_profile(shape, p.heel, p.heel_angle)
              * transmission(line_integral, p.contrast))
  expected = add_scatter(expected, p.scatter, p.scatter_sigma * size)
  counts = jnp.where(p.noise, quantum_noise(expected, key), expected)
  return -jnp.log(counts / p.photons)


def display(signal: jnp.ndarray, p: Params) -> jnp.ndarray:
  """CR/DX display processing of one log image [H, W]: window, unsharp mask, gamma."""
  x = robust_normalize(signal, p.window_low, p.window_high, p.window_air)
  x = unsharp_mask(x, p.sharpen, p.sharpen_radius * max(signal.shape))
  return jnp.clip(x, 0.0, 1.0) ** p.gamma


def overlay(x: jnp.ndarray, p: Params) -> jnp.ndarray:
  """Shutters, then glyphs, on one display image [H, W] in [0, 1]."""
  h, w = x.shape
  x = shutter(x, p.shutter * jnp.array([h, h, w, w], jnp.float32), p.shutter_value)
  height = p.glyph_height * h
  width = height * FONT.shape[2] / FONT.shape[1]
  return stamp_glyphs(x, p.glyph_ids, p.glyph_top * jnp.maximum(h - height, 0.0),
                      p.glyph_left * jnp.maximum(w - width, 0.0), height, p.glyphs,
                      p.glyph_mirror)


def _one_view(line_integral: jnp.ndarray, p: Params, key: jax.Array) -> jnp.ndarray:
  signal = jnp.where(p.attenuation, detect(line_integral, p, key), line_integral)
  x = jnp.where(p.display, display(signal, p), radiometric.normalize(signal))
  x = overlay(x, p)
  x = jnp.where(p.invert, 1.0 - x, x)
  return jnp.clip(x, 0.0, 1.0)


def apply(line_integrals: jnp.ndarray, params: Params, key: jax.Array) -> jnp.ndarray:
  """The chain on [N, H, W] line integrals with per-view `params` ([N] leading); the key only
  feeds the noise. Returns float32 [N, H, W] in [0, 1]."""
  line_integrals = jnp.asarray(line_integrals, jnp.float32)
  keys = jax.random.split(key, line_integrals.shape[0])
  return jax.vmap(_one_view)(line_integrals, params, keys)


def fixed(line_integrals: jnp.ndarray, params: Params = REALISTIC,
          key: jax.Array | None = None) -> jnp.ndarray:
  """One appearance (a `make_params` result, default REALISTIC) on every view of [N, H, W];
  deterministic but for the noise, which comes from `key` (default key 0)."""
  n = line_integrals.shape[0]
  params = jax.tree.map(lambda a: jnp.broadcast_to(a, (n,) + np.shape(a)), params)
  return apply(line_integrals, params, jax.random.key(0) if key is None else key)


@dataclasses.dataclass(frozen=True)
class Appearance:
  """Probabilities and ranges of the appearance draw; fields are `config.augment.appearance`
  keys (docs/appearance.md gives the reasons for each range). Ranges are (low, high) tuples,
  drawn uniformly, or log-uniformly for `transmission`, `photons` and `gamma`."""

  p_attenuation: float = 0.8
  transmission: tuple = (0.005, 0.2)     # thickest path's transmitted fraction exp(-s)
  p_noise: float = 0.8
  photons: tuple = (1e3, 3e6)            # N0 per pixel (open beam)
  p_heel: float = 0.5
  heel: tuple = (0.0, 0.2)               # h; direction one of the 4 image axes
  p_scatter: float = 0.5
  scatter: tuple = (0.0, 0.5)            # scatter-to-primary ratio k
  scatter_sigma: tuple = (0.05, 0.2)     # fraction of the image size
  p_display: float = 0.8
  window_air: tuple = (0.0, 0.15)        # direct-exposure threshold, fraction of the range
  window_low: tuple = (0.0, 0.05)        # anatomy quantiles mapped to black ...
  window_high: tuple = (0.95, 1.0)       # ... and white
  gamma: tuple = (0.67, 1.5)
  sharpen: tuple = (0.0, 1.5)            # unsharp-mask amount
  sharpen_radius: tuple = (0.005, 0.03)  # fraction of the image size
  p_shutter: float = 0.2
  shutter: tuple = (0.02, 0.15)          # width per shuttered side, fraction of H or W
  p_shutter_white: float = 0.5
  p_glyphs: float = 0.3
  glyph_height: tuple = (0.04, 0.08)     # fraction of H; 1-3 glyphs
  p_glyph_mirror: float = 0.5            # per glyph: a lead marker imaged from behind
  p_invert: float = 0.5

  def __post_init__(self):
    for f in dataclasses.fields(self):
      v = getattr(self, f.name)
      if f.name.startswith("p_"):
        if not 0.0 <= v <= 1.0:
          raise ValueError(f"augment.appearance.{f.name}={v}: a probability must be in [0, 1]")
        continue
      if len(v) != 2 or not v[0] <= v[1]:
        raise ValueError(f"augment.appearance.{f.name}={v}: expected a range (low, high) with "
                         "low <= high")
    bounds = {"transmission": (1e-6, 1.0), "photons": (1.0, 1e9), "heel": (0.0, 0.9),
              "scatter": (0.0, 10.0), "scatter_sigma": (0.0, 1.0), "window_air": (0.0, 0.9),
              "window_low": (0.0, 1.0), "window_high": (0.0, 1.0), "gamma": (0.05, 20.0),
              "sharpen": (0.0, 10.0), "sharpen_radius": (0.0, 1.0), "shutter": (0.0, 0.45),
              "glyph_height": (0.01, 0.5)}
    for name, (lo, hi) in bounds.items():
      v = getattr(self, name)
      if not lo <= v[0] <= v[1] <= hi:
        raise ValueError(f"augment.appearance.{name}={v}: must lie in [{lo}, {hi}]")
    if self.window_low[1] >= self.window_high[0]:
      raise ValueError(f"augment.appearance: window_low={self.window_low} must stay below "
                       f"window_high={self.window_high}")

  @classmethod
  def from_config(cls, block) -> Appearance:
    """From a `config.augment.appearance` block (ignores `enabled`; lists become tuples)."""
    return cls(**{k: tuple(v) if isinstance(v, (list, tuple)) else v
                  for k, v in dict(block).items() if k != "enabled"})

  def sample(self, key: jax.Array, n: int) -> Params:
    """Draws the parameters of n views (every field [n], glyph fields [n, MAX_GLYPHS]).

    One uniform draw [n, _DRAWS] feeds every field, column by column: a single RNG call
    compiles in a fraction of the time of one call per field.
    """
    u = jax.random.uniform(key, (n, _DRAWS))
    columns = iter(range(_DRAWS))

    def unit(k=None):
      """The next column [n] (k None) or k columns [n, k] of uniforms in [0, 1)."""
      if k is None:
        return u[:, next(columns)]
      return u[:, [next(columns) for _ in range(k)]]

    def flag(p, k=None):
      return unit(k) < p

    def uniform(r, k=None):
      return r[0] + (r[1] - r[0]) * unit(k)

    def log_uniform(r):
      return jnp.exp(uniform((math.log(r[0]), math.log(r[1]))))

    def integer(m, k=None):
      return jnp.minimum(jnp.floor(unit(k) * m), m - 1).astype(jnp.int32)

    def maybe(p, value, neutral):
      return jnp.where(flag(p), value, neutral)

    sides = flag(0.5, 4) | jax.nn.one_hot(integer(4), 4, dtype=bool)   # 1-4 sides
    shuttered = flag(self.p_shutter)[:, None] & sides
    count = 1 + integer(MAX_GLYPHS)[:, None]
    glyphs = flag(self.p_glyphs)[:, None] & (jnp.arange(MAX_GLYPHS) < count)
    return Params(
        attenuation=flag(self.p_attenuation),
        contrast=-jnp.log(log_uniform(self.transmission)),
        noise=flag(self.p_noise),
        photons=log_uniform(self.photons),
        heel=maybe(self.p_heel, uniform(self.heel), 0.0),
        heel_angle=integer(4).astype(jnp.float32) * (math.pi / 2),
        scatter=maybe(self.p_scatter, uniform(self.scatter), 0.0),
        scatter_sigma=uniform(self.scatter_sigma),
        display=flag(self.p_display),
        window_air=uniform(self.window_air),
        window_low=uniform(self.window_low),
        window_high=uniform(self.window_high),
        gamma=log_uniform(self.gamma),
        sharpen=uniform(self.sharpen),
        sharpen_radius=uniform(self.sharpen_radius),
        shutter=jnp.where(shuttered, uniform(self.shutter, 4), 0.0),
        shutter_value=flag(self.p_shutter_white).astype(jnp.float32),
        glyphs=glyphs,
        glyph_ids=integer(len(GLYPHS), MAX_GLYPHS),
        glyph_top=unit(MAX_GLYPHS),
        glyph_left=unit(MAX_GLYPHS),
        glyph_height=uniform(self.glyph_height),
        glyph_mirror=flag(self.p_glyph_mirror, MAX_GLYPHS),
        invert=flag(self.p_invert))

  def __call__(self, line_integrals: jnp.ndarray, key: jax.Array) -> jnp.ndarray:
    """[N, H, W] line integrals of one sample -> [N, H, W] float32 images in [0, 1]."""
    k_draw, k_noise = jax.random.split(key)
    return apply(line_integrals, self.sample(k_draw, line_integrals.shape[0]), k_noise)
