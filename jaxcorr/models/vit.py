"""Vision Transformer backbone (timm `vit_*_patch16` layout) returning a patch-token grid.

A 16 x 16 patch embedding (a strided conv), a class token, learned absolute position embeddings
(one per patch of the input grid, plus the class token), `depth` pre-norm blocks
(`transformer.Block`, LayerNorm eps 1e-6, exact GELU) and a final LayerNorm: timm's
VisionTransformer, so timm checkpoints load with `jaxcorr.models.convert` (qkv split into
query / key / value). The position embedding's length follows the input grid chosen at init
(257 for 256 x 256 images); the converter interpolates a checkpoint's grid to it.

Output: the final patch tokens as a grid [B, h, w, width] for the correspondence model, and the
class token in aux['cls'] for a classifier. `VITS` holds the variants as data.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxcorr.models.transformer import Block

Dtype = Any

# name -> ViT fields (timm: vit_small_patch16_224 = S/16, vit_tiny_patch16_224 = Ti/16).
VITS = {
    "vit_s16": dict(width=384, depth=12, num_heads=6, mlp_dim=1536, patch=16),
    "vit_ti16": dict(width=192, depth=12, num_heads=3, mlp_dim=768, patch=16),
    "vit_test": dict(width=32, depth=2, num_heads=2, mlp_dim=64, patch=16),   # CPU tests
}


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
  def __call__(self, x, *, train: bool):
    """Patch tokens of images.

    Args:
      x: [B, H, W, C] normalised images, H and W multiples of `patch`.
      train: unused (no dropout); keyword-only for a uniform backbone interface.

    Returns:
      (tokens [B, H / patch, W / patch, width] float32, aux {'cls': [B, width] float32}).
    """
    del train
    b = x.shape[0]
    y = nn.Conv(self.width, (self.patch, self.patch), strides=self.patch, padding="VALID",
                dtype=self.dtype, name="patch_embed")(x)
    _, h, w, d = y.shape
    y = y.reshape(b, h * w, d)
    cls = self.param("cls_token", nn.initializers.zeros, (1, 1, d), jnp.float32)
    y = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, d)).astype(y.dtype), y], axis=1)
    pos = self.param("pos_embed", nn.initializers.normal(0.02), (1, h * w + 1, d), jnp.float32)
    y = (y + pos).astype(self.dtype)
    for i in range(self.depth):
      y = Block(self.num_heads, self.mlp_dim, epsilon=1e-6, dtype=self.dtype,
                name=f"blocks_{i}")(y)
    y = nn.LayerNorm(epsilon=1e-6, dtype=jnp.float32, name="norm")(y)
    return y[:, 1:].reshape(b, h, w, d), {"cls": y[:, 0]}


def vit(variant: str, **kwargs) -> ViT:
  """The ViT `variant` of `VITS`, with extra fields (e.g. dtype, name)."""
  if variant not in VITS:
    raise ValueError(f"Unknown ViT {variant!r}; allowed: {', '.join(map(repr, VITS))}.")
  return ViT(**VITS[variant], **kwargs)
