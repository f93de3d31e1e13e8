"""The correspondence model: backbone -> 1x1 projection -> encoder over all views -> head.

Input. views [B, N, H, W, 1] float in [0, 1] (grey X-rays / DRRs), H and W multiples of the
backbone stride k (16). With `in_channels=3` the grey image is replicated to RGB and normalised
with the backbone's per-channel statistics (ImageNet's for torchvision ResNets, 0.5 / 0.5 for
timm ViTs), so pretrained weights see what they were trained on; with `in_channels=1` it is
normalised with the mean of those statistics (and `convert` sums the RGB filters of the first
conv, as timm does for grey inputs).

Tokens. Each view's backbone grid h x w = (H / k) x (W / k) is flattened row-major into
L = h * w tokens (patch a = r * w + c, as in `jaxcorr.projection.labels`) and projected to d_model.
Attention variants (`transformer.ATTENTIONS`) add a learned view embedding (view n gets row n of
a [max_views, d_model] table) and use RoPE (`rope`: axial 2D on the patch coordinates, the same
in every view, or the authors' 1D over the concatenated views); 'none' adds neither (tokens
never interact). `message_passing` chooses the encoder's layer update (the authors' x + MLP([x,
m]) or each variant's own; `transformer` module docstring).

Head (`correspondence_scores`). For each pair (i, j) of `labels.pair_indices(N)`, in the order
(0, 1), (0, 2), ..., (1, 2), ...: S_ij[a, b] = <t_i^a, t_j^b> / (|t_i^a| |t_j^b|), float32.
  'cosine'          S in [-1, 1] (the default: as good as the squared heads in held-out AP,
                    docs/benchmarks.md); where users see C, `inference.predictor` clips it to
                    [0, 1] (a negative similarity is no match); the loss and metrics see S.
  'cosine_squared'  max(S, 0)^2 in [0, 1]: clipped at 0 before squaring so that opposite tokens
                    score 0 (no match), like the labels C >= 0; a plain square would score
                    S = -1 as a perfect match. Squaring sharpens the scores near 1.
  'cosine_squared_unclipped'  S^2 in [0, 1], the authors' head (torch.pow(cos, 2)): opposite
                    tokens score as a match.
Output: (corr [B, P, L, L] float32, aux {'tokens': [B, N, L, d_model] float32}); rows of
corr[:, p] index view i's patches, columns view j's, so swapping two views transposes.

Sizes are data, in one table (`jaxcorr.models.build.SIZES`): 'paper' (ResNet-50 cut at stage 3 +
8 x 512 transformer), 'paper_vit' (ViT-S/16 backbone), and the CPU sizes of the presets.
"""

from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jaxcorr.core.choices import MODEL_CHOICES, MODEL_RENAMED, check_choice
from jaxcorr.models import attention as attn_lib, resnet as resnet_lib, transformer, vit as vit_lib
from jaxcorr.projection.labels import pair_indices

Dtype = Any
HEADS = MODEL_CHOICES["head"]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)
BACKBONES = tuple(resnet_lib.RESNETS) + tuple(vit_lib.VITS)

def make_backbone(name: str, dtype: Dtype = jnp.float32, module_name: str = "backbone"):
  """The backbone `name` (one of `BACKBONES`) and its input (mean, std) per RGB channel."""
  check_choice("backbone", name, BACKBONES)
  if name in resnet_lib.RESNETS:
    return resnet_lib.resnet(name, dtype=dtype, name=module_name), IMAGENET_MEAN, IMAGENET_STD
  return vit_lib.vit(name, dtype=dtype, name=module_name), INCEPTION_MEAN, INCEPTION_STD


def backbone_stride(name: str) -> int:
  """The stride of the backbone `name` (one of `BACKBONES`), from its table: no module is built,
  so it can be asked inside another module's compact method."""
  check_choice("backbone", name, BACKBONES)
  if name in resnet_lib.RESNETS:
    return resnet_lib.resnet(name, parent=None).stride
  return vit_lib.VITS[name]["patch"]


def check_views(views, max_views: int, in_channels: int) -> tuple[int, int, int, int]:
  """(B, N, H, W) of grey views [B, N, H, W, 1]; a ValueError for another shape, more than
  `max_views` views or `in_channels` not 1 or 3."""
  check_choice("in_channels", in_channels, (1, 3))
  if views.ndim != 5 or views.shape[-1] != 1:
    raise ValueError(f"views must be [B, N, H, W, 1], got shape {views.shape}.")
  if views.shape[1] > max_views:
    raise ValueError(f"{views.shape[1]} views exceed max_views={max_views}.")
  return tuple(views.shape[:4])


def normalise_views(grey, mean, std, in_channels: int):
  """[M, H, W, 1] in [0, 1] -> [M, H, W, in_channels] normalised for a backbone.

  3 channels: the grey image replicated and normalised per channel with (mean, std); 1 channel:
  normalised with the means of mean and std.
  """
  if in_channels == 3:
    return (jnp.repeat(grey, 3, axis=-1) - jnp.asarray(mean)) / jnp.asarray(std)
  return (grey - float(np.mean(mean))) / float(np.mean(std))


def correspondence_scores(tokens: jnp.ndarray, head: str = "cosine",
                          pairs: Optional[np.ndarray] = None) -> jnp.ndarray:
  """Patch-to-patch similarities of every view pair.

  Args:
    tokens: [B, N, L, D] tokens.
    head: 'cosine' (in [-1, 1]), 'cosine_squared' (max(cos, 0)^2, in [0, 1]) or
      'cosine_squared_unclipped' (cos^2, in [0, 1]).
    pairs: [P, 2] view pairs (default `labels.pair_indices(N)`).

  Returns:
    [B, P, L, L] float32; [b, p, a, c] compares patch a of view pairs[p, 0] with patch c of
    view pairs[p, 1].
  """
  check_choice("head", head, HEADS)
  pairs = pair_indices(tokens.shape[1]) if pairs is None else np.asarray(pairs)
  t = tokens.astype(jnp.float32)
  t = t * jnp.reciprocal(jnp.sqrt(jnp.sum(t * t, axis=-1, keepdims=True)) + 1e-6)
  scores = jnp.einsum("bpld,bpmd->bplm", t[:, pairs[:, 0]], t[:, pairs[:, 1]])
  scores = jnp.clip(scores, -1.0, 1.0)
  if head == "cosine_squared":
    scores = jnp.square(jnp.maximum(scores, 0.0))
  elif head == "cosine_squared_unclipped":
    scores = jnp.square(scores)
  return scores


class CorrespondenceModel(nn.Module):
  """Patch correspondences between N X-ray views; see the module docstring."""
  backbone: str = "resnet50"
  d_model: int = 512
  n_layers: int = 8
  n_heads: int = 8
  mlp_dim: int = 1024
  attention: str = "transformer"
  message_passing: bool = False
  head: str = "cosine"
  in_channels: int = 3
  max_views: int = 8
  rope: str = "2d"
  rope_base: float = 0.0           # 0: the base of `rope` (attention.ROPE_BASES)
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, views, *, train: bool, bias=None):
    """Correspondence scores of all view pairs.

    Args:
      views: [B, N, H, W, 1] float in [0, 1].
      train: BatchNorm uses (and updates) batch statistics; apply with mutable=['batch_stats'].
      bias: optional additive attention bias [B, n_heads or 1, N*L, N*L] ('transformer'
        only), or a list of n_layers of them (None: none in that layer).

    Returns:
      (corr [B, P, L, L] float32, aux {'tokens': [B, N, L, d_model] float32}).
    """
    check_choice("attention", self.attention, transformer.ATTENTIONS,
                 renamed=MODEL_RENAMED["attention"])
    check_choice("head", self.head, HEADS)
    b, n, height, width = check_views(views, self.max_views, self.in_channels)
    backbone, mean, std = make_backbone(self.backbone, self.dtype)
    if height % backbone.stride or width % backbone.stride:
      raise ValueError(f"image size {height} x {width} is not a multiple of the backbone "
                       f"stride {backbone.stride}.")
    x = normalise_views(views.reshape(b * n, height, width, 1).astype(jnp.float32), mean, std,
                        self.in_channels)
    features, _ = backbone(x.astype(self.dtype), train=train)
    _, h, w, _ = features.shape
    tokens = nn.Dense(self.d_model, dtype=self.dtype, name="proj")(features)
    tokens = tokens.reshape(b, n, h * w, self.d_model)
    if self.attention != "none":
      view_embed = self.param("view_embed", nn.initializers.normal(0.02),
                              (self.max_views, self.d_model), jnp.float32)
      tokens = tokens + view_embed[None, :n, None, :].astype(tokens.dtype)
    rows, cols = attn_lib.grid_positions(h, w)
    tokens = transformer.Encoder(self.attention, self.n_layers, self.n_heads, self.mlp_dim,
                                 message_passing=self.message_passing, rope=self.rope,
                                 rope_base=self.rope_base, dtype=self.dtype, name="encoder")(
                                     tokens, rows, cols, bias=bias)
    tokens = tokens.astype(jnp.float32)
    return correspondence_scores(tokens, self.head), {"tokens": tokens}
