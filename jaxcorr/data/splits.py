"""Which CT volumes a run uses and how they are split: by volume, never by sample.

Splits are by CT volume, so no patient is in two splits. The assignment is written to
`<workdir>/splits.json` the first time and reused afterwards (also when the folder gains files:
new volumes go to 'train' and are logged).
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
