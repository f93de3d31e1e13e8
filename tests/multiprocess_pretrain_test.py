"""Pretraining on 2 real processes (multiprocess_helpers.py): the losses of 1 process, a stop agreed
by both when one host is preempted, a resume on another process count, and the evaluate job
scoring the run on 2 processes as on 1."""

import json

import os
import signal
import time

import numpy as np

import multiprocess_helpers as mp


def test_pretraining_on_two_processes_matches_one_stops_together_and_resumes_on_one(tmp_path):
  """On the fly, views drawn on the device: 2 processes x 1 device give the losses of 1 process
  x 1 device (the same global batches). SIGTERM to process 1 alone (a preempted host) stops both after the same step
  with one checkpoint, exit status 143 and no traceback (a preempted run on one host takes the
  same path: the loop's stop requests); the run resumes on 1 process to the end of the uninterrupted run. The
  evaluate job then scores that run on 2 processes with the scores of 1 process."""
  from jaxcorr import jobs  # pylint: disable=import-outside-toplevel
  from pretrain_job_test import _tiny  # pylint: disable=import-outside-toplevel
  # The views are drawn on the device from each sample's seed (data.recipes='device'), so this
  # also checks that the draws do not depend on the devices: 1 device here, 2 processes below.
  run = {**mp.TINY, "steps": 16, "eval_every": 100, "ckpt.every": 100,
         "data.recipes": "device"}
  one = tmp_path / "one"
  jobs.run(_tiny(**run), str(one))                # 1 process x 1 device: this one
  two = tmp_path / "two"
  procs = mp.start("configs/pretrain.py:tiny", two, run, processes=2)
  deadline = time.time() + mp.TIMEOUT
  while not ((two / "metrics.jsonl").exists()
             and (two / "metrics.jsonl").read_text().count("train/loss") >= 1):
    assert all(p.poll() is None for p in procs) and time.time() < deadline, mp.wait(procs)
    time.sleep(0.05)
  procs[1].send_signal(signal.SIGTERM)
  logs = mp.wait(procs, returncode=128 + signal.SIGTERM)
  assert all("mesh of 2 devices" in log and "stopped by SIGTERM after step" in log
             and "Traceback" not in log for log in logs), logs
  stopped = sorted(mp.rows(two, "train/loss"))
  assert stopped == list(range(1, stopped[-1] + 1)) and stopped[-1] < 16
  assert os.listdir(two / "checkpoints") == [str(stopped[-1])]
  # One writer: process 0 wrote each row once.
  np.testing.assert_allclose([mp.rows(two, "train/loss")[s] for s in stopped],
                             [mp.rows(one, "train/loss")[s] for s in stopped], rtol=1e-4)
  rejected = [mp.rows(r, "train/rejected_samples") for r in (one, two)]
  assert [rejected[1][s] for s in stopped] == [rejected[0][s] for s in stopped]
  jobs.run(_tiny(**run), str(two))                # resumes, on 1 process x 1 device
  assert sorted(mp.rows(two, "train/loss")) == list(range(1, 17))
  # The steps before the stop ran with another reduction order (2 processes): float rounding
  # drifts a little over the later steps (the weighted positives, loss.pos_weight=10, amplify
  # it; 1.3e-4 relative seen at step 16), far below what a wrong batch or state would give.
  np.testing.assert_allclose([mp.rows(two, "train/loss")[s] for s in range(1, 17)],
                             [mp.rows(one, "train/loss")[s] for s in range(1, 17)], rtol=1e-3)
  np.testing.assert_allclose(mp.rows(two, "eval/mse")[16], mp.rows(one, "eval/mse")[16], rtol=1e-3)
  # The evaluate job: 2 processes x 1 device score the run as 1 process x 1 device.
  ev = {"runs": f"('{two}',)", "untrained": False, "overlays": 1, "eval.batches": 1,
        "eval.batch_size": 2, "drr.method": "dense"}
  from configs import evaluate  # pylint: disable=import-outside-toplevel
  config = evaluate.get_config()
  config.update_from_flattened_dict({k: v for k, v in ev.items() if k != "runs"})
  config.runs = (str(two),)
  jobs.run(config, str(tmp_path / "eval1"))
  mp.main("configs/evaluate.py", tmp_path / "eval2", ev, processes=2)
  results = {name: json.loads((tmp_path / name / "results.json").read_text())
             for name in ("eval1", "eval2")}
  (a,), (b,) = results["eval1"], results["eval2"]
  assert a["samples"] == b["samples"] == 2
  for key in ("mse", "precision", "recall", "ap", "positive_fraction"):
    np.testing.assert_allclose(b[key], a[key], rtol=1e-4, err_msg=key)
  assert len(list((tmp_path / "eval2").glob("overlay_*.png"))) == 1    # process 0 alone wrote
