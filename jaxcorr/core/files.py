"""Files: the workdir, atomic writes (a reader never sees half a file), JSON, and the resolved
config of a finished training run.

Paths. Every path may be local or a URI (`gs://bucket/run`, `s3://...`): `path()` turns it into
an `etils.epath.Path`, whose backend for a URI is fsspec, so a local path stays a local path and
`gs://b/run` never becomes a local folder named `gs:`. Local files are written to a temporary
name and renamed; an object store makes an object visible only when its upload completes, so
there the object is written in one piece.

Reading from an object store. Libraries that open local files only (nibabel, pydicom,
ArrayRecord) get `local_copy(uri)`: the file (or a folder, whole) copied once into a cache,
`$JAXCORR_CACHE` or `~/.cache/jaxcorr`, at `<cache>/<scheme>/<bucket>/<key>` (`cache_path`);
a copy is written under a temporary name and renamed, so a half-copied file is never taken, and
re-used while its size and modification time are the object's. A local path is returned as it is.

One writer. With several processes (`jax.distributed`) the workdir's outputs are written by
process 0 only: the write functions here do nothing on the others (their results are the same
by construction) unless `every_process=True`, for files that each process owns (its own shards).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile

import numpy as np
from etils import epath

URI_SCHEMES = ("gs://", "s3://", "az://", "hf://")
# The fsspec package that serves each scheme (what to install when it is missing).
BACKENDS = {"gs://": "gcsfs", "s3://": "s3fs", "az://": "adlfs", "hf://": "huggingface_hub"}
CACHE_ENV = "JAXCORR_CACHE"


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


@contextlib.contextmanager
def storage_errors(p, what: str = "path"):
  """Turns a missing fsspec backend for the URI `p` (an ImportError) into one that names
  `what` (e.g. the config field), `p` and the package to install."""
  try:
    yield
  except ImportError as e:
    if not is_uri(p):
      raise
    scheme = os.fspath(p).split("://")[0] + "://"
    raise ImportError(f"{what}={os.fspath(p)!r}: reading {scheme} paths needs fsspec's backend "
                      f"for it: pip install {BACKENDS[scheme]} ({e})") from e


def cache_path(uri) -> str:
  """Where `local_copy` keeps `uri`: `<cache>/<scheme>/<bucket>/<key>`, the cache being
  `$JAXCORR_CACHE` or `~/.cache/jaxcorr`."""
  scheme, rest = os.fspath(uri).split("://", 1)
  root = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "jaxcorr")
  return os.path.join(root, scheme, *[k for k in rest.split("/") if k not in ("", ".", "..")])


def local_copy(p, what: str = "path") -> str:
  """A local path with the content of `p`: `p` itself when it is local; a URI's file, or its
  folder whole (e.g. a DICOM series), copied into the cache (module docstring) unless the cached
  copy has the object's size and modification time.

  Args:
    p: a local path or a URI.
    what: what `p` is (e.g. 'ct.path'), for the errors.

  Raises:
    FileNotFoundError: no such object. ImportError: no fsspec backend for the scheme.
  """
  if not is_uri(p):
    return os.fspath(p)
  src, dst = path(p), cache_path(p)
  with storage_errors(p, what):
    if src.is_dir():
      os.makedirs(dst, exist_ok=True)
      for child in src.iterdir():
        local_copy(os.path.join(os.fspath(p), child.name), what)
      return dst
    try:
      stat = src.stat()
    except FileNotFoundError as e:
      raise FileNotFoundError(f"{what}={os.fspath(p)!r}: no such file or folder on the object "
                              "store; check the path") from e
  if not (os.path.isfile(dst) and os.path.getsize(dst) == stat.length
          and (not stat.mtime or int(os.path.getmtime(dst)) == stat.mtime)):
    _download(src, dst, stat)
  return dst


def _download(src: epath.Path, dst: str, stat) -> None:
  """Copies the object `src` to the local `dst` under a temporary name, renamed when whole."""
  os.makedirs(os.path.dirname(dst), exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dst), prefix=f".{os.path.basename(dst)}.")
  try:
    with os.fdopen(fd, "wb") as out, src.open("rb") as f:
      shutil.copyfileobj(f, out, 1 << 24)
    if os.path.getsize(tmp) != stat.length:
      raise OSError(f"{src}: copied {os.path.getsize(tmp):,} of {stat.length:,} bytes (the object "
                    "changed while it was read?); run again")
    if stat.mtime:
      os.utime(tmp, (stat.mtime, stat.mtime))
    os.replace(tmp, dst)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def upload_cached(local: str, uri: str) -> None:
  """Uploads the local file `local` to `uri` in one piece, then makes it the cached copy of
  `uri` (moved to `cache_path(uri)`), so readers on this host do not download it again."""
  with open(local, "rb") as f:
    path(uri).write_bytes(f.read())
  mtime = path(uri).stat().mtime
  if mtime:
    os.utime(local, (mtime, mtime))
  dst = cache_path(uri)
  os.makedirs(os.path.dirname(dst), exist_ok=True)
  os.replace(local, dst)


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
