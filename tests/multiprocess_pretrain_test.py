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
  """On the fly: 2 processes x 1 device give the losses of 1 process x 2 devices (the same
  global batches). SIGTERM to process 1 alone (a preempted host) stops both after the same step
  with one checkpoint, exit status 143 and no traceback (a preempted run on one host takes the
  same path: the loop's stop requests); the run resumes on 1 process to the end of the uninterrupted run. The
  evaluate job then scores that run on 2 processes with the scores of 1 process."""
  run = {**mp.TINY, "steps": 16, "eval_every": 100, "ckpt.every": 100}
  one = tmp_path / "one"
  mp.main("configs/pretrain.py:tiny", one, run, processes=1, devices=2)
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
  mp.main("configs/pretrain.py:tiny", two, run, processes=1, devices=2)   # resumes
  assert sorted(mp.rows(two, "train/loss")) == list(range(1, 17))
  np.testing.assert_allclose([mp.rows(two, "train/loss")[s] for s in range(1, 17)],
                             [mp.rows(one, "train/loss")[s] for s in range(1, 17)], rtol=1e-4)
  np.testing.assert_allclose(mp.rows(two, "eval/mse")[16], mp.rows(one, "eval/mse")[16], rtol=1e-4)
  # The evaluate job: 2 processes x 1 device score the run as 1 process x 2 devices.
  ev = {"runs": f"('{two}',)", "untrained": False, "overlays": 1, "eval.batches": 1,
        "eval.batch_size": 2, "drr.method": "dense"}
  results = {}
  for name, processes, devices in (("eval1", 1, 2), ("eval2", 2, 1)):
    mp.main("configs/evaluate.py", tmp_path / name, ev, processes=processes, devices=devices)
    results[name] = json.loads((tmp_path / name / "results.json").read_text())
  (a,), (b,) = results["eval1"], results["eval2"]
  assert a["samples"] == b["samples"] == 2
  for key in ("mse", "precision", "recall", "ap", "positive_fraction"):
    np.testing.assert_allclose(b[key], a[key], rtol=1e-4, err_msg=key)
  assert len(list((tmp_path / "eval2").glob("overlay_*.png"))) == 1    # process 0 alone wrote
