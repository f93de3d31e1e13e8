"""Orbax checkpoints of the train state together with the data iterator's state.

Two managers in the workdir:
  checkpoints/<step>/{state, data}   the last `keep` checkpoints; resume takes the latest
  best/<step>/{state, data}          the best `keep_best` by `best_metric` (e.g. eval AP)

A checkpoint directory appears under its final name only when orbax has finished writing it,
so a killed run never resumes from a half-written step.
"""

from __future__ import annotations

import os

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from absl import logging

from jaxcorr.core import files


def _handlers() -> dict:
  """The items of every checkpoint: the train state (arrays) and the data iterator's state."""
  return {"state": ocp.StandardCheckpointHandler(), "data": ocp.JsonCheckpointHandler()}


class Checkpoints:
  """Save / restore (state, data iterator state) pairs."""

  def __init__(self, workdir: str, *, keep: int = 3, keep_best: int = 1,
               best_metric: str = "ap", best_mode: str = "max"):
    self.best_metric = best_metric
    self.latest = ocp.CheckpointManager(
        os.path.join(files.absolute(workdir), "checkpoints"),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
        item_handlers=_handlers())
    self.best = ocp.CheckpointManager(
        os.path.join(files.absolute(workdir), "best"),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=keep_best, create=True, best_mode=best_mode,
            best_fn=lambda m: m[best_metric]),
        item_handlers=_handlers())

  @staticmethod
  def _args(state, data_state):
    return ocp.args.Composite(state=ocp.args.StandardSave(state),
                              data=ocp.args.JsonSave(data_state or {}))

  def save(self, step: int, state, data_state, metrics: dict | None = None) -> None:
    """Saves the latest checkpoint; also a best candidate when `metrics` has the best metric."""
    self.latest.save(step, args=self._args(state, data_state), force=True)
    value = (metrics or {}).get(self.best_metric)
    if value is not None and value == value:  # not NaN
      self.best.save(step, args=self._args(state, data_state), force=True,
                     metrics={self.best_metric: float(value)})

  def restore_latest(self, abstract_state):
    """(state, data_state, step) of the latest checkpoint, or None when there is none."""
    step = self.latest.latest_step()
    if step is None:
      return None
    restored = self.latest.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
    logging.info("resumed from checkpoint step %d in %s", step, self.latest.directory)
    return restored.state, restored.data, step

  def restore_raw(self, step: int | None = None, *, best: bool = False):
    """(state as nested dicts of arrays, data_state) of a step (default: latest / best).

    No abstract state is needed: this is how other jobs (evaluation, a classifier's
    initialisation) read a checkpoint whose model they rebuild themselves. The arrays come back
    replicated over every device of every process, whatever devices and processes saved them
    (a run trained on 8 GPUs is evaluated on one, or on 2 processes).
    """
    manager = self.best if best else self.latest
    step = step if step is not None else (manager.best_step() if best else manager.latest_step())
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {manager.directory}")
    everywhere = NamedSharding(Mesh(np.asarray(jax.devices()), ("all",)), P())
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=everywhere),
                          manager.item_metadata(step)["state"])
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore()))
    return restored.state, restored.data

  def wait(self) -> None:
    self.latest.wait_until_finished()
    self.best.wait_until_finished()

  def close(self) -> None:
    self.latest.close()
    self.best.close()


def abstract_like(state):
  """ShapeDtypeStructs (with shardings) of a live state, for `restore_latest`."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
