"""Resume guards: a workdir's `config.json` against the config of the run that continues it.

A run that resumes (training from its checkpoints, generate or make_fractures adding shards,
make_sparse adding studies) must continue what the earlier run started. Comparing the two
resolved configs field by field (flattened, `a.b.c`) sorts each difference into:

  harmless   changes that leave shapes and the data stream alone (`HARMLESS`: log, evaluation
             and checkpoint cadences, reader threads, the kernel choice, a larger `steps`, ...)
             and fields only one of the two configs has (a field added to jaxcorr since): logged.
  breaking   everything else (model fields, batch size, image and cube sizes, seed, CT paths,
             samples per volume, ...): an error listing each field as old -> new, unless the new
             config sets `resume_anyway=True` (then logged as a warning and the run goes on).
"""

from __future__ import annotations

import json
import os

from absl import logging

from jaxcorr.core import files

# Fields (or whole blocks, ending in '.') whose change keeps shapes and the data stream.
HARMLESS = (
    "log_every", "eval_every", "stop_after_step", "stop_after_seconds", "ckpt.", "eval.",
    "resume_anyway",
    "data.threads", "data.prefetch", "ct.on_error",
    "mesh.",   # devices and hosts: the same global batches, orbax restores onto the new mesh
    "drr.method", "drr.batch_size", "labels.method", "generate.render_batch",
)
# What a workdir holds once a resumable job has done some work (checkpoints, shards, studies).
WORK = ("checkpoints/*", "best/*", "*/*.array_record", "studies/*.json")


class ResumeError(ValueError):
  """The new config changes what the workdir's earlier run started (see the module docstring)."""


def flatten(tree, prefix: str = "") -> dict:
  """{'a.b': leaf} of nested dicts; tuples stay values (as lists, as config.json stores them)."""
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(flatten(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


# Fields whose zero means 'derive it when the run starts'; the earlier run wrote the value it
# derived into its config.json (a fine-tuning run's image_size, from its pretraining run), and
# derives it again from the fields compared here.
DERIVED = ("image_size",)


def _is_zero(value) -> bool:
  if isinstance(value, (list, tuple)):
    return len(value) > 0 and all(_is_zero(v) for v in value)
  return value == 0 and not isinstance(value, bool)


def _harmless(field: str, old, new) -> bool:
  if field in DERIVED and _is_zero(new):
    return True
  if field == "steps":
    return isinstance(old, int) and isinstance(new, int) and new >= old
  return any(field == h or (h.endswith(".") and field.startswith(h)) for h in HARMLESS)


def diff(old: dict, new: dict) -> tuple[list[str], list[str]]:
  """(breaking, harmless) differences of two nested configs, one 'field: old -> new' line each."""
  a, b = flatten(old), flatten(new)
  breaking, harmless = [], []
  for field in sorted(set(a) | set(b)):
    if field not in a or field not in b:
      harmless.append(f"{field}: {a.get(field, '(absent)')!r} -> {b.get(field, '(absent)')!r}")
    elif a[field] != b[field]:
      line = f"{field}: {a[field]!r} -> {b[field]!r}"
      (harmless if _harmless(field, a[field], b[field]) else breaking).append(line)
  return breaking, harmless


def has_work(workdir: str) -> bool:
  """Whether `workdir` holds what a resumable job continues (`WORK`)."""
  folder = files.path(workdir)
  return folder.is_dir() and any(next(iter(folder.glob(pattern)), None) for pattern in WORK)


def check_resume(config, workdir: str) -> None:
  """Compares `config` with `<workdir>/config.json` when the workdir holds earlier work.

  Logs the harmless differences; raises `ResumeError` listing the breaking ones (old -> new)
  and the override, unless `config.resume_anyway` is True (then they are logged as a warning).
  Nothing happens for a new or empty workdir.
  """
  path = os.path.join(workdir, "config.json")
  if not files.path(path).exists() or not has_work(workdir):
    return
  old = json.loads(files.path(path).read_text())
  new = json.loads(config.to_json_best_effort())
  breaking, harmless = diff(old, new)
  if harmless:
    logging.info("resuming %s with changed fields that keep shapes and data: %s", workdir,
                 "; ".join(harmless))
  if not breaking:
    return
  if new.get("resume_anyway"):
    logging.warning("resuming %s with resume_anyway=True despite changes that alter shapes or "
                    "the data stream: %s", workdir, "; ".join(breaking))
    return
  raise ResumeError(
      f"{workdir} holds the work of an earlier run whose config ({path}) differs in fields that "
      "alter shapes or the data stream:\n  " + "\n  ".join(breaking)
      + "\nUse a new --workdir, restore those values, or pass --config.resume_anyway=True to "
      "continue anyway (the earlier work is kept as it is).")
