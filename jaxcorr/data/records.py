"""The offline sample format: one ArrayRecord record per sample, msgpack of NumPy arrays.

Record fields (a flat dict):
  views        [N, H, W] float16 line integrals, or uint16 with `views_lo`/`views_hi` [N]
               float32 (per-view linear quantisation of [lo, hi] to 0..65535)
  corr         [P, L, L] float16 labels in [0, 1], pairs in `labels.pair_indices` order
  gantry, out_of_plane, in_plane, sid, sdd, detector_mm [N], detector_offset [N, 2],
  translation [3]   the geometry (mm, degrees; `sampler.GEOMETRY_KEYS`; records written before
               detector_offset existed lack it: `views_from_params` reads 0)
  volume       str  provenance: the CT file (and z chunk) the sample was rendered from
  seed         uint32  the recipe's seed (augmentations at training time draw from Grain)

A shard is written under a temporary name and renamed when complete, so a shard that exists
under its final name is whole (`write_shard`). A dataset folder (the generate and make_fractures
jobs' workdirs) holds `<split>/<NNNNN>.array_record` shards and a `manifest.json`
(`write_manifest`); `shard_paths` lists a split's complete, non-empty shards.

A dataset folder may be on an object store (`gs://bucket/ds`): ArrayRecord reads and writes
local files, so a shard is written into the local cache (`files.cache_path`) and uploaded whole
(an object exists only once its upload completes), and `shard_paths` lists the folder through
`etils.epath` and returns local copies (`files.local_copy`, copied once per host).
"""

from __future__ import annotations

import glob
import json
import os
import subprocess

import jax
import numpy as np
from flax import serialization

import jaxcorr
from jaxcorr.core import config_diff, files
from jaxcorr.core.choices import check_choice
from jaxcorr.data.splits import SPLITS

VIEW_DTYPES = ("float16", "uint16")


def encode(sample: dict, views_dtype: str = "float16") -> bytes:
  """Serialises one sample (NumPy arrays and strings) to bytes."""
  check_choice("views_dtype", views_dtype, VIEW_DTYPES)
  out = {k: (np.asarray(v) if not isinstance(v, str) else v) for k, v in sample.items()}
  views = np.asarray(sample["views"], np.float32)
  if views_dtype == "uint16":
    lo = views.min(axis=(1, 2))
    hi = views.max(axis=(1, 2))
    scale = np.where(hi > lo, hi - lo, 1.0)[:, None, None]
    out["views"] = np.round((views - lo[:, None, None]) / scale * 65535).astype(np.uint16)
    out["views_lo"], out["views_hi"] = lo.astype(np.float32), hi.astype(np.float32)
  else:
    out["views"] = views.astype(np.float16)
  out["corr"] = np.asarray(sample["corr"], np.float16)
  return serialization.msgpack_serialize(out)


def decode(record: bytes) -> dict:
  """Inverse of `encode`: views and corr back as float32."""
  sample = serialization.msgpack_restore(record)
  views = np.asarray(sample["views"])
  if views.dtype == np.uint16:
    lo, hi = sample.pop("views_lo"), sample.pop("views_hi")
    views = lo[:, None, None] + views.astype(np.float32) / 65535 * (hi - lo)[:, None, None]
  sample["views"] = views.astype(np.float32)
  sample["corr"] = np.asarray(sample["corr"], np.float32)
  return sample


def write_shard(path: str, records: list[bytes]) -> None:
  """Writes an ArrayRecord shard atomically (temporary name, then rename; for a URI, written
  into the local cache and uploaded whole, the copy kept as the cached one)."""
  from array_record.python import array_record_module  # pylint: disable=import-outside-toplevel
  uri = files.is_uri(path)
  tmp = f"{files.cache_path(path) if uri else path}.partial"
  if uri:
    os.makedirs(os.path.dirname(tmp), exist_ok=True)
  writer = array_record_module.ArrayRecordWriter(tmp, "group_size:1")
  for r in records:
    writer.write(r)
  writer.close()
  if uri:
    files.upload_cached(tmp, path)
  else:
    os.replace(tmp, path)


def num_records(path: str) -> int:
  """The number of records in one ArrayRecord shard (a URI's read from its local copy)."""
  from array_record.python import array_record_module  # pylint: disable=import-outside-toplevel
  reader = array_record_module.ArrayRecordReader(files.local_copy(path, "shard"))
  try:
    return reader.num_records()
  finally:
    reader.close()


def read_shard(path: str) -> list[bytes]:
  """Every record of one ArrayRecord shard, in order (a URI's read from its local copy)."""
  from array_record.python import array_record_module  # pylint: disable=import-outside-toplevel
  reader = array_record_module.ArrayRecordReader(files.local_copy(path, "shard"))
  try:
    return list(reader.read_all())
  finally:
    reader.close()


def shard_paths(folder: str, split: str, job: str = "generate") -> list[str]:
  """The complete, non-empty shards of one split of a dataset folder (sorted).

  Args:
    folder: the workdir of the `job` that wrote the shards.
    split: train, validation or test.
    job: the job that makes such a folder (named in the error when there is none).

  Raises:
    ValueError: an unknown split. FileNotFoundError: no complete shard (names what to run).
  """
  check_choice("split", split, SPLITS)
  paths = [p for p in _shards(folder, split) if num_records(p) > 0]
  if not paths and files.path(os.path.join(folder, "manifest.json")).exists():
    counts = files.read_json(os.path.join(folder, "manifest.json")).get("counts", {})
    raise FileNotFoundError(
        f"the {job} dataset {folder} has no samples in split {split!r} (volumes per split: "
        f"{ {s: c.get('volumes') for s, c in counts.items()} }): make it again from more CTs (3 "
        f"or more give every split one), or with data.splits giving {split!r} a volume, into a "
        "new workdir")
  if not paths:
    raise FileNotFoundError(f"no complete shards in {os.path.join(folder, split)}: run "
                            f"python -m jaxcorr.main --config=configs/{job}.py "
                            f"--workdir={folder} first")
  return paths


def _shards(folder: str, split: str) -> list[str]:
  """The local paths of a split's shards, sorted: of local copies for a folder on an object
  store (`files.local_copy`)."""
  if not files.is_uri(folder):
    return sorted(glob.glob(os.path.join(folder, split, "*.array_record")))
  where = os.path.join(folder, split)
  with files.storage_errors(where, "data.shards"):
    if not files.path(where).is_dir():
      return []
    names = sorted(p.name for p in files.path(where).iterdir() if p.name.endswith(".array_record"))
  return [files.local_copy(os.path.join(where, n), "data.shards") for n in names]


def _code_version() -> str:
  try:
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                         cwd=os.path.dirname(__file__), timeout=10, check=False).stdout.strip()
  except OSError:
    rev = ""
  return f"jaxcorr {jaxcorr.__version__}" + (f" ({rev})" if rev else "")


def write_manifest(folder: str, config, rejected: int, skipped: list | None = None) -> dict:
  """Writes `manifest.json` of a dataset folder: volumes (with a non-empty shard) and samples per
  split, the view draws rejected this run, the CTs skipped this run and why
  (ct.on_error='skip'), the code version, the devices and the config the shards were written
  with; `mixed_configs` lists the fields ('field: old -> new') in which an earlier run's
  shards differ (only with resume_anyway=True: the resume guard refuses otherwise). Returns
  the counts."""
  path = os.path.join(folder, "manifest.json")
  mixed = []   # shards written with other configs (resume_anyway=True), as 'field: old -> new'
  if files.path(path).exists():
    earlier = files.read_json(path)
    mixed = earlier.get("mixed_configs", []) + config_diff.diff(
        earlier.get("config", {}), json.loads(config.to_json_best_effort()))[0]
  counts = {}
  for split in SPLITS:
    sizes = [num_records(p) for p in _shards(folder, split)]
    counts[split] = {"volumes": sum(1 for n in sizes if n), "samples": sum(sizes)}
  files.write_json(path, {
      "counts": counts, "rejected_this_run": rejected,
      "skipped": [{"volume": n, "reason": r} for n, r in skipped or ()],
      "code_version": _code_version(), "devices": [str(d) for d in jax.devices()],
      "config": config.to_dict(), "mixed_configs": mixed})
  return counts
