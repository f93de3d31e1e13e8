"""Several real processes on one machine (`jax.distributed` on localhost, CPU collectives over
gloo), as on a pod slice or N GPU hosts: pretraining on the fly and offline, evaluation, a
checkpoint, a stop and a resume on another process count, and generate's shard ownership.

Each case starts `python -m jaxcorr.main` once per process, with the variables
launch/gpu_multi_host.sh sets (JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID).
Expected time on the 2-core CI machine: about 2 minutes for the file (tiny shapes; most of it is
compiling the tiny model in each process).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO, subprocess_env

# The tiny pretraining preset cut down to a few steps: 3 phantoms (one per split), a global batch
# of 2 (one sample per process), a loss row every step, an evaluation and a checkpoint at 2 and 4.
TINY = {"steps": 4, "log_every": 1, "eval_every": 2, "ckpt.every": 2, "data.phantoms": 3,
        "eval.batches": 1, "batch_size": 2, "eval.batch_size": 2, "drr.method": "dense",
        "augment.geometric.enabled": False}
TIMEOUT = 420


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _start(config: str, workdir, overrides: dict, processes: int, devices: int = 1) -> list:
  """Starts jaxcorr.main as `processes` processes of `devices` CPU devices each."""
  args = [sys.executable, "-m", "jaxcorr.main", f"--config={config}", f"--workdir={workdir}"]
  args += [f"--config.{k}={v}" for k, v in overrides.items()]
  env = subprocess_env(devices)
  if processes > 1:
    args.append("--distributed")
    env["JAX_COORDINATOR_ADDRESS"] = f"localhost:{_free_port()}"
    env["JAX_NUM_PROCESSES"] = str(processes)
  return [subprocess.Popen(args, cwd=REPO, env={**env, "JAX_PROCESS_ID": str(i)},
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
          for i in range(processes)]


def _wait(procs, returncode: int = 0) -> list[str]:
  """Waits for the processes; returns their logs (the test fails with them when a process
  ends with another status than `returncode`)."""
  logs = []
  try:
    for p in procs:
      logs.append(p.communicate(timeout=TIMEOUT)[1])
  finally:
    for p in procs:
      p.kill()
  for i, (p, log) in enumerate(zip(procs, logs)):
    assert p.returncode == returncode, f"process {i} of {len(procs)}:\n{log[-4000:]}"
  return logs


def _main(config: str, workdir, overrides: dict, processes: int, devices: int = 1) -> list[str]:
  """Runs jaxcorr.main as `processes` processes of `devices` CPU devices each; returns their
  logs (the test fails with them when a process fails)."""
  return _wait(_start(config, workdir, overrides, processes, devices))


def _rows(workdir, key: str) -> dict:
  lines = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  return {l["step"]: l[key] for l in lines if key in l}


def test_each_process_reads_its_own_slice_and_together_they_read_the_global_batch():
  """The host pipeline of N processes: process p's batch k holds records p, p + N, ... of the
  1-process batch k, so the processes together read every record of an epoch once."""
  from jaxcorr.data import pipeline  # pylint: disable=import-outside-toplevel
  recipe = lambda record, rng: {"volume": np.int32(record["volume"]),
                                "seed": np.uint32(rng.integers(2 ** 32))}

  def batches(index, count, n=3):
    ds = pipeline.make_dataset(mode="on_the_fly", seed=0, batch_size=4, recipe_maker=recipe,
                               n_volumes=8, threads=0, process_index=index, process_count=count)
    it = iter(ds)
    return [next(it) for _ in range(n)]

  one = batches(0, 1)
  for count in (2, 4):
    parts = [batches(p, count) for p in range(count)]
    for k in range(3):
      for key in ("volume", "seed"):
        np.testing.assert_array_equal(
            np.sort(np.concatenate([part[k][key] for part in parts])), np.sort(one[k][key]))
  epoch = np.concatenate([b["volume"] for b in one[:2]])   # 8 volumes, batches of 4
  assert sorted(epoch.tolist()) == list(range(8))


def test_pretraining_on_two_processes_matches_one_stops_together_and_resumes_on_one(tmp_path):
  """On the fly: 2 processes x 1 device give the losses of 1 process x 2 devices (the same
  global batches). SIGTERM to process 1 alone (a preempted host) stops both after the same step
  with one checkpoint; the run resumes on 1 process to the end of the uninterrupted run."""
  run = {**TINY, "steps": 12, "eval_every": 100, "ckpt.every": 100}
  one = tmp_path / "one"
  _main("configs/pretrain.py:tiny", one, run, processes=1, devices=2)
  two = tmp_path / "two"
  procs = _start("configs/pretrain.py:tiny", two, run, processes=2)
  deadline = time.time() + TIMEOUT
  while not ((two / "metrics.jsonl").exists()
             and (two / "metrics.jsonl").read_text().count("train/loss") >= 2):
    assert all(p.poll() is None for p in procs) and time.time() < deadline, _wait(procs)
    time.sleep(0.05)
  procs[1].send_signal(signal.SIGTERM)
  logs = _wait(procs, returncode=128 + signal.SIGTERM)
  assert all("mesh of 2 devices" in log and "stopped by SIGTERM after step" in log
             for log in logs), logs
  stopped = sorted(_rows(two, "train/loss"))
  assert stopped == list(range(1, stopped[-1] + 1)) and stopped[-1] < 12
  assert os.listdir(two / "checkpoints") == [str(stopped[-1])]
  # One writer: process 0 wrote each row once.
  np.testing.assert_allclose([_rows(two, "train/loss")[s] for s in stopped],
                             [_rows(one, "train/loss")[s] for s in stopped], rtol=1e-4)
  _main("configs/pretrain.py:tiny", two, run, processes=1, devices=2)   # resumes
  assert sorted(_rows(two, "train/loss")) == list(range(1, 13))
  np.testing.assert_allclose([_rows(two, "train/loss")[s] for s in range(1, 13)],
                             [_rows(one, "train/loss")[s] for s in range(1, 13)], rtol=1e-4)
  np.testing.assert_allclose(_rows(two, "eval/mse")[12], _rows(one, "eval/mse")[12], rtol=1e-4)


def test_generate_and_offline_pretraining_on_two_processes(tmp_path):
  """Generate splits the shards between 2 processes (each written once, the manifest counts
  all of them); offline pretraining on them with 2 processes gives the 1-process losses."""
  gen = {"data.phantoms": 3, "generate.samples_per_volume": 2, "generate.render_batch": 2,
         "drr.method": "dense"}
  logs = _main("configs/generate.py:tiny", tmp_path / "ds", gen, processes=2)
  written = [sum("samples/s" in line for line in log.splitlines()) for log in logs]
  assert sorted(written) == [1, 2], logs        # 3 shards, owned by index mod 2
  manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
  assert {s: c["samples"] for s, c in manifest["counts"].items()} == {
      "train": 2, "validation": 2, "test": 2}
  off = {**TINY, "data.mode": "offline", "data.shards": str(tmp_path / "ds"), "steps": 2,
         "eval_every": 2}
  _main("configs/pretrain.py:tiny", tmp_path / "one", off, processes=1, devices=2)
  _main("configs/pretrain.py:tiny", tmp_path / "two", off, processes=2)
  for key in ("train/loss", "eval/mse"):
    a, b = _rows(tmp_path / "one", key), _rows(tmp_path / "two", key)
    assert sorted(a) == sorted(b)
    np.testing.assert_allclose(list(b.values()), list(a.values()), rtol=1e-4)



def test_fracture_classification_on_two_processes_matches_one(tmp_path):
  """classify (its own data pipeline, evaluation on batches every process reads whole): 2
  processes give the 1-process losses and test metrics."""
  sys.path.insert(0, str(REPO))
  from configs import classify  # pylint: disable=import-outside-toplevel
  from jaxcorr.jobs import classify as classify_job  # pylint: disable=import-outside-toplevel
  data = classify.get_config("tiny")
  data.update_from_flattened_dict({"data.phantoms": 4, "generate.samples_per_volume": 4,
                                   "generate.visibility": False,
                                   "data.shards": str(tmp_path / "data")})
  classify_job.ensure_data(data, str(tmp_path))              # made once, by this process
  run = {"data.shards": str(tmp_path / "data"), "data.phantoms": 4,
         "generate.samples_per_volume": 4, "generate.visibility": False, "steps": 2,
         "log_every": 1, "eval_every": 2, "ckpt.every": 2, "batch_size": 4,
         "eval.batch_size": 4}
  _main("configs/classify.py:tiny,late", tmp_path / "one", run, processes=1, devices=2)
  _main("configs/classify.py:tiny,late", tmp_path / "two", run, processes=2)
  a, b = _rows(tmp_path / "one", "train/loss"), _rows(tmp_path / "two", "train/loss")
  np.testing.assert_allclose(list(b.values()), list(a.values()), rtol=1e-4)
  one, two = (json.loads((tmp_path / r / "test_metrics.json").read_text())["test"]
              for r in ("one", "two"))
  assert one["n"] == two["n"] > 0
  np.testing.assert_allclose(two["accuracy"], one["accuracy"])


if __name__ == "__main__":
  sys.exit(pytest.main([__file__, "-n", "0", "-q"]))
