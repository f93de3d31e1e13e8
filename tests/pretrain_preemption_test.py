"""A preempted pretraining run (SIGTERM) stops with a checkpoint and resumes exactly (its own
file, so pytest-xdist can run it beside the other pretraining tests)."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np

from conftest import REPO, subprocess_env
from jaxcorr import jobs
from pretrain_job_test import _final_params, _tiny


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
