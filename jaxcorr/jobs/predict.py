"""The `predict` job: correspondences on a user's radiographs, with outputs a person can read.

For each study (the views of `config.views`, or each line of the list file `config.studies`),
writes into `<workdir>/<study>/`:

  corr.npy      float32 [P, L, L], pairs (0, 1), (0, 2), ..., (1, 2), ... (see `Predictor`)
  matches.csv   the top `top_k` patch pairs above `threshold`: views, patches, score, and both
                patch centres in original pixels (and mm when the file states a spacing);
                `reliable` is 0 when either view has no contrast (a blank image; logged)
  predict.png   both views side by side, top matches as lines, bands of a few query patches
  viewer.html   one self-contained page: hover or click a patch, its band lights up
  study.json    the views, their letterboxes, the settings and `warnings` (views without
                contrast) (written last: a study whose study.json exists is complete and is
                skipped when the job runs again)

A study that cannot be read (a missing or corrupt file, one view, views of very different
sizes) is reported in `<workdir>/studies.csv` with the reason, and the others go on.
`config.export` also writes the exported forward pass to `<workdir>/export/`.

List file: one study per line, `study_id,view_1,view_2[,...]`, paths relative to the list
file; blank lines and lines starting with '#' are skipped.
"""

from __future__ import annotations

import csv
import io as io_lib
import os

import numpy as np
from absl import logging

from jaxcorr.core import files
from jaxcorr.inference import export as export_lib
from jaxcorr.inference.predictor import Predictor
from jaxcorr.pictures import match_figure, viewer
from jaxcorr.projection.labels import pair_indices

PREVIEW = 768   # longest side of the display images in predict.png and viewer.html


def _read_study_list(path: str) -> list[tuple[str, list[str]]]:
  """[(study_id, [view paths])] of a list file (see the module docstring)."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"config.studies={path!r}: no such file")
  folder = os.path.dirname(os.path.abspath(path))
  out = []
  with open(path, newline="") as f:
    for n, row in enumerate(csv.reader(f), 1):
      if not row or not row[0].strip() or row[0].startswith("#"):
        continue
      if n == 1 and row[0].strip().lower() in ("study", "study_id"):
        continue
      cells = [c.strip() for c in row if c.strip()]
      if len(cells) < 2:
        raise ValueError(f"{path}:{n}: expected 'study_id,view_1,view_2,...', got {row}")
      out.append((cells[0], [os.path.join(folder, c) for c in cells[1:]]))
  if not out:
    raise ValueError(f"{path}: no studies listed")
  return out


def _studies(config) -> list[tuple[str, list[str]]]:
  views = [v for v in config.views if v]
  if config.studies and views:
    raise ValueError("give either config.views (one study) or config.studies (a list file)")
  if config.studies:
    return _read_study_list(config.studies)
  if not views:
    raise ValueError("no input: set --config.views=\"('a.dcm','b.png')\" (one study) or "
                     "--config.studies=LIST.csv")
  return [("study", views)]


def _display(image: np.ndarray) -> np.ndarray:
  """A preview no larger than PREVIEW on its longest side (uint8)."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  img = Image.fromarray(np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8))
  scale = min(1.0, PREVIEW / max(img.size))
  if scale < 1:
    img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                     Image.BILINEAR)
  return np.asarray(img)


def _write_outputs(out_dir: str, predictor: Predictor, views, prepared, corr, config) -> None:
  """Every output of one study (see the module docstring)."""
  os.makedirs(out_dir, exist_ok=True)
  n = len(prepared.boxes)
  pairs = [tuple(int(v) for v in p) for p in pair_indices(n)]
  files.atomic_save_npy(os.path.join(out_dir, "corr.npy"), corr.astype(np.float32))
  matches = predictor.matches(corr, prepared.boxes, threshold=config.threshold,
                              top_k=config.top_k)
  text = io_lib.StringIO()
  fields = ["view_i", "view_j", "patch_i", "patch_j", "score", "x_i", "y_i", "x_j", "y_j",
            "x_i_mm", "y_i_mm", "x_j_mm", "y_j_mm", "reliable"]
  flat = [n for n, low in enumerate(prepared.low_contrast) if low]
  warnings = [f"view {n} ({prepared.names[n]}) has no contrast (a blank or saturated image): "
              "its matches are unreliable" for n in flat]
  w = csv.DictWriter(text, fieldnames=fields, extrasaction="ignore")
  w.writeheader()
  for m in matches:
    m["reliable"] = int(m["view_i"] not in flat and m["view_j"] not in flat)
    for side in ("i", "j"):
      spacing = prepared.spacings[m[f"view_{side}"]]
      if spacing is not None:
        m[f"x_{side}_mm"], m[f"y_{side}_mm"] = (
            float(v) for v in prepared.boxes[m[f"view_{side}"]].to_mm(
                (m[f"x_{side}"], m[f"y_{side}"]), spacing))
    w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in m.items()})
  files.atomic_write_text(os.path.join(out_dir, "matches.csv"), text.getvalue())
  displays = [_display(o) for o in prepared.originals]
  rects = [viewer.patch_rects(predictor.grid, predictor.patch, b.scale, tuple(b.offset),
                              b.shape, d.shape) for b, d in zip(prepared.boxes, displays)]
  centres = [b.patch_center(np.arange(predictor.grid[0] * predictor.grid[1]), predictor.patch)
             for b in prepared.boxes]
  titles = [os.path.basename(str(name)) for name in prepared.names]
  match_figure.save_match_figure(os.path.join(out_dir, "predict.png"), displays, rects,
                                 list(corr), pairs, titles=titles)
  viewer.write_viewer(os.path.join(out_dir, "viewer.html"), displays, rects, list(corr), pairs,
                      threshold=config.threshold, titles=titles, pixel_coords=centres)
  files.write_json(os.path.join(out_dir, "study.json"), {
      "views": [str(v) for v in views], "letterboxes": [b.to_dict() for b in prepared.boxes],
      "spacings": [list(s) if s is not None else None for s in prepared.spacings],
      "pairs": pairs, "grid": list(predictor.grid), "patch": predictor.patch,
      "checkpoint": predictor.source, "tta": predictor.tta, "matches": len(matches),
      "warnings": warnings})


def run(config, workdir: str) -> None:
  files.prepare_workdir(config, workdir)
  if not config.checkpoint:
    raise ValueError("config.checkpoint is empty: give a pretraining or fine-tuning workdir, "
                     "e.g. --config.checkpoint=/tmp/jaxcorr_pretrain")
  predictor = Predictor.from_checkpoint(config.checkpoint, select=config.which_checkpoint,
                                        tta=config.tta,
                                        tta_reduce=config.tta_reduce,
                                        batch_size=config.batch_size)
  studies = _studies(config)
  status = []
  for study_id, views in studies:
    out_dir = os.path.join(workdir, study_id)
    if os.path.exists(os.path.join(out_dir, "study.json")):
      status.append((study_id, "done", "already complete"))
      continue
    try:
      prepared = predictor.prepare(views)
    except (ValueError, OSError) as e:
      logging.error("study %s skipped: %s", study_id, e)
      status.append((study_id, "error", str(e)))
      if len(studies) == 1:
        raise
      continue
    corr = predictor.predict_images(prepared.images[None])[0]
    _write_outputs(out_dir, predictor, views, prepared, corr, config)
    status.append((study_id, "ok", f"{len(views)} views"))
    logging.info("study %s: outputs in %s", study_id, out_dir)
  text = io_lib.StringIO()
  csv.writer(text).writerows([("study", "status", "message"), *status])
  files.atomic_write_text(os.path.join(workdir, "studies.csv"), text.getvalue())
  if config.export:
    path = export_lib.export(predictor, os.path.join(workdir, "export"),
                             n_views=len(studies[0][1]))
    logging.info("exported forward pass: %s", path)
  bad = [s for s in status if s[1] == "error"]
  if bad:
    logging.warning("%d of %d studies failed; see %s", len(bad), len(status),
                    os.path.join(workdir, "studies.csv"))
