"""Multi-view study classifier (e.g. fracture / abnormality of a radiograph study, paper Table 3).

Input. views [B, N, H, W, 1] float in [0, 1]: the N views of a study (N <= max_views), H and W
multiples of 16; optional view_mask [B, N] bool (True = present; studies with fewer views are
padded, view 0 must be present); for correspondence guidance corr [B, P, L, L], the
correspondences of the P = N (N - 1) / 2 view pairs (i < j, row-major, `labels.pair_indices`)
between the L = (H / 16) (W / 16) patches of each view (row-major), e.g. predicted by the
pretrained `CorrespondenceModel`. Views are normalised as the correspondence model does for a
ViT (grey replicated to 3 channels, Inception mean / std 0.5).

Backbone (`BACKBONES`, field `backbone`).
  'vit'     one ViT (`vit.VITS` variant `vit`) under the module name 'backbone', with exactly the
            parameters of `vit.ViT` (patch_embed, cls_token, pos_embed, blocks_i, norm), so a
            correspondence checkpoint's params['backbone'] or a timm ViT loads into it 1:1
            (`transfer`). Every fusion and guidance below.
  'resnet'  the CNN baseline: the project's ResNet (`resnet.RESNETS` variant `resnet`, e.g.
            'resnet_small', stride 16) under 'backbone', views normalised with ImageNet's
            statistics, features [h, w, C] -> per-position logits by the Dense 'head'
            (zero-initialised) -> pooled over positions by `pool`: 'max' (the default: a
            fracture is a local finding, so the view's logit is that of its most abnormal
            position, as 'late' takes the most abnormal view) or 'mean' (the head on globally
            average-pooled features, the classic CNN classifier). Fusion 'single' or
            'late' (max over views, as below); no guidance. BatchNorm: apply with
            mutable=['batch_stats'] when train=True. aux 'attention' is the class activation
            map's softmax over each view's positions ([B, V, 1, h, w]; the head's bias cancels,
            uniform at the zero init), 'cls' the pooled features.
  'correspondence'  the correspondence model itself (`build.SIZES[corr_size]`: a ResNet, a
            1x1 projection and the RoPE transformer over all views' tokens, as pretrained by
            the pretrain job) under 'backbone', so a correspondence checkpoint's params and
            BatchNorm statistics load into it 1:1 (`transfer.load_model`): the CPU stand-in
            for the paper's ViT. Its output tokens [B, V, L, d] -> per-token logits by the
            Dense 'head' (zero-initialised) -> pooled over the tokens by `pool` as for
            'resnet'. Fusion 'single' (view 0 alone), 'late' (each view alone through the
            encoder, max over views) or 'early' (all views' tokens in ONE encoder sequence,
            with the pretraining's view embeddings, so tokens attend across views; pooled over
            the tokens of every present view; absent views are masked out as keys by a -1e9
            logit bias). Guidance as below, the bias over the N L tokens (no class token).
            aux as for 'resnet' ('attention' [B, V, 1, h, w]); BatchNorm as for 'resnet'.

Fusion (`FUSIONS`).
  'single'  view 0 alone through the ViT; the other views are ignored.
  'late'    every view alone through the same ViT, one logit per view (class token -> head),
            pooled over the present views by their MAXIMUM. A study is abnormal when any of its
            views shows the abnormality (how MURA's radiologists label studies), which is a max
            over views: the study logit is that of its most abnormal view, calibrated the same
            for studies of 1 or 4 views. (A mean would dilute a finding seen in one view of
            four; log-sum-exp is a smooth max but adds up to log N, so its calibration would
            depend on the number of views.) Its gradient reaches the arg-max view only, which
            the shared backbone tolerates: different studies pick different views.
  'early'   the patch tokens of all views in ONE sequence with ONE class token: each view gets
            the ViT's own patch position embeddings (shared across views) plus a learned view
            embedding (row n of a [max_views, width] table 'view_embed', zero-initialised so
            the pretrained ViT starts unchanged), T = 1 + N L tokens through the ViT's blocks.
            Tokens of absent views are masked out as keys.

Guidance (`GUIDANCES`, early fusion only). In the guided blocks the attention logits get
`guidance.cross_view_bias(corr, alpha_l)`: a query of view i leans towards the patches of view
j that correspond to it. alpha is learned, initialised to `alpha_init`:
  'none'   no bias (corr is ignored).
  'layer'  one alpha per guided block: param 'alpha' [G].
  'head'   one alpha per guided block and head: param 'alpha' [G, num_heads].
`guided_layers` picks the G blocks among all but the final one: 0 for all of them (depth - 1
blocks), k > 0 for the last k of them (an int, so that a config override stays typed; guiding
only the later blocks leaves the low-level ones as pretrained). The final block is never
guided: the class-token row of the bias is 0, and in the final block only the class token's
output reaches the logit, so a bias there would change nothing (its alpha would get no
gradient). With alpha_init = 0 a guided model computes exactly what the unguided one does.
The 'correspondence' backbone picks its guided blocks the same way (its per-token logits would
let a bias in the final block act, but one rule for both backbones keeps `guided_layers`
meaning the same).

Head (ViT). The ViT's final LayerNorm of the class token ('norm', timm's layout) -> Dense 'head'
(zero-initialised: the initial logit is 0, p = 0.5, whatever the backbone).
Output: (logits [B] float32 ([B, num_classes] when num_classes > 1), aux):
  'attention'    [B, V, num_heads, h, w] float32, the class-token attention over the patch
                 tokens in the last block: V = 1 for 'single', N for 'late' (each view's own
                 class token) and 'early' (the one class token over all views' patches);
  'cls'          the normalised class token(s), [B, width] ('late': [B, N, width]);
  'view_logits'  ('late') [B, N] or [B, N, num_classes], absent views at the float32 minimum;
  'alpha'        (guided) the alphas, [G] or [G, num_heads].
"""

from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcorr.core.choices import check_choice
from jaxcorr.models import (build, guidance as guidance_lib, resnet as resnet_lib,
                            vit as vit_lib)
from jaxcorr.models.correspondence import (IMAGENET_MEAN, IMAGENET_STD, INCEPTION_MEAN,
                                           INCEPTION_STD, CorrespondenceModel, backbone_stride,
                                           check_views, normalise_views)

Dtype = Any
BACKBONES = ("vit", "resnet", "correspondence")
FUSIONS = ("single", "late", "early")
CNN_FUSIONS = ("single", "late")
ABSENT_BIAS = -1e9    # the attention-logit bias that hides an absent view's tokens
POOLS = ("max", "mean")
GUIDANCES = ("none", "layer", "head")


def guided_blocks(guided_layers: int, depth: int) -> list[int]:
  """The guided blocks of `depth`: blocks 0 .. depth - 2 for 0, the k before the final for k."""
  guidable = depth - 1
  if isinstance(guided_layers, bool) or not isinstance(guided_layers, int) or not (
      0 <= guided_layers <= guidable) or guidable < 1:
    raise ValueError(f"guided_layers={guided_layers!r}; allowed: 0 (all {guidable} blocks "
                     f"before the final one) or an int k in 1..{guidable} (the last k of them).")
  return list(range(guidable - (guided_layers or guidable), guidable))


class FusionClassifier(nn.Module):
  """Study-level classifier over N views; see the module docstring."""
  backbone: str = "vit"
  vit: str = "vit_s16"
  resnet: str = "resnet_small"
  corr_size: str = "small"
  pool: str = "max"
  fusion: str = "early"
  max_views: int = 4
  guidance: str = "none"
  alpha_init: float = 0.0
  guided_layers: int = 0
  num_classes: int = 1
  in_channels: int = 3
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, views, corr=None, *, train: bool, view_mask: Optional[jnp.ndarray] = None):
    """Study logits.

    Args:
      views: [B, N, H, W, 1] float in [0, 1].
      corr: [B, P, L, L] view-pair correspondences; needed when guidance != 'none'.
      train: keyword-only (the ViT has no dropout or batch statistics; the ResNet normalises
        with the batch's statistics and updates its running ones when True).
      view_mask: optional [B, N] bool, True for present views (default: all present).

    Returns:
      (logits [B] float32, or [B, num_classes] when num_classes > 1; aux, see the module
      docstring).
    """
    check_choice("fusion", self.fusion, FUSIONS)
    check_choice("guidance", self.guidance, GUIDANCES)
    check_choice("backbone", self.backbone, BACKBONES)
    b, n, height, width = check_views(views, self.max_views, self.in_channels)
    if self.guidance != "none" and self.fusion != "early":
      raise ValueError(f"guidance={self.guidance!r} biases attention between the views of one "
                       f"sequence and needs fusion='early', not {self.fusion!r}.")
    mask = None if view_mask is None else jnp.asarray(view_mask, bool)
    if mask is not None and mask.shape != (b, n):
      raise ValueError(f"view_mask must be [B, N] = [{b}, {n}], got shape {mask.shape}.")
    if self.backbone == "resnet":
      return self._cnn(views, mask, train)
    if self.backbone == "correspondence":
      return self._correspondence(views, corr, mask, train)
    check_choice("vit", self.vit, tuple(vit_lib.VITS))
    backbone = vit_lib.vit(self.vit, dtype=self.dtype, name="backbone")
    if height % backbone.patch or width % backbone.patch:
      raise ValueError(f"image size {height} x {width} is not a multiple of the patch "
                       f"{backbone.patch}.")
    x = normalise_views(views.reshape(b * n, height, width, 1).astype(jnp.float32),
                        INCEPTION_MEAN, INCEPTION_STD, self.in_channels)
    x = x.reshape(b, n, height, width, self.in_channels).astype(self.dtype)
    grid = (height // backbone.patch, width // backbone.patch)
    head = nn.Dense(self.num_classes, dtype=jnp.float32, kernel_init=nn.initializers.zeros,
                    name="head")
    if self.fusion == "single":
      _, aux = backbone(x[:, 0], train=train, return_attention=True)
      logits = head(aux["cls"])
      aux = {"cls": aux["cls"],
             "attention": _attention_grid(aux["attention"], b, 1, grid, per_view=True)}
    elif self.fusion == "late":
      _, aux = backbone(x.reshape(b * n, height, width, -1), train=train, return_attention=True)
      view_logits = head(aux["cls"]).reshape(b, n, self.num_classes)
      logits, view_logits = _max_over_views(view_logits, mask)
      aux = {"cls": aux["cls"].reshape(b, n, -1),
             "attention": _attention_grid(aux["attention"], b, n, grid, per_view=True),
             "view_logits": _squeeze(view_logits, self.num_classes)}
    else:
      logits, aux = self._early(backbone, head, x, corr, mask, grid, train)
    return _squeeze(logits.astype(jnp.float32), self.num_classes), aux

  def _cnn(self, views, mask, train):
    """The CNN baseline (module docstring): (logits, aux) for fusion 'single' or 'late'."""
    check_choice("fusion (with backbone='resnet')", self.fusion, CNN_FUSIONS)
    check_choice("resnet", self.resnet, tuple(resnet_lib.RESNETS))
    if self.guidance != "none":
      raise ValueError(f"guidance={self.guidance!r} needs backbone='vit' (attention to bias).")
    backbone = resnet_lib.resnet(self.resnet, dtype=self.dtype, name="backbone")
    b, _, height, width = views.shape[:4]
    if height % backbone.stride or width % backbone.stride:
      raise ValueError(f"image size {height} x {width} is not a multiple of the ResNet stride "
                       f"{backbone.stride}.")
    n = 1 if self.fusion == "single" else views.shape[1]
    x = normalise_views(views[:, :n].reshape(b * n, height, width, 1).astype(jnp.float32),
                        IMAGENET_MEAN, IMAGENET_STD, self.in_channels)
    features, _ = backbone(x.astype(self.dtype), train=train)
    features = features.astype(jnp.float32)                              # [B n, h, w, C]
    cam = nn.Dense(self.num_classes, dtype=jnp.float32, kernel_init=nn.initializers.zeros,
                   name="head")(features)                                # [B n, h, w, K]
    check_choice("pool", self.pool, POOLS)
    pooled = cam.max(axis=(1, 2)) if self.pool == "max" else cam.mean(axis=(1, 2))
    view_logits = pooled.reshape(b, n, self.num_classes)
    grid = cam.shape[1:3]
    att = jax.nn.softmax(cam[..., -1].reshape(b * n, -1), axis=-1).reshape(b, n, 1, *grid)
    aux = {"attention": att, "cls": features.mean(axis=(1, 2)).reshape(b, n, -1)}
    if self.fusion == "single":
      return _squeeze(view_logits[:, 0], self.num_classes), {**aux, "cls": aux["cls"][:, 0]}
    logits, view_logits = _max_over_views(view_logits, mask)
    return (_squeeze(logits, self.num_classes),
            {**aux, "view_logits": _squeeze(view_logits, self.num_classes)})

  def _correspondence(self, views, corr, mask, train):
    """The correspondence-model backbone (module docstring): (logits, aux), every fusion."""
    check_choice("corr_size", self.corr_size, build.SIZES)
    size = build.SIZES[self.corr_size]
    stride = backbone_stride(size["backbone"])
    b, n, height, width = views.shape[:4]
    if height % stride or width % stride:
      raise ValueError(f"image size {height} x {width} is not a multiple of the backbone "
                       f"stride {stride}.")
    grid = (height // stride, width // stride)
    l = grid[0] * grid[1]
    model = CorrespondenceModel(**size, in_channels=self.in_channels, dtype=self.dtype,
                                name="backbone")
    extra, bias = {}, None
    if self.fusion == "single":
      x, groups = views[:, :1], (b, 1)
    elif self.fusion == "late":
      x, groups = views.reshape(b * n, 1, height, width, 1), (b, n)
    else:
      x, groups = views, (b, n)
      if mask is not None:      # [B, 1, 1, N L]: absent views' tokens are no keys
        bias = jnp.where(jnp.repeat(mask, l, 1), 0.0, ABSENT_BIAS)[:, None, None, :]
      if self.guidance != "none":
        bias, extra["alpha"] = self._guidance_biases(corr, n, l, size["n_layers"],
                                                     size["n_heads"], bias)
    _, aux = model(x, train=train, bias=bias)
    tokens = aux["tokens"].reshape(*groups, l, -1)                       # [B, V, L, d]
    cam = nn.Dense(self.num_classes, dtype=jnp.float32, kernel_init=nn.initializers.zeros,
                   name="head")(tokens)                                  # [B, V, L, K]
    check_choice("pool", self.pool, POOLS)
    view_logits = cam.max(axis=2) if self.pool == "max" else cam.mean(axis=2)   # [B, V, K]
    att = jax.nn.softmax(cam[..., -1], axis=-1).reshape(*groups, 1, *grid)
    aux = {"attention": att, "cls": tokens.mean(axis=2), **extra}
    if self.fusion == "single":
      return _squeeze(view_logits[:, 0], self.num_classes), {**aux, "cls": aux["cls"][:, 0]}
    logits, view_logits = _max_over_views(view_logits, mask)
    return (_squeeze(logits, self.num_classes),
            {**aux, "view_logits": _squeeze(view_logits, self.num_classes)})

  def _guidance_biases(self, corr, n, tokens_per_view, depth, num_heads, base=None):
    """(per-block biases [depth] (None where unguided), alpha) of the guided blocks, each
    alpha * the correspondence layout (+ `base`, added to every block)."""
    if corr is None:
      raise ValueError(f"guidance={self.guidance!r} needs corr [B, P, L, L], the view-pair "
                       "correspondences; got none.")
    blocks = guided_blocks(self.guided_layers, depth)
    shape = (len(blocks),) + ((num_heads,) if self.guidance == "head" else ())
    alpha = self.param("alpha", nn.initializers.constant(self.alpha_init), shape, jnp.float32)
    # The bias is linear in alpha: build the correspondence layout once, scale per block.
    unit = guidance_lib.cross_view_bias(corr, 1.0, n_views=n, tokens_per_view=tokens_per_view,
                                        n_prefix=0 if self.backbone == "correspondence" else 1)
    biases = [base] * depth
    for g, i in enumerate(blocks):
      biases[i] = jnp.reshape(alpha[g], (1, -1, 1, 1)) * unit + (0.0 if base is None else base)
    return biases, alpha

  def _early(self, backbone, head, x, corr, mask, grid, train):
    b, n = x.shape[:2]
    view_embed = self.param("view_embed", nn.initializers.zeros,
                            (self.max_views, backbone.width), jnp.float32)
    tokens_per_view = grid[0] * grid[1]
    keys = None
    if mask is not None:      # the class token and the patches of present views
      keys = jnp.concatenate([jnp.ones((b, 1), bool), jnp.repeat(mask, tokens_per_view, 1)], 1)
      keys = keys[:, None, None, :]
    biases, extra = None, {}
    if self.guidance != "none":
      biases, extra["alpha"] = self._guidance_biases(corr, n, tokens_per_view, backbone.depth,
                                                     backbone.num_heads)
    _, aux = backbone(x, train=train, view_embed=view_embed[:n], bias=biases, mask=keys,
                      return_attention=True)
    logits = head(aux["cls"])
    return logits, {"cls": aux["cls"], "attention": _attention_grid(aux["attention"], b, n, grid,
                                                                   per_view=False),
                    **extra}


def _attention_grid(attention, b, n, grid, *, per_view):
  """Class-token attention [B * V, H, L] (per_view) or [B, H, V * L] -> [B, V, H, h, w]."""
  heads = attention.shape[1]
  if per_view:
    return attention.reshape(b, n, heads, *grid)
  return attention.reshape(b, heads, n, *grid).transpose(0, 2, 1, 3, 4)


def _max_over_views(view_logits, mask):
  """(study logits [B, K], view logits [B, N, K] with absent views at the float32 minimum)."""
  if mask is not None:
    view_logits = jnp.where(mask[..., None], view_logits, jnp.finfo(jnp.float32).min)
  return jnp.max(view_logits, axis=1), view_logits


def _squeeze(logits, num_classes):
  return logits[..., 0] if num_classes == 1 else logits
