"""Looks inside a generated dataset (the generate or make_fractures job's workdir).

  python -m jaxcorr.tools.inspect DATASET [--samples=4] [--split=train] [--out=PNG]
      [--max_records=2000]

Prints the manifest (job, code version, volumes and samples per split, rejected draws, skipped
CTs), then per split, over its first `--max_records` records: the shapes of `views` and
`corr`, the views' value range, and the label statistics: the mean fraction of positive
entries of C (C > 0.2, the metrics' threshold), the mean of each pair's largest C, and for
fracture datasets the fraction labelled fracture and the views where the fracture is visible.
Writes a contact sheet (default `DATASET/contact_sheet.png`) of the first `--samples` samples
of `--split`: each row the views window-levelled as radiographs and the first pair's C as an
image (rows: view 0's patches, columns: view 1's), captioned with the sample's labels.
Exit status 1 when DATASET holds no manifest.json.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from jaxcorr.core import files
from jaxcorr.data import fractures, records
from jaxcorr.data.splits import SPLITS
from jaxcorr.metrics.correspondence import THRESHOLD
from jaxcorr.pictures import style, viz


def _source(folder: str, split: str, job: str):
  import grain  # pylint: disable=import-outside-toplevel
  try:
    paths = records.shard_paths(folder, split, job=job)
  except FileNotFoundError:
    return None
  return grain.sources.ArrayRecordDataSource(paths)


def _decode(job: str):
  return fractures.decode if job == "make_fractures" else records.decode


def split_stats(samples: list[dict]) -> dict:
  """Shapes, view range and label statistics of decoded samples (see the module docstring)."""
  views = [s["views"] for s in samples]
  corr = [s["corr"] for s in samples if np.size(s["corr"])]
  out = {"records": len(samples), "views_shape": list(views[0].shape),
         "views_min": float(min(v.min() for v in views)),
         "views_max": float(max(v.max() for v in views))}
  if corr:
    out["corr_shape"] = list(corr[0].shape)
    out["positive_fraction"] = float(np.mean([np.mean(c > THRESHOLD) for c in corr]))
    out["mean_max_c"] = float(np.mean([c.max(axis=(1, 2)).mean() for c in corr]))
  if "label" in samples[0]:
    out["fracture_fraction"] = float(np.mean([int(s["label"]) for s in samples]))
    positives = [s for s in samples if int(s["label"]) == 1]
    if positives and "visible" in positives[0]:
      out["visible_views_of_fractures"] = float(np.mean([s["visible"].mean()
                                                         for s in positives]))
  return out


def _caption(split: str, index: int, sample: dict) -> str:
  parts = [f"{split} #{index}: {sample.get('volume', '?')}"]
  if "gantry" in sample:
    parts.append("gantry " + ", ".join(f"{g:.0f}" for g in np.asarray(sample["gantry"])) + " deg")
  if "label" in sample:
    parts.append("fracture" if int(sample["label"]) else "no fracture")
  if np.size(sample["corr"]):
    c = np.asarray(sample["corr"])
    parts.append(f"C > {THRESHOLD:g}: {100 * np.mean(c > THRESHOLD):.1f}%, max C {c.max():.2f}")
  return "; ".join(parts)


def contact_sheet(samples: list[dict], split: str, size: int = 192):
  """The picture described in the module docstring."""
  rows = []
  for n, s in enumerate(samples):
    panels = [style.upscale(viz.window_level(v), size) for v in s["views"]]
    if np.size(s["corr"]):
      c = np.asarray(s["corr"][0], np.float32)
      img = style.as_image(style.colormap(c))
      f = max(1, -(-size // max(c.shape)))
      panels.append(style.caption(img.resize((c.shape[1] * f, c.shape[0] * f), 0),
                                  "C of pair (0, 1)", size=style.SMALL))
    rows.append(style.caption(style.beside(*panels), _caption(split, n, s)))
  body = style.stack(*rows, gap=2 * style.GAP)
  if any(np.size(s["corr"]) for s in samples):
    body = style.beside(body, style.colour_bar(min(body.height, 2 * size), 0.0, 1.0, "C",
                                               fmt="{:.1f}"))
  return body


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m jaxcorr.tools.inspect",
                                   description="Summary and contact sheet of a generated dataset.")
  parser.add_argument("dataset", help="a generate or make_fractures workdir")
  parser.add_argument("--samples", type=int, default=4, help="samples on the contact sheet")
  parser.add_argument("--split", default="train", choices=SPLITS)
  parser.add_argument("--out", default="", help="contact sheet PNG (default DATASET/"
                      "contact_sheet.png)")
  parser.add_argument("--max_records", type=int, default=2000,
                      help="records read per split for the statistics")
  args = parser.parse_args(argv)
  path = os.path.join(args.dataset, "manifest.json")
  if not os.path.exists(path):
    print(f"{args.dataset}: no manifest.json; give the workdir of a generate or make_fractures "
          "run", file=sys.stderr)
    return 1
  manifest = files.read_json(path)
  job = manifest.get("config", {}).get("job", "generate")
  print(f"{args.dataset}: {job} dataset, {manifest.get('code_version', '?')}")
  for split, c in manifest.get("counts", {}).items():
    print(f"  {split:10s} {c.get('volumes', 0)} volumes, {c.get('samples', 0)} samples")
  print(f"  rejected view draws (last run): {manifest.get('rejected_this_run', 0)}; "
        f"skipped CTs: {len(manifest.get('skipped', []))}")
  decode, sheet = _decode(job), []
  for split in SPLITS:
    src = _source(args.dataset, split, job)
    if src is None:
      print(f"{split}: no shards")
      continue
    samples = [decode(src[i]) for i in range(min(len(src), args.max_records))]
    stats = split_stats(samples)
    print(f"{split}: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                   for k, v in stats.items()))
    if split == args.split:
      sheet = samples[:args.samples]
  if sheet:
    out = args.out or os.path.join(args.dataset, "contact_sheet.png")
    style.save(out, contact_sheet(sheet, args.split))
    print(f"contact sheet of {len(sheet)} {args.split} samples: {out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
