"""ResNet backbones (torchvision ResNet v1.5 layout), optionally cut after a stage.

The paper's backbone is ResNet-50 cut after stage 3 (`layer3`): stride 16 and 1024 channels, so
a 256 x 256 image gives 16 x 16 tokens. Layout and padding follow torchvision exactly (7x7/2 stem
with padding 3, 3x3/2 max pool with padding 1, bottleneck blocks with the stride on the 3x3
conv, 1x1 strided downsample + BatchNorm on the shortcut), so torchvision weights load as they
are (`jaxcorr.models.convert`). Module names mirror torchvision's keys with '.' -> '_'
(`layer3_5/conv2`, `layer1_0/downsample_0`, ...).

BatchNorm keeps its statistics in the `batch_stats` collection: `train=True` normalises with the
batch and updates them (apply with `mutable=['batch_stats']`), `train=False` uses the running
averages. Norms run in float32; convolutions in the compute `dtype`; params are float32.
`RESNETS` holds the variants as data.
"""

from __future__ import annotations

from jaxcorr.core.choices import check_choice

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

Dtype = Any

# name -> ResNet fields. Output channels are 4 * width * 2^(stages - 1).
RESNETS = {
    "resnet50": dict(stage_sizes=(3, 4, 6), width=64),          # stage-3 cut: /16, 1024 ch
    "resnet50_full": dict(stage_sizes=(3, 4, 6, 3), width=64),  # all four stages: /32, 2048 ch
    "resnet_tiny": dict(stage_sizes=(1, 1, 1), width=8),        # CPU tests: /16, 128 ch
    "resnet_small": dict(stage_sizes=(2, 2, 2), width=16),      # CPU baselines: /16, 256 ch
}


def _batch_norm(train: bool, name: str, zero_scale: bool = False):
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                      dtype=jnp.float32, name=name,
                      scale_init=nn.initializers.zeros if zero_scale else nn.initializers.ones)


class Bottleneck(nn.Module):
  """1x1 -> 3x3 (stride) -> 1x1 (4x width) with a residual; torchvision's Bottleneck."""
  width: int
  stride: int = 1
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype)
    out_ch = 4 * self.width
    y = conv(self.width, (1, 1), name="conv1")(x)
    y = nn.relu(_batch_norm(train, "bn1")(y))
    y = conv(self.width, (3, 3), strides=self.stride, padding=((1, 1), (1, 1)), name="conv2")(y)
    y = nn.relu(_batch_norm(train, "bn2")(y))
    y = conv(out_ch, (1, 1), name="conv3")(y)
    # Zero-initialised last scale: each block starts as the identity (Goyal et al., 2017).
    y = _batch_norm(train, "bn3", zero_scale=True)(y)
    shortcut = x
    if self.stride != 1 or x.shape[-1] != out_ch:
      shortcut = conv(out_ch, (1, 1), strides=self.stride, name="downsample_0")(x)
      shortcut = _batch_norm(train, "downsample_1")(shortcut)
    return nn.relu(y + shortcut).astype(self.dtype)


class ResNet(nn.Module):
  """A bottleneck ResNet with len(stage_sizes) stages (4 = the full network, 3 = cut at layer3).

  Stage s (1-based) has stage_sizes[s - 1] blocks of width `width * 2^(s - 1)`; stages after
  the first halve the resolution.
  """
  stage_sizes: Sequence[int]
  width: int = 64
  dtype: Dtype = jnp.float32

  @property
  def out_channels(self) -> int:
    return 4 * self.width * 2 ** (len(self.stage_sizes) - 1)

  @property
  def stride(self) -> int:
    return 4 * 2 ** (len(self.stage_sizes) - 1)

  @nn.compact
  def __call__(self, x, *, train: bool):
    """Features of images.

    Args:
      x: [B, H, W, C] images (normalised), H and W multiples of `stride`.
      train: batch statistics (and their update) instead of running averages.

    Returns:
      (features [B, H / stride, W / stride, out_channels] in the compute dtype, aux {}).
    """
    y = nn.Conv(self.width, (7, 7), strides=2, padding=((3, 3), (3, 3)), use_bias=False,
                dtype=self.dtype, name="conv1")(x)
    y = nn.relu(_batch_norm(train, "bn1")(y)).astype(self.dtype)
    y = nn.max_pool(y, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for stage, n_blocks in enumerate(self.stage_sizes):
      for block in range(n_blocks):
        stride = 2 if stage > 0 and block == 0 else 1
        y = Bottleneck(self.width * 2 ** stage, stride=stride, dtype=self.dtype,
                       name=f"layer{stage + 1}_{block}")(y, train=train)
    return y, {}


def resnet(variant: str, **kwargs) -> ResNet:
  """The ResNet `variant` of `RESNETS`, with extra fields (e.g. dtype, name)."""
  check_choice("ResNet variant", variant, RESNETS)
  return ResNet(**RESNETS[variant], **kwargs)
