"""Vision Transformer backbone (timm `vit_*_patch16` layout) returning a patch-token grid.

A 16 x 16 patch embedding (a strided conv), a class token, learned absolute position embeddings
(one per patch of the input grid, plus the class token), `depth` pre-norm blocks
(`transformer.Block`, LayerNorm eps 1e-6, exact GELU) and a final LayerNorm: timm's
VisionTransformer, so timm checkpoints load with `jaxcorr.models.convert` (qkv split into
query / key / value). The position embedding's length follows the input grid chosen at init
(257 for 256 x 256 images); the converter interpolates a checkpoint's grid to it.

Output: the final patch tokens as a grid [B, h, w, width] for the correspondence model, and the
class token in aux['cls'] for a classifier. `VITS` holds the variants as data.

Several views in one sequence (early fusion, `classifier.FusionClassifier`). Given views
[B, N, H, W, C], each view is patch-embedded and gets the same patch position embeddings (a
view's grid is the one the embedding was made for), plus an optional per-view embedding from
the caller; the N * L patch tokens follow ONE class token: T = 1 + N * L tokens
[cls, view 0, view 1, ...]. The blocks can take an additive attention-logit bias (e.g.
`guidance.cross_view_bias`), one for all blocks or one per block, and a key mask. The parameters
are those of the single-image ViT, so one checkpoint serves both.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcorr.core.choices import check_choice
from jaxcorr.models.transformer import Block

Dtype = Any
Bias = Union[None, jnp.ndarray, Sequence[Optional[jnp.ndarray]]]

# name -> ViT fields (timm: vit_small_patch16_224 = S/16, vit_tiny_patch16_224 = Ti/16).
VITS = {
    "vit_s16": dict(width=384, depth=12, num_heads=6, mlp_dim=1536, patch=16),
    "vit_ti16": dict(width=192, depth=12, num_heads=3, mlp_dim=768, patch=16),
    "vit_test": dict(width=32, depth=2, num_heads=2, mlp_dim=64, patch=16),   # CPU tests
}


def class_token_attention(block_params, x, num_heads: int, *, bias=None, mask=None,
                          dtype: Dtype = jnp.float32) -> jnp.ndarray:
  """The attention of token 0 (the class token) in a `transformer.Block`, from its parameters.

  Recomputes the block's first LayerNorm and its query / key projections (the block itself
  returns no weights): A = softmax(q_0 K^T / sqrt(D / H) + bias[0] (masked keys excluded)).

  Args:
    block_params: the block's params {'norm1', 'attn': {'query', 'key', ...}, ...}.
    x: [B, T, D] the block's input tokens.
    num_heads: H.
    bias, mask: what the block got, broadcastable to [B, H, T, T].
    dtype: the block's compute dtype.

  Returns:
    [B, H, T] float32, each row summing to 1 over the T keys.
  """
  head_dim = x.shape[-1] // num_heads
  y = nn.LayerNorm(epsilon=1e-6, dtype=jnp.float32, parent=None).apply(
      {"params": block_params["norm1"]}, x).astype(dtype)
  proj = nn.DenseGeneral((num_heads, head_dim), dtype=dtype, parent=None)
  q = proj.apply({"params": block_params["attn"]["query"]}, y[:, :1])
  k = proj.apply({"params": block_params["attn"]["key"]}, y)
  logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
  logits = logits.astype(jnp.float32) / jnp.sqrt(jnp.float32(head_dim))
  if bias is not None:
    logits = logits + jnp.asarray(bias, jnp.float32)[..., :1, :]
  if mask is not None:
    logits = jnp.where(jnp.asarray(mask)[..., :1, :], logits, jnp.finfo(jnp.float32).min)
  return jax.nn.softmax(logits, axis=-1)[:, :, 0]


class ViT(nn.Module):
  """ViT with a class token; returns the patch tokens as a grid."""
  width: int = 384
  depth: int = 12
  num_heads: int = 6
  mlp_dim: int = 1536
  patch: int = 16
  dtype: Dtype = jnp.float32

  @property
  def out_channels(self) -> int:
    return self.width

  @property
  def stride(self) -> int:
    return self.patch

  @nn.compact
  def __call__(self, x, *, train: bool, view_embed=None, bias: Bias = None, mask=None,
               return_attention: bool = False):
    """Patch tokens of images, or of N views in one sequence.

    Args:
      x: [B, H, W, C] normalised images, H and W multiples of `patch`; or [B, N, H, W, C]
        N views of each example, encoded jointly (see the module docstring).
      train: unused (no dropout); keyword-only for a uniform backbone interface.
      view_embed: optional [N, width] added to the patch tokens of view n (views input only).
      bias: optional additive attention-logit bias broadcastable to [B, num_heads, T, T]
        (T = 1 + N * L, N = 1 for images): one array for every block, or a sequence of
        `depth` arrays or Nones (no bias), one per block.
      mask: optional boolean key mask broadcastable to [B, num_heads, T, T], every block.
      return_attention: also return aux['attention'].

    Returns:
      (tokens [B, h, w, width] float32 ([B, N, h, w, width] for views),
       aux {'cls': [B, width] float32, and with return_attention 'attention':
       [B, num_heads, N * L] float32, the class token's attention over the patch tokens in
       the last block}).
    """
    del train
    views = x.ndim == 5
    if not views:
      if view_embed is not None:
        raise ValueError("view_embed needs views [B, N, H, W, C].")
      x = x[:, None]
    b, n = x.shape[:2]
    y = nn.Conv(self.width, (self.patch, self.patch), strides=self.patch, padding="VALID",
                dtype=self.dtype, name="patch_embed")(x.reshape(b * n, *x.shape[2:]))
    _, h, w, d = y.shape
    cls = self.param("cls_token", nn.initializers.zeros, (1, 1, d), jnp.float32)
    pos = self.param("pos_embed", nn.initializers.normal(0.02), (1, h * w + 1, d), jnp.float32)
    patches = y.reshape(b, n, h * w, d) + pos[:, None, 1:]
    if view_embed is not None:
      patches = patches + jnp.asarray(view_embed, jnp.float32)[None, :, None, :]
    head = jnp.broadcast_to(cls.astype(y.dtype), (b, 1, d)) + pos[:, :1]
    y = jnp.concatenate([head.astype(self.dtype),
                         patches.reshape(b, n * h * w, d).astype(self.dtype)], axis=1)
    biases = self._per_block(bias)
    for i in range(self.depth):
      block = Block(self.num_heads, self.mlp_dim, epsilon=1e-6, dtype=self.dtype,
                    name=f"blocks_{i}")
      y_in, y = y, block(y, bias=biases[i], mask=mask)
    y = nn.LayerNorm(epsilon=1e-6, dtype=jnp.float32, name="norm")(y)
    tokens = y[:, 1:].reshape(b, n, h, w, d)
    aux = {"cls": y[:, 0]}
    if return_attention:
      attention = class_token_attention(block.variables["params"], y_in, self.num_heads,
                                        bias=biases[-1], mask=mask, dtype=self.dtype)
      aux["attention"] = attention[:, :, 1:]
    return (tokens if views else tokens[:, 0]), aux

  def _per_block(self, bias: Bias) -> list:
    if bias is None or hasattr(bias, "shape"):
      return [bias] * self.depth
    bias = list(bias)
    if len(bias) != self.depth:
      raise ValueError(f"got {len(bias)} per-block biases for {self.depth} blocks.")
    return bias


def vit(variant: str, **kwargs) -> ViT:
  """The ViT `variant` of `VITS`, with extra fields (e.g. dtype, name)."""
  check_choice("ViT variant", variant, VITS)
  return ViT(**VITS[variant], **kwargs)
