"""The one checker of closed sets of values, and the dtype names configs use.

Every switch of a config or a constructor (`drr.method`, `model.attention`, `views.orbit`, ...)
is checked with `check_choice`, so every error names the field, the value and what is allowed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import jax.numpy as jnp

# Config dtype names -> JAX dtypes (model compute, volumes on the device).
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

# The switches of the correspondence model (`config.model.<key>`), here so that the config
# validation (`jaxcorr.data.validation`, below the models) checks them before any work with the
# very sets the models read: the encoder (`models.transformer`), the head
# (`models.correspondence`) and the rotary embedding (`models.attention`).
MODEL_CHOICES = {
    "attention": ("none", "superglue", "loftr", "transformer_alternating", "transformer"),
    "head": ("cosine", "cosine_squared", "cosine_squared_unclipped"),
    "rope": ("2d", "1d"),
}
# Values renamed since: {key: {old: new}}; the error for an old value names the new one.
MODEL_RENAMED = {"attention": {"transformer_mp": "transformer_alternating"}}


def check_choice(name: str, value, allowed: Iterable, error: type[Exception] = ValueError,
                 renamed: Mapping | None = None):
  """Returns `value` if it is one of `allowed`, else raises `error` naming `name` and the set.

  Args:
    name: what the value is, as a user writes it (`config.drr.method`, `attention`).
    value: the value given.
    allowed: the closed set of valid values.
    error: the exception class to raise (ValueError, or a module's own error type).
    renamed: optional {old value: new value}; an old value's error names its new spelling.
  """
  allowed = tuple(allowed)
  if renamed and value in tuple(renamed):
    raise error(f"{name}={value!r} was renamed: use {renamed[value]!r} (allowed: "
                f"{', '.join(map(str, allowed))})")
  if value not in allowed:
    raise error(f"{name}={value!r} is not allowed; allowed: {', '.join(map(str, allowed))}")
  return value


def dtype(name: str, value: str):
  """The JAX dtype of a config dtype name (`float32` | `bfloat16`), checked."""
  return DTYPES[check_choice(name, value, DTYPES)]
