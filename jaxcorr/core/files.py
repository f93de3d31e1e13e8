"""Files: the workdir, atomic writes (a reader never sees half a file), JSON, and the resolved
config of a finished training run.

Paths. Every path may be local or a URI (`gs://bucket/run`, `s3://...`): `path()` turns it into
an `etils.epath.Path`, whose backend for a URI is fsspec, so a local path stays a local path and
`gs://b/run` never becomes a local folder named `gs:`. Local files are written to a temporary
name and renamed; an object store makes an object visible only when its upload completes, so
there the object is written in one piece.

One writer. With several processes (`jax.distributed`) the workdir's outputs are written by
process 0 only: the write functions here do nothing on the others (their results are the same
by construction) unless `every_process=True`, for files that each process owns (its own shards).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile

import numpy as np
from etils import epath

URI_SCHEMES = ("gs://", "s3://", "az://", "hf://")


def is_uri(p) -> bool:
  """Whether `p` names an object-store location (gs://, s3://, az://, hf://) not a local path."""
  return os.fspath(p).startswith(URI_SCHEMES)


def path(p) -> epath.Path:
  """`p` as an `epath.Path`: a URI keeps its scheme, a local path is made absolute."""
  p = os.fspath(p)
  return epath.Path(p if is_uri(p) else os.path.abspath(p))


def absolute(p) -> str:
  """`p` as an absolute path string (URIs unchanged), e.g. for orbax."""
  return os.fspath(path(p))


def is_writer() -> bool:
  """Whether this process writes the workdir's shared outputs (process 0 of the run)."""
  import jax  # pylint: disable=import-outside-toplevel  (files stays importable without JAX work)
  return jax.process_index() == 0


def prepare_workdir(config, workdir: str) -> None:
  """Creates the workdir and writes the resolved config as `config.json`."""
  path(workdir).mkdir(parents=True, exist_ok=True)
  atomic_write_text(os.path.join(workdir, "config.json"), config.to_json_best_effort(indent=2))


def atomic_write_text(path_: str, text: str, *, every_process: bool = False) -> None:
  """Writes a text file so that a reader never sees it half-written (see the module docstring)."""
  with atomic_output(path_, every_process=every_process) as tmp:
    with open(tmp, "w") as f:
      f.write(text)


@contextlib.contextmanager
def atomic_output(path_: str, suffix: str = "", *, every_process: bool = False):
  """Yields a local temporary path to write to; when the block ends without an error the file
  becomes `path_` (renamed beside it, or uploaded in one piece to an object store), otherwise
  it is removed, so a reader never sees a half-written file. On a process other than the writer
  (module docstring) the file is written to a private temporary folder and dropped.

  The file gets the permissions of a newly created one (0666 less the umask), not the 0600 of a
  temporary file, so others on a shared server can open it. `suffix` ends the temporary name
  (writers such as PIL read the format from it).
  """
  publish = every_process or is_writer()
  local = publish and not is_uri(path_)
  folder = os.path.dirname(os.path.abspath(path_)) if local else None
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path_)}.", suffix=suffix)
  os.close(fd)
  try:
    yield tmp
    if local:
      umask = os.umask(0)
      os.umask(umask)
      os.chmod(tmp, 0o666 & ~umask)
      os.replace(tmp, path_)
    elif publish:
      with open(tmp, "rb") as f:
        path(path_).write_bytes(f.read())
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def atomic_save_npy(path_: str, array: np.ndarray, *, every_process: bool = False) -> None:
  """`np.save` through `atomic_output`, so an interrupted run leaves no partial `.npy`."""
  with atomic_output(path_, ".npy", every_process=every_process) as tmp:
    np.save(tmp, np.asarray(array))


def write_json(path_: str, obj, *, every_process: bool = False) -> None:
  """Writes `obj` as indented JSON, atomically."""
  atomic_write_text(path_, json.dumps(obj, indent=2), every_process=every_process)


def read_json(path_: str):
  """The JSON object in `path_`; a clear error when it is unreadable or truncated."""
  try:
    return json.loads(path(path_).read_text())
  except json.JSONDecodeError as e:
    raise ValueError(f"{path_}: not valid JSON ({e}); delete it to have it made again") from e


def run_workdir(path_: str) -> str:
  """The training workdir of `path_`: the workdir itself, or the one holding a checkpoint
  directory `<workdir>/{checkpoints,best}/<step>`."""
  path_ = absolute(path_)
  parent = os.path.dirname(path_)
  if os.path.basename(path_).isdigit() and os.path.basename(parent) in ("checkpoints", "best"):
    return os.path.dirname(parent)
  return path_


def run_config(where: str):
  """The resolved config (`config.json`) of the training run at `where` (a workdir or one of
  its checkpoint directories), as a ConfigDict."""
  import ml_collections  # pylint: disable=import-outside-toplevel
  workdir = run_workdir(where)
  if not path(workdir).is_dir():
    raise FileNotFoundError(f"{where}: no such run directory; give the workdir of a "
                            "pretraining or fine-tuning run, or one of its checkpoints")
  config_path = os.path.join(workdir, "config.json")
  if not path(config_path).exists():
    raise FileNotFoundError(f"{where}: no config.json in {workdir}; give the workdir of a "
                            "training run made by jaxcorr.main")
  return ml_collections.ConfigDict(read_json(config_path))
