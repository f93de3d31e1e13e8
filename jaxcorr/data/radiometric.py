"""Radiometric augmentation of views: brightness, contrast, inversion (the paper's), gamma, noise.

Views enter as DRR line integrals and leave as images in [0, 1]:

  x      = (I - min I) / (max I - min I)                per view (`normalize`)
  x      <- 1 - x                    with prob p_invert (radiograph polarity varies by site)
  x      <- x ** gamma               log gamma ~ U(-log max_gamma, log max_gamma)
  x      <- (x - mean x) * c + mean x + b     c ~ U(1 - contrast, 1 + contrast), b ~ U(+-brightness)
  x      <- x + sigma * N(0, 1)      sigma ~ U(0, max_noise)
  x      <- clip(x, 0, 1)

Every draw is per view and comes from the JAX key it is given (derived from Grain's per-record
rng), so the same seed gives the same images wherever this runs. Pure and jittable.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


def normalize(images: jnp.ndarray) -> jnp.ndarray:
  """Per-view min-max scaling of [..., H, W] line integrals to [0, 1] (constant views -> 0)."""
  lo = images.min(axis=(-2, -1), keepdims=True)
  hi = images.max(axis=(-2, -1), keepdims=True)
  return jnp.where(hi > lo, (images - lo) / jnp.where(hi > lo, hi - lo, 1.0), 0.0)


@dataclasses.dataclass(frozen=True)
class Radiometric:
  """Ranges of the radiometric augmentation; fields are `config.augment.radiometric` keys."""

  p_invert: float = 0.5
  brightness: float = 0.1
  contrast: float = 0.2
  max_gamma: float = 1.5
  max_noise: float = 0.02

  def __call__(self, images: jnp.ndarray, key: jax.Array) -> jnp.ndarray:
    """Augments [N, H, W] images in [0, 1] (one sample's views); returns [N, H, W] in [0, 1]."""
    n = images.shape[0]
    k_inv, k_gam, k_con, k_bri, k_sig, k_noise = jax.random.split(key, 6)
    shape = (n, 1, 1)
    x = jnp.where(jax.random.uniform(k_inv, shape) < self.p_invert, 1.0 - images, images)
    log_g = jnp.log(self.max_gamma)
    x = jnp.clip(x, 0.0, 1.0) ** jnp.exp(jax.random.uniform(k_gam, shape, minval=-log_g,
                                                            maxval=log_g))
    c = jax.random.uniform(k_con, shape, minval=1 - self.contrast, maxval=1 + self.contrast)
    b = jax.random.uniform(k_bri, shape, minval=-self.brightness, maxval=self.brightness)
    mean = x.mean(axis=(-2, -1), keepdims=True)
    x = (x - mean) * c + mean + b
    sigma = jax.random.uniform(k_sig, shape, maxval=self.max_noise)
    x = x + sigma * jax.random.normal(k_noise, x.shape)
    return jnp.clip(x, 0.0, 1.0)
