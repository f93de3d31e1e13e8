"""The one training loop, shared by every task.

  state = init (jit, out_shardings over the mesh) or the latest checkpoint (+ data state)
  for step in [start, config.steps):
      state, metrics = train_step(state, batch, root_key)     (jitted once, state donated)
      every log_every: metrics -> JSONL + TensorBoard; progress line (steps/s, loss, ETA)
      every eval_every and at the end: task.evaluate (+ task.eval_images) -> writers;
                                       checkpoint (latest + best)
      every ckpt.every steps or ckpt.every_seconds of wall time: checkpoint
      after stop_after_seconds (a time budget): a final evaluation with a checkpoint, then return
The cadences are derived from `config.steps` when the run starts wherever they are 0 (the
configs' default), so overriding `steps` keeps ~10 log lines (at most every 50 steps) and
4 evaluations and checkpoints (`cadences`).
A non-finite loss stops the run with the step number. Randomness: one root key from
`config.seed`, folded with the step inside the step.

SIGTERM or SIGINT (a preempted VM, a scheduler's time limit, Ctrl-C) stops the run after the
current step: a checkpoint of that step with the data iterator's state, the writers flushed,
then `Stopped` (a SystemExit: exit status 128 + the signal, one log line, no traceback); the
same command resumes. A second Ctrl-C exits at once. A time budget (`stop_after_seconds`,
counted from the start of `train_and_evaluate`, 0 = none) ends the same way but returns
normally, after a final evaluation; the same command continues with a new budget.
"""

from __future__ import annotations

import functools
import signal
import threading
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from jaxcorr.core import sharding
from jaxcorr.train import checkpoint, state as state_lib, writers


class Cadences(NamedTuple):
  """Every how many steps the loop logs, evaluates (and checkpoints) and checkpoints."""
  log: int
  eval: int
  ckpt: int


def cadences(config) -> Cadences:
  """`config.log_every`, `eval_every` and `ckpt.every`, each derived from `config.steps` when 0:
  a log line every steps/10 (at most 50) steps, 4 evaluations and 4 checkpoints a run."""
  steps = config.steps
  return Cadences(log=config.log_every or max(1, min(50, steps // 10)),
                  eval=config.eval_every or max(1, steps // 4),
                  ckpt=config.ckpt.every or max(1, steps // 4))


# The wall clock of the time budget and of ckpt.every_seconds (a module attribute so that tests
# can replace it).
clock = time.monotonic


class Stopped(SystemExit):
  """The run stopped on a signal after saving a checkpoint; its code is 128 + the signal."""


class _StopRequests:
  """Turns SIGTERM and SIGINT into a request the loop honours after the current step (the
  handlers are the process's own while the loop runs, and only in the main thread)."""

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.signum = None    # this process's request, set by the handler
    self.agreed = None    # the request all processes agreed on after the last step (the loop's)
    self._previous = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
    return self

  def _handle(self, signum, frame):
    del frame
    if self.signum is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt   # a second Ctrl-C: at once
    self.signum = signum
    logging.warning("%s received: stopping after this step with a checkpoint (Ctrl-C again to "
                    "exit at once)", signal.Signals(signum).name)

  def __exit__(self, *exc_info):
    for s, handler in self._previous.items():
      signal.signal(s, handler)


def _train_step(task, tx, state, batch, root_key):
  rng = jax.random.fold_in(root_key, state.step)
  grad_fn = jax.value_and_grad(functools.partial(task.loss_fn, train=True), has_aux=True)
  (loss, (metrics, model_state)), grads = grad_fn(state.params, state.model_state, batch, rng)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), **metrics}
  return state.replace(step=state.step + 1, params=params, model_state=model_state,
                       opt_state=opt_state), metrics


def init_state(task, tx, mesh, *, seed: int, fsdp: bool = False):
  """The initial TrainState, created directly with its shardings; returns (state, shardings)."""
  spec = task.batch_spec()

  def init_fn(rng):
    batch = {k: jnp.zeros(v.shape, v.dtype) for k, v in spec.items()}
    variables = dict(task.init_variables(rng, batch))
    params = variables.pop("params")
    return state_lib.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                                model_state=variables, opt_state=tx.init(params))

  key = jax.random.key(seed)
  abstract = jax.eval_shape(init_fn, key)
  shardings = sharding.param_shardings(abstract, mesh, fsdp=fsdp)
  return jax.jit(init_fn, out_shardings=shardings)(key), shardings


def train_and_evaluate(config, workdir: str, task, mesh) -> dict:
  """Trains `task` for config.steps steps; returns the last evaluation's metrics."""
  if config.steps < 1:
    raise ValueError(f"config.steps={config.steps}: must be >= 1")
  started = clock()
  every = cadences(config)
  tx = state_lib.make_optimizer(config.optim, config.steps)
  state, shardings = init_state(task, tx, mesh, seed=config.seed, fsdp=config.mesh.fsdp)
  n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
  logging.info("%s parameters on a mesh of %d devices", f"{n_params:,}", mesh.size)
  ckpt = checkpoint.Checkpoints(workdir, keep=config.ckpt.keep, keep_best=config.ckpt.keep_best,
                                best_metric=config.ckpt.best_metric)
  batches = task.train_batches()
  restored = ckpt.restore_latest(checkpoint.abstract_like(state))
  if restored is not None:
    state, data_state, start = restored
    batches.set_state(data_state)
    logging.info("resuming from step %d (checkpoint found in %s)", start, workdir)
  else:
    start = 0
    params, model_state = task.restore_init(state.params, state.model_state)
    if params is not state.params or model_state is not state.model_state:
      params = jax.device_put(params, shardings.params)
      model_state = jax.device_put(model_state, shardings.model_state)
      state = state.replace(params=params, model_state=model_state)
  step_fn = jax.jit(functools.partial(_train_step, task, tx), donate_argnums=(0,),
                    out_shardings=(shardings, sharding.replicated(mesh)))
  root_key = jax.random.key(config.seed + 1)
  writer = writers.MetricWriter(workdir, enabled=jax.process_index() == 0, resume_step=start)
  with _StopRequests() as requests:
    step, last_eval = _run_steps(config, task, step_fn, state, batches, root_key, ckpt, writer,
                                 every, start, requests, started)
  ckpt.wait()
  ckpt.close()
  writer.close()
  if requests.agreed is not None:
    logging.warning("stopped by %s after step %d; checkpoint saved in %s: run the same command "
                    "to resume", signal.Signals(requests.agreed).name, step, workdir)
    raise Stopped(128 + requests.agreed)
  return last_eval


def _run_steps(config, task, step_fn, state, batches, root_key, ckpt, writer, every: Cadences,
               start: int, requests: _StopRequests, started: float) -> tuple[int, dict]:
  """Steps start + 1 .. min(steps, stop_after_step), or to the step a stop is requested at
  (which is then checkpointed) or the time budget runs out at (evaluated and checkpointed);
  returns (the last step done, the last evaluation)."""
  sums, count, t_last, step_last = {}, 0, time.perf_counter(), start
  last_eval = {}
  stop = config.stop_after_step or config.steps
  budget, ckpt_seconds = config.get("stop_after_seconds", 0), config.ckpt.get("every_seconds", 0)
  step, saved_at = start, clock()
  for step in range(start + 1, min(config.steps, stop) + 1):
    state, metrics = step_fn(state, next(batches), root_key)
    for k, v in metrics.items():
      sums[k] = sums.get(k, 0.0) + v
    count += 1
    if step % every.log == 0 or step == config.steps:
      means = {k: float(v) / count for k, v in sums.items()}
      if not np.isfinite(means["loss"]):
        raise FloatingPointError(f"non-finite loss {means['loss']} at step {step}; stopping")
      rate = (step - step_last) / (time.perf_counter() - t_last)
      writer.write(step, {**{f"train/{k}": v for k, v in means.items()},
                          "train/steps_per_s": rate,
                          **{f"train/{k}": v for k, v in task.log_stats().items()}})
      logging.info("step %d/%d  loss %.5f  %.2f steps/s  ETA %.0f s", step, config.steps,
                   means["loss"], rate, (config.steps - step) / max(rate, 1e-9))
      sums, count, t_last, step_last = {}, 0, time.perf_counter(), step
    now = clock()
    out_of_time = bool(budget) and now - started >= budget
    ckpt_due = bool(ckpt_seconds) and now - saved_at >= ckpt_seconds
    # Several processes stop, evaluate and save at the same step (each save is a collective):
    # what one process's signal or clock says holds for all.
    # The agreed signal goes to its own field: one that arrives while this process waits in the
    # collective is kept in `signum` for the next step's agreement, never overwritten.
    signum, out_of_time, ckpt_due = sharding.agree([requests.signum or 0, out_of_time, ckpt_due])
    requests.agreed = int(signum) or None
    if out_of_time:
      logging.info("time budget stop_after_seconds=%g spent after step %d (%.0f s): final "
                   "evaluation and checkpoint; the same command continues", budget, step,
                   now - started)
    if step % every.eval == 0 or step == config.steps or out_of_time:
      last_eval = task.evaluate(state.params, state.model_state)
      writer.write(step, {f"eval/{k}": v for k, v in last_eval.items()})
      if writer.enabled:
        writer.write_images(step, {f"eval/{k}": v for k, v in task.eval_images().items()})
      logging.info("eval at step %d: %s", step,
                   ", ".join(f"{k} {v:.4f}" for k, v in last_eval.items()))
      ckpt.save(step, state, batches.get_state(), last_eval)
      saved_at = now
    elif step % every.ckpt == 0 or step == stop or requests.agreed is not None or ckpt_due:
      ckpt.save(step, state, batches.get_state())
      saved_at = now
    if requests.agreed is not None or out_of_time:
      break
  return step, last_eval
