"""Train state and optimiser (optax Adam with warmup + cosine decay)."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import optax


@flax.struct.dataclass
class TrainState:
  """Everything a step changes: a pytree, sharded and checkpointed as a whole.

  Attributes:
    step: int32 [] number of optimiser steps taken.
    params: model parameters (float32).
    model_state: non-trained collections, e.g. {'batch_stats': ...} (may be empty).
    opt_state: the optax state.
  """

  step: jax.Array
  params: Any
  model_state: Any
  opt_state: Any


def learning_rate_schedule(*, learning_rate: float, total_steps: int, warmup_steps: int = 0,
                           end_fraction: float = 0.0) -> optax.Schedule:
  """Linear warmup to `learning_rate`, then cosine decay to end_fraction * learning_rate."""
  warmup_steps = min(warmup_steps, max(total_steps - 1, 0))
  if not warmup_steps:
    # The cosine part of optax's warmup schedule, without the empty warmup piece that warns
    # "A polynomial schedule was set with a non-positive transition_steps" on every run.
    return optax.cosine_decay_schedule(
        init_value=learning_rate, decay_steps=max(total_steps, 1),
        alpha=end_fraction * learning_rate / learning_rate if learning_rate else 0.0)
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0 if warmup_steps else learning_rate, peak_value=learning_rate,
      warmup_steps=warmup_steps, decay_steps=max(total_steps, warmup_steps + 1),
      end_value=end_fraction * learning_rate)


def make_optimizer(optim_config, total_steps: int) -> optax.GradientTransformation:
  """Adam (the paper's) with the schedule above and optional global-norm clipping; AdamW
  (decoupled weight decay on matrices and kernels, not on biases, norms or embeddings' 1D
  vectors) when `weight_decay` > 0, as the classifier uses. The warmup is `warmup_steps`, or
  when that is 0 the fraction `warmup_fraction` of `total_steps` (so it follows `steps`)."""
  warmup = (optim_config.warmup_steps
            or int(optim_config.get("warmup_fraction", 0.0) * total_steps))
  schedule = learning_rate_schedule(learning_rate=optim_config.learning_rate,
                                    total_steps=total_steps, warmup_steps=warmup,
                                    end_fraction=optim_config.end_fraction)
  chain = []
  if optim_config.clip_norm > 0:
    chain.append(optax.clip_by_global_norm(optim_config.clip_norm))
  decay = optim_config.get("weight_decay", 0.0)
  if decay > 0:
    chain.append(optax.adamw(schedule, b1=optim_config.b1, b2=optim_config.b2,
                             weight_decay=decay,
                             mask=lambda params: jax.tree.map(lambda x: x.ndim > 1, params)))
  else:
    chain.append(optax.adam(schedule, b1=optim_config.b1, b2=optim_config.b2))
  return optax.chain(*chain)
