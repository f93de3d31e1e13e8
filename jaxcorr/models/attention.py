"""Attention and rotary position embedding as pure functions (no parameters, no modules).

Shapes. B batch, Lq / Lk query / key lengths, H heads, D head dimension (Dv for values). Every
function takes per-head tensors laid out [B, L, H, D], as `flax.linen.dot_product_attention`.

Attention. `dot_product_attention` is softmax attention with an optional additive bias (the hook
for attention biases, e.g. from geometry): A = softmax(Q K^T / sqrt(D) + bias), masked entries
set to the lowest float32 before the softmax. Logits and the softmax are computed in float32
whatever the input dtype; the result has the dtype of v. `linear_attention` is the LoFTR /
Katharopoulos et al. (2020) kernelised attention with the feature map elu(x) + 1.

Rotary position embedding. `rope_2d` is axial 2D RoPE (Heo et al., "Rotary Position Embedding for
Vision Transformer", ECCV 2024, "RoPE-Axial"): the first half of each head's dimensions rotates
with the patch row, the second half with the patch column, each half as 1D RoPE (Su et al.,
RoFormer) with frequencies base^(-2j / (D / 2)). Since a rotation by angle a followed by the
transpose of one by angle b is one by b - a, the logit <R(r, c) q, R(r', c') k> depends on the
positions only through (r' - r, c' - c). The default base is 100, not the 10000 of language
models: patch grids are tens of positions wide, and base 10000 would leave most frequencies
rotating by almost nothing over the grid (Heo et al. use 100 for the same reason).
`rope_1d` alone is the authors' choice: 1D RoPE over the index of each token in the concatenated
views (view n's patch a at n * L + a), base 10000 (`ROPE_BASES`). They rotate adjacent pairs
(x_2j, x_2j+1) where `rope_1d` rotates (x_j, x_j+D/2): the same rotations on a fixed permutation
of each head's dimensions, which the learned query and key projections absorb. `rope` applies
either from a tuple of position arrays, (index,) or (row, col).
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp

DEFAULT_ROPE_BASE = 100.0
# The frequency base of each rotary embedding (`config.model.rope`) when rope_base is 0 (auto).
ROPE_BASES = {"2d": DEFAULT_ROPE_BASE, "1d": 10000.0}


def dot_product_attention(q: jnp.ndarray, k: jnp.ndarray, v: jnp.ndarray,
                          bias: Optional[jnp.ndarray] = None,
                          mask: Optional[jnp.ndarray] = None) -> jnp.ndarray:
  """Softmax attention with an additive logit bias and a boolean mask.

  A = softmax(Q K^T / sqrt(D) + bias) over keys (masked keys excluded), output A V.

  Args:
    q: [B, Lq, H, D] queries.
    k: [B, Lk, H, D] keys.
    v: [B, Lk, H, Dv] values.
    bias: optional additive bias, broadcastable to [B, H, Lq, Lk] (float, added in float32).
    mask: optional boolean, broadcastable to [B, H, Lq, Lk]; True where a query may attend.
      A query whose keys are all masked attends uniformly (the logits are all equal).

  Returns:
    [B, Lq, H, Dv] in the dtype of v.
  """
  depth = q.shape[-1]
  logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
  logits = logits.astype(jnp.float32) / jnp.sqrt(jnp.float32(depth))
  if bias is not None:
    logits = logits + bias.astype(jnp.float32)
  if mask is not None:
    logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
  weights = jax.nn.softmax(logits, axis=-1)
  return jnp.einsum("bhqk,bkhd->bqhd", weights.astype(v.dtype), v)


def elu_feature_map(x: jnp.ndarray) -> jnp.ndarray:
  """The positive feature map of linear attention, elu(x) + 1 (> 0), elementwise."""
  return jax.nn.elu(x) + 1.0


def linear_attention(q: jnp.ndarray, k: jnp.ndarray, v: jnp.ndarray,
                     q_num: Optional[jnp.ndarray] = None,
                     k_num: Optional[jnp.ndarray] = None,
                     eps: float = 1e-6) -> jnp.ndarray:
  """Kernelised (linear) attention on feature-mapped queries and keys.

  out_i = sum_j <q_num_i, k_num_j> v_j / (sum_j <q_i, k_j> + eps), in O(L D^2) instead of O(L^2 D).
  With q_num = q and k_num = k this is LoFTR's attention; passing the rotated features as q_num,
  k_num (and the unrotated ones as q, k) applies RoPE to linear attention as RoFormer (sec. 3.4.3)
  does: positions enter the numerator only, so the normaliser stays positive.

  Args:
    q: [B, Lq, H, D] feature-mapped queries (positive, e.g. `elu_feature_map`).
    k: [B, Lk, H, D] feature-mapped keys (positive).
    v: [B, Lk, H, Dv] values.
    q_num: optional [B, Lq, H, D] queries of the numerator (default q).
    k_num: optional [B, Lk, H, D] keys of the numerator (default k).
    eps: added to the normaliser.

  Returns:
    [B, Lq, H, Dv] in the dtype of v (sums in float32).
  """
  q_num = q if q_num is None else q_num
  k_num = k if k_num is None else k_num
  f32 = lambda x: x.astype(jnp.float32)
  kv = jnp.einsum("bkhd,bkhv->bhdv", f32(k_num), f32(v))
  numerator = jnp.einsum("bqhd,bhdv->bqhv", f32(q_num), kv)
  normaliser = jnp.einsum("bqhd,bhd->bqh", f32(q), f32(k).sum(axis=1))
  return (numerator / (normaliser[..., None] + eps)).astype(v.dtype)


def rope_1d(x: jnp.ndarray, positions: jnp.ndarray,
            base: float = DEFAULT_ROPE_BASE) -> jnp.ndarray:
  """1D rotary embedding: rotates pairs (x_j, x_{j + D/2}) by positions * base^(-2j / D).

  Args:
    x: [B, L, H, D] with D even.
    positions: [L] or [B, L] positions (int or float).
    base: the frequency base.

  Returns:
    [B, L, H, D] in the dtype of x (computed in float32).
  """
  depth = x.shape[-1]
  if depth % 2:
    raise ValueError(f"rope_1d needs an even head dimension, got {depth}.")
  half = depth // 2
  timescale = base ** (2.0 * jnp.arange(half, dtype=jnp.float32) / depth)
  positions = jnp.broadcast_to(jnp.asarray(positions, jnp.float32), x.shape[:2])
  angle = positions[:, :, None, None] / timescale        # [B, L, 1, D/2]
  sin, cos = jnp.sin(angle), jnp.cos(angle)
  x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return out.astype(x.dtype)


def rope_2d(x: jnp.ndarray, rows: jnp.ndarray, cols: jnp.ndarray,
            base: float = DEFAULT_ROPE_BASE) -> jnp.ndarray:
  """Axial 2D rotary embedding: the first D/2 dims rotate with rows, the last D/2 with cols.

  Args:
    x: [B, L, H, D] queries or keys, D a multiple of 4.
    rows: [L] or [B, L] patch rows of the L tokens.
    cols: [L] or [B, L] patch columns of the L tokens.
    base: the frequency base of both axes.

  Returns:
    [B, L, H, D] in the dtype of x. <rope_2d(q, r, c), rope_2d(k, r', c')> depends on the
    positions only through (r' - r, c' - c); rotations preserve norms.
  """
  depth = x.shape[-1]
  if depth % 4:
    raise ValueError(f"rope_2d needs a head dimension divisible by 4, got {depth}.")
  x_row, x_col = jnp.split(x, 2, axis=-1)
  return jnp.concatenate([rope_1d(x_row, rows, base), rope_1d(x_col, cols, base)], axis=-1)


def rope(x: jnp.ndarray, positions: tuple, base: float = DEFAULT_ROPE_BASE) -> jnp.ndarray:
  """`rope_1d` for positions (index,), `rope_2d` for (rows, cols); each array [L] or [B, L]."""
  if len(positions) == 1:
    return rope_1d(x, positions[0], base)
  if len(positions) == 2:
    return rope_2d(x, *positions, base=base)
  raise ValueError(f"rope takes (index,) or (rows, cols) positions, got {len(positions)} arrays.")


def grid_positions(height: int, width: int) -> tuple[jnp.ndarray, jnp.ndarray]:
  """Rows and columns ([L] int32 each, L = height * width) of a row-major patch grid."""
  rows, cols = jnp.meshgrid(jnp.arange(height), jnp.arange(width), indexing="ij")
  return rows.reshape(-1).astype(jnp.int32), cols.reshape(-1).astype(jnp.int32)
