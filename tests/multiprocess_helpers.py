"""Several real processes on one machine (`jax.distributed` on localhost, CPU collectives over
gloo), as on a pod slice or N GPU hosts: the helpers of the multiprocess_*_test.py files.

Each case starts `python -m jaxcorr.main` once per process, with the variables
launch/gpu_multi_host.sh sets (JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID).
The cases are split over three files so that pytest-xdist spreads them over its workers; on the
2-core CI machine they take 1-2 minutes each (tiny shapes; most of it is starting processes and
compiling the tiny models in each).
"""

import json
import os
import socket
import subprocess
import sys

from conftest import REPO, subprocess_env

# The tiny pretraining preset cut down to a few steps: 3 phantoms (one per split), a global batch
# of 2 (one sample per process), a loss row every step, an evaluation and a checkpoint at 2 and 4.
TINY = {"steps": 4, "log_every": 1, "eval_every": 2, "ckpt.every": 2, "data.phantoms": 3,
        "eval.batches": 1, "batch_size": 2, "eval.batch_size": 2, "drr.method": "dense",
        "augment.geometric.enabled": False}
TIMEOUT = 420


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def start(config: str, workdir, overrides: dict, processes: int, devices: int = 1) -> list:
  """Starts jaxcorr.main as `processes` processes of `devices` CPU devices each."""
  args = [sys.executable, "-m", "jaxcorr.main", f"--config={config}", f"--workdir={workdir}"]
  args += [f"--config.{k}={v}" for k, v in overrides.items()]
  return spawn(args + (["--distributed"] if processes > 1 else []), processes, devices)


def spawn(args: list, processes: int, devices: int = 1) -> list:
  """Starts the command `args` as `processes` processes of `devices` CPU devices each, with
  the jax.distributed variables when there are several (stderr piped, for `wait`)."""
  env = subprocess_env(devices)
  if processes > 1:
    env["JAX_COORDINATOR_ADDRESS"] = f"localhost:{free_port()}"
    env["JAX_NUM_PROCESSES"] = str(processes)
  return [subprocess.Popen(args, cwd=REPO, env={**env, "JAX_PROCESS_ID": str(i)},
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
          for i in range(processes)]


def wait(procs, returncode: int = 0) -> list[str]:
  """Waits for the processes; returns their logs (the test fails with them when a process
  ends with another status than `returncode`)."""
  logs = []
  try:
    for p in procs:
      logs.append(p.communicate(timeout=TIMEOUT)[1])
  finally:
    for p in procs:
      p.kill()
  failed = [f"process {i} of {len(procs)} ended with {p.returncode}:\n{log[-4000:]}"
            for i, (p, log) in enumerate(zip(procs, logs)) if p.returncode != returncode]
  assert not failed, "\n\n".join(failed)
  return logs


def main(config: str, workdir, overrides: dict, processes: int, devices: int = 1) -> list[str]:
  """Runs jaxcorr.main as `processes` processes of `devices` CPU devices each; returns their
  logs (the test fails with them when a process fails)."""
  return wait(start(config, workdir, overrides, processes, devices))


def rows(workdir, key: str) -> dict:
  lines = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  return {l["step"]: l[key] for l in lines if key in l}
