"""Shared test fixtures: where the real data lives, and the repository root."""

import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def shared_data():
  """The read-only real data folder `../shared/data`; skips the test when it is absent."""
  if not SHARED_DATA.is_dir():
    pytest.skip(f"real data folder {SHARED_DATA} is absent (see ../shared/data/MANIFEST.md)")
  return SHARED_DATA


# Programs compiled in under this many seconds are not worth a cache entry.
_CACHE_MIN_COMPILE_SECS = 0.5


def pytest_configure(config):
  """Share compiled XLA programs between the tests' many short jobs (they rebuild the same
  jitted functions): a persistent compilation cache in a folder of this run, one for all its
  pytest-xdist workers (the run's id names it) and for the processes the tests start."""
  del config
  import tempfile  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
  folder = (os.path.join(tempfile.gettempdir(), f"jaxcorr_xla_cache_{run}") if run
            else tempfile.mkdtemp(prefix="jaxcorr_xla_cache_"))
  jax.config.update("jax_compilation_cache_dir", folder)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", _CACHE_MIN_COMPILE_SECS)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def subprocess_env(devices: int = 1) -> dict:
  """The environment of a fresh JAX process on `devices` CPU devices (the flag must be set
  before JAX starts), with this process's persistent compilation cache (the device count is not
  part of its key), so programs compiled by earlier tests are not compiled again there."""
  import jax  # pylint: disable=import-outside-toplevel
  return {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
          "JAX_PLATFORMS": "cpu",
          "JAX_COMPILATION_CACHE_DIR": jax.config.jax_compilation_cache_dir or "",
          "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": str(_CACHE_MIN_COMPILE_SECS),
          "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


def run_on_cpu_devices(script: str, workdir, devices: int = 8, timeout: int = 600):
  """Runs a Python script in a fresh process that sees `devices` CPU devices; returns the JSON
  object the script prints last."""
  import json  # pylint: disable=import-outside-toplevel
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  res = subprocess.run([sys.executable, "-c", script, str(workdir)], capture_output=True,
                       text=True, env=subprocess_env(devices), timeout=timeout, check=False)
  assert res.returncode == 0, res.stderr[-3000:]
  return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def tiny_pretrain_run(tmp_path_factory):
  """A workdir of the tiny pretraining preset trained for a few steps, for the jobs that start
  from a pretraining checkpoint (fine-tuning, prediction, evaluation).

  Made once per test run: under pytest-xdist the first worker that needs it trains it in the
  run's shared temporary folder while holding a lock, and the others wait and reuse it.
  """
  import fcntl  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  sys.path.insert(0, str(REPO))
  shared = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    shared = shared.parent          # the run's folder above the workers' own
  workdir = shared / "tiny_pretrain"
  with open(shared / "tiny_pretrain.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not (workdir / "done").exists():
      _train_tiny_pretrain(workdir)
      (workdir / "done").write_text("")
  return workdir


def _train_tiny_pretrain(workdir):
  from configs import pretrain  # pylint: disable=import-outside-toplevel
  from jaxcorr import jobs  # pylint: disable=import-outside-toplevel
  config = pretrain.get_config("tiny")
  config.update_from_flattened_dict({
      "steps": 12, "log_every": 6, "eval_every": 12, "ckpt.every": 6, "data.phantoms": 4,
      "eval.batches": 1, "batch_size": 4, "eval.batch_size": 4})
  jobs.run(config, str(workdir))
