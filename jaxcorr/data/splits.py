"""Which CT volumes a run uses and how they are split: by volume, never by sample.

Splits are by CT volume, so no patient is in two splits. The assignment is written to
`<workdir>/splits.json` the first time and reused afterwards (also when the folder gains files:
new volumes go to 'train' and are logged). A split a job needs but that holds no volume (a
folder of fewer than 3 CTs) is an error before any work (`require`), and the CTs a run skipped
(`ct.on_error='skip'`) are listed with the reason in `<workdir>/skipped.json` (`write_skipped`).
"""

from __future__ import annotations

import json
import os

import numpy as np
from absl import logging

from jaxcorr.core import files
from jaxcorr.ct import io

SPLITS = ("train", "validation", "test")


def list_volumes(config) -> list[str]:
  """Names of the configured volumes: CT paths, or 'phantom:<seed>' for the built-in ones."""
  path = config.ct.path
  if not path:
    return [f"phantom:{s}" for s in range(config.data.phantoms)]
  # Absolute paths, so a run's splits.json means the same from any working directory.
  if os.path.isfile(path) and path.endswith(".txt"):
    with open(path) as f:
      entries = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    return [os.path.abspath(p) for p in io.list_cts(entries)]
  if os.path.isfile(path) or path.endswith(io.NIFTI_SUFFIXES):
    return [os.path.abspath(path)]
  return [os.path.abspath(p) for p in io.list_cts(path)]


def assign_splits(names: list[str], fractions, seed: int) -> dict[str, list[str]]:
  """A seeded partition of the volume names into train/validation/test by `fractions`.

  Every split with a positive fraction gets at least one volume when there are enough.
  """
  fractions = np.asarray(fractions, np.float64)
  if fractions.shape != (3,) or np.any(fractions < 0) or fractions.sum() <= 0:
    raise ValueError(f"data.splits={tuple(fractions)}: need three fractions >= 0, not all 0")
  order = np.random.default_rng(seed).permutation(len(names))
  counts = np.floor(fractions / fractions.sum() * len(names)).astype(int)
  if len(names) >= np.count_nonzero(fractions):
    counts = np.where((fractions > 0) & (counts == 0), 1, counts)
  # The remainder goes to the largest split, which keeps at least one volume.
  big = int(np.argmax(fractions))
  counts[big] += len(names) - counts.sum()
  while counts[big] < 1:
    donor = int(np.argmax(np.where(np.arange(3) == big, -1, counts)))
    counts[donor] -= 1
    counts[big] += 1
  bounds = np.cumsum(counts)[:-1]
  return {s: [names[j] for j in part] for s, part in zip(SPLITS, np.split(order, bounds))}


def load_or_assign(config, workdir: str) -> dict[str, list[str]]:
  """The split assignment of the workdir, created from the config on first use."""
  path = os.path.join(workdir, "splits.json")
  names = list_volumes(config)
  if os.path.exists(path):
    with open(path) as f:
      saved = json.load(f)
    known = {n for part in saved.values() for n in part}
    new = [n for n in names if n not in known]
    if new:
      logging.warning("%d volumes not in %s go to 'train': %s", len(new), path, new[:5])
      saved["train"] = saved["train"] + new
    return saved
  result = assign_splits(names, config.data.splits, config.seed)
  files.write_json(path, result)
  return result


def require(assignment: dict[str, list[str]], split: str, config, workdir: str,
            needed_by: str) -> None:
  """Raises a ValueError when `split` holds no volume: the counts of every split, and what to
  do (more CTs, or `data.splits` that give the split a volume with a fresh splits.json)."""
  check = assignment.get(split) or []
  if check:
    return
  counts = ", ".join(f"{s} {len(assignment.get(s, []))}" for s in SPLITS)
  total = sum(len(assignment.get(s, [])) for s in SPLITS)
  source = (f"ct.path={config.ct.path!r}" if config.ct.path
            else f"data.phantoms={config.data.phantoms}")
  raise ValueError(
      f"split {split!r} holds no volume: the {total} volumes of {source} are split {counts} "
      f"(data.splits={tuple(config.data.splits)}, by volume; saved in "
      f"{os.path.join(workdir, 'splits.json')}), and {needed_by}. Add CTs (3 or more give "
      f"every split one), or give {split!r} a volume with data.splits (e.g. "
      f"--config.data.splits=\"(0.5, 0.5, 0.0)\" for 2 CTs) and delete that splits.json, which "
      "keeps the first assignment.")


def write_skipped(workdir: str, skipped: list[tuple[str, str]]) -> None:
  """Lists the CTs this run skipped (ct.on_error='skip') and why in `<workdir>/skipped.json`
  (a stale list is removed when none was skipped) and logs a summary."""
  path = os.path.join(workdir, "skipped.json")
  if not skipped:
    if os.path.exists(path):
      os.remove(path)
    return
  files.write_json(path, [{"volume": n, "reason": r} for n, r in skipped])
  logging.warning("skipped %d CTs (ct.on_error='skip'), listed with the reasons in %s: %s",
                  len(skipped), path, ", ".join(n for n, _ in skipped))
