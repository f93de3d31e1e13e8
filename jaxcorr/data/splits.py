"""Which CT volumes a run uses and how they are split: by volume, never by sample.

Splits are by CT volume, so no patient is in two splits. The assignment is written to
`<workdir>/splits.json` the first time and reused afterwards (also when the folder gains files:
new volumes go to 'train' and are logged). A split a job needs but that holds no volume (a
folder of fewer than 3 CTs) is an error before any work (`require`), and the CTs a run skipped
(`ct.on_error='skip'`) are listed with the reason in `<workdir>/skipped.json` (`write_skipped`).

`ct.path` is one entry or a tuple of entries, each a CT file (NIfTI, or a DICOM series folder
holding no NIfTI), a folder of CTs or a `.txt` list of paths (one a line, '#' comments), so
several folders make one run. `data.test_path` / `data.validation_path` (the same kinds of
entries) name the CTs of those splits instead of the automatic split: a named CT is taken out of
every other split (it is never trained on, also when splits.json was written before), and the
remaining CTs of `ct.path` are split among the splits not named, by their `data.splits`
fractions (all of them go to 'train' when both are named).

Any of these entries, and the workdir, may be on an object store (`gs://bucket/cts`, a
`gs://.../list.txt` of URIs): they are listed through `etils.epath`, the URIs are the volumes'
names (in splits.json too), and each CT is copied to a local cache when it is loaded (`io.load_ct`).
"""

from __future__ import annotations

import os

import numpy as np
from absl import logging

from jaxcorr.core import files
from jaxcorr.ct import io

SPLITS = ("train", "validation", "test")


def list_paths(entries, field: str = "ct.path") -> list[str]:
  """Absolute paths (or URIs) of the CTs that `entries` name, in order, each once.

  Args:
    entries: a string or a tuple/list of strings, each a NIfTI file, a folder of CTs (NIfTI
      files and DICOM series subfolders), a DICOM series folder or a `.txt` list of such paths;
      '' or () name none.
    field: the config field `entries` came from, for the errors.

  Raises:
    CTError: an entry that is not a CT, a folder of CTs or a list file (from `io.list_cts`).
    ValueError: an entry that is not a string.
    ImportError: a URI whose fsspec backend is not installed (names the package).
  """
  if isinstance(entries, str):
    entries = (entries,) if entries else ()
  if not all(isinstance(e, str) and e for e in entries):
    raise ValueError(f"config.{field}={entries!r}: every entry must be a non-empty path "
                     "(a CT file or folder, a folder of CTs, or a .txt list of paths)")
  found = []
  for entry in entries:
    with files.storage_errors(entry, f"config.{field}"):
      found.extend(files.absolute(os.fspath(p)) for p in _entry_paths(entry))
  return list(dict.fromkeys(found))   # one each, first order kept


def _entry_paths(entry: str) -> list:
  path = io.as_path(entry)
  if path.is_file() and entry.endswith(".txt"):
    lines = [line.strip() for line in path.read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    return io.list_cts(lines)
  if path.is_file() or entry.endswith(io.NIFTI_SUFFIXES) or _is_series(path):
    return [entry]
  return io.list_cts(entry)


def _is_series(folder) -> bool:
  """A folder with files but no NIfTI file and no subfolder: one DICOM series, not a folder
  of CTs."""
  if not folder.is_dir():
    return False
  children = list(folder.iterdir())
  return bool(children) and not any(
      c.name.lower().endswith(io.NIFTI_SUFFIXES) or c.is_dir() for c in children)


def list_volumes(config) -> list[str]:
  """Names of the configured volumes: CT paths (`list_paths` of `ct.path`), or 'phantom:<seed>'
  for the built-in ones."""
  if not config.ct.path:
    return [f"phantom:{s}" for s in range(config.data.phantoms)]
  # Absolute paths, so a run's splits.json means the same from any working directory.
  return list_paths(config.ct.path)


def named_splits(config) -> dict[str, list[str]]:
  """{split: CT paths} of the splits `data.test_path` / `data.validation_path` name."""
  data = config.data
  named = {s: list_paths(data.get(f"{s}_path", ""), f"data.{s}_path")
           for s in ("validation", "test")}
  return {s: n for s, n in named.items() if n}


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
  """The split assignment of the workdir, created from the config on first use (see the
  module docstring for `data.test_path` / `data.validation_path`)."""
  path = os.path.join(workdir, "splits.json")
  named = named_splits(config)
  held = {n for part in named.values() for n in part}
  names = [n for n in list_volumes(config) if n not in held]
  if files.path(path).exists():
    saved = files.read_json(path)
    known = {n for part in saved.values() for n in part}
    new = [n for n in names if n not in known]
    if new:
      logging.warning("%d volumes not in %s go to 'train': %s", len(new), path, new[:5])
      saved["train"] = saved["train"] + new
    return _hold_out(saved, named)
  fractions = np.asarray(config.data.splits, np.float64)
  fractions = np.where([s in named for s in SPLITS], 0.0, fractions)
  if fractions.sum() <= 0:
    fractions = np.array([1.0, 0.0, 0.0])
  result = _hold_out(assign_splits(names, fractions, config.seed) if names
                     else {s: [] for s in SPLITS}, named)
  files.write_json(path, result)
  return result


def _hold_out(assignment: dict[str, list[str]], named: dict[str, list[str]]) -> dict:
  """`assignment` with the named splits replaced by their CTs and those CTs removed from every
  other split (logged when an earlier splits.json had them elsewhere)."""
  held = {n: s for s, part in named.items() for n in part}
  out = {}
  for split in SPLITS:
    if split in named:
      out[split] = list(named[split])
      continue
    moved = [n for n in assignment.get(split, []) if n in held]
    if moved:
      logging.warning("%d CTs of split %r are named by data.%s_path instead: %s", len(moved),
                      split, held[moved[0]], moved[:5])
    out[split] = [n for n in assignment.get(split, []) if n not in held]
  return out


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
    if files.path(path).exists():
      files.path(path).unlink()
    return
  files.write_json(path, [{"volume": n, "reason": r} for n, r in skipped])
  logging.warning("skipped %d CTs (ct.on_error='skip'), listed with the reasons in %s: %s",
                  len(skipped), path, ", ".join(n for n, _ in skipped))
