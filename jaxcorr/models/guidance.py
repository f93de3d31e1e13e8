"""Attention guidance: patch correspondences between views as an additive attention-logit bias.

Notation. N views of L = h * w patch tokens each (row-major, patch a = r * w + c, as in
`jaxcorr.projection.labels`); P = N (N - 1) / 2 view pairs (i, j), i < j, in the row-major order of
`labels.pair_indices`: (0, 1), (0, 2), ..., (0, N-1), (1, 2), ...; C_ij [L, L] their
correspondences, C_ij[a, b] of patch a of view i with patch b of view j (what the correspondence
model predicts, or the labels). H heads.

Token layout of the biased sequence: T = n_prefix + N * L tokens, [prefix (the class token),
view 0's L tokens, view 1's, ...]. The bias B [T, T] added to the pre-softmax logits of a
query row and a key column is

  B[view i patch a, view j patch b] = alpha * C_ij[a, b]      i < j
  B[view j patch b, view i patch a] = alpha * C_ij[a, b]      (the transpose block, C_ij^T)
  B = 0 within a view and on the prefix rows and columns,

so a query of view i leans towards the patches of view j that show the same anatomy, with a
learned strength alpha (one scalar, or one per head). alpha = 0 is plain attention, exactly.
Everything here is a pure function of arrays; `classifier.FusionClassifier` owns the alphas.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def _block_index(n_views: int) -> np.ndarray:
  """[N, N] int: which of [C_0..C_{P-1}, C_0^T..C_{P-1}^T, 0] fills block (i, j)."""
  n_pairs = n_views * (n_views - 1) // 2
  index = np.full((n_views, n_views), 2 * n_pairs, np.int32)      # the zero block
  p = 0
  for i in range(n_views):
    for j in range(i + 1, n_views):
      index[i, j], index[j, i] = p, n_pairs + p
      p += 1
  return index


def cross_view_bias(corr: jnp.ndarray, alpha, *, n_views: int, tokens_per_view: int,
                    n_prefix: int = 1) -> jnp.ndarray:
  """The attention-logit bias of correspondences between views (see the module docstring).

  Args:
    corr: [B, P, L, L] correspondences of the P = N (N - 1) / 2 view pairs (i < j, row-major
      order), L = tokens_per_view; corr[:, p, a, b] relates patch a of view i to patch b of j.
    alpha: the strength, a scalar or [H] (one per head); differentiable.
    n_views: N.
    tokens_per_view: L.
    n_prefix: tokens before the views' tokens (1: the class token); their rows and columns
      of the bias are 0.

  Returns:
    [B, H, T, T] float32 (H = 1 for a scalar alpha), T = n_prefix + N * L: the block of view i
    queries and view j keys is alpha * C_ij, that of j queries and i keys alpha * C_ij^T,
    within-view blocks and prefix rows / columns 0.
  """
  n, l = int(n_views), int(tokens_per_view)
  n_pairs = n * (n - 1) // 2
  if corr.ndim != 4 or corr.shape[1:] != (n_pairs, l, l):
    raise ValueError(f"corr must be [B, P={n_pairs}, L={l}, L={l}] for {n} views of {l} "
                     f"tokens, got shape {corr.shape}.")
  alpha = jnp.asarray(alpha, jnp.float32)
  if alpha.ndim > 1:
    raise ValueError(f"alpha must be a scalar or [H], got shape {alpha.shape}.")
  b = corr.shape[0]
  corr = corr.astype(jnp.float32)
  blocks = jnp.concatenate([corr, jnp.swapaxes(corr, -1, -2), jnp.zeros((b, 1, l, l))], axis=1)
  grid = blocks[:, _block_index(n)]                                 # [B, N, N, L, L]
  base = jnp.transpose(grid, (0, 1, 3, 2, 4)).reshape(b, n * l, n * l)
  base = jnp.pad(base, ((0, 0), (n_prefix, 0), (n_prefix, 0)))
  return alpha.reshape(1, -1, 1, 1) * base[:, None]
