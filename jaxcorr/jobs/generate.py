"""The `generate` job: CT volumes -> ArrayRecord shards of (views, correspondence) samples.

Layout of the workdir:
  splits.json                 volume -> split assignment (by volume), reused on resume
  <split>/<NNNNN>.array_record   one shard per volume (all its z chunks), `samples_per_volume`
                              samples per chunk; written under a temporary name and renamed,
                              so an existing shard is complete
  manifest.json               counts per split, rejections, the CTs skipped and why
                              (ct.on_error='skip'), the config and the code version
  config.json

Resumable: shards that exist are skipped, so a killed run continues where it stopped. A CT
skipped with ct.on_error='skip' gets no shard, so every rerun tries it again (and lists it in
the manifest again until it is fixed). The next
volume is loaded and preprocessed in a background thread while the current one renders
(parallel over volumes, at most two volumes in memory).

Several processes (`python -m jaxcorr.main --distributed`, one per host): shard i is written by process i mod N
only, and process 0 writes the manifest after every process has finished its shards.
"""

from __future__ import annotations

import concurrent.futures
import os
import time

import jax
import numpy as np
from absl import logging

from jaxcorr.core import files, sharding
from jaxcorr.data import from_config, records, sampler, samples, splits as splits_lib, volumes


def _render_volume(bank, config, seed: int) -> tuple[list[bytes], int]:
  """Renders `samples_per_volume` samples of every chunk of one volume; returns records."""
  maker = from_config.recipe_maker(config, bank)
  frame = from_config.framing(config)
  dev = samples.bank_arrays(bank, from_config.volume_dtype(config))
  out, rejected = [], 0
  per = config.generate.samples_per_volume
  bsz = config.generate.render_batch
  for chunk in range(len(bank)):
    rng = np.random.default_rng([config.seed, seed, chunk])
    recipes = [maker({"volume": chunk}, rng) for _ in range(per)]
    rejected += sum(int(r["rejected"]) for r in recipes)
    for start in range(0, per, bsz):
      part = recipes[start:start + bsz]
      part = part + [part[-1]] * (bsz - len(part))  # static batch shape; extras dropped
      stacked = {k: np.stack([r[k] for r in part]) for k in samples.RECIPE_KEYS}
      views, corr = samples.render_batch(dev, stacked, framing=frame,
                                         threshold=config.labels.threshold,
                                         projector=from_config.projector(config))
      views, corr = np.asarray(views), np.asarray(corr)
      for i, r in enumerate(recipes[start:start + bsz]):
        if not (np.all(np.isfinite(views[i])) and np.all(np.isfinite(corr[i]))):
          raise FloatingPointError(f"{bank.names[chunk]}: non-finite sample (a label footprint "
                                   "wider than the sparse window?); set labels.method='dense'")
        record = {"views": views[i], "corr": corr[i], "volume": bank.names[chunk],
                  **{k: r[k] for k in sampler.GEOMETRY_KEYS + ("seed",)}}
        out.append(records.encode(record, config.generate.views_dtype))
  return out, rejected


def run(config, workdir: str) -> None:
  files.prepare_workdir(config, workdir)
  assignment = splits_lib.load_or_assign(config, workdir)
  todo = []
  for split in splits_lib.SPLITS:
    files.path(os.path.join(workdir, split)).mkdir(parents=True, exist_ok=True)
    for name in assignment[split]:
      index = sorted(n for part in assignment.values() for n in part).index(name)
      shard = os.path.join(workdir, split, f"{index:05d}.array_record")
      if not files.path(shard).exists():
        todo.append((split, name, index, shard))
  total = sum(len(v) for v in assignment.values())
  logging.info("%d volumes, %d shards to write (%d already complete)", total, len(todo),
               total - len(todo))
  if jax.process_count() > 1:   # shard i is process (i mod count)'s: no file has two writers
    todo = [t for t in todo if t[2] % jax.process_count() == jax.process_index()]
    logging.info("process %d of %d writes %d of them", jax.process_index(),
                 jax.process_count(), len(todo))
  done_samples, rejected, t0, skipped = 0, 0, time.perf_counter(), []
  with concurrent.futures.ThreadPoolExecutor(1) as pool:
    load = lambda item: pool.submit(from_config.load_entries, [item[1]], config, skipped)
    future = load(todo[0]) if todo else None
    for n, item in enumerate(todo):
      entries = future.result()
      future = load(todo[n + 1]) if n + 1 < len(todo) else None
      if not entries:   # skipped (ct.on_error='skip'): logged, listed in the manifest
        continue
      recs, rej = _render_volume(volumes.stack(entries), config, item[2])
      records.write_shard(item[3], recs)
      done_samples += len(recs)
      rejected += rej
      rate = done_samples / (time.perf_counter() - t0)
      left = (len(todo) - n - 1) * len(recs) / max(rate, 1e-9)
      logging.info("[%d/%d] %s -> %s: %d samples, %.1f samples/s, ETA %.0f s", n + 1, len(todo),
                   item[1], item[3], len(recs), rate, left)
  # Every process's rejections and skipped CTs, once all of them have written their shards.
  reports = sharding.gather_json({"rejected": rejected, "skipped": skipped})
  rejected = sum(r["rejected"] for r in reports)
  skipped = [tuple(s) for r in reports for s in r["skipped"]]
  counts = records.write_manifest(workdir, config, rejected, skipped)
  logging.info("manifest: %s", counts)
  if skipped:
    logging.warning("skipped %d of %d CTs (ct.on_error='skip'; the reasons are in %s): %s",
                    len(skipped), total, os.path.join(workdir, "manifest.json"),
                    ", ".join(n for n, _ in skipped))
  empty = [s for s in splits_lib.SPLITS if counts[s]["volumes"] == 0]
  if len(empty) == len(splits_lib.SPLITS):
    raise ValueError(f"{workdir}: no shard was written, every CT was skipped (the reasons are in "
                     "manifest.json); fix or replace those files")
  if empty:
    logging.warning("splits with no samples: %s (pretraining needs 'train' and 'validation')",
                    ", ".join(empty))
