"""Radiometric augmentation: normalisation, identity settings, determinism, ranges."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxcorr.data import radiometric


def test_normalize_maps_each_view_to_unit_range():
  x = jnp.stack([jnp.arange(12.0).reshape(3, 4), jnp.full((3, 4), 5.0)])
  y = np.asarray(radiometric.normalize(x))
  np.testing.assert_allclose(y[0], np.arange(12.0).reshape(3, 4) / 11)
  np.testing.assert_array_equal(y[1], 0.0)


def test_zero_ranges_are_the_identity():
  x = jax.random.uniform(jax.random.key(0), (2, 8, 8))
  aug = radiometric.Radiometric(p_invert=0.0, brightness=0.0, contrast=0.0, max_gamma=1.0,
                                max_noise=0.0)
  np.testing.assert_allclose(np.asarray(aug(x, jax.random.key(1))), np.asarray(x), atol=1e-6)


def test_inversion_always_and_same_key_same_result():
  x = jax.random.uniform(jax.random.key(0), (3, 8, 8))
  invert = radiometric.Radiometric(p_invert=1.0, brightness=0.0, contrast=0.0, max_gamma=1.0,
                                   max_noise=0.0)
  np.testing.assert_allclose(np.asarray(invert(x, jax.random.key(2))), 1 - np.asarray(x),
                             atol=1e-6)
  aug = jax.jit(radiometric.Radiometric())
  a, b = aug(x, jax.random.key(5)), aug(x, jax.random.key(5))
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  c = aug(x, jax.random.key(6))
  assert not np.allclose(np.asarray(a), np.asarray(c))
  assert float(a.min()) >= 0 and float(a.max()) <= 1


def test_contrast_and_brightness_change_mean_and_spread_within_their_ranges():
  x = jnp.linspace(0.2, 0.8, 64).reshape(1, 8, 8)
  aug = radiometric.Radiometric(p_invert=0.0, brightness=0.1, contrast=0.2, max_gamma=1.0,
                                max_noise=0.0)
  for seed in range(20):
    y = np.asarray(aug(x, jax.random.key(seed)))
    assert abs(y.mean() - 0.5) <= 0.1 + 1e-5
    ratio = y.std() / float(x.std())
    assert 0.8 - 1e-4 <= ratio <= 1.2 + 1e-4
