"""Appearance chain: neutral = normalize, each effect's analytic property, draws, jit + vmap."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcorr.data import appearance, radiograph_effects, radiometric

# Compiled once and shared (views [2, 24, 32], detector images [64, 64]): compiling, not
# running, is what these tests spend their time on.
APPLY = jax.jit(appearance.apply)
DETECT = jax.jit(appearance.detect)
TRANSMISSION = jax.jit(radiograph_effects.transmission)
SCATTER = jax.jit(radiograph_effects.add_scatter)
HEEL = jax.jit(radiograph_effects.heel_profile, static_argnums=0)
WINDOW = jax.jit(radiograph_effects.robust_normalize)
SHARPEN = jax.jit(radiograph_effects.unsharp_mask)
SHUTTER = jax.jit(radiograph_effects.shutter)
GLYPH = jax.jit(radiograph_effects.glyph_mask, static_argnums=0)

OFF = dict(p_attenuation=0.0, p_noise=0.0, p_heel=0.0, p_scatter=0.0, p_display=0.0,
           p_shutter=0.0, p_glyphs=0.0, p_invert=0.0)


def _views(n=2, h=24, w=32, seed=0):
  """[n, h, w] float32 line-integral-like views: a bright blob on a dim ramp, all >= 0."""
  r, c = np.arange(h)[:, None], np.arange(w)[None, :]
  blob = 5.0 * np.exp(-((r - h / 2) ** 2 + (c - w / 3) ** 2) / 20.0)
  noise = np.random.default_rng(seed).uniform(size=(n, h, w))
  return (blob + 0.1 * c / w + noise).astype(np.float32)


def _per_view(params, n=2):
  return jax.tree.map(lambda a: jnp.broadcast_to(a, (n,) + np.shape(a)), params)


def test_neutral_settings_equal_normalize_exactly():
  views = _views()
  views[1] = 0.0   # an all-zero view
  batch = np.stack([views, 2 * views])
  neutral = jax.jit(jax.vmap(appearance.Appearance(**OFF)))
  out = neutral(batch, jax.random.split(jax.random.key(1), 2))
  np.testing.assert_array_equal(np.asarray(out), np.asarray(radiometric.normalize(batch)))
  np.testing.assert_array_equal(
      np.asarray(APPLY(views, _per_view(appearance.NEUTRAL), jax.random.key(0))),
      np.asarray(radiometric.normalize(views)))


def test_transmission_spans_one_to_exp_minus_s():
  views = _views(n=1)
  t = np.asarray(TRANSMISSION(views, 3.0))
  assert t.max() <= 1.0 and t.min() == pytest.approx(math.exp(-3.0), rel=1e-6)
  np.testing.assert_array_equal(np.asarray(TRANSMISSION(np.zeros((1, 4, 4), np.float32), 3.0)),
                                1.0)


def test_quantum_noise_variance_follows_the_poisson_mean():
  s, n0 = 2.0, 400.0 * math.exp(2.0)            # constant view: lam = N0 exp(-s) = 400
  lam = n0 * np.exp(-s) * np.ones((128, 128), np.float32)
  counts = np.asarray(jax.jit(radiograph_effects.quantum_noise)(lam, jax.random.key(0)), np.float64)
  assert counts.mean() == pytest.approx(400.0, abs=4 * 20 / 128)   # 4 standard errors
  assert counts.var() == pytest.approx(400.0, rel=0.06)            # ~5 standard errors
  # Through the log (delta method): var(-log(N / N0)) ~ 1 / lam, mean ~ s + 1 / (2 lam).
  p = appearance.make_params(attenuation=True, contrast=s, noise=True, photons=n0)
  flat = np.full((64, 64), 7.0, np.float32)
  y = np.asarray(DETECT(flat, p, jax.random.key(1)), np.float64)
  assert y.mean() == pytest.approx(s + 1 / 800.0, abs=4 * 0.05 / 64)
  assert y.var() == pytest.approx(1 / 400.0, rel=0.12)             # ~5 standard errors
  # Fewer photons, more noise.
  few = DETECT(flat, p._replace(photons=np.float32(50.0)), jax.random.key(1))
  assert np.var(np.asarray(few)) > 5 * y.var()


def test_scatter_zero_is_identity_and_keeps_a_constant_field_constant():
  x = _views(n=1, h=64, w=64)[0]
  np.testing.assert_array_equal(np.asarray(SCATTER(x, 0.0, 5.0)), np.asarray(x))
  flat = np.asarray(SCATTER(np.full((24, 32), 2.0, np.float32), 0.4, 6.0))
  np.testing.assert_allclose(flat, 2.8, rtol=1e-5)
  # Scatter fogs the image: the log contrast of a dense blob drops.
  base = appearance.make_params(attenuation=True, contrast=3.0)
  fogged = base._replace(scatter=np.float32(0.5), scatter_sigma=np.float32(0.2))
  y0 = DETECT(x, base, jax.random.key(0))
  y1 = DETECT(x, fogged, jax.random.key(0))
  assert float(y1.max() - y1.min()) < 0.7 * float(y0.max() - y0.min())


def test_heel_zero_is_identity_and_a_ramp_along_the_chosen_axis():
  np.testing.assert_array_equal(np.asarray(HEEL((8, 16), 0.0, 1.0)), 1.0)
  along_cols = np.asarray(HEEL((8, 16), 0.2, 0.0))
  np.testing.assert_allclose(along_cols, np.broadcast_to(along_cols[0], (8, 16)))
  assert np.all(np.diff(along_cols[0]) > 0)
  np.testing.assert_allclose(along_cols[0, [0, -1]], [0.8, 1.2], rtol=1e-6)
  along_rows = np.asarray(HEEL((8, 16), 0.2, math.pi / 2))
  np.testing.assert_allclose(along_rows, along_rows[:, :1] * np.ones((1, 16)), rtol=1e-6)
  assert np.all(np.diff(along_rows[:, 0]) > 0)
  # On a flat field (I = 0) the log image is -log(1 + h r); angle pi: the beam is stronger
  # towards column 0, so y rises along the columns.
  p = appearance.make_params(attenuation=True, heel=0.2, heel_angle=math.pi)
  y = np.asarray(DETECT(np.zeros((64, 64), np.float32), p, jax.random.key(0)))
  np.testing.assert_allclose(y, np.broadcast_to(y[0], (64, 64)), atol=1e-6)
  assert np.all(np.diff(y[0]) > 0)
  np.testing.assert_allclose(y[0, [0, -1]], [-math.log(1.2), -math.log(0.8)], rtol=1e-5)


def test_display_window_and_unsharp_mask():
  x = _views(n=1)[0]
  np.testing.assert_allclose(np.asarray(WINDOW(x, 0.0, 1.0)),
                             np.asarray(radiometric.normalize(x)), atol=1e-6)
  # Direct exposure below the air threshold falls under the window.
  ramp = np.concatenate([np.zeros(16), np.linspace(1.0, 2.0, 16)]).astype(np.float32)
  step = np.broadcast_to(ramp, (24, 32))   # air (0) beside anatomy from 1 to 2
  y = np.asarray(WINDOW(step, 0.0, 1.0, 0.2))
  np.testing.assert_allclose(y[:, 16], 0.0, atol=1e-6)
  np.testing.assert_allclose(y[:, -1], 1.0, atol=1e-6)
  np.testing.assert_allclose(y[:, :16], -1.0, atol=1e-6)   # (0 - 1) / (2 - 1): clipped later
  np.testing.assert_allclose(np.asarray(SHARPEN(np.full((8, 8), 0.3, np.float32), 1.5, 2.0)),
                             0.3, atol=1e-6)
  edge = np.where(np.arange(16) < 8, 0.2, 0.8).astype(np.float32) * np.ones((4, 1), np.float32)
  sharp = np.asarray(SHARPEN(edge, 1.0, 1.5))
  assert sharp[0, 7] < 0.2 and sharp[0, 8] > 0.8   # overshoot on both sides of the edge


def test_shutters_set_the_borders_exactly():
  x = np.full((16, 20), 0.5, np.float32)
  y = np.asarray(SHUTTER(x, (2.0, 0.0, 3.0, 1.0), 1.0))
  expected = np.full((16, 20), 0.5)
  expected[:2], expected[:, :3], expected[:, -1:] = 1.0, 1.0, 1.0
  np.testing.assert_array_equal(y, expected)
  p = appearance.make_params(shutter=(0.0, 0.25, 0.0, 0.125), shutter_value=0.0)
  z = np.asarray(APPLY(_views(), _per_view(p), jax.random.key(0)))   # [2, 24, 32]
  np.testing.assert_array_equal(z[:, 18:], 0.0)
  np.testing.assert_array_equal(z[:, :, 28:], 0.0)
  np.testing.assert_array_equal(z[:, :18, :28],
                                np.asarray(radiometric.normalize(_views()))[:, :18, :28])


def test_glyphs_stamp_the_bitmap_and_touch_only_a_small_region():
  mask = np.asarray(GLYPH((20, 20), radiograph_effects.GLYPHS.index("L"), 4.0, 4.0, 7.0))
  expected = np.zeros((20, 20), bool)
  expected[4:11, 4:9] = radiograph_effects.FONT[radiograph_effects.GLYPHS.index("L")]
  np.testing.assert_array_equal(mask, expected)
  mirrored = np.asarray(GLYPH((20, 20), 1, 4.0, 4.0, 7.0, True))   # 'R' seen from behind
  np.testing.assert_array_equal(mirrored[4:11, 4:9], radiograph_effects.FONT[1][:, ::-1])
  assert mirrored.sum() == radiograph_effects.FONT[1].sum()
  big = np.asarray(GLYPH((40, 40), 1, 10.0, 20.0, 14.0))   # 'R', 2 px cells
  np.testing.assert_array_equal(big[10:24:2, 20:30:2], radiograph_effects.FONT[1])
  assert big.sum() == 4 * radiograph_effects.FONT[1].sum()
  views = _views()
  base = np.asarray(radiometric.normalize(views))
  draw = jax.jit(appearance.Appearance(**{**OFF, "p_glyphs": 1.0}).sample, static_argnums=1)
  for seed in range(3):
    params = draw(jax.random.key(seed), 2)
    params = params._replace(glyph_height=jnp.full(2, 0.3))   # 7 px glyphs on these 24 rows
    out = np.asarray(APPLY(views, params, jax.random.key(0)))
    changed = out != base
    assert 0 < changed.mean(axis=(1, 2)).min() and changed.mean(axis=(1, 2)).max() < 0.15
    np.testing.assert_array_equal(out[changed], 1.0)


def test_inversion_is_one_minus_x():
  views = _views()
  sample = appearance.Appearance(**{**OFF, "p_invert": 1.0}).sample
  params = jax.jit(sample, static_argnums=1)(jax.random.key(0), 2)
  assert np.all(np.asarray(params.invert))
  out = APPLY(views, params, jax.random.key(0))
  np.testing.assert_allclose(np.asarray(out), 1 - np.asarray(radiometric.normalize(views)),
                             atol=1e-7)


def test_draws_are_deterministic_per_key_within_ranges_and_vmap_over_a_batch():
  aug = appearance.Appearance(p_shutter=0.5, p_glyphs=0.5)
  views = _views()
  batch = np.stack([views, views * [[[0.0]], [[1.0]]], 3 * views])   # [B, N, H, W], a zero view
  fn = jax.jit(jax.vmap(aug))
  keys = jax.random.split(jax.random.key(0), 3)
  a, b = np.asarray(fn(batch, keys)), np.asarray(fn(batch, keys))
  np.testing.assert_array_equal(a, b)
  assert a.shape == (3, 2, 24, 32) and a.dtype == np.float32
  assert np.all(np.isfinite(a)) and a.min() >= 0.0 and a.max() <= 1.0
  c = np.asarray(fn(batch, jax.random.split(jax.random.key(1), 3)))
  assert not np.allclose(a, c)
  assert not np.allclose(a[0, 0], a[2, 0])   # every sample gets its own draw
  p = jax.jit(aug.sample, static_argnums=1)(jax.random.key(2), 256)
  assert p.glyphs.shape == (256, appearance.MAX_GLYPHS) and p.shutter.shape == (256, 4)
  s = np.asarray(p.contrast)
  assert s.min() >= -math.log(0.2) - 1e-5 and s.max() <= -math.log(0.005) + 1e-5
  assert 0.6 < np.asarray(p.attenuation).mean() < 0.95   # p_attenuation = 0.8
  assert np.all(np.asarray(p.heel) <= 0.2) and np.all(np.asarray(p.shutter) <= 0.15)
  shuttered = np.asarray(p.shutter).max(axis=1) > 0
  assert 0.3 < shuttered.mean() < 0.7   # p_shutter = 0.5, at least one side when drawn


def test_fixed_is_deterministic_but_for_the_noise():
  views = _views()
  fixed = jax.jit(appearance.fixed)
  a = np.asarray(fixed(views, appearance.REALISTIC, jax.random.key(0)))
  b = np.asarray(fixed(views, appearance.REALISTIC, jax.random.key(1)))
  assert a.min() >= 0 and a.max() <= 1 and not np.array_equal(a, b)
  np.testing.assert_allclose(
      a, np.asarray(APPLY(views, _per_view(appearance.REALISTIC), jax.random.key(0))), atol=1e-5)
  quiet = appearance.REALISTIC._replace(noise=np.bool_(False))
  np.testing.assert_array_equal(np.asarray(fixed(views, quiet, jax.random.key(0))),
                                np.asarray(fixed(views, quiet, jax.random.key(1))))


def test_fields_are_checked_and_config_blocks_convert():
  with pytest.raises(ValueError, match="p_noise"):
    appearance.Appearance(p_noise=1.5)
  with pytest.raises(ValueError, match="transmission"):
    appearance.Appearance(transmission=(0.2, 0.1))
  aug = appearance.Appearance.from_config({"enabled": True, "photons": [10.0, 20.0],
                                           "p_invert": 0.0})
  assert aug.photons == (10.0, 20.0) and aug.p_invert == 0.0
  hash(aug)   # a static argument of jitted functions
