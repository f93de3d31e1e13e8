"""Tests for jaxcorr.models.guidance: the cross-view attention bias, its layout against a NumPy
reference, alpha = 0 as plain attention, a permutation correspondence steering attention, and
gradients reaching alpha."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcorr.models import attention, guidance
from jaxcorr.projection.labels import pair_indices

B, N, L, H = 2, 3, 4, 2
T = 1 + N * L


def _corr(seed=0, n=N, l=L):
  p = n * (n - 1) // 2
  return np.random.default_rng(seed).random((B, p, l, l)).astype(np.float32)


def _reference(corr, alpha, n, l, n_prefix=1):
  """The bias written block by block with loops."""
  alpha = np.atleast_1d(np.asarray(alpha, np.float32))
  t = n_prefix + n * l
  out = np.zeros((corr.shape[0], alpha.size, t, t), np.float32)
  for p, (i, j) in enumerate(pair_indices(n)):
    for a in range(l):
      for c in range(l):
        qi, kj = n_prefix + i * l + a, n_prefix + j * l + c
        out[:, :, qi, kj] = alpha[None, :] * corr[:, p, a, c][:, None]
        out[:, :, kj, qi] = alpha[None, :] * corr[:, p, a, c][:, None]
  return out


@pytest.mark.parametrize("alpha", [1.5, np.asarray([0.5, -2.0], np.float32)])
def test_layout_matches_reference(alpha):
  corr = _corr()
  bias = guidance.cross_view_bias(jnp.asarray(corr), alpha, n_views=N, tokens_per_view=L)
  assert bias.shape == (B, np.size(alpha), T, T) and bias.dtype == jnp.float32
  np.testing.assert_allclose(bias, _reference(corr, alpha, N, L), rtol=1e-6)
  # Class-token row and column and the within-view blocks are exactly zero.
  assert not np.any(bias[:, :, 0]) and not np.any(bias[:, :, :, 0])
  for v in range(N):
    s = slice(1 + v * L, 1 + (v + 1) * L)
    assert not np.any(bias[:, :, s, s])


def test_block_values_and_transpose():
  corr = _corr(1)
  bias = np.asarray(guidance.cross_view_bias(jnp.asarray(corr), 2.0, n_views=N,
                                             tokens_per_view=L, n_prefix=2))
  view = lambda v: slice(2 + v * L, 2 + (v + 1) * L)
  # Pair (1, 2) is the third pair for 3 views: (0, 1), (0, 2), (1, 2).
  np.testing.assert_array_equal(bias[:, 0, view(1), view(2)], 2.0 * corr[:, 2])
  np.testing.assert_array_equal(bias[:, 0, view(2), view(1)], 2.0 * corr[:, 2].transpose(0, 2, 1))
  np.testing.assert_array_equal(bias[:, 0, view(0), view(2)], 2.0 * corr[:, 1])
  assert not np.any(bias[:, :, :2]) and not np.any(bias[:, :, :, :2])


def test_alpha_zero_is_plain_attention_exactly():
  rng = np.random.default_rng(2)
  q, k, v = (jnp.asarray(rng.standard_normal((B, T, H, 8)), jnp.float32) for _ in range(3))
  bias = guidance.cross_view_bias(jnp.asarray(_corr()), jnp.zeros(H), n_views=N,
                                  tokens_per_view=L)
  np.testing.assert_array_equal(attention.dot_product_attention(q, k, v, bias=bias),
                                attention.dot_product_attention(q, k, v))


def test_large_alpha_with_a_permutation_concentrates_attention():
  """q = k = 0 leaves only the bias in the logits; with values the one-hot token indices the
  attention output is the attention matrix itself."""
  l = 6
  perm = np.asarray([3, 0, 5, 1, 4, 2])
  corr = np.zeros((1, 1, l, l), np.float32)
  corr[0, 0, np.arange(l), perm] = 1.0                     # view-0 patch a <-> view-1 patch perm[a]
  t = 1 + 2 * l
  q = k = jnp.zeros((1, t, 1, 4))
  v = jnp.eye(t)[None, :, None, :]                          # [1, T, 1, T]
  bias = guidance.cross_view_bias(jnp.asarray(corr), 12.0, n_views=2, tokens_per_view=l)
  weights = np.asarray(attention.dot_product_attention(q, k, v, bias=bias))[0, :, 0]   # [T, T]
  view0, view1 = 1 + np.arange(l), 1 + l + np.arange(l)
  cross = weights[view0][:, view1]                          # view-0 queries over view-1 keys
  share = cross[np.arange(l), perm] / cross.sum(axis=1)
  assert np.all(share > 0.99)
  assert np.all(weights[view0, 1 + l + perm] > 0.99)        # of all its attention, too
  # The transpose block: a view-1 query finds its view-0 partner.
  inverse = np.argsort(perm)
  assert np.all(weights[view1, 1 + inverse] > 0.99)
  # The class token is unbiased: uniform attention.
  np.testing.assert_allclose(weights[0], np.full(t, 1.0 / t), rtol=1e-6)


@pytest.mark.parametrize("alpha0", [0.0, 0.7, np.asarray([0.3, -0.4], np.float32)])
def test_gradient_reaches_alpha_and_matches_finite_differences(alpha0):
  rng = np.random.default_rng(3)
  q, k, v = (jnp.asarray(rng.standard_normal((B, T, H, 8)), jnp.float32) for _ in range(3))
  w = jnp.asarray(rng.standard_normal((B, T, H, 8)), jnp.float32)
  corr = jnp.asarray(_corr(4))

  def loss(alpha):
    bias = guidance.cross_view_bias(corr, alpha, n_views=N, tokens_per_view=L)
    return jnp.sum(attention.dot_product_attention(q, k, v, bias=bias) * w)

  alpha0 = jnp.asarray(alpha0, jnp.float32)
  grad = np.asarray(jax.grad(loss)(alpha0))
  assert grad.shape == alpha0.shape and np.all(np.abs(grad) > 1e-3)
  eps = 1e-2
  for index in np.ndindex(alpha0.shape):
    step = jnp.zeros_like(alpha0).at[index].set(eps)
    numeric = (loss(alpha0 + step) - loss(alpha0 - step)) / (2 * eps)
    np.testing.assert_allclose(grad[index], numeric, rtol=2e-2, atol=1e-3)


def test_shape_errors():
  with pytest.raises(ValueError, match=r"corr must be \[B, P=3, L=4, L=4\]"):
    guidance.cross_view_bias(jnp.asarray(_corr(n=2)), 1.0, n_views=N, tokens_per_view=L)
  with pytest.raises(ValueError, match="alpha must be a scalar or"):
    guidance.cross_view_bias(jnp.asarray(_corr()), jnp.ones((2, 2)), n_views=N,
                             tokens_per_view=L)
