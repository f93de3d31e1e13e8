"""The frozen-backbone baseline of the paper's Table 2: patch features + an MLP on patch pairs.

The paper compares its fine-tuned matcher with a frozen DINOv2-G whose patch features feed an MLP
that scores patch pairs. `PairMLP` is that baseline with whatever backbone the user has (a
pretraining run's, or ImageNet weights through `jaxcorr.models.convert`):

  f_n^a   = stop_gradient(backbone(view n))[a]      [B, N, L, C]  (BatchNorm in inference mode)
  g_n^a   = LayerNorm(f_n^a)                        (trained)
  h_ij^ab = ReLU(W_1 [g_i^a ; g_j^b] + b_1)         = ReLU(U g_i^a + V g_j^b + b_1)
  S_ij^ab = sigmoid(w_3 . ReLU(W_2 h_ij^ab + b_2) + b_3)

The first layer on the concatenation splits into two per-token products, so the L x L pair grid
costs one broadcast add instead of L^2 matrix products. Output has the correspondence model's
interface: (corr [B, P, L, L] float32 in [0, 1], aux {'tokens': [B, N, L, C]}), pairs in
`labels.pair_indices(N)` order, so training, evaluation and prediction treat both alike.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxcorr.models import correspondence
from jaxcorr.projection.labels import pair_indices

Dtype = Any


class PairMLP(nn.Module):
  """Frozen backbone features scored pairwise by an MLP; see the module docstring."""
  backbone: str = "resnet50"
  hidden: int = 256
  in_channels: int = 3
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, views, *, train: bool, bias=None):
    """Scores of all view pairs.

    Args:
      views: [B, N, H, W, 1] float in [0, 1].
      train: unused by the frozen backbone (its BatchNorm always uses running statistics).
      bias: must be None (no attention in this model).

    Returns:
      (corr [B, P, L, L] float32, aux {'tokens': [B, N, L, C] float32 backbone features}).
    """
    del train
    if bias is not None:
      raise ValueError("PairMLP has no attention: an attention bias cannot be applied.")
    b, n, height, width, _ = views.shape
    backbone, mean, std = correspondence.make_backbone(self.backbone, self.dtype)
    x = correspondence.normalise_views(
        views.reshape(b * n, height, width, 1).astype(jnp.float32), mean, std, self.in_channels)
    features, _ = backbone(x.astype(self.dtype), train=False)
    features = jax.lax.stop_gradient(features.astype(jnp.float32))
    _, h, w, c = features.shape
    g = nn.LayerNorm(dtype=jnp.float32, name="norm")(features.reshape(b, n, h * w, c))
    u = nn.Dense(self.hidden, dtype=self.dtype, name="fc1_query")(g)             # U g + b_1
    v = nn.Dense(self.hidden, use_bias=False, dtype=self.dtype, name="fc1_key")(g)  # V g
    pairs = np.asarray(pair_indices(n))
    hid = nn.relu(u[:, pairs[:, 0], :, None, :] + v[:, pairs[:, 1], None, :, :])  # [B,P,L,L,D]
    hid = nn.relu(nn.Dense(self.hidden, dtype=self.dtype, name="fc2")(hid))
    logits = nn.Dense(1, dtype=self.dtype, name="fc3")(hid)[..., 0]
    return jax.nn.sigmoid(logits.astype(jnp.float32)), {"tokens": g}
