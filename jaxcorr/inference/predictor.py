"""Many-to-many correspondences on a user's radiographs: `Predictor`.

  predictor = Predictor.from_checkpoint("/runs/finetune")        # or a pretraining run
  corr = predictor(["ap.dcm", "lat.png"])                         # [P, L, L], one study
  corr = predictor([["a1.dcm", "a2.dcm"], ["b1.png", "b2.png"]])  # [B, P, L, L], a batch
  pairs = predictor.matches(corr, predictor.prepare(["ap.dcm", "lat.png"]).boxes, top_k=20)

Input. Each view is a path (read by `jaxcorr.xray.io`) or a greyscale array [H, W] in [0, 1]
(bone bright), of any size: it is letterboxed (`jaxcorr.xray.letterbox`) to the model's input
(the training run's view size) and the letterbox is kept, so patch indices map back to original
pixels. A study has N >= 2 views; C has P = N (N - 1) / 2 pairs in the order (0, 1), (0, 2),
..., (1, 2), ..., rows indexing the first view's patches, columns the second's, patches
row-major over the model's h x w grid (L = h w). C is in [0, 1], as the labels: the outputs
of a head that can go negative (the plain 'cosine' head, in [-1, 1]) are clipped at 0 (a
negative similarity is no match), so corr.npy, matches and pictures never show C < 0; the
squared-cosine heads are in [0, 1] already and pass unchanged.

Compilation. The forward pass is jitted once per (batch_size, N, H, W): studies go through in
chunks of `batch_size` (the last one padded), so a batch run compiles once.

No contrast. A view whose grey levels as read (after the file's VOI LUT or window) span less
than `MIN_CONTRAST` between their 1st and 99th percentiles (a blank, constant or saturated
image) carries nothing to match, yet the model still scores its patches: `prepare` logs a
warning and flags it in `Prepared.low_contrast`, and the predict job marks every match that
involves it as unreliable.

Test-time augmentation (`tta=True`, `jaxcorr.inference.tta`): 8 passes with the other views
turned by each element of the dihedral group, mapped back and reduced (`tta_reduce`), which
makes C independent of the views' relative orientation (flips and quarter turns).
"""

from __future__ import annotations

import dataclasses
import functools

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from jaxcorr.core import checkpoints, files
from jaxcorr.core.choices import check_choice
from jaxcorr.inference import tta as tta_lib
from jaxcorr.models import build, transfer
from jaxcorr.projection.labels import pair_indices
from jaxcorr.xray import io as xray_io, letterbox as lb_lib

CORRESPONDENCE_JOBS = ("pretrain", "finetune")
# Views whose letterbox scales differ more than this are refused: a thumbnail next to a
# full-size radiograph usually means a wrong file, and their patches would not be comparable.
MAX_SCALE_RATIO = 8.0
# A view whose 1st-99th percentile grey levels span less than this (of [0, 1]) has no contrast.
MIN_CONTRAST = 0.02


def contrast(image) -> float:
  """The spread of an image's grey levels in [0, 1]: 99th minus 1st percentile."""
  lo, hi = np.percentile(np.asarray(image, np.float32), (1.0, 99.0))
  return float(hi - lo)


@dataclasses.dataclass
class Prepared:
  """One study ready for the model: images [N, H, W], and per view its letterbox, name, pixel
  spacing, the image as read (for pictures of the result) and whether it has no contrast (see
  the module docstring)."""
  images: np.ndarray
  boxes: list
  names: list
  spacings: list
  originals: list
  low_contrast: list = dataclasses.field(default_factory=list)


class Predictor:
  """A restored correspondence model with its input size; see the module docstring."""

  def __init__(self, model, variables, *, image_size, patch: int, tta: bool = False,
               tta_reduce: str = "mean", batch_size: int = 8, source: str = ""):
    check_choice("tta_reduce", tta_reduce, tta_lib.REDUCTIONS)
    self.model = model
    self.variables = variables
    self.image_size = tuple(int(s) for s in image_size)
    self.patch = int(patch)
    self.grid = (self.image_size[0] // self.patch, self.image_size[1] // self.patch)
    self.tta = tta
    self.tta_reduce = tta_reduce
    self.batch_size = int(batch_size)
    self.source = source

  @classmethod
  def from_checkpoint(cls, path: str, select="best", **kwargs) -> "Predictor":
    """The model of a pretraining or fine-tuning run (its workdir or a checkpoint directory);
    `select` picks a workdir's checkpoint: 'best', 'latest' or a step number
    (`jaxcorr.core.checkpoints`). The log and `source` name the checkpoint loaded."""
    config = files.run_config(path)
    if config.get("job") not in CORRESPONDENCE_JOBS:
      raise ValueError(f"{path} holds a {config.get('job')!r} run, not a correspondence model; "
                       "give the workdir of a pretraining or fine-tuning run")
    if config.job == "finetune":
      image_size, patch = tuple(config.image_size), config.patch
    else:
      image_size, patch = tuple(config.views.detector_size), config.labels.patch
    loaded = checkpoints.resolve(path, select)
    params, model_state, _ = transfer.read_checkpoint_params(path, select)
    model = build.build_model(config.model)
    return cls(model, {"params": params, **(model_state or {})}, image_size=image_size,
               patch=patch, source=loaded.directory, **kwargs)

  # Input -----------------------------------------------------------------------------------

  def prepare(self, views) -> Prepared:
    """Reads and letterboxes the views of one study."""
    if isinstance(views, (str, np.ndarray)) or len(views) < 2:
      raise ValueError(f"a study needs at least 2 views, got {_describe(views)}; pass a list "
                       "of 2 or more image paths or arrays")
    images, boxes, names, spacings, originals = [], [], [], [], []
    for n, view in enumerate(views):
      if isinstance(view, np.ndarray):
        image, name, spacing = np.asarray(view, np.float32), f"array {n}", None
        if image.ndim != 2:
          raise ValueError(f"view {n}: expected a greyscale image [H, W], got shape {image.shape}")
      else:
        xr = xray_io.read_radiograph(view)
        image, name, spacing = xr.image, str(view), xr.spacing
      box = lb_lib.Letterbox(image.shape, self.image_size)
      images.append(box.model_input(image))
      boxes.append(box)
      names.append(name)
      spacings.append(spacing)
      originals.append(image)
    scales = [b.scale for b in boxes]
    if max(scales) > MAX_SCALE_RATIO * min(scales):
      small = names[int(np.argmax(scales))]
      raise ValueError(f"views of very different sizes: {small} is {max(scales) / min(scales):.0f}x "
                       f"smaller than {names[int(np.argmin(scales))]}; pass full-size images "
                       "of the same study")
    low = [contrast(o) < MIN_CONTRAST for o in originals]
    for name, image, flat in zip(names, originals, low):
      if flat:
        logging.warning("%s: no contrast (grey levels span %.4f between the 1st and 99th "
                        "percentiles, under %g): a blank or saturated image; its matches are "
                        "unreliable", name, contrast(image), MIN_CONTRAST)
    return Prepared(np.stack(images), boxes, names, spacings, originals, low)

  # Forward ---------------------------------------------------------------------------------

  @functools.cached_property
  def _forward(self):
    def forward(variables, views):
      corr, _ = self.model.apply(variables, views[..., None], train=False)
      return corr
    return jax.jit(forward)

  def _run(self, images: np.ndarray) -> np.ndarray:
    """[B, N, H, W] model-sized images -> [B, P, L, L], in padded chunks of batch_size."""
    out = []
    for start in range(0, len(images), self.batch_size):
      chunk = images[start:start + self.batch_size]
      pad = self.batch_size - len(chunk)
      if pad:
        chunk = np.concatenate([chunk, np.repeat(chunk[:1], pad, 0)])
      out.append(np.asarray(self._forward(self.variables, jnp.asarray(chunk)))[:len(chunk) - pad])
    return np.concatenate(out)

  def predict_images(self, images) -> np.ndarray:
    """C in [0, 1] for model-sized images [B, N, H, W] (with test-time augmentation when
    enabled); see the module docstring for the clip."""
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[2:] != self.image_size:
      raise ValueError(f"expected images [B, N, {self.image_size[0]}, {self.image_size[1]}], "
                       f"got {images.shape}; use predictor(views) for images of any size")
    n = images.shape[1]
    if not self.tta:
      return np.clip(self._run(images), 0.0, 1.0)
    pairs = pair_indices(n)
    passes = tta_lib.passes(n, square=self.image_size[0] == self.image_size[1])
    outs = []
    for transforms in passes:
      turned = np.stack([np.stack([tta_lib.apply(v, t) for v, t in zip(study, transforms)])
                         for study in images])
      outs.append(tta_lib.unmap(self._run(turned), transforms, pairs, self.grid))
    corr = np.mean(outs, 0) if self.tta_reduce == "mean" else np.max(outs, 0)
    return np.clip(corr, 0.0, 1.0)

  def __call__(self, studies) -> np.ndarray:
    """C of one study ([P, L, L]) or of a list of studies ([B, P, L, L])."""
    single = _is_single_study(studies)
    batch = [studies] if single else list(studies)
    prepared = [self.prepare(s) for s in batch]
    sizes = {p.images.shape[0] for p in prepared}
    if len(sizes) != 1:
      raise ValueError(f"studies of a batch must have the same number of views, got {sorted(sizes)}")
    corr = self.predict_images(np.stack([p.images for p in prepared]))
    return corr[0] if single else corr

  # Output ----------------------------------------------------------------------------------

  def matches(self, corr: np.ndarray, boxes, *, threshold: float | None = None,
              top_k: int | None = None) -> list[dict]:
    """Patch pairs of one study's C [P, L, L], best first, as dicts with the pair (i, j), the
    patch indices, the score and both patch centres in original pixels (x, y).

    Keeps entries above `threshold` (if given), at most `top_k` (if given; all otherwise).
    Patches that lie wholly in a view's letterbox padding are never reported.
    """
    n = len(boxes)
    pairs = pair_indices(n)
    covered = [b.patch_coverage(self.patch) > 0 for b in boxes]
    rows = []
    for p, (i, j) in enumerate(pairs):
      c = np.where(covered[i][:, None] & covered[j][None, :], corr[p], -np.inf)
      a, b = np.nonzero(c > (threshold if threshold is not None else -np.inf))
      for ai, bi in zip(a, b):
        rows.append((float(corr[p, ai, bi]), p, int(ai), int(bi)))
    rows.sort(key=lambda r: (-r[0], r[1], r[2], r[3]))
    if top_k is not None:
      rows = rows[:top_k]
    out = []
    for score, p, a, b in rows:
      i, j = (int(v) for v in pairs[p])
      xa, ya = boxes[i].patch_center(a, self.patch)
      xb, yb = boxes[j].patch_center(b, self.patch)
      out.append({"pair": p, "view_i": i, "view_j": j, "patch_i": a, "patch_j": b,
                  "score": score, "x_i": float(xa), "y_i": float(ya), "x_j": float(xb),
                  "y_j": float(yb)})
    return out


def _is_single_study(studies) -> bool:
  if isinstance(studies, np.ndarray):
    return studies.ndim == 3
  if isinstance(studies, (str, bytes)):
    return True
  return len(studies) > 0 and all(isinstance(v, (str, np.ndarray)) or hasattr(v, "__fspath__")
                                  for v in studies) and not (
      isinstance(studies[0], np.ndarray) and studies[0].ndim == 3)


def _describe(views) -> str:
  if isinstance(views, (str, np.ndarray)):
    return f"a single view ({views if isinstance(views, str) else views.shape})"
  return f"{len(views)} view(s)"
