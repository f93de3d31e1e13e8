"""Files: the workdir, atomic writes (a reader never sees half a file), JSON, and the resolved
config of a finished training run."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile

import numpy as np


def prepare_workdir(config, workdir: str) -> None:
  """Creates the workdir and writes the resolved config as `config.json`."""
  os.makedirs(workdir, exist_ok=True)
  atomic_write_text(os.path.join(workdir, "config.json"), config.to_json_best_effort(indent=2))


def atomic_write_text(path: str, text: str) -> None:
  """Writes a file so that a reader never sees it half-written (temp file + rename)."""
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


@contextlib.contextmanager
def atomic_output(path: str, suffix: str = ""):
  """Yields a temporary path beside `path` to write to; renamed to `path` when the block ends
  without an error (removed otherwise), so a reader never sees a half-written file.

  The file gets the permissions of a newly created one (0666 less the umask), not the 0600 of a
  temporary file, so others on a shared server can open it. `suffix` ends the temporary name
  (writers such as PIL read the format from it).
  """
  folder = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=suffix)
  os.close(fd)
  try:
    yield tmp
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def atomic_save_npy(path: str, array: np.ndarray) -> None:
  """`np.save` through a temp file + rename, so an interrupted run leaves no partial `.npy`."""
  tmp = f"{path}.tmp{os.getpid()}.npy"
  np.save(tmp, np.asarray(array))
  os.replace(tmp, path)


def write_json(path: str, obj) -> None:
  """Writes `obj` as indented JSON, atomically."""
  atomic_write_text(path, json.dumps(obj, indent=2))


def read_json(path: str):
  """The JSON object in `path`; a clear error when it is unreadable or truncated."""
  try:
    with open(path) as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}: not valid JSON ({e}); delete it to have it made again") from e


def run_workdir(path: str) -> str:
  """The training workdir of `path`: the workdir itself, or the one holding a checkpoint
  directory `<workdir>/{checkpoints,best}/<step>`."""
  path = os.path.abspath(path)
  parent = os.path.dirname(path)
  if os.path.basename(path).isdigit() and os.path.basename(parent) in ("checkpoints", "best"):
    return os.path.dirname(parent)
  return path


def run_config(path: str):
  """The resolved config (`config.json`) of the training run at `path` (a workdir or one of
  its checkpoint directories), as a ConfigDict."""
  import ml_collections  # pylint: disable=import-outside-toplevel
  workdir = run_workdir(path)
  if not os.path.isdir(workdir):
    raise FileNotFoundError(f"{path}: no such run directory; give the workdir of a "
                            "pretraining or fine-tuning run, or one of its checkpoints")
  config_path = os.path.join(workdir, "config.json")
  if not os.path.exists(config_path):
    raise FileNotFoundError(f"{path}: no config.json in {workdir}; give the workdir of a "
                            "training run made by jaxcorr.main")
  return ml_collections.ConfigDict(read_json(config_path))
