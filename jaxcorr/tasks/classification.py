"""Multi-view study classification (the paper's Table 3): a fusion ViT (or the ResNet baseline,
model.backbone='resnet', whose BatchNorm statistics are the model state), BCE, AdamW.

Data (`config.studies.source`):
  'fractures'  the CT-derived fracture benchmark (`make_fractures` job's shards in
               `config.data.shards`): views are DRR line integrals, normalised per view on the
               device; the exact C of the views rides along for attention guidance.
  'mura'       the MURA layout under `studies.path` (`data.studies.read_mura`): MURA's 'train'
               split by patient into train / validation, MURA's 'valid' as the test split.
  'csv'        a user's studies (`data.studies.read_study_csv`), split by patient 70/10/20.
Image studies are read once (`xray.io`), letterboxed to `image_size` and kept in memory.

C for guidance (`config.corr.source`): 'exact' (fracture records), 'model' (a frozen
correspondence model from `corr.checkpoint`, run on each batch on the device), 'npy' (image
studies: `<view_1 without its suffix>.corr.npy` beside the first view, C [P, L, L] on the
classifier's patch grid, e.g. a predict job's corr.npy), 'none'.

Batch: views float32 [B, N, H, W, 1] in [0, 1], label float32 [B], corr [B, P, L, L] (or a
[B, 1, 1, 1] placeholder), id int32 [B] (record index within the split).
Evaluation collects the probabilities of a split in order and scores them with
`jaxcorr.metrics.classification` at a threshold chosen on the validation split.
"""

from __future__ import annotations

import copy
import functools
import os

import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from jaxcorr.core import choices, files, sharding
from jaxcorr.data import fractures, pipeline, radiometric, records, studies as studies_lib
from jaxcorr.inference.predictor import Predictor
from jaxcorr.metrics import classification as cm
from jaxcorr.models import (build, classifier, correspondence, resnet as resnet_lib, transfer,
                            vit as vit_lib)
from jaxcorr.pictures import classifier as classifier_figures
from jaxcorr.tasks import base as task_lib
from jaxcorr.xray import io as xray_io, letterbox

SOURCES = ("fractures", "mura", "csv")
CORR_SOURCES = ("exact", "model", "npy", "none")


# The paper's Table-3 rows as config overrides ('{pretrained}' is config.pretrained).
ROWS = {
    "single": {"model.fusion": "single", "model.guidance": "none", "init_from": ""},
    "late": {"model.fusion": "late", "model.guidance": "none", "init_from": ""},
    "early": {"model.fusion": "early", "model.guidance": "none", "init_from": ""},
    "early_pretrained": {"model.fusion": "early", "model.guidance": "none",
                         "init_from": "{pretrained}"},
    "early_guided": {"model.fusion": "early", "model.guidance": "layer",
                     "init_from": "{pretrained}"},
}


def apply_row(config, row: str):
  """A copy of `config` with the settings of Table-3 row `row`."""
  choices.check_choice("row", row, ROWS)
  out = copy.deepcopy(config)
  for key, value in ROWS[row].items():
    if value == "{pretrained}":
      if not config.pretrained:
        raise ValueError(f"row {row!r} starts from correspondence pretraining: set "
                         "config.pretrained to a pretraining workdir "
                         "(configs/pretrain.py:tiny_vit or :vit)")
      value = config.pretrained
    out.update_from_flattened_dict({key: value})
  return out


def _fracture_sample(record: bytes, with_corr: bool, image_size=(0, 0)) -> dict:
  """A fracture record as a sample; views rendered larger than `image_size` are averaged down
  to it (`fractures.downsample`, as the make_fractures visibility count does)."""
  r = fractures.decode(record)
  views = np.asarray(r["views"], np.float32)
  if with_corr and tuple(views.shape[-2:]) != tuple(image_size):
    raise ValueError(f"fracture views of {views.shape[-2:]} for a {tuple(image_size)} model: "
                     "the exact C is on the rendered patch grid; render at image_size "
                     "(views.detector_size) or set corr.source='none'")
  corr = np.asarray(r["corr"], np.float32) if with_corr else np.zeros((1, 1, 1), np.float32)
  return {"views": fractures.downsample(views, image_size).astype(np.float32),
          "label": np.float32(r["label"]), "corr": corr}


def corr_path(view_path: str) -> str:
  """Where corr.source='npy' looks for a study's C: beside its first view."""
  return os.path.splitext(str(view_path))[0] + ".corr.npy"


def _image_sample(study, image_size, patch: int, with_npy: bool = False) -> dict:
  views = []
  for path in study.paths:
    xr = xray_io.read_radiograph(path)
    views.append(letterbox.Letterbox(xr.image.shape, image_size).model_input(xr.image))
  corr = np.zeros((1, 1, 1), np.float32)
  if with_npy:
    path = corr_path(study.paths[0])
    if not os.path.exists(path):
      raise FileNotFoundError(f"study {study.study_id}: {path} is missing; corr.source='npy' "
                              "reads C [P, L, L] beside the first view (or use 'model')")
    n, (h, w) = len(study.paths), image_size
    want = (n * (n - 1) // 2, (h // patch) * (w // patch), (h // patch) * (w // patch))
    corr = np.load(path).astype(np.float32)
    if corr.shape != want:
      raise ValueError(f"{path}: C has shape {corr.shape}, expected {want} for {n} views of "
                       f"{h} x {w} with {patch}-pixel patches")
  return {"views": np.stack(views), "label": np.float32(study.label), "corr": corr}


class _Indexed:
  """A random-access source of samples (record index attached)."""

  def __init__(self, get, n):
    self._get, self._n = get, n

  def __len__(self):
    return self._n

  def __getitem__(self, i):
    return {**self._get(int(i)), "id": np.int32(i)}


class ClassificationTask(task_lib.Task):
  """Study-level binary classification with the one training loop."""

  def __init__(self, config, workdir: str | None, mesh):
    self.config = config
    self.mesh = mesh
    m = dict(config.model)
    m["dtype"] = choices.dtype("config.model.dtype", m["dtype"])
    self.model = classifier.FusionClassifier(**m)
    self.image_size = tuple(int(s) for s in config.image_size)
    choices.check_choice("config.studies.source", config.studies.source, SOURCES)
    choices.check_choice("config.corr.source", config.corr.source, CORR_SOURCES)
    if config.model.guidance != "none" and config.corr.source == "none":
      raise ValueError("config.model.guidance needs a correspondence matrix: set "
                       "config.corr.source to 'exact' (fracture data), 'model' or 'npy'")
    if (config.corr.source == "model" and config.model.guidance != "none"
        and not config.corr.checkpoint):
      raise ValueError("config.corr.source='model' needs config.corr.checkpoint: a "
                       "correspondence pretraining or fine-tuning workdir whose model gives C")
    if config.corr.source == "npy" and config.studies.source == "fractures":
      raise ValueError("config.corr.source='npy' is for image studies; the fracture records "
                       "carry the exact C (corr.source='exact')")
    if config.corr.source == "exact" and config.studies.source != "fractures":
      raise ValueError("config.corr.source='exact' needs CT-derived data "
                       "(studies.source='fractures'); use 'model' for radiographs")
    self.workdir = workdir
    self._sources = {}
    self.study_ids = {}    # split -> study ids, for image studies (record order)
    self._batch_sharding = sharding.batch_sharding(mesh)
    n, (h, w) = config.model.max_views, self.image_size
    self.n_views = n
    backbone = config.model.get("backbone", "vit")
    if backbone == "resnet":
      choices.check_choice("config.model.resnet", config.model.resnet, resnet_lib.RESNETS)
      if config.init_from or config.init_timm:
        raise ValueError("config.init_from / init_timm load a ViT backbone; the ResNet baseline "
                         "(model.backbone='resnet') trains from scratch: leave them empty")
      self.patch = resnet_lib.resnet(config.model.resnet).stride
    elif backbone == "correspondence":
      choices.check_choice("config.model.corr_size", config.model.corr_size, build.SIZES)
      if config.init_timm:
        raise ValueError("config.init_timm loads a ViT; model.backbone='correspondence' starts "
                         "from a correspondence pretraining run (config.init_from) or scratch")
      self.patch = correspondence.backbone_stride(build.SIZES[config.model.corr_size]["backbone"])
    else:
      self.patch = vit_lib.VITS[config.model.vit]["patch"]
    self.grid = (h // self.patch, w // self.patch)

  # Data ------------------------------------------------------------------------------------

  def source(self, split: str) -> _Indexed:
    if split in self._sources:
      return self._sources[split]
    c = self.config
    with_corr = c.corr.source == "exact"
    if c.studies.source == "fractures":
      data = grain.sources.ArrayRecordDataSource(
          records.shard_paths(c.data.shards, split, job="make_fractures"))
      src = _Indexed(lambda i: _fracture_sample(data[i], with_corr, self.image_size), len(data))
    else:
      studies = self._image_studies(split)
      cache = [_image_sample(s, self.image_size, self.patch, c.corr.source == "npy")
               for s in studies]
      self.study_ids[split] = [s.study_id for s in studies]
      src = _Indexed(lambda i: cache[i], len(cache))
    logging.info("%s: %d studies", split, len(src))
    self._sources[split] = src
    return src

  def _image_studies(self, split: str):
    s = self.config.studies
    if s.source == "mura":
      if split == "test":
        return studies_lib.read_mura(s.path, "valid", body_parts=tuple(s.body_parts),
                                     n_views=self.n_views)
      train = studies_lib.read_mura(s.path, "train", body_parts=tuple(s.body_parts),
                                    n_views=self.n_views)
      parts = studies_lib.split_by_patient(train, 0.1, self.config.seed)
      return parts[0] if split == "train" else parts[1]
    every = studies_lib.read_study_csv(s.path, n_views=self.n_views)
    rest, test = studies_lib.split_by_patient(every, 0.2, self.config.seed)
    train, val = studies_lib.split_by_patient(rest, 0.125, self.config.seed)
    return {"train": train, "validation": val, "test": test}[split]

  def _dataset(self, split: str, *, train: bool, batch_size: int):
    ds = grain.MapDataset.source(self.source(split))
    if train:
      ds = ds.seed(self.config.seed).shuffle().repeat()
    ds = ds.random_map(lambda r, rng: {**r, "seed": np.uint32(
        rng.integers(0, 2 ** 32, dtype=np.uint64))}) if train else ds.map(
            lambda r: {**r, "seed": np.uint32(0)})
    if train:
      ds = ds[jax.process_index()::jax.process_count()]
    ds = ds.batch(batch_size // (jax.process_count() if train else 1), drop_remainder=train)
    return ds.to_iter_dataset(grain.ReadOptions(num_threads=self.config.data.threads,
                                                prefetch_buffer_size=2))

  @functools.cached_property
  def _corr_model(self):
    """(model, variables) of the frozen correspondence model for corr.source='model'."""
    p = Predictor.from_checkpoint(self.config.corr.checkpoint)
    if p.image_size != self.image_size:
      raise ValueError(f"config.corr.checkpoint={self.config.corr.checkpoint!r} predicts "
                       f"{p.image_size} inputs but the classifier takes {self.image_size}")
    return p.model, jax.device_put(p.variables, sharding.replicated(self.mesh))

  def finish(self, batch: dict, train: bool) -> dict:
    rad = self.config.augment.radiometric
    aug = (radiometric.Radiometric(**{k: v for k, v in rad.items() if k != "enabled"})
           if train and rad.enabled else None)
    # Only a guided model reads C: the other rows of a sweep skip the correspondence model.
    corr_model = (self._corr_model if self.config.corr.source == "model"
                  and self.config.model.guidance != "none" else None)
    return _finish(batch, normalise=self.config.studies.source == "fractures",
                   augmentation=aug, corr_model=corr_model)

  def train_batches(self):
    c = self.config
    if c.batch_size % self.mesh.size:
      raise ValueError(f"config.batch_size={c.batch_size} must be a multiple of the "
                       f"{self.mesh.size} devices")
    return pipeline.Batches(self._dataset("train", train=True, batch_size=c.batch_size),
                            functools.partial(self.finish, train=True),
                            sharding=self._batch_sharding, keys=("views", "label", "corr", "seed"))

  def batch_spec(self) -> dict:
    b, n, (h, w) = self.config.batch_size, self.n_views, self.image_size
    p, l = n * (n - 1) // 2, self.grid[0] * self.grid[1]
    corr = (b, p, l, l) if self.config.corr.source != "none" else (b, 1, 1, 1)
    return {"views": jax.ShapeDtypeStruct((b, n, h, w, 1), jnp.float32),
            "label": jax.ShapeDtypeStruct((b,), jnp.float32),
            "corr": jax.ShapeDtypeStruct(corr, jnp.float32)}

  # Model -----------------------------------------------------------------------------------

  def _apply(self, params, model_state, batch, train=False):
    """(logits, aux), and the updated model state (BatchNorm statistics) when training."""
    corr = batch["corr"] if self.config.model.guidance != "none" else None
    variables = {"params": params, **(model_state or {})}
    if train and model_state:
      (logits, aux), new_state = self.model.apply(variables, batch["views"], corr, train=True,
                                                  mutable=list(model_state))
      return (logits, aux), dict(new_state)
    return self.model.apply(variables, batch["views"], corr, train=False), model_state

  def init_variables(self, rng, batch):
    corr = batch["corr"] if self.config.model.guidance != "none" else None
    return self.model.init({"params": rng}, batch["views"], corr, train=False)

  def restore_init(self, params, model_state):
    c = self.config
    if not (c.init_from or c.init_timm):
      return params, model_state
    path = c.init_from or c.init_timm
    select = c.get("which_checkpoint", "best")
    if c.model.get("backbone", "vit") == "correspondence":   # the whole pretrained model
      params, model_state, report = transfer.load_model(params, model_state, path, select=select)
    else:
      params, report = transfer.load_backbone(params, path, select=select)
    logging.info("backbone initialised from %s:\n%s", path, report.format())
    if self.workdir:
      files.write_json(os.path.join(self.workdir, "init_report.json"), report.to_dict())
    return params, model_state

  def loss_fn(self, params, model_state, batch, rng, *, train=True):
    del rng
    (logits, _), model_state = self._apply(params, model_state, batch, train)
    loss = jnp.mean(optax.sigmoid_binary_cross_entropy(logits, batch["label"]))
    acc = jnp.mean((logits > 0) == (batch["label"] > 0.5))
    return loss, ({"accuracy": acc}, model_state)

  @functools.cached_property
  def _predict(self):
    return jax.jit(lambda params, model_state, batch: self._apply(params, model_state, batch)[0])

  def predict_split(self, params, split: str, *, keep_attention: bool = False, model_state=None):
    """(probabilities [S], labels [S], attention or None) of every study of a split, in order;
    `model_state` holds the ResNet's BatchNorm statistics (none for the ViT)."""
    probs, labels, attention = [], [], []
    bs = self.config.eval.batch_size
    for host in self._dataset(split, train=False, batch_size=bs):
      n = len(host["label"])
      if n < bs:   # pad the last batch to the compiled size
        host = {k: np.concatenate([v, np.repeat(v[:1], bs - n, 0)]) for k, v in host.items()}
      batch = self.finish(sharding.replicate(host, self.mesh), train=False)
      logits, aux = self._predict(params, model_state or {}, batch)
      probs.append(sharding.to_host(jax.nn.sigmoid(logits))[:n])
      labels.append(np.asarray(host["label"])[:n])
      if keep_attention:
        attention.append(sharding.to_host(aux["attention"])[:n])
    return (np.concatenate(probs), np.concatenate(labels),
            np.concatenate(attention) if keep_attention else None)

  def evaluate(self, params, model_state, split: str = "validation") -> dict:
    probs, labels, attention = self.predict_split(params, split, keep_attention=True,
                                                  model_state=model_state)
    threshold = cm.choose_threshold(probs, labels)
    self._last_eval = (split, probs, labels, attention, threshold)
    return cm.binary_metrics(probs, labels, threshold)

  def display_views(self, split: str, indices, attention):
    """(views [N, V, H, W] in [0, 1] as the model sees them, attention [N, A, h, w]) of the
    studies `indices` of a split, from predict_split's attention [S, V, heads, h, w] (heads
    averaged; A = 1 for the single-view model, which attends to view 0 only)."""
    src = self.source(split)
    views = []
    for i in indices:
      v = np.asarray(src[int(i)]["views"], np.float32)
      if self.config.studies.source == "fractures":   # line integrals: normalised per view
        lo, hi = v.min(axis=(1, 2), keepdims=True), v.max(axis=(1, 2), keepdims=True)
        v = (v - lo) / np.where(hi > lo, hi - lo, 1.0)
      views.append(v)
    att = np.asarray(attention)[np.asarray(indices, int)].mean(axis=2)
    if self.config.model.fusion == "single":
      att = att[:, :1]
    return np.stack(views), att

  def fracture_points(self, split: str, indices):
    """[n, V, 2] (column, row) of the fracture point in each view of the studies `indices` at
    the model's input size (NaN for intact studies), or None for image studies."""
    if self.config.studies.source != "fractures":
      return None
    data = grain.sources.ArrayRecordDataSource(
        records.shard_paths(self.config.data.shards, split, job="make_fractures"))
    out = []
    for i in indices:
      r = fractures.decode(data[int(i)])
      scale = np.asarray(self.image_size[::-1], np.float64) / r["views"].shape[:0:-1]
      out.append((np.asarray(r["fracture_px"], np.float64) + 0.5) * scale - 0.5)
    return np.stack(out)

  def eval_images(self, count: int = 2) -> dict:
    """The last evaluation's confusion matrix (at the threshold it chose) and the class-token
    attention over the first `count` studies (`jaxcorr.pictures.classifier`)."""
    if getattr(self, "_last_eval", None) is None:
      return {}
    split, probs, labels, attention, threshold = self._last_eval
    shown = np.arange(min(count, len(probs)))
    views, att = self.display_views(split, shown, attention)
    ids = self.study_ids.get(split) or list(range(len(probs)))
    return {
        "confusion": np.asarray(classifier_figures.confusion_figure(
            labels, probs, threshold,
            caption=f"{split}: confusion matrix at threshold {threshold:.2f} (row percentages)")),
        "attention": np.asarray(classifier_figures.attention_figure(
            views, att, labels[shown], probs[shown], threshold, ids=[ids[i] for i in shown],
            points=self.fracture_points(split, shown)))}


@functools.partial(jax.jit, static_argnames=("normalise", "augmentation", "corr_model"))
def _finish_jit(batch, corr_vars, *, normalise, augmentation, corr_model):
  views = batch["views"]
  if normalise:
    views = radiometric.normalize(views)
  if augmentation is not None:
    keys = jax.vmap(jax.random.key)(batch["seed"])
    views = jax.vmap(augmentation)(views, keys)
  out = {"views": views[..., None], "label": batch["label"], "corr": batch["corr"]}
  if corr_model is not None:
    corr, _ = corr_model.apply(corr_vars, radiometric.normalize(batch["views"])[..., None]
                               if normalise else batch["views"][..., None], train=False)
    out["corr"] = jax.lax.stop_gradient(corr)
  return out


def _finish(batch, *, normalise, augmentation, corr_model):
  model, variables = corr_model if corr_model is not None else (None, None)
  keep = {k: batch[k] for k in ("views", "label", "corr", "seed")}
  return _finish_jit(keep, variables, normalise=normalise, augmentation=augmentation,
                     corr_model=model)
