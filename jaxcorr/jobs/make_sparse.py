"""The `make_sparse` job: a real-like benchmark with known truth, in the user's file formats.

There is no public set of real radiograph pairs with correspondence labels, so this job makes
one from CTs, as a user would bring it: for every volume, `sparse.studies_per_volume` studies
of N views drawn by the pretraining view sampler, rendered with an intensity model unlike
training's (physical attenuation, `config.intensity`) and a fixed radiograph appearance
(`jaxcorr.data.appearance.REALISTIC`: transmission, quantum noise, scatter, heel effect,
CR-like window and edge enhancement), upsampled `sparse.upsample` times (radiographs are
larger than the model's input, so the letterbox really maps), and written as files:

  <workdir>/images/<study>/view0.dcm     MONOCHROME1, 10-bit CR with its pixel spacing
  <workdir>/images/<study>/view<n>.png   16-bit PNG (n >= 1)
  <workdir>/previews/<study>.png         the views side by side, windowed to 8 bits, to look at
  <workdir>/truth/<study>.npy            the exact C [P, L, L] of the model's patch grid
  <workdir>/annotations.jsonl            the sparse annotations (docs/annotations.md)

Annotations, per view pair: `sparse.positives` pairs of points in patches whose exact C is
above `sparse.positive_min` (0.2, the metrics' positive threshold), and `sparse.negatives` pairs in patches with C at most
`sparse.negative_max`, each point a uniformly random pixel of its patch (as a person clicks
somewhere in a structure), in original pixels. `patient` is the CT, so fine-tuning splits by
CT. Resumable: a study is complete when its line file `studies/<study>.json` exists (written
last); `annotations.jsonl` is rebuilt from the complete studies at the end. A CT skipped with
ct.on_error='skip' is listed with the reason in `<workdir>/skipped.json`.
"""

from __future__ import annotations

import glob
import json
import os

import jax
import numpy as np
from absl import logging

from jaxcorr.core import files
from jaxcorr.data import appearance, from_config, sampler, samples, splits as splits_lib, volumes
from jaxcorr.pictures import style, viz
from jaxcorr.projection.labels import pair_indices
from jaxcorr.xray import io as xray_io


_look = jax.jit(appearance.fixed)   # compiled once, not dispatched op by op per study


def _upsample(image: np.ndarray, m: int) -> np.ndarray:
  from PIL import Image  # pylint: disable=import-outside-toplevel
  h, w = image.shape
  return np.asarray(Image.fromarray(image.astype(np.float32), mode="F").resize(
      (w * m, h * m), Image.BILINEAR))


def _click_points(rng: np.random.Generator, patches: np.ndarray, grid, patch: int,
                 m: int) -> np.ndarray:
  """Random original-pixel points (x, y) [K, 2] inside the given model patches [K].

  A model pixel point q maps to the original point (q + 0.5) m - 0.5 (the letterbox with
  scale 1 / m and no padding); q is uniform over the patch's pixel area.
  """
  _, gw = grid
  rows, cols = patches // gw, patches % gw
  q = np.stack([cols, rows], -1) * patch - 0.5 + rng.uniform(0, patch, (len(patches), 2))
  return np.floor(((q + 0.5) * m - 0.5) * 10) / 10   # 0.1 px, never past the last pixel


def _sample_pairs(rng, corr: np.ndarray, *, positives: int, negatives: int,
                 positive_min: float, negative_max: float):
  """[(p, a, b, label)] entries of C [P, L, L] drawn without replacement per pair."""
  out = []
  for p in range(corr.shape[0]):
    for label, want, ok in ((1, positives, corr[p] > positive_min),
                            (0, negatives, corr[p] <= negative_max)):
      a, b = np.nonzero(ok)
      take = rng.choice(len(a), size=min(want, len(a)), replace=False) if len(a) else []
      out.extend((p, int(a[t]), int(b[t]), label) for t in take)
  return out


def _write_study(workdir, study, name, images, corr, recipe_spacing, config, rng):
  s = config.sparse
  m = int(s.upsample)
  folder = os.path.join(workdir, "images", study)
  os.makedirs(folder, exist_ok=True)
  views = []
  for n, image in enumerate(images):
    big = np.clip(_upsample(image, m), 0.0, 1.0)
    if n == 0:
      rel = f"images/{study}/view0.dcm"
      xray_io.write_dicom(os.path.join(workdir, rel), big, spacing=(recipe_spacing / m,) * 2,
                          photometric="MONOCHROME1", bits_stored=10, modality="CR",
                          patient_id=os.path.basename(name),
                          body_part=s.body_part.upper()[:16])   # DICOM CS: upper case
    else:
      rel = f"images/{study}/view{n}.png"
      xray_io.write_png(os.path.join(workdir, rel), big, bits=16)
    views.append(rel)
  style.save(os.path.join(workdir, "previews", f"{study}.png"), viz.views_preview(
      images, [os.path.basename(v) for v in views],
      f"{study}: the views as written, each windowed to 8 bits for the screen"))
  files.atomic_save_npy(os.path.join(workdir, "truth", f"{study}.npy"), corr)
  k = config.labels.patch
  grid = (images.shape[1] // k, images.shape[2] // k)
  pairs = pair_indices(len(images))
  entries = _sample_pairs(rng, corr, positives=s.positives, negatives=s.negatives,
                         positive_min=s.positive_min, negative_max=s.negative_max)
  clicks = []
  for p, a, b, label in entries:
    i, j = (int(v) for v in pairs[p])
    pa = _click_points(rng, np.array([a]), grid, k, m)[0]
    pb = _click_points(rng, np.array([b]), grid, k, m)[0]
    clicks.append({"a": [i, float(pa[0]), float(pa[1])], "b": [j, float(pb[0]), float(pb[1])],
                   "label": label})
  line = {"study": study, "patient": os.path.basename(name), "body_part": s.body_part,
          "views": views, "pairs": clicks}
  files.atomic_write_text(os.path.join(workdir, "studies", f"{study}.json"), json.dumps(line))


def run(config, workdir: str) -> None:
  files.prepare_workdir(config, workdir)
  for sub in ("images", "truth", "studies", "previews"):
    os.makedirs(os.path.join(workdir, sub), exist_ok=True)
  names = splits_lib.list_volumes(config)
  framing = from_config.framing(config)
  look = appearance.REALISTIC
  done, skipped = 0, []
  for v, name in enumerate(names):
    studies = [f"{os.path.basename(name).split('.')[0].replace(':', '')}_{t:03d}"
               for t in range(config.sparse.studies_per_volume)]
    todo = [s for s in studies
            if not os.path.exists(os.path.join(workdir, "studies", f"{s}.json"))]
    if not todo:
      continue
    entries = from_config.load_entries([name], config, skipped)
    if not entries:   # skipped (ct.on_error='skip')
      continue
    bank = volumes.stack(entries)
    dev = samples.bank_arrays(bank, from_config.volume_dtype(config))
    maker = from_config.recipe_maker(config, bank)
    for t, study in enumerate(studies):
      if study not in todo:
        continue
      rng = np.random.default_rng([config.seed, v, t])
      recipe = maker({"volume": 0}, rng)
      rec = {k: np.asarray(recipe[k])[None] for k in samples.RECIPE_KEYS}   # a batch of one
      lines, corr = samples.render_batch(dev, rec, framing=framing,
                                         threshold=config.labels.threshold,
                                         projector=from_config.projector(config))
      images = np.asarray(_look(lines[0], look, jax.random.key(int(recipe["seed"]))))
      corr = corr[0]
      spacing = float(_framing_spacing(recipe, bank, framing))
      _write_study(workdir, study, name, images, np.asarray(corr, np.float32), spacing, config,
                   rng)
      done += 1
    logging.info("volume %d/%d (%s): %d studies", v + 1, len(names), name, len(studies))
  splits_lib.write_skipped(workdir, skipped)
  lines = [files.read_json(p) for p in sorted(glob.glob(os.path.join(workdir, "studies",
                                                                     "*.json")))]
  files.atomic_write_text(os.path.join(workdir, "annotations.jsonl"),
                           "".join(json.dumps(line) + "\n" for line in lines))
  logging.info("%d new studies; %d in %s", done, len(lines),
               os.path.join(workdir, "annotations.jsonl"))


def _framing_spacing(recipe, bank, framing) -> float:
  """Detector pixel spacing (mm) of view 0 of a recipe, as rendered: its `detector_mm` (the
  authors' preset, anatomy framing) or the cube's fit, times `fov_scale`."""
  views = sampler.views_from_params({k: recipe[k] for k in sampler.GEOMETRY_KEYS},
                                    extent_mm=float(bank.extent[0]),
                                    detector_size=tuple(framing.detector_size),
                                    fov_scale=framing.fov_scale, orbit=framing.orbit)
  return float(np.linalg.norm(np.asarray(views.det_u)[0]))
