"""The `make_fractures` job: CT volumes -> ArrayRecord shards of multi-view fracture samples.

A CT-derived benchmark for multi-view fracture classification (the paper's Table 3 task, on
DRRs). For every volume (the seeded phantoms of `data.phantoms`, or the CTs of `ct.path`), the
HU volume is resampled to its `ct.size`^3 cube (`preprocess.to_cube`; `data.split_mm` must be 0)
and `generate.samples_per_volume` samples are drawn, exactly half positive per volume (an odd
count gets one extra of a seeded random label). Each sample:
  1. `fracture.make_negative` (a harmless change with prob. `negative.p_change`), for positives
     too, so a change by itself is no cue;
  2. positives: `fracture.insert_fracture` with `config.fracture` (gap always; fragment
     displacement and angulation with prob. `fracture.p_displace`);
  3. views from the pretraining sampler (`config.views`, coverage rejection on the untouched
     cube), rendered in `config.intensity` (the paper's bone sigmoid), and, with
     `generate.with_corr`, the exact correspondence labels C of `config.labels`.
Fractures are inserted at the cube's resolution, so `fracture.gap_mm` should span a voxel or
more (the tiny preset's 64^3 cubes have ~4.7 mm voxels).

Workdir (as the generate job's):
  splits.json                     volume -> train/validation/test, by volume (`data.splits`)
  <split>/<NNNNN>.array_record    one shard per volume, written whole then renamed
                                  (`records.write_shard`); an existing shard is complete, so a
                                  killed run redoes only the missing ones. A volume without a
                                  long bone stops the run (ct.on_error='raise') or gets an empty
                                  shard and a warning ('skip').
  manifest.json                   the generate job's counts (with the CTs skipped this run and
                                  why), plus positives/negatives per split and every volume
                                  with an empty shard (`skipped_volumes`)
  config.json

The samples and their record fields: `jaxcorr.data.fractures`.
"""

from __future__ import annotations

import os
import time

from absl import logging

from jaxcorr.core import files
from jaxcorr.core.choices import check_choice
from jaxcorr.ct import CTError
from jaxcorr.data import fractures, from_config, records, splits as splits_lib
from jaxcorr.pictures import fractures as fracture_figures, style


def _check(config) -> None:
  g = config.generate
  if g.samples_per_volume < 1 or g.render_batch < 1:
    raise ValueError(f"config.generate: samples_per_volume={g.samples_per_volume} and "
                     f"render_batch={g.render_batch} must be >= 1")
  if not 0 <= config.fracture.p_displace <= 1:
    raise ValueError(f"config.fracture.p_displace={config.fracture.p_displace} must be in [0, 1]")
  if config.data.split_mm:
    raise ValueError(f"config.data.split_mm={config.data.split_mm}: make_fractures renders whole "
                     "cubes; set it to 0")
  from_config.check_choice("ct.on_error", config.ct.on_error)
  check_choice("config.generate.invisible", g.invisible, fractures.INVISIBLE)
  check_choice("config.generate.visible_in", g.visible_in, fractures.VISIBLE_IN)
  if g.invisible != "keep" and not g.visibility:
    raise ValueError(f"config.generate.invisible={g.invisible!r} needs the visibility count: "
                     "set generate.visibility=True (or invisible='keep')")
  if g.max_redraws < 0 or g.visible_min_px < 1 or not 0 < g.visible_noise < 1:
    raise ValueError(f"config.generate: max_redraws={g.max_redraws} must be >= 0, "
                     f"visible_min_px={g.visible_min_px} >= 1 and visible_noise="
                     f"{g.visible_noise} in (0, 1) (normalised units)")


def run(config, workdir: str) -> None:
  """Writes the benchmark into `workdir` (see the module docstring); resumes a killed run."""
  _check(config)
  files.prepare_workdir(config, workdir)
  assignment = splits_lib.load_or_assign(config, workdir)
  names = sorted(n for part in assignment.values() for n in part)
  todo = []
  for split in splits_lib.SPLITS:
    files.path(os.path.join(workdir, split)).mkdir(parents=True, exist_ok=True)
    for name in assignment[split]:
      shard = os.path.join(workdir, split, f"{names.index(name):05d}.array_record")
      if not files.path(shard).exists():
        todo.append((name, names.index(name), shard))
  logging.info("%d volumes, %d shards to write (%d already complete)", len(names), len(todo),
               len(names) - len(todo))
  done, rejected, t0, skipped = 0, 0, time.perf_counter(), []
  for n, (name, index, shard) in enumerate(todo):
    try:
      recs, rej = fractures.volume_records(name, index, config)
    except CTError as e:
      if config.ct.on_error == "raise":
        raise
      logging.warning("skipping %s (empty shard %s): %s", name, shard, e)
      skipped.append((name, str(e)))
      recs, rej = [], 0
    records.write_shard(shard, recs)
    done, rejected = done + len(recs), rejected + rej
    rate = done / (time.perf_counter() - t0)
    logging.info("[%d/%d] %s -> %s: %d samples, %.2f samples/s", n + 1, len(todo), name, shard,
                 len(recs), rate)
  # The generate job's manifest (counts, code version, config), then the label counts.
  records.write_manifest(workdir, config, rejected, skipped)
  _add_label_counts(config, workdir, assignment, names)
  _contact_sheet(workdir, assignment, names)


def _contact_sheet(workdir, assignment, names, pairs: int = 4) -> None:
  """samples.png: a fractured and an intact study of each of the first `pairs` CTs of the test
  split (else validation, train), the fracture ringed (`pictures.fractures`)."""
  rows = []
  for split in ("test", "validation", "train"):
    for name in assignment[split]:
      shard = os.path.join(workdir, split, f"{names.index(name):05d}.array_record")
      if len(rows) == pairs or not files.path(shard).exists():
        continue
      recs = [fractures.decode(r) for r in records.read_shard(shard)]
      pick = {label: next((r for r in recs if r["label"] == label), None) for label in (0, 1)}
      if pick[0] is None and pick[1] is None:
        continue
      for r in pick.values():
        if r is not None:
          r["volume"] = os.path.basename(str(r["volume"]))
      rows.append({"fractured": pick[1], "intact": pick[0]})
    if rows:
      break
  sheet = fracture_figures.fracture_sheet(
      rows, caption=f"{workdir}: a fractured (fracture ringed) and an intact study per CT of "
                    f"the {split} split; views min-max normalised as the classifier sees them.")
  style.save(os.path.join(workdir, "samples.png"), sheet)


def _add_label_counts(config, workdir, assignment, names) -> None:
  """Adds per split the labels, the positives that show their fracture and the redraws and
  drops (`split_counts`), and the volumes with an empty shard, to manifest.json."""
  path = os.path.join(workdir, "manifest.json")
  manifest = files.read_json(path)
  labels, skipped = {}, []
  for split in splits_lib.SPLITS:
    shards = []
    for name in assignment[split]:
      shard = os.path.join(workdir, split, f"{names.index(name):05d}.array_record")
      if not files.path(shard).exists() or records.num_records(shard) == 0:
        skipped.append(name)
      else:
        shards.append(shard)
    labels[split] = split_counts(config, shards)
  manifest.update(labels=labels, skipped_volumes=skipped)
  files.write_json(path, manifest)
  logging.info("labels: %s; skipped volumes: %s", labels, skipped)


def split_counts(config, shards) -> dict:
  """positive, negative, visible (positives showing their fracture, generate.visible_in),
  visible_fraction (of the positives), redraws and dropped (positives left out: the volume's
  samples_per_volume minus its records) over a split's shards, read from the records."""
  out = dict(positive=0, negative=0, visible=0, redraws=0, dropped=0)
  for shard in shards:
    recs = [fractures.decode(r) for r in records.read_shard(shard)]
    out["dropped"] += config.generate.samples_per_volume - len(recs)
    for r in recs:
      positive = bool(r["label"])
      out["positive" if positive else "negative"] += 1
      out["visible"] += positive and fractures.shows_fracture(r["visible"],
                                                               config.generate.visible_in)
      out["redraws"] += int(r["redraws"])
  out["visible_fraction"] = out["visible"] / max(out["positive"], 1)
  return out
