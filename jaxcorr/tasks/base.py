"""The small interface through which the one training loop (`jaxcorr.train.loop`) knows a task.

A task owns its model, its data and its evaluation; the loop owns the optimiser, sharding,
checkpoints, metric writing, logging and the step function.
"""

from __future__ import annotations

import abc


class Task(abc.ABC):
  """What a task supplies to `loop.train_and_evaluate`."""

  @abc.abstractmethod
  def batch_spec(self) -> dict:
    """ShapeDtypeStructs of one global training batch (for initialisation)."""

  @abc.abstractmethod
  def init_variables(self, rng, batch: dict) -> dict:
    """Flax variables {'params': ..., other collections ...} for a batch like `batch`."""

  @abc.abstractmethod
  def loss_fn(self, params, model_state, batch: dict, rng, *, train: bool = True):
    """Returns (loss, (metrics, new_model_state)); metrics maps names to scalar means."""

  @abc.abstractmethod
  def train_batches(self):
    """An iterator of global batches with get_state() / set_state(state) (JSON-able state)."""

  @abc.abstractmethod
  def evaluate(self, params, model_state) -> dict:
    """Host metrics (floats) on the task's held-out data."""

  def eval_images(self) -> dict:
    """Pictures of the last `evaluate` call, {name: uint8 [H, W, 3]}, written to TensorBoard
    as `eval/<name>` at each evaluation (e.g. predictions beside the truth, a PR curve)."""
    return {}

  def log_stats(self) -> dict:
    """Host scalars the loop logs as `train/<name>` beside the losses (e.g. redrawn samples)."""
    return {}

  def restore_init(self, params, model_state):
    """Called once on a fresh start (never on resume) with the freshly initialised variables.

    A task that starts from another run's weights (`config.init_from`) returns them here with
    the pretrained parameters in place; the default keeps the random initialisation.
    """
    return params, model_state
