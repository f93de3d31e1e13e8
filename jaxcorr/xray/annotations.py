"""Sparse point-pair annotations of radiograph studies: loading, checking, patch labels.

Format (full description and an example in docs/annotations.md): a JSON-lines file, one
study per line (blank lines are skipped), each an object with
  views      [str, ...], >= 2 image paths, relative to the JSONL file's folder or absolute;
  pairs      [{"a": [view, x, y], "b": [view, x, y], "label": 0 | 1}, ...]: two points, each
             in ORIGINAL pixels (x = column, y = row, pixel centres at integers, as in
             `letterbox.py`) of the view whose 0-based index precedes them; label 1: the points
             show the same anatomical point (corresponding), 0: they do not;
  study      str, optional, unique in the file (default: "line N", N its 1-based line number);
  patient    str, optional: studies of one patient stay in one split when fine-tuning splits
             the file (default: each study is its own group);
  body_part  str, optional;  meta: any JSON, optional, kept as is.

Patch labels (`patch_pairs`). The model sees N views (slots 0..N-1) and scores the view pairs
(i, j), i < j, in the order (0, 1), (0, 2), ..., (0, N-1), (1, 2), ... (`pair_indices`, the
order of `jaxcorr.projection.labels`); pair p's scores are [L, L], rows the patches of view i,
columns those of view j, patches flat row-major. A point pair becomes (p, row patch, column patch,
label) after mapping both points through their view's `Letterbox`; a pair whose a is in the
later view is swapped. Dropped and counted: pairs touching a view not among the N slots
('unselected'), pairs within one view ('same_view'), pairs with a point off its image
('padding'). Point pairs landing on the same patch pair are merged ('merged'); when their
labels differ the positive wins ('conflicts'), as in the CT labels, where a patch pair
corresponds when any anatomy projects into both patches.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import pathlib

import numpy as np

from jaxcorr.xray import io

KEYS = ("study", "patient", "body_part", "views", "pairs", "meta")
PAIR_KEYS = ("a", "b", "label")
SEVERITY = {"format": "error", "duplicate_study": "error", "missing_file": "error",
            "unreadable_image": "error", "out_of_image": "error", "same_view": "error",
            "contradiction": "error", "duplicate": "warning", "no_pairs": "warning"}


class AnnotationError(ValueError):
  """A malformed annotation file; the message starts with file:line."""


@dataclasses.dataclass(frozen=True, eq=False)
class Study:
  """One line of an annotation file; K point pairs as arrays.

  Attributes:
    study: its name.
    views: image paths, resolved against the annotation file's folder.
    line: 1-based line number in `source`.
    a_view, b_view: int32 [K] view indices of the two points; a_xy, b_xy: float64 [K, 2] (x, y)
      in original pixels; label: int32 [K] in {0, 1}.
  """

  study: str
  views: tuple[str, ...]
  a_view: np.ndarray
  a_xy: np.ndarray
  b_view: np.ndarray
  b_xy: np.ndarray
  label: np.ndarray
  body_part: str | None = None
  line: int = 0
  source: str = ""
  meta: object = None
  patient: str | None = None

  @property
  def n_pairs(self) -> int:
    return int(self.label.shape[0])


def pair_indices(n: int) -> np.ndarray:
  """[P, 2] int32 view pairs (0, 1), (0, 2), ..., (1, 2), ...: `jaxcorr.projection.labels`'
  order."""
  return np.asarray(list(itertools.combinations(range(int(n)), 2)), np.int32).reshape(-1, 2)


def _point(value, n_views, where, name):
  if (not isinstance(value, list) or len(value) != 3 or
      any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value)):
    raise AnnotationError(f"{where}: '{name}' must be [view, x, y] (three numbers), got "
                          f"{json.dumps(value)}.")
  view, x, y = value
  if not isinstance(view, int) or not 0 <= view < n_views:
    raise AnnotationError(f"{where}: '{name}' view index {view} is not an integer in "
                          f"[0, {n_views}) (the study has {n_views} views; indices are 0-based).")
  if not (math.isfinite(x) and math.isfinite(y)):
    raise AnnotationError(f"{where}: '{name}' coordinates must be finite, got {x}, {y}.")
  return view, float(x), float(y)


def parse_study(obj, line: int, folder: pathlib.Path, source: str = "") -> Study:
  """One decoded JSON line -> `Study`; AnnotationError naming source:line and the field."""
  where = f"{source}:{line}"
  if not isinstance(obj, dict):
    raise AnnotationError(f"{where}: expected a JSON object per line, got {type(obj).__name__}.")
  unknown = sorted(set(obj) - set(KEYS))
  missing = [k for k in ("views", "pairs") if k not in obj]
  if unknown or missing:
    what = ([f"missing key(s) {', '.join(missing)}"] if missing else []) + (
        [f"unknown key(s) {', '.join(unknown)}"] if unknown else [])
    raise AnnotationError(f"{where}: {'; '.join(what)}; allowed keys: {', '.join(KEYS)} (views "
                          "and pairs required; free-form data goes in meta).")
  study = obj.get("study", f"line {line}")
  for key, value in (("study", study), ("body_part", obj.get("body_part") or ""),
                     ("patient", obj.get("patient") or "")):
    if not isinstance(value, str):
      raise AnnotationError(f"{where}: '{key}' must be a string, got {json.dumps(value)}.")
  views = obj["views"]
  if not isinstance(views, list) or not all(isinstance(v, str) and v for v in views):
    raise AnnotationError(f"{where}: 'views' must be a list of image paths (strings).")
  if len(views) < 2:
    raise AnnotationError(f"{where}: study {study!r} has {len(views)} view(s); correspondence "
                          "needs at least 2.")
  pairs = obj["pairs"]
  if not isinstance(pairs, list):
    raise AnnotationError(f"{where}: 'pairs' must be a list of {{\"a\", \"b\", \"label\"}}.")
  rows = []
  for k, pair in enumerate(pairs):
    at = f"{where}: pair {k}"
    if not isinstance(pair, dict) or set(pair) != set(PAIR_KEYS):
      got = sorted(pair) if isinstance(pair, dict) else type(pair).__name__
      raise AnnotationError(f"{at}: expected exactly the keys a, b, label; got {got}.")
    a = _point(pair["a"], len(views), at, "a")
    b = _point(pair["b"], len(views), at, "b")
    if not isinstance(pair["label"], int) or isinstance(pair["label"], bool) or (
        pair["label"] not in (0, 1)):
      raise AnnotationError(f"{at}: label must be 0 or 1, got {json.dumps(pair['label'])}.")
    rows.append(a + b + (pair["label"],))
  arr = np.asarray(rows, np.float64).reshape(-1, 7)
  paths = tuple(str(folder / v) for v in views)  # an absolute v replaces the folder
  return Study(study, paths, arr[:, 0].astype(np.int32), arr[:, 1:3], arr[:, 3].astype(np.int32),
               arr[:, 4:6], arr[:, 6].astype(np.int32), obj.get("body_part"), line, source,
               obj.get("meta"), obj.get("patient"))


def _lines(path):
  """(line number, decoded object or AnnotationError) of the non-blank lines of a file."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise AnnotationError(f"{path}: no such annotation file.")
  with open(path, "rb") as f:
    for n, raw in enumerate(f, 1):
      if not raw.strip():
        continue
      try:
        yield n, json.loads(raw.decode("utf-8"))
      except UnicodeDecodeError as e:
        yield n, AnnotationError(f"{path}:{n}: not UTF-8 text ({e.reason} at byte {e.start}); "
                                 "save the file as UTF-8 JSON lines.")
      except json.JSONDecodeError as e:
        yield n, AnnotationError(f"{path}:{n}: not valid JSON ({e.msg}, column {e.colno}); "
                                 "each line must hold one whole JSON object.")


def load_annotations(path) -> list[Study]:
  """Reads an annotation file; raises AnnotationError (file:line, what, fix) at the first
  malformed line or repeated study name. Content checks are `validate`'s."""
  studies, seen = [], {}
  folder = pathlib.Path(path).resolve().parent
  for n, obj in _lines(path):
    if isinstance(obj, AnnotationError):
      raise obj
    study = parse_study(obj, n, folder, str(path))
    if study.study in seen:
      raise AnnotationError(f"{path}:{n}: study {study.study!r} already used on line "
                            f"{seen[study.study]}; study names must be unique.")
    seen[study.study] = n
    studies.append(study)
  return studies


@dataclasses.dataclass(frozen=True)
class Problem:
  line: int  # 1-based; 0 for the file itself
  kind: str  # a key of SEVERITY
  message: str

  @property
  def severity(self) -> str:
    return SEVERITY[self.kind]


@dataclasses.dataclass(frozen=True)
class Report:
  """What `validate` found: problems by line, and (positives, negatives) per study."""

  path: str
  problems: tuple[Problem, ...]
  counts: dict  # study name -> (positives, negatives)

  @property
  def errors(self) -> list[Problem]:
    return [p for p in self.problems if p.severity == "error"]

  @property
  def ok(self) -> bool:
    return not self.errors

  def format(self) -> str:
    pos = sum(c[0] for c in self.counts.values())
    neg = sum(c[1] for c in self.counts.values())
    n_err = len(self.errors)
    lines = [f"{self.path}: {len(self.counts)} studies, {pos + neg} pairs ({pos} positive, "
             f"{neg} negative); {n_err} errors, {len(self.problems) - n_err} warnings"]
    lines += [f"{self.path}:{p.line}: {p.severity} [{p.kind}] {p.message}" for p in self.problems]
    if self.counts:
      width = max(len(s) for s in self.counts)
      lines.append("per study: positives / negatives")
      lines += [f"  {s:<{width}}  {c[0]} / {c[1]}" for s, c in self.counts.items()]
    lines.append("OK" if self.ok else "FAILED: fix the errors above")
    return "\n".join(lines)


def validate(path, *, check_images: bool = True) -> Report:
  """Checks every line of an annotation file and reports all problems, not just the first.

  Args:
    path: the JSONL file.
    check_images: read each view's header (`io.image_size`, no pixels) to report missing or
      unreadable files and points off their image; False checks the file alone.

  Returns:
    A `Report`; `report.ok` is False when any problem is an error (see `SEVERITY`).
  """
  problems, counts, seen = [], {}, {}
  folder = pathlib.Path(path).resolve().parent
  try:
    for n, obj in _lines(path):
      try:
        if isinstance(obj, AnnotationError):
          raise obj
        study = parse_study(obj, n, folder, str(path))
      except AnnotationError as e:
        problems.append(Problem(n, "format", str(e).split(": ", 1)[-1]))
        continue
      if study.study in seen:
        problems.append(Problem(n, "duplicate_study", f"study {study.study!r} already used on "
                                f"line {seen[study.study]}; names must be unique."))
      seen.setdefault(study.study, n)
      problems += _check_study(study, check_images)
      pos = int(study.label.sum())
      counts[study.study] = (pos, study.n_pairs - pos)
  except AnnotationError as e:
    problems.append(Problem(0, "missing_file", str(e)))
  return Report(str(path), tuple(problems), counts)


def _check_study(study: Study, check_images: bool) -> list[Problem]:
  problems = []
  def add(kind, msg):
    problems.append(Problem(study.line, kind, f"study {study.study!r}: {msg}"))
  sizes = [None] * len(study.views)
  for v, view in enumerate(study.views if check_images else ()):
    if not pathlib.Path(view).is_file():
      add("missing_file", f"view {v} {view}: no such file.")
      continue
    try:
      sizes[v] = io.image_size(view)
    except io.XRayError as e:
      add("unreadable_image", f"view {v}: {e}")
      continue
    if min(sizes[v]) < io.MIN_SIDE:
      add("unreadable_image", f"view {v} {view}: {sizes[v][0]}x{sizes[v][1]} pixels, under the "
          f"{io.MIN_SIDE} per side a radiograph needs.")
  if not study.n_pairs:
    add("no_pairs", "no point pairs; the study adds nothing to training.")
  first = {}
  for k in range(study.n_pairs):
    a = (int(study.a_view[k]), *study.a_xy[k].tolist())
    b = (int(study.b_view[k]), *study.b_xy[k].tolist())
    if a[0] == b[0]:
      add("same_view", f"pair {k}: both points are on view {a[0]}; a pair links two views.")
    for name, (v, x, y) in (("a", a), ("b", b)):
      if sizes[v] is not None and not (-0.5 <= x < sizes[v][1] - 0.5 and
                                       -0.5 <= y < sizes[v][0] - 0.5):
        add("out_of_image", f"pair {k}: point {name} [{v}, {x:g}, {y:g}] lies outside view {v} "
            f"({study.views[v]}, {sizes[v][1]} wide x {sizes[v][0]} high: x must be in "
            f"[-0.5, {sizes[v][1] - 0.5}), y in [-0.5, {sizes[v][0] - 0.5})).")
    key = (min(a, b), max(a, b))
    if key in first:
      j, label = first[key]
      if label == study.label[k]:
        add("duplicate", f"pair {k} repeats pair {j} (same points and label).")
      else:
        add("contradiction", f"pair {k} has label {study.label[k]} but pair {j} links the same "
            f"points with label {label}; keep one.")
    else:
      first[key] = (k, int(study.label[k]))
  return problems


@dataclasses.dataclass(frozen=True)
class PatchPairs:
  """A study's labels on the model's patch grids, sorted by (pair, row, col); unpacks as
  `pair, row, col, label = patch_pairs(...)`.

  Attributes:
    pair: int32 [M] index p into `pair_indices(n_views)`.
    row: int32 [M] flat patch index in view i = pair_indices[p, 0].
    col: int32 [M] flat patch index in view j = pair_indices[p, 1].
    label: int32 [M] 1 corresponding, 0 not.
    n_views, n_patches: N and L of the model input.
    counts: point pairs in ('points'), kept as patch pairs ('kept'), and dropped or merged
      ('unselected', 'same_view', 'padding', 'merged'), and merged groups whose labels
      disagreed ('conflicts', resolved positive).
  """

  pair: np.ndarray
  row: np.ndarray
  col: np.ndarray
  label: np.ndarray
  n_views: int
  n_patches: int
  counts: dict

  def __iter__(self):
    return iter((self.pair, self.row, self.col, self.label))

  def dense(self) -> tuple[np.ndarray, np.ndarray]:
    """(target float32 [P, L, L], mask bool [P, L, L]): the labels where annotated, 0 elsewhere,
    and where they are; the layout of the model's scores and of `jaxcorr.projection.labels`' C."""
    shape = (len(pair_indices(self.n_views)), self.n_patches, self.n_patches)
    target, mask = np.zeros(shape, np.float32), np.zeros(shape, bool)
    target[self.pair, self.row, self.col] = self.label
    mask[self.pair, self.row, self.col] = True
    return target, mask


def patch_pairs(study: Study, letterboxes, patch: int, n_views: int | None = None, *,
                views=None) -> PatchPairs:
  """Maps a study's point pairs onto the model's patch grids (rules in the module docstring).

  Args:
    study: from `load_annotations`.
    letterboxes: one `Letterbox` per model slot (the view shown in that slot), same out_shape.
    patch: the patch size k in model pixels.
    n_views: N, the number of views the model sees (default: len(letterboxes)).
    views: the study's view index shown in each slot (default 0..N-1).

  Returns:
    `PatchPairs`.
  """
  n_views = len(letterboxes) if n_views is None else int(n_views)
  views = list(range(n_views)) if views is None else [int(v) for v in views]
  if len(views) != n_views or len(letterboxes) != n_views or len(set(views)) != n_views or (
      min(views) < 0 or max(views) >= len(study.views)):
    raise ValueError(f"study {study.study!r} ({study.source}:{study.line}, {len(study.views)} "
                     f"views): need n_views={n_views} distinct view indices in [0, "
                     f"{len(study.views)}) (got {views}) and as many letterboxes (got "
                     f"{len(letterboxes)}).")
  grids = {box.grid(patch) for box in letterboxes}
  if len(grids) != 1:
    raise ValueError(f"letterboxes of study {study.study!r} have different patch grids {grids}; "
                     "all views share the model's input size.")
  n_patches = int(np.prod(grids.pop()))
  slot_of = np.full(len(study.views), -1)
  slot_of[views] = np.arange(n_views)
  sa, sb = slot_of[study.a_view], slot_of[study.b_view]
  unselected = (sa < 0) | (sb < 0)
  same_view = ~unselected & (sa == sb)
  pa, pb = np.full(study.n_pairs, -1), np.full(study.n_pairs, -1)
  for s, box in enumerate(letterboxes):
    pa[sa == s] = box.patch_of(study.a_xy[sa == s], patch)
    pb[sb == s] = box.patch_of(study.b_xy[sb == s], patch)
  padding = ~unselected & ~same_view & ((pa < 0) | (pb < 0))
  keep = ~(unselected | same_view | padding)
  swap = sa > sb
  i, j = np.minimum(sa, sb)[keep], np.maximum(sa, sb)[keep]
  row, col = np.where(swap, pb, pa)[keep], np.where(swap, pa, pb)[keep]
  index = np.full((n_views, n_views), -1)
  pairs = pair_indices(n_views)
  index[pairs[:, 0], pairs[:, 1]] = np.arange(len(pairs))
  key = (index[i, j].astype(np.int64) * n_patches + row) * n_patches + col
  uniq, inverse = np.unique(key, return_inverse=True)
  hi, lo = np.zeros(len(uniq), np.int32), np.ones(len(uniq), np.int32)
  np.maximum.at(hi, inverse, study.label[keep])
  np.minimum.at(lo, inverse, study.label[keep])
  counts = {"points": study.n_pairs, "kept": int(len(uniq)), "unselected": int(unselected.sum()),
            "same_view": int(same_view.sum()), "padding": int(padding.sum()),
            "merged": int(keep.sum() - len(uniq)), "conflicts": int((hi != lo).sum())}
  return PatchPairs((uniq // n_patches**2).astype(np.int32),
                    (uniq // n_patches % n_patches).astype(np.int32),
                    (uniq % n_patches).astype(np.int32), hi, n_views, n_patches, counts)
