"""End-to-end pretraining: the tiny preset for a few steps, resume, offline data, bad fields."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
from absl import logging as absl_logging

from conftest import REPO, run_on_cpu_devices, subprocess_env
from jaxcorr import jobs

sys.path.insert(0, str(REPO))
from configs import pretrain  # pylint: disable=wrong-import-position


def _tiny(**overrides):
  config = pretrain.get_config("tiny")
  config.update_from_flattened_dict({
      "steps": 4, "log_every": 2, "eval_every": 4, "ckpt.every": 2, "data.phantoms": 3,
      "eval.batches": 1, "batch_size": 2, "eval.batch_size": 2, **overrides})
  return config


def test_pretrain_runs_writes_checkpoints_and_metrics_then_resumes(tmp_path, caplog):
  """A run stopped at step 2 and resumed writes what a run does, and ends with the parameters
  of a run that never stopped."""
  jobs.run(_tiny(), str(tmp_path / "straight"))
  tmp_path = tmp_path / "resumed"
  jobs.run(_tiny(**{"stop_after_step": 2}), str(tmp_path))
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2"]
  caplog.set_level("INFO")
  absl_logging.get_absl_logger().propagate = True
  jobs.run(_tiny(), str(tmp_path))
  assert "resuming from step 2" in caplog.text
  assert "4" in os.listdir(tmp_path / "checkpoints") and os.listdir(tmp_path / "best")
  lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  train = [l for l in lines if "train/loss" in l]
  assert [l["step"] for l in train] == [2, 4] and all(np.isfinite(l["train/loss"]) for l in train)
  (ev,) = [l for l in lines if "eval/ap" in l]
  assert ev["step"] == 4 and 0 <= ev["eval/precision"] <= 1 and 0 <= ev["eval/recall"] <= 1
  assert os.listdir(tmp_path / "tb") and (tmp_path / "config.json").exists()
  for a, b in zip(_final_params(tmp_path.parent / "straight"), _final_params(tmp_path)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_offline_mode_trains_an_alternating_variant_from_generated_shards(tmp_path):
  """Offline data; and, as every variant's forward pass and shapes are tested in
  models_correspondence_test.py, here one alternating self/cross variant trains through the job."""
  from configs import generate  # pylint: disable=import-outside-toplevel
  gen = generate.get_config("tiny")
  gen.update_from_flattened_dict({"data.phantoms": 3, "generate.samples_per_volume": 2,
                                  "generate.render_batch": 2})
  jobs.run(gen, str(tmp_path / "ds"))
  config = _tiny(**{"data.mode": "offline", "data.shards": str(tmp_path / "ds"), "steps": 2,
                    "model.attention": "loftr"})
  jobs.run(config, str(tmp_path / "run"))
  assert "2" in os.listdir(tmp_path / "run" / "checkpoints")
  lines = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
  assert all(np.isfinite(l["train/loss"]) for l in lines if "train/loss" in l)


def _final_params(workdir):
  from jaxcorr.train import checkpoint  # pylint: disable=import-outside-toplevel
  ck = checkpoint.Checkpoints(str(workdir))
  try:
    state, _ = ck.restore_raw()
  finally:
    ck.close()
  import jax  # pylint: disable=import-outside-toplevel
  return jax.tree.leaves(state["params"])


def test_one_and_eight_devices_give_the_same_loss(tmp_path):
  script = textwrap.dedent(f"""
      import json, sys
      sys.path.insert(0, {str(REPO / 'tests')!r}); sys.path.insert(0, {str(REPO)!r})
      from pretrain_job_test import _tiny
      from jaxcorr import jobs
      out = {{}}
      for n in (1, 8):
        # Stopped at step 2 of 3: the losses without compiling the evaluation; the dense
        # kernel compiles faster than the marcher (this test is about devices, not kernels).
        jobs.run(_tiny(**{{"mesh.num_devices": n, "batch_size": 8, "eval.batch_size": 8,
                          "steps": 3, "stop_after_step": 2, "log_every": 1,
                          "eval_every": 100, "augment.geometric.enabled": False,
                          "drr.method": "dense"}}),
                 sys.argv[1] + f"/{{n}}")
        out[n] = [json.loads(l)["train/loss"] for l in open(sys.argv[1] + f"/{{n}}/metrics.jsonl")
                  if "train/loss" in l]
      print(json.dumps(out))
  """)
  out = run_on_cpu_devices(script, tmp_path, timeout=600)
  assert len(out["1"]) == 2
  np.testing.assert_allclose(out["1"], out["8"], rtol=2e-4)


def test_sigterm_stops_after_a_step_with_a_checkpoint_and_resumes_exactly(tmp_path):
  """A preempted run (SIGTERM mid-run) saves the step it was on and exits 143; the same command
  resumes and ends with the parameters of a run that was never stopped."""
  overrides = {"steps": 40, "log_every": 1, "eval_every": 100, "ckpt.every": 100,
               "drr.method": "dense"}
  script = textwrap.dedent(f"""
      import sys
      sys.path.insert(0, {str(REPO / 'tests')!r}); sys.path.insert(0, {str(REPO)!r})
      from pretrain_job_test import _tiny
      from jaxcorr import jobs
      jobs.run(_tiny(**{overrides!r}), sys.argv[1])
  """)
  workdir = tmp_path / "preempted"
  proc = subprocess.Popen([sys.executable, "-c", script, str(workdir)], env=subprocess_env(),
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  metrics, deadline = workdir / "metrics.jsonl", time.time() + 300
  while not (metrics.exists() and metrics.read_text().count("train/loss") >= 2):
    assert proc.poll() is None and time.time() < deadline, proc.stderr.read()[-3000:]
    time.sleep(0.02)
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
  assert "stopped by SIGTERM after step" in err and "Traceback" not in err
  steps = [json.loads(l)["step"] for l in metrics.read_text().splitlines() if "train/loss" in l]
  assert steps == list(range(1, steps[-1] + 1)) and steps[-1] < 40
  assert max(int(s) for s in os.listdir(workdir / "checkpoints")) == steps[-1]
  jobs.run(_tiny(**overrides), str(workdir))                         # resumes
  jobs.run(_tiny(**overrides), str(tmp_path / "straight"))
  steps = [json.loads(l)["step"] for l in metrics.read_text().splitlines() if "train/loss" in l]
  assert steps == list(range(1, 41))                                 # one row per step
  for a, b in zip(_final_params(tmp_path / "straight"), _final_params(workdir)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
