"""Multi-view radiograph studies for classification: MURA's layout and a plain CSV of one's own.

A `Study` is one examination: a few radiographs of one body part of one patient, with one label
(1 = abnormal, e.g. a fracture; 0 = normal). Paths are absolute after reading.

MURA (Rajpurkar et al. 2017; `read_mura`). `root` is the folder holding `MURA-v1.1/`, or that
folder itself. Files read, both without a header, paths relative to the folder holding
`MURA-v1.1/`; rows look like
  {split}_image_paths.csv      MURA-v1.1/train/XR_ELBOW/patient00011/study1_negative/image1.png
  {split}_labeled_studies.csv  MURA-v1.1/valid/XR_WRIST/patient11185/study1_positive/,1
The label comes from `labeled_studies` (study level, as MURA defines it); the body part and the
patient are the path's 3rd and 4th components; `study_id` is '<split>/<body part>/<patient>/
<study>'. MURA's `valid` split is the test set here (the official test set is hidden), so a
validation set is carved out of `train` by patient (`split_by_patient`).

Picking views (`pick_views`). Images are ordered by the number in their file name (image1,
image2, ..., image10). With `n_views` set, a study with more images keeps
  'first'   the first n_views (default): technologists acquire the standard projections first
            (PA/AP, then lateral, then obliques), so these are usually the two most
            complementary, near-orthogonal views, and the choice is reproducible;
  'spread'  n_views indices spread evenly from the first to the last image;
  'random'  n_views distinct images drawn with a given `rng` (training augmentation; call
            `pick_views` in the input pipeline with Grain's rng on a study read with
            n_views=None, which keeps every image).
A study with fewer images than n_views is 'duplicate'd (its images repeated in order; the
number of such studies is logged) or 'drop'ped (`few_views`).

Own studies (`read_study_csv`): a CSV with the header
  study_id,label,view_1,view_2[,view_3...][,body_part][,patient]
one study per row, label 0 or 1, view paths relative to the CSV's folder (or absolute); trailing
view cells may be empty for studies with fewer views. Without a patient column each study is its
own patient.
"""

from __future__ import annotations

from jaxcorr.core.choices import check_choice

import csv
import dataclasses
import os
import re

import numpy as np
from absl import logging

MURA_BODY_PARTS = ("XR_ELBOW", "XR_FINGER", "XR_FOREARM", "XR_HAND", "XR_HUMERUS",
                   "XR_SHOULDER", "XR_WRIST")
# The forearm and hand regions of the paper's classification experiment.
DEFAULT_BODY_PARTS = ("XR_ELBOW", "XR_FOREARM", "XR_HAND", "XR_WRIST")
MURA_SPLITS = ("train", "valid")
PICK_RULES = ("first", "spread", "random")
FEW_VIEWS = ("duplicate", "drop")


@dataclasses.dataclass(frozen=True)
class Study:
  """One multi-view study.

  Attributes:
    study_id: unique name (MURA: '<split>/<body part>/<patient>/<study>').
    paths: absolute image paths, in view order.
    label: 1 abnormal, 0 normal.
    body_part: e.g. 'XR_WRIST' ('' when unknown).
    patient: patient id for splitting (the study id when unknown).
  """

  study_id: str
  paths: tuple[str, ...]
  label: int
  body_part: str = ""
  patient: str = ""


def _image_number(path: str):
  """Sort key: the last integer in the file name (image10 after image2), then the name."""
  name = os.path.basename(path)
  numbers = re.findall(r"\d+", name)
  return (int(numbers[-1]) if numbers else -1, name)


def pick_views(paths, n_views: int, rule: str = "first", rng: np.random.Generator | None = None
               ) -> tuple[str, ...]:
  """`n_views` of a study's ordered image paths by `rule` (see the module docstring).

  Fewer images than n_views are repeated in order (a, b -> a, b, a). 'random' needs `rng`.
  """
  check_choice("view pick rule", rule, PICK_RULES)
  paths = tuple(paths)
  if not paths:
    raise ValueError("a study without images")
  if n_views < 1:
    raise ValueError(f"n_views={n_views} must be >= 1")
  k = len(paths)
  if k <= n_views:
    return tuple(paths[i % k] for i in range(n_views))
  if rule == "first":
    idx = range(n_views)
  elif rule == "spread":
    idx = np.round(np.linspace(0, k - 1, n_views)).astype(int)
  else:
    if rng is None:
      raise ValueError("pick rule 'random' needs an rng (np.random.Generator)")
    idx = np.sort(rng.choice(k, size=n_views, replace=False))
  return tuple(paths[i] for i in idx)


def _finish(studies, n_views, pick, few_views, rng, source) -> list[Study]:
  """Applies the n_views / pick / few_views rules to studies that hold all their images."""
  check_choice("few_views", few_views, FEW_VIEWS)
  if n_views is None:
    return studies
  out, few = [], 0
  for s in studies:
    if len(s.paths) < n_views:
      few += 1
      if few_views == "drop":
        continue
    out.append(dataclasses.replace(s, paths=pick_views(s.paths, n_views, pick, rng)))
  if few:
    logging.info("%s: %d of %d studies have fewer than %d views: %s", source, few, len(studies),
                 n_views, "duplicated" if few_views == "duplicate" else "dropped")
  return out


def _mura_base(root: str) -> str:
  """The folder that MURA's csv paths are relative to (the one holding MURA-v1.1/)."""
  root = os.path.abspath(root)
  if os.path.isdir(os.path.join(root, "MURA-v1.1")):
    return root
  if os.path.basename(root.rstrip(os.sep)) == "MURA-v1.1":
    return os.path.dirname(root.rstrip(os.sep))
  raise FileNotFoundError(f"{root}: no MURA-v1.1 folder here; pass the folder that holds "
                          "MURA-v1.1/ (with train_image_paths.csv, ...) or MURA-v1.1 itself")


def _read_rows(path: str) -> list[list[str]]:
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: missing; a MURA-v1.1 folder has train/valid_image_paths.csv"
                            " and train/valid_labeled_studies.csv")
  with open(path, newline="") as f:
    return [row for row in csv.reader(f) if row and any(cell.strip() for cell in row)]


def _mura_parts(rel: str, csv_path: str, line: int):
  parts = rel.strip().strip("/").split("/")
  if len(parts) < 5 or parts[0] != "MURA-v1.1":
    raise ValueError(f"{csv_path}, line {line}: {rel!r} is not a MURA path "
                     "(MURA-v1.1/<split>/<body part>/<patient>/<study>/...)")
  return parts


def read_mura(root: str, split: str = "train", *, body_parts=DEFAULT_BODY_PARTS,
              n_views: int | None = 2, pick: str = "first", few_views: str = "duplicate",
              rng: np.random.Generator | None = None, check_files: bool = True) -> list[Study]:
  """The studies of one MURA split (see the module docstring).

  Args:
    root: the folder holding MURA-v1.1/, or MURA-v1.1 itself.
    split: 'train' or 'valid'.
    body_parts: which of MURA_BODY_PARTS to keep.
    n_views: views per study (None keeps every image, in order).
    pick: 'first', 'spread' or 'random' (needs rng), for studies with more images.
    few_views: 'duplicate' or 'drop' studies with fewer images than n_views.
    rng: for pick='random'.
    check_files: raise if a listed image is missing on disk.

  Returns:
    Studies sorted by study_id.

  Raises:
    FileNotFoundError: a missing csv or image (named).
    ValueError: an unknown split or body part, a bad label, an unlabelled study, no studies.
  """
  check_choice("MURA split", split, MURA_SPLITS)
  unknown = sorted(set(body_parts) - set(MURA_BODY_PARTS))
  if unknown:
    raise ValueError(f"unknown MURA body parts {unknown}; allowed: {', '.join(MURA_BODY_PARTS)}")
  base = _mura_base(root)
  folder = os.path.join(base, "MURA-v1.1")
  labels_csv = os.path.join(folder, f"{split}_labeled_studies.csv")
  images_csv = os.path.join(folder, f"{split}_image_paths.csv")
  labels = {}
  for line, row in enumerate(_read_rows(labels_csv), start=1):
    parts = _mura_parts(row[0], labels_csv, line)
    if len(row) < 2 or row[1].strip() not in ("0", "1"):
      raise ValueError(f"{labels_csv}, line {line}: expected '<study path>/,<0 or 1>', got {row}")
    labels["/".join(parts)] = int(row[1])
  images: dict[str, list[str]] = {}
  for line, row in enumerate(_read_rows(images_csv), start=1):
    parts = _mura_parts(row[0], images_csv, line)
    if parts[2] not in body_parts:
      continue
    key = "/".join(parts[:-1])
    if key not in labels:
      raise ValueError(f"{images_csv}, line {line}: study {key}/ has no label in {labels_csv}")
    path = os.path.join(base, *parts)
    if check_files and not os.path.isfile(path):
      raise FileNotFoundError(f"{path}: listed in {images_csv} (line {line}) but missing; "
                              "re-extract MURA or pass check_files=False")
    images.setdefault(key, []).append(path)
  if not images:
    raise ValueError(f"{images_csv}: no images of body parts {tuple(body_parts)}")
  studies = []
  for key in sorted(images):
    parts = key.split("/")
    studies.append(Study(study_id="/".join(parts[1:]),
                         paths=tuple(sorted(images[key], key=_image_number)),
                         label=labels[key], body_part=parts[2], patient=parts[3]))
  return _finish(studies, n_views, pick, few_views, rng, images_csv)


def read_study_csv(path: str, *, n_views: int | None = None, pick: str = "first",
                   few_views: str = "duplicate", rng: np.random.Generator | None = None,
                   check_files: bool = True) -> list[Study]:
  """Studies from a CSV `study_id,label,view_1,view_2[,...][,body_part][,patient]`.

  Args:
    path: the CSV; view paths are relative to its folder unless absolute.
    n_views, pick, few_views, rng: as `read_mura` (n_views None keeps every listed view).
    check_files: raise if a view file is missing.

  Returns:
    Studies in file order.

  Raises:
    FileNotFoundError: the CSV or a view file is missing (named, with its row).
    ValueError: a bad header, label, duplicate study id or a row without views.
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: no such study CSV")
  folder = os.path.dirname(os.path.abspath(path))
  with open(path, newline="") as f:
    reader = csv.reader(f)
    header = [h.strip() for h in next(reader, [])]
    view_cols = [i for i, h in enumerate(header) if re.fullmatch(r"view_\d+", h)]
    if header[:2] != ["study_id", "label"] or not view_cols:
      raise ValueError(f"{path}: header must be study_id,label,view_1[,view_2...][,body_part]"
                       f"[,patient], got {','.join(header)}")
    known = {"study_id", "label", "body_part", "patient"} | {header[i] for i in view_cols}
    extra = set(header) - known
    if extra:
      raise ValueError(f"{path}: unknown columns {sorted(extra)}; allowed: study_id, label, "
                       "view_<n>, body_part, patient")
    studies, seen = [], set()
    for line, row in enumerate(reader, start=2):
      if not any(cell.strip() for cell in row):
        continue
      cells = dict(zip(header, (c.strip() for c in row)))
      where = f"{path}, line {line} (study {cells.get('study_id', '')!r})"
      if len(row) > len(header):
        raise ValueError(f"{where}: {len(row)} cells for {len(header)} columns")
      sid = cells.get("study_id", "")
      if not sid or sid in seen:
        raise ValueError(f"{where}: study_id is empty or repeated")
      seen.add(sid)
      if cells.get("label") not in ("0", "1"):
        raise ValueError(f"{where}: label {cells.get('label')!r} must be 0 or 1")
      views = [cells.get(header[i], "") for i in view_cols]
      views = [os.path.join(folder, v) for v in views if v]
      if not views:
        raise ValueError(f"{where}: no view paths")
      for v in views:
        if check_files and not os.path.isfile(v):
          raise FileNotFoundError(f"{where}: view {v} is missing")
      studies.append(Study(sid, tuple(views), int(cells["label"]), cells.get("body_part", ""),
                           cells.get("patient", "") or sid))
  if not studies:
    raise ValueError(f"{path}: no studies")
  return _finish(studies, n_views, pick, few_views, rng, path)


def split_by_patient(studies: list[Study], validation_fraction: float = 0.1, seed: int = 0
                     ) -> tuple[list[Study], list[Study]]:
  """A seeded (train, validation) partition of studies with no patient in both.

  Patients are shuffled with `np.random.default_rng(seed)` and moved to validation until it
  holds at least `validation_fraction` of the studies (at least one patient when the fraction is
  positive and there are two or more patients). Order within each part follows the input.
  """
  if not 0 <= validation_fraction < 1:
    raise ValueError(f"validation_fraction={validation_fraction} must be in [0, 1)")
  patients = sorted({s.patient or s.study_id for s in studies})
  order = np.random.default_rng(seed).permutation(len(patients))
  per_patient: dict[str, int] = {}
  for s in studies:
    per_patient[s.patient or s.study_id] = per_patient.get(s.patient or s.study_id, 0) + 1
  target = validation_fraction * len(studies)
  chosen, count = set(), 0
  for i in order:
    if count >= target or len(chosen) + 1 >= len(patients):
      break
    chosen.add(patients[i])
    count += per_patient[patients[i]]
  train = [s for s in studies if (s.patient or s.study_id) not in chosen]
  validation = [s for s in studies if (s.patient or s.study_id) in chosen]
  return train, validation
