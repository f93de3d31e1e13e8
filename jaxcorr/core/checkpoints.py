"""Which checkpoint of a training run to load: `best`, `latest` or a step number.

A training workdir (`jaxcorr.train.checkpoint`) holds finished step folders (orbax writes an
unfinished one under a temporary name):

  <workdir>/checkpoints/<step>/{state, data}        the last few, by step
  <workdir>/best/<step>/{state, data, metrics}      the best by the run's best metric

`resolve(path, select)` turns a workdir (or one step folder) and a selector into the step
folder to read, and `Loaded.describe()` is the line a job logs so a person knows what it loaded:
  best     best/<step> with the highest saved metric (latest of checkpoints/ when best/ is
           empty, e.g. a run that never evaluated; the line says so)
  latest   the highest step of checkpoints/ (or of best/ when checkpoints/ is empty)
  STEP     that step, from checkpoints/ or best/
A path that is itself a step folder is loaded as it is, and `select` must then be `best` (the
default) or its own step.
"""

from __future__ import annotations

import dataclasses
import json
import os

SELECT_HELP = "'best', 'latest' or a step number (e.g. '200')"


@dataclasses.dataclass(frozen=True)
class Loaded:
  """A resolved checkpoint: its step folder, the run's workdir (None for a bare step folder
  outside a run), the step, and how it was chosen."""
  directory: str
  workdir: str | None
  step: int
  how: str

  def describe(self) -> str:
    return f"checkpoint {self.directory} (step {self.step}, {self.how})"


def parse_select(select, field: str = "select") -> str | int:
  """'best' | 'latest' | a step (an int, or a string of digits) -> 'best', 'latest' or int."""
  if isinstance(select, int) and not isinstance(select, bool) and select >= 0:
    return select
  text = str(select).strip()
  if text in ("best", "latest"):
    return text
  if text.isdigit():
    return int(text)
  raise ValueError(f"config.{field}={select!r}: expected {SELECT_HELP}")


def step_folders(directory: str) -> list[int]:
  """The finished step folders (integer names) of an orbax manager directory, ascending."""
  if not os.path.isdir(directory):
    return []
  return sorted(int(n) for n in os.listdir(directory)
                if n.isdigit() and os.path.isdir(os.path.join(directory, n)))


def all_steps(workdir: str) -> list[int]:
  """Every finished step of a training workdir, in checkpoints/ or best/, ascending (for a
  curve over training; `resolve(workdir, step)` loads each).

  Raises:
    FileNotFoundError: the workdir holds no finished checkpoint.
  """
  workdir = os.path.abspath(os.path.expanduser(str(workdir)))
  steps = sorted(set(step_folders(os.path.join(workdir, "checkpoints")))
                 | set(step_folders(os.path.join(workdir, "best"))))
  if not steps:
    raise FileNotFoundError(f"no finished checkpoint in {workdir} (checkpoints/ and best/ hold "
                            "no step folders): give the workdir of a training run that saved")
  return steps


def _metric(step_dir: str):
  """(name, value) of the metric saved with a best/ checkpoint, or None."""
  try:
    with open(os.path.join(step_dir, "metrics", "metrics")) as f:
      name, value = next(iter(json.load(f).items()))
    return name, float(value)
  except (OSError, ValueError, StopIteration, AttributeError):
    return None


def resolve(path: str, select="best", field: str = "select") -> Loaded:
  """The checkpoint to load from `path` (a workdir or a step folder); see the module docstring.

  Raises:
    FileNotFoundError: nothing there, no finished checkpoint, or the selected step is absent
      (the message lists the steps there are).
    ValueError: a bad selector.
  """
  which = parse_select(select, field)
  path = os.path.abspath(os.path.expanduser(str(path)))
  if not os.path.exists(path):
    raise FileNotFoundError(f"checkpoint path {path} does not exist.")
  best_dir, latest_dir = os.path.join(path, "best"), os.path.join(path, "checkpoints")
  if os.path.isdir(best_dir) or os.path.isdir(latest_dir):
    return _from_workdir(path, best_dir, latest_dir, which, field)
  parent = os.path.dirname(path)
  if os.path.basename(parent) in ("best", "checkpoints"):
    name = os.path.basename(path)
    if not name.isdigit():
      raise FileNotFoundError(f"{path} is not a finished checkpoint (step folders are named by "
                              "their step; orbax writes unfinished ones under a temporary name).")
    if which not in ("best", int(name)):
      raise ValueError(f"config.{field}={select!r} but {path} is the step folder of step "
                       f"{name}: give the run's workdir to choose a checkpoint")
    return Loaded(path, os.path.dirname(parent), int(name), "the step folder given")
  raise FileNotFoundError(f"{path}: neither a training workdir (with best/ or checkpoints/) nor a "
                          ".../best/<step> or .../checkpoints/<step> folder.")


def _from_workdir(workdir, best_dir, latest_dir, which, field) -> Loaded:
  best, latest = step_folders(best_dir), step_folders(latest_dir)
  if not best and not latest:
    raise FileNotFoundError(f"no finished checkpoint in {workdir}: {best_dir} and {latest_dir} "
                            "hold no step folders (was the run stopped before its first save?).")
  if which == "best" and best:
    scored = {s: _metric(os.path.join(best_dir, str(s))) for s in best}
    known = {s: m for s, m in scored.items() if m is not None}
    step = max(known, key=lambda s: known[s][1]) if known else best[-1]
    how = (f"best by {known[step][0]} = {known[step][1]:.4g}" if step in known
           else "best/, no saved metric")
    return Loaded(os.path.join(best_dir, str(step)), workdir, step, how)
  if which in ("best", "latest"):
    folder, steps = (latest_dir, latest) if latest else (best_dir, best)
    how = ("latest" if which == "latest" else
           "latest: best/ is empty (the run never evaluated)")
    return Loaded(os.path.join(folder, str(steps[-1])), workdir, steps[-1], how)
  for folder, steps in ((latest_dir, latest), (best_dir, best)):
    if which in steps:
      return Loaded(os.path.join(folder, str(which)), workdir, which, f"step {which} as selected")
  raise FileNotFoundError(f"config.{field}={which}: {workdir} has no checkpoint of step {which}; "
                          f"it has {sorted(set(best) | set(latest))}")
