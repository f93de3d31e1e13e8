"""The offline sample format: one ArrayRecord record per sample, msgpack of NumPy arrays.

Record fields (a flat dict):
  views        [N, H, W] float16 line integrals, or uint16 with `views_lo`/`views_hi` [N]
               float32 (per-view linear quantisation of [lo, hi] to 0..65535)
  corr         [P, L, L] float16 labels in [0, 1], pairs in `labels.pair_indices` order
  gantry, out_of_plane, sid, sdd [N], translation [3]   the geometry (mm, degrees)
  volume       str  provenance: the CT file (and z chunk) the sample was rendered from
  seed         uint32  the recipe's seed (augmentations at training time draw from Grain)

A shard is written under a temporary name and renamed when complete, so a shard that exists
under its final name is whole (`write_shard`).
"""

from __future__ import annotations

import os

import numpy as np
from flax import serialization

VIEW_DTYPES = ("float16", "uint16")


def encode(sample: dict, views_dtype: str = "float16") -> bytes:
  """Serialises one sample (NumPy arrays and strings) to bytes."""
  if views_dtype not in VIEW_DTYPES:
    raise ValueError(f"views_dtype={views_dtype!r}; allowed: {', '.join(VIEW_DTYPES)}")
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
  """Writes an ArrayRecord shard atomically (temporary name, then rename)."""
  from array_record.python import array_record_module  # pylint: disable=import-outside-toplevel
  tmp = f"{path}.partial"
  writer = array_record_module.ArrayRecordWriter(tmp, "group_size:1")
  for r in records:
    writer.write(r)
  writer.close()
  os.replace(tmp, path)
