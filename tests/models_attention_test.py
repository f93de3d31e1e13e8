"""Tests for jaxcorr.models.attention: axial 2D RoPE, softmax attention with bias / mask, linear
attention, against hand-written NumPy references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcorr.models import attention

B, L, H, D = 2, 12, 3, 8


def _qkv(seed=0, lq=L, lk=L, depth=D):
  rng = np.random.default_rng(seed)
  q = rng.standard_normal((B, lq, H, depth)).astype(np.float32)
  k = rng.standard_normal((B, lk, H, depth)).astype(np.float32)
  v = rng.standard_normal((B, lk, H, depth)).astype(np.float32)
  return q, k, v


def _positions(seed=1, n=L):
  rng = np.random.default_rng(seed)
  return rng.integers(0, 16, n), rng.integers(0, 16, n)


def test_rope_preserves_norms():
  q, _, _ = _qkv()
  rows, cols = _positions()
  out = attention.rope_2d(jnp.asarray(q), rows, cols)
  np.testing.assert_allclose(np.linalg.norm(out, axis=-1), np.linalg.norm(q, axis=-1), rtol=1e-5)


def test_rope_zero_position_is_identity():
  q, _, _ = _qkv()
  zeros = np.zeros(L, np.int32)
  np.testing.assert_allclose(attention.rope_2d(jnp.asarray(q), zeros, zeros), q, atol=1e-6)


def test_rope_logits_depend_only_on_relative_positions():
  q, k, _ = _qkv()
  rows, cols = _positions()

  def logits(dr, dc):
    qr = attention.rope_2d(jnp.asarray(q), rows + dr, cols + dc)
    kr = attention.rope_2d(jnp.asarray(k), rows + dr, cols + dc)
    return np.einsum("bqhd,bkhd->bhqk", qr, kr)

  base = logits(0, 0)
  for dr, dc in ((3, 0), (0, -5), (7, 11)):
    np.testing.assert_allclose(logits(dr, dc), base, rtol=1e-4, atol=1e-4)
  # And they do depend on the relative position: rows and columns separately.
  assert not np.allclose(np.einsum("bqhd,bkhd->bhqk",
                                   attention.rope_2d(jnp.asarray(q), rows + 1, cols), k), base)


def test_rope_axes_split_halves():
  """Rows rotate the first half of the head dims, columns the second half."""
  q, _, _ = _qkv()
  zeros = np.zeros(L)
  by_row = np.asarray(attention.rope_2d(jnp.asarray(q), zeros + 2, zeros))
  by_col = np.asarray(attention.rope_2d(jnp.asarray(q), zeros, zeros + 2))
  np.testing.assert_allclose(by_row[..., D // 2:], q[..., D // 2:], atol=1e-6)
  np.testing.assert_allclose(by_col[..., :D // 2], q[..., :D // 2], atol=1e-6)
  assert not np.allclose(by_row[..., :D // 2], q[..., :D // 2])


def test_rope_1d_matches_complex_rotation():
  q, _, _ = _qkv()
  pos = np.arange(L, dtype=np.float32)
  out = np.asarray(attention.rope_1d(jnp.asarray(q), pos, base=100.0))
  freq = 100.0 ** (-2.0 * np.arange(D // 2) / D)
  z = (q[..., :D // 2] + 1j * q[..., D // 2:]) * np.exp(1j * pos[None, :, None, None] * freq)
  np.testing.assert_allclose(out, np.concatenate([z.real, z.imag], -1), rtol=1e-4, atol=1e-5)


def test_rope_rejects_bad_head_dim():
  with pytest.raises(ValueError, match="divisible by 4"):
    attention.rope_2d(jnp.zeros((1, 2, 1, 6)), np.zeros(2), np.zeros(2))


def _reference_attention(q, k, v, bias=None, mask=None):
  logits = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(q.shape[-1])
  if bias is not None:
    logits = logits + bias
  if mask is not None:
    logits = np.where(mask, logits, -1e30)
  w = np.exp(logits - logits.max(-1, keepdims=True))
  w /= w.sum(-1, keepdims=True)
  return np.einsum("bhqk,bkhd->bqhd", w, v)


def test_attention_matches_reference_and_zero_bias():
  q, k, v = _qkv(lk=7)
  out = attention.dot_product_attention(q, k, v)
  np.testing.assert_allclose(out, _reference_attention(q, k, v), rtol=1e-5, atol=1e-5)
  zero = attention.dot_product_attention(q, k, v, bias=jnp.zeros((B, H, L, 7)))
  np.testing.assert_allclose(zero, out, rtol=1e-6, atol=1e-6)
  bias = np.random.default_rng(3).standard_normal((B, H, L, 7)).astype(np.float32)
  np.testing.assert_allclose(attention.dot_product_attention(q, k, v, bias=bias),
                             _reference_attention(q, k, v, bias=bias), rtol=1e-5, atol=1e-5)


def test_large_bias_on_one_key_attends_to_it():
  q, k, v = _qkv(lk=7)
  bias = np.zeros((1, 1, 1, 7), np.float32)
  bias[..., 4] = 1e4
  out = attention.dot_product_attention(q, k, v, bias=bias)
  np.testing.assert_allclose(out, np.broadcast_to(v[:, 4:5], out.shape), atol=1e-5)


def test_mask_excludes_keys():
  q, k, v = _qkv(lk=7)
  mask = np.zeros((B, 1, L, 7), bool)
  mask[..., :3] = True
  out = attention.dot_product_attention(q, k, v, mask=mask)
  np.testing.assert_allclose(out, _reference_attention(q, k[:, :3], v[:, :3]), rtol=1e-5,
                             atol=1e-5)


def test_attention_gradients_flow_to_all_inputs():
  q, k, v = _qkv()
  bias = jnp.zeros((B, H, L, L))
  grads = jax.grad(lambda *a: jnp.sum(attention.dot_product_attention(*a) ** 2),
                   argnums=(0, 1, 2, 3))(q, k, v, bias)
  for g in grads:
    assert np.all(np.isfinite(g)) and np.abs(g).sum() > 0


def test_attention_bfloat16_softmax_in_float32():
  q, k, v = (jnp.asarray(a, jnp.bfloat16) for a in _qkv())
  out = attention.dot_product_attention(q, k, v)
  assert out.dtype == jnp.bfloat16
  ref = _reference_attention(*(np.asarray(a, np.float32) for a in (q, k, v)))
  np.testing.assert_allclose(np.asarray(out, np.float32), ref, atol=3e-2)


def test_linear_attention_matches_quadratic_form():
  q, k, v = _qkv(lk=9)
  fq, fk = attention.elu_feature_map(q), attention.elu_feature_map(k)
  out = attention.linear_attention(fq, fk, v)
  w = np.einsum("bqhd,bkhd->bhqk", fq, fk)
  ref = np.einsum("bhqk,bkhd->bqhd", w / (w.sum(-1, keepdims=True) + 1e-6), v)
  np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)
  assert np.all(np.asarray(fq) > 0)


def test_linear_attention_rope_numerator_is_relative():
  q, k, v = _qkv()
  fq, fk = attention.elu_feature_map(q), attention.elu_feature_map(k)
  rows, cols = _positions()

  def run(shift):
    rot = lambda x: attention.rope_2d(x, rows + shift, cols + shift)
    return attention.linear_attention(fq, fk, v, rot(fq), rot(fk))

  np.testing.assert_allclose(run(5), run(0), rtol=1e-3, atol=1e-4)


def test_grid_positions_row_major():
  rows, cols = attention.grid_positions(2, 3)
  np.testing.assert_array_equal(rows, [0, 0, 0, 1, 1, 1])
  np.testing.assert_array_equal(cols, [0, 1, 2, 0, 1, 2])


def test_rope_1d_over_concatenated_views_depends_only_on_index_differences():
  # The authors' positions: token a of view n at n * L + a, base 10000 (`ROPE_BASES['1d']`).
  q, k, _ = _qkv()
  base = attention.ROPE_BASES["1d"]
  assert base == 10000.0 and attention.ROPE_BASES["2d"] == attention.DEFAULT_ROPE_BASE == 100.0
  index = np.arange(L)

  def logits(shift_q, shift_k):
    qr = attention.rope(jnp.asarray(q), (index + shift_q,), base=base)
    kr = attention.rope(jnp.asarray(k), (index + shift_k,), base=base)
    return np.einsum("bqhd,bkhd->bhqk", qr, kr)

  ref = logits(0, 0)
  for shift in (1, 6, 250):     # the same shift for q and k: the logits do not change
    np.testing.assert_allclose(logits(shift, shift), ref, rtol=1e-4, atol=1e-4)
  # q shifted by s and k by t: the same logits as k alone shifted by t - s.
  np.testing.assert_allclose(logits(3, 5), logits(0, 2), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(logits(40, 7), logits(33, 0), rtol=1e-4, atol=1e-4)
  # And the difference does matter.
  assert not np.allclose(logits(0, 1), ref, atol=1e-3)
  # `rope` dispatches on the number of position arrays.
  rows, cols = _positions()
  np.testing.assert_array_equal(attention.rope(jnp.asarray(q), (rows, cols)),
                                attention.rope_2d(jnp.asarray(q), rows, cols))
  np.testing.assert_array_equal(attention.rope(jnp.asarray(q), (index,), base=base),
                                attention.rope_1d(jnp.asarray(q), index, base=base))
  with pytest.raises(ValueError, match=r"\(index,\) or \(rows, cols\)"):
    attention.rope(jnp.asarray(q), (rows, cols, rows))
