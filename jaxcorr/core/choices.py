"""The one checker of closed sets of values, and the dtype names configs use.

Every switch of a config or a constructor (`drr.method`, `model.attention`, `views.orbit`, ...)
is checked with `check_choice`, so every error names the field, the value and what is allowed.
"""

from __future__ import annotations

from collections.abc import Iterable

import jax.numpy as jnp

# Config dtype names -> JAX dtypes (model compute, volumes on the device).
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def check_choice(name: str, value, allowed: Iterable, error: type[Exception] = ValueError):
  """Returns `value` if it is one of `allowed`, else raises `error` naming `name` and the set.

  Args:
    name: what the value is, as a user writes it (`config.drr.method`, `attention`).
    value: the value given.
    allowed: the closed set of valid values.
    error: the exception class to raise (ValueError, or a module's own error type).
  """
  allowed = tuple(allowed)
  if value not in allowed:
    raise error(f"{name}={value!r} is not allowed; allowed: {', '.join(map(str, allowed))}")
  return value


def dtype(name: str, value: str):
  """The JAX dtype of a config dtype name (`float32` | `bfloat16`), checked."""
  return DTYPES[check_choice(name, value, DTYPES)]
