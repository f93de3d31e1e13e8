"""The `classify_sweep` job: the Table-3 rows x seeds, as a table of mean +- std.

For every row of `sweep.rows` and seed in `sweep.seeds`, the `classify` job with that row's
settings (`classification.ROWS`) and seed in `<workdir>/<row>/seed<k>` (a finished run, one with
test_metrics.json, is not run again), then sweep.md, sweep.csv and sweep.json: mean +- std over
seeds.
"""

from __future__ import annotations

import csv
import io as io_lib
import os

import numpy as np

from jaxcorr.core import files
from jaxcorr.jobs import classify
from jaxcorr.tasks import classification


METRICS = ("accuracy", "auroc", "kappa", "precision", "recall")


def run(config, workdir: str) -> None:
  """Runs every row x seed not finished yet, then writes the tables (module docstring)."""
  files.prepare_workdir(config, workdir)
  classify.ensure_data(config, workdir)
  rows = [r for r in config.sweep.rows if r]
  table = {}
  for row in rows:
    for seed in config.sweep.seeds:
      run_dir = os.path.join(workdir, row, f"seed{seed}")
      done = os.path.join(run_dir, "test_metrics.json")
      if not os.path.exists(done):
        sub = classification.apply_row(config, row)
        with sub.unlocked():
          sub.job = "classify"
          sub.seed = int(seed)
        classify.run(sub, run_dir)
      table.setdefault(row, []).append(files.read_json(done)["test"])
  lines = ["| row | " + " | ".join(METRICS) + " | seeds |",
           "|---" * (len(METRICS) + 2) + "|"]
  text = io_lib.StringIO()
  w = csv.writer(text)
  w.writerow(["row"] + [f"{m}_{s}" for m in METRICS for s in ("mean", "std")] + ["seeds"])
  for row, results in table.items():
    vals = {m: np.asarray([r[m] for r in results], np.float64) for m in METRICS}
    lines.append(f"| {row} | " + " | ".join(
        f"{100 * v.mean():.1f} +- {100 * v.std():.1f}" for v in vals.values())
                 + f" | {len(results)} |")
    w.writerow([row] + [f"{x:.4f}" for v in vals.values() for x in (v.mean(), v.std())]
               + [len(results)])
  files.atomic_write_text(os.path.join(workdir, "sweep.md"), "\n".join(lines) + "\n")
  files.atomic_write_text(os.path.join(workdir, "sweep.csv"), text.getvalue())
  files.write_json(os.path.join(workdir, "sweep.json"), table)
  print("\n".join(lines))

