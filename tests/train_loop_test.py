"""The training loop on a toy task: learning, exact resume, non-finite stop, 1 vs 8 devices."""

import importlib
import json
import os
import signal
import sys
import textwrap

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from conftest import REPO, run_on_cpu_devices
from jaxcorr.core import sharding
from jaxcorr.tasks import base as task_lib
from jaxcorr.train import loop, state as state_lib

sys.path.insert(0, str(REPO))
from configs import common  # pylint: disable=wrong-import-position


class Counter:
  """A deterministic batch stream y = x . w_true with a JSON state."""

  def __init__(self, batch=8, scale=1.0, nan_at=None):
    self.i, self.batch, self.scale, self.nan_at = 0, batch, scale, nan_at

  def __next__(self):
    rng = np.random.default_rng(self.i)
    x = rng.normal(size=(self.batch, 4)).astype(np.float32)
    y = x @ np.array([1.0, -2.0, 0.5, 3.0], np.float32) * self.scale
    if self.nan_at is not None and self.i >= self.nan_at:
      y = y * np.nan
    self.i += 1
    return {"x": jnp.asarray(x), "y": jnp.asarray(y)}

  def get_state(self):
    return {"i": self.i}

  def set_state(self, state):
    self.i = state["i"]


class LinearTask(task_lib.Task):
  def __init__(self, **kw):
    self.kw = kw

  def batch_spec(self):
    return {"x": jax.ShapeDtypeStruct((8, 4), jnp.float32), "y": jax.ShapeDtypeStruct((8,), jnp.float32)}

  def init_variables(self, rng, batch):
    return {"params": {"w": jax.random.normal(rng, (4,)) * 0.1}}

  def loss_fn(self, params, model_state, batch, rng, *, train=True):
    pred = batch["x"] @ params["w"]
    return jnp.mean((pred - batch["y"]) ** 2), ({}, model_state)

  def train_batches(self):
    return Counter(**self.kw)

  def evaluate(self, params, model_state):
    err = float(jnp.sum((params["w"] - jnp.array([1.0, -2.0, 0.5, 3.0])) ** 2))
    return {"ap": -err, "w_err": err}


def _config(steps=8, **overrides):
  config = ml_collections.ConfigDict(common.training(steps, learning_rate=0.3, batch_size=8))
  config.seed = 0
  config.log_every = 1
  config.eval_every = 4
  config.ckpt.every = 2
  config.update_from_flattened_dict(overrides)
  return config


def test_learns_and_writes_metrics(tmp_path):
  result = loop.train_and_evaluate(_config(steps=100), str(tmp_path), LinearTask(),
                                   sharding.make_mesh(1))
  assert result["w_err"] < 0.05
  lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  losses = [l["train/loss"] for l in lines if "train/loss" in l]
  assert losses[-1] < 0.05 * losses[0]
  assert any("eval/ap" in l for l in lines) and list((tmp_path / "tb").iterdir())
  assert "100" in os.listdir(tmp_path / "checkpoints")


def test_resume_after_a_stop_gives_the_same_params(tmp_path):
  mesh = sharding.make_mesh(1)
  loop.train_and_evaluate(_config(), str(tmp_path / "a"), LinearTask(), mesh)
  loop.train_and_evaluate(_config(stop_after_step=3), str(tmp_path / "b"), LinearTask(), mesh)
  assert "3" in os.listdir(tmp_path / "b" / "checkpoints")
  loop.train_and_evaluate(_config(), str(tmp_path / "b"), LinearTask(), mesh)
  from jaxcorr.train import checkpoint  # pylint: disable=import-outside-toplevel
  params = []
  for run in ("a", "b"):
    ck = checkpoint.Checkpoints(str(tmp_path / run))
    step = ck.latest.latest_step()
    assert step == 8
    state, data_state = ck.restore_raw()
    assert data_state == {"i": 8}
    params.append(np.asarray(state["params"]["w"]))
    ck.close()
  np.testing.assert_array_equal(params[0], params[1])


def test_non_finite_loss_stops_with_the_step(tmp_path):
  with pytest.raises(FloatingPointError, match="at step 3"):
    loop.train_and_evaluate(_config(), str(tmp_path), LinearTask(nan_at=2), sharding.make_mesh(1))


def test_one_and_eight_devices_give_the_same_loss(tmp_path):
  script = textwrap.dedent(f"""
      import json, sys
      sys.path.insert(0, {str(REPO / 'tests')!r}); sys.path.insert(0, {str(REPO)!r})
      import jax
      from train_loop_test import LinearTask, _config
      from jaxcorr.core import sharding
      from jaxcorr.train import loop
      out = {{}}
      for n in (1, 8):
        loop.train_and_evaluate(_config(steps=4, **{{"mesh.fsdp": n == 8}}),
                                sys.argv[1] + f"/{{n}}", LinearTask(), sharding.make_mesh(n))
        out[n] = [json.loads(l)["train/loss"] for l in open(sys.argv[1] + f"/{{n}}/metrics.jsonl")
                  if "train/loss" in l]
      print(json.dumps(out))
  """)
  out = run_on_cpu_devices(script, tmp_path, timeout=300)
  np.testing.assert_allclose(out["1"], out["8"], rtol=1e-5)


class WarmStartTask(LinearTask):
  """Starts from the true weights through `restore_init`, as a task with init_from does."""

  def __init__(self, **kw):
    super().__init__(**kw)
    self.calls = 0

  def restore_init(self, params, model_state):
    self.calls += 1
    return {"w": jnp.array([1.0, -2.0, 0.5, 3.0])}, model_state


def test_restore_init_on_fresh_start_only(tmp_path):
  task = WarmStartTask()
  config = _config(steps=4, **{"optim.learning_rate": 0.0})
  result = loop.train_and_evaluate(config, str(tmp_path), task, sharding.make_mesh(1))
  assert task.calls == 1 and result["w_err"] == pytest.approx(0.0, abs=1e-10)
  config.steps = 6
  again = WarmStartTask()
  loop.train_and_evaluate(config, str(tmp_path), again, sharding.make_mesh(1))
  assert again.calls == 0   # resumed from the checkpoint: the initialisation hook is skipped


def test_weight_decay_only_on_matrices():
  from jaxcorr.train import state as state_lib
  config = _config(**{"optim.weight_decay": 0.5, "optim.learning_rate": 0.1})
  tx = state_lib.make_optimizer(config.optim, 10)
  params = {"kernel": jnp.ones((2, 2)), "bias": jnp.ones((2,))}
  zeros = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zeros, tx.init(params), params)
  np.testing.assert_allclose(updates["kernel"], -0.1 * 0.5 * np.ones((2, 2)), rtol=1e-6)
  np.testing.assert_array_equal(updates["bias"], 0.0)


class CountingTask(LinearTask):
  """LinearTask that records the steps at which the loop evaluates."""

  def __init__(self):
    super().__init__()
    self.evaluated = 0

  def evaluate(self, params, model_state):
    self.evaluated += 1
    return super().evaluate(params, model_state)


def test_steps_override_of_the_default_preset_evaluates_and_checkpoints_4_times(tmp_path):
  pretrain = importlib.import_module("configs.pretrain").get_config()
  config = _config()
  for field in ("steps", "log_every", "eval_every", "stop_after_step"):
    config[field] = pretrain[field]
  config.ckpt.update(pretrain.ckpt.to_dict(), keep=10)
  config.steps = 2000
  assert loop.cadences(config) == loop.Cadences(log=10, eval=500, ckpt=500)
  task = CountingTask()
  loop.train_and_evaluate(config, str(tmp_path), task, sharding.make_mesh(1))
  assert task.evaluated == 4
  assert sorted(map(int, os.listdir(tmp_path / "checkpoints"))) == [500, 1000, 1500, 2000]


def test_cadences_follow_steps_unless_set():
  config = _config(steps=80, log_every=0, eval_every=0, **{"ckpt.every": 0})
  assert loop.cadences(config) == loop.Cadences(log=8, eval=20, ckpt=20)
  config.steps = 100_000
  assert loop.cadences(config) == loop.Cadences(log=50, eval=25_000, ckpt=25_000)
  config.eval_every, config.ckpt.every = 7, 3
  assert loop.cadences(config)[1:] == (7, 3)
  with pytest.raises(ValueError, match="config.steps=0"):
    loop.train_and_evaluate(_config(steps=0), "/nonexistent", LinearTask(), sharding.make_mesh(1))


def test_schedule_without_warmup_is_optax_cosine_and_quiet(caplog):
  caplog.set_level("INFO")
  schedule = state_lib.learning_rate_schedule(learning_rate=3e-4, total_steps=50,
                                              end_fraction=0.1)
  reference = optax.cosine_decay_schedule(3e-4, 50, alpha=0.1)
  assert [float(schedule(s)) for s in range(55)] == [float(reference(s)) for s in range(55)]
  assert "non-positive" not in caplog.text
  warm = state_lib.learning_rate_schedule(learning_rate=1.0, total_steps=10, warmup_steps=2)
  assert [float(warm(s)) for s in (0, 1, 2)] == [0.0, 0.5, 1.0]


class SignalAt(Counter):
  """Counter that sends this process `signals` while drawing batch `at` (mid-step)."""

  def __init__(self, at, signals):
    super().__init__()
    self.at, self.signals = at, signals

  def __next__(self):
    if self.i == self.at:
      for s in self.signals:
        os.kill(os.getpid(), s)
    return super().__next__()


class SignalTask(LinearTask):
  def __init__(self, at, signals):
    super().__init__()
    self.at, self.signals = at, signals

  def train_batches(self):
    return SignalAt(self.at, self.signals)


def test_sigterm_finishes_the_step_saves_it_and_exits_143(tmp_path):
  before = signal.getsignal(signal.SIGTERM)
  with pytest.raises(loop.Stopped) as stopped:
    loop.train_and_evaluate(_config(steps=50), str(tmp_path), SignalTask(4, [signal.SIGTERM]),
                            sharding.make_mesh(1))
  assert stopped.value.code == 128 + signal.SIGTERM
  assert max(map(int, os.listdir(tmp_path / "checkpoints"))) == 5    # batch 4 is step 5's
  assert signal.getsignal(signal.SIGTERM) is before                  # handlers given back
  lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [l["step"] for l in lines if "train/loss" in l] == [1, 2, 3, 4, 5]


def test_a_second_ctrl_c_exits_at_once(tmp_path):
  before = signal.getsignal(signal.SIGINT)
  with pytest.raises(KeyboardInterrupt):
    loop.train_and_evaluate(_config(steps=50), str(tmp_path),
                            SignalTask(4, [signal.SIGINT, signal.SIGINT]), sharding.make_mesh(1))
  assert signal.getsignal(signal.SIGINT) is before


class Ticking(Counter):
  """A Counter whose every batch takes one second of the loop's (replaced) clock."""

  def __init__(self, now, **kw):
    super().__init__(**kw)
    self.now = now

  def __next__(self):
    self.now[0] += 1.0
    return super().__next__()


class TickingTask(CountingTask):
  def __init__(self, now):
    super().__init__()
    self.now = now

  def train_batches(self):
    return Ticking(self.now)


def test_time_budget_ends_with_an_evaluation_and_a_checkpoint_that_resumes(tmp_path,
                                                                           monkeypatch):
  now = [0.0]
  monkeypatch.setattr(loop, "clock", lambda: now[0])
  mesh = sharding.make_mesh(1)
  loop.train_and_evaluate(_config(), str(tmp_path / "a"), LinearTask(), mesh)
  # Step k ends k seconds after the start: a budget of 3 s is spent after step 3.
  budget = _config(stop_after_seconds=3.0, eval_every=100, **{"ckpt.every": 100})
  task = TickingTask(now)
  result = loop.train_and_evaluate(budget, str(tmp_path / "b"), task, mesh)
  assert task.evaluated == 1 and set(result) == {"ap", "w_err"}
  assert os.listdir(tmp_path / "b" / "checkpoints") == ["3"]
  rows = [json.loads(l) for l in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in rows if "eval/w_err" in r] == [3]
  # The same command continues with a new budget (3 more steps), then without one to the end.
  now[0] = 100.0
  loop.train_and_evaluate(budget, str(tmp_path / "b"), TickingTask(now), mesh)
  assert sorted(map(int, os.listdir(tmp_path / "b" / "checkpoints"))) == [3, 6]
  loop.train_and_evaluate(_config(), str(tmp_path / "b"), TickingTask(now), mesh)
  from jaxcorr.train import checkpoint  # pylint: disable=import-outside-toplevel
  params = []
  for run in ("a", "b"):
    ck = checkpoint.Checkpoints(str(tmp_path / run))
    state, data_state = ck.restore_raw()
    assert ck.latest.latest_step() == 8 and data_state == {"i": 8}
    params.append(np.asarray(state["params"]["w"]))
    ck.close()
  np.testing.assert_array_equal(params[0], params[1])


def test_checkpoints_by_wall_time(tmp_path, monkeypatch):
  now = [0.0]
  monkeypatch.setattr(loop, "clock", lambda: now[0])
  config = _config(eval_every=100, **{"ckpt.every": 100, "ckpt.every_seconds": 2.0,
                                      "ckpt.keep": 10})
  loop.train_and_evaluate(config, str(tmp_path), TickingTask(now), sharding.make_mesh(1))
  # Every 2 s (2 steps), and the last step (8) with its final evaluation.
  assert sorted(map(int, os.listdir(tmp_path / "checkpoints"))) == [2, 4, 6, 8]
