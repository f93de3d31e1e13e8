"""Correspondence pretraining (paper, section 3.2): predict C between all view pairs, MSE loss.

Data come from the volume bank of each split (`jaxcorr.data.from_config`) rendered on the fly, or
from a generate job's shards (`data.mode='offline'`). The loss is the mean squared error between the
predicted scores and the labels, optionally weighting the rare positive entries (C > 0.2) by
`loss.pos_weight` (> 1 raises recall at the cost of precision; 1 is the paper's plain MSE; the
default 10 won held-out AP, docs/benchmarks.md).
Evaluation runs the model (train=False) on a fixed set of validation samples (no augmentation,
a fixed seed, `eval.batches` batches) and reports MSE, precision, recall and AP
(`jaxcorr.metrics.correspondence`).

Initialisation: random, or with `model.init_torchvision=PATH` the ResNet backbone from a
torchvision state dict (`transfer.load_torchvision_backbone`, on a fresh start only): the log
and `<workdir>/init_report.json` say what was loaded (with shapes), what kept its random
initialisation and which source tensors went unused, as the classifier's `init_timm` does.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from jaxcorr.core import files, sharding
from jaxcorr.data import (device_recipes, from_config, pipeline, records, samples,
                          splits as splits_lib, validation)
from jaxcorr.metrics import correspondence as metrics
from jaxcorr.models import build, correspondence as corr_models, transfer
from jaxcorr.pictures import curves, viz
from jaxcorr.tasks import base as task_lib


def mse_loss(pred: jnp.ndarray, target: jnp.ndarray, pos_weight: float = 1.0) -> jnp.ndarray:
  """Mean of w (pred - target)^2 with w = pos_weight on entries where target > 0.2, else 1."""
  w = jnp.where(target > metrics.THRESHOLD, pos_weight, 1.0)
  return jnp.mean(w * jnp.square(pred.astype(jnp.float32) - target))


def _check_patch(config) -> None:
  """The labels' patch must be the backbone's stride (one token per labelled patch); a
  validation.ConfigError naming both fields otherwise (main prints it without a traceback)."""
  backbone = config.model.get("backbone")
  if not backbone or config.model.get("kind", "correspondence") != "correspondence":
    return
  stride = corr_models.make_backbone(backbone)[0].stride
  if config.labels.patch != stride:
    raise validation.ConfigError(
        f"bad config (nothing was run):\n  config.labels.patch={config.labels.patch}: the "
        f"backbone model.backbone={backbone!r} makes one token per {stride} x {stride} pixels; "
        f"set labels.patch={stride} (labels and tokens must describe the same patches)")


class CorrespondenceTask(task_lib.Task):
  """The pretraining task."""

  def __init__(self, config, workdir: str, mesh):
    self.config = config
    self.workdir = workdir
    self.mesh = mesh
    self.model = build.build_model(config.model)
    _check_patch(config)
    self._batch_sharding = sharding.batch_sharding(mesh)
    self._workdir = workdir
    self._splits = (splits_lib.load_or_assign(config, workdir)
                    if config.data.mode == "on_the_fly" else None)
    self._banks = {}
    self._train = None
    self.skipped = []   # (CT, reason) of the CTs skipped so far (ct.on_error='skip')

  # Data ------------------------------------------------------------------------------------

  # Why a split must hold a volume, for the error when it holds none.
  _NEEDED_BY = {"train": "training draws its samples from it",
                "validation": "training evaluates on it every eval_every steps and at the end",
                "test": "the evaluate job scores it"}

  def _bank(self, split: str):
    if split not in self._banks:
      splits_lib.require(self._splits, split, self.config, self._workdir, self._NEEDED_BY[split])
      bank = from_config.build_bank(self._splits[split], self.config, self.skipped,
                                    label=f"split {split!r}")
      logging.info("%s bank: %d volumes of %s^3", split, len(bank), bank.images.shape[1])
      dev = samples.bank_arrays(bank, from_config.volume_dtype(self.config))
      dev = jax.device_put(dev, sharding.replicated(self.mesh))
      bank.images = None  # on the device now; the host keeps only what recipes need
      self._banks[split] = (bank, dev)
    return self._banks[split]

  def batches(self, split: str, *, seed: int, train: bool, batch_size: int):
    """Finished global batches of one split (augmented when `train`)."""
    c = self.config
    if batch_size % self.mesh.size:
      field = "batch_size" if train else "eval.batch_size"
      raise ValueError(f"config.{field}={batch_size} must be a multiple of the {self.mesh.size} "
                       "devices of the mesh (each device takes an equal share)")
    common = dict(seed=seed, batch_size=batch_size, threads=c.data.threads,
                  prefetch=c.data.prefetch, workers=c.data.workers if train else 0, process_index=jax.process_index(),
                  process_count=jax.process_count())
    if c.data.mode == "offline":
      ds = pipeline.make_dataset(mode="offline", shards=records.shard_paths(c.data.shards, split),
                                 **common)
      bank, render, spec = None, False, None
    else:
      host_bank, bank = self._bank(split)
      spec = from_config.device_recipe_spec(c)
      maker = (from_config.recipe_maker(c, host_bank) if spec is None
               else device_recipes.seeds_only)
      ds = pipeline.make_dataset(mode="on_the_fly", recipe_maker=maker,
                                 n_volumes=len(host_bank), **common)
      render = True
    return pipeline.DeviceBatches(ds, bank=bank, framing=from_config.framing(c),
                                  threshold=c.labels.threshold,
                                  augmentation=from_config.augmentation(c, train), render=render,
                                  sharding=self._batch_sharding,
                                  projector=from_config.projector(c), recipes=spec)

  def train_batches(self):
    # The evaluation data first, so an empty or unreadable validation split stops the run
    # before its first step rather than at its first evaluation.
    if self.config.data.mode == "offline":
      records.shard_paths(self.config.data.shards, "validation")
    else:
      self._bank("validation")
    self._train = self.batches("train", seed=self.config.seed, train=True,
                               batch_size=self.config.batch_size)
    return self._train

  def log_stats(self) -> dict:
    """The running count of view draws rejected by the coverage check (on the fly only)."""
    return {} if self._train is None else {"rejected_samples": self._train.rejected}

  def batch_spec(self) -> dict:
    c = self.config
    n = c.views.n_views
    h, w = (int(s) for s in c.views.detector_size)
    p = n * (n - 1) // 2
    length = (h // c.labels.patch) * (w // c.labels.patch)
    b = c.batch_size
    return {"views": jax.ShapeDtypeStruct((b, n, h, w, 1), jnp.float32),
            "corr": jax.ShapeDtypeStruct((b, p, length, length), jnp.float32)}

  # Model -----------------------------------------------------------------------------------

  def init_variables(self, rng, batch):
    return self.model.init({"params": rng}, batch["views"], train=False)

  def restore_init(self, params, model_state):
    """The backbone from `model.init_torchvision` when given (see the module docstring)."""
    path = self.config.model.get("init_torchvision", "")
    if not path:
      return params, model_state
    params, model_state, report = transfer.load_torchvision_backbone(
        params, model_state, path, backbone=self.config.model.backbone)
    logging.info("backbone initialised from %s:\n%s", path, report.format())
    if self.workdir:
      files.write_json(os.path.join(self.workdir, "init_report.json"), report.to_dict())
    return params, model_state

  def loss_fn(self, params, model_state, batch, rng, *, train=True):
    del rng  # the model has no dropout
    variables = {"params": params, **model_state}
    (pred, _), new_state = self.model.apply(variables, batch["views"], train=train,
                                            mutable=list(model_state.keys()))
    loss = mse_loss(pred, batch["corr"], self.config.loss.pos_weight)
    return loss, ({"mse": jnp.mean(jnp.square(pred - batch["corr"]))}, dict(new_state))

  @functools.cached_property
  def _predict(self):
    def predict(params, model_state, views):
      pred, _ = self.model.apply({"params": params, **model_state}, views, train=False)
      return pred
    return jax.jit(predict)

  def predict(self, params, model_state, views):
    return self._predict(params, model_state, views)

  def evaluate(self, params, model_state, split: str = "validation") -> dict:
    c = self.config
    batches = self.batches(split, seed=c.eval.seed, train=False, batch_size=c.eval.batch_size)
    m = metrics.CorrespondenceMetrics()
    for n in range(c.eval.batches):
      batch = next(batches)
      pred = self.predict(params, model_state, batch["views"])
      pred, true = sharding.to_host(pred), sharding.to_host(batch["corr"])
      m.update(pred, true)
      if n == 0:
        first = (sharding.to_host(batch["views"]), pred, true)
    self._last_eval = (first, m)
    return m.result()

  def eval_images(self, count: int = 2) -> dict:
    """The last evaluation's first `count` samples (query patches of view 0, their true and
    predicted C in view 1: `viz.correspondence_figure`) and its precision-recall curve."""
    if getattr(self, "_last_eval", None) is None:
      return {}
    (views, pred, true), m = self._last_eval
    out = {}
    for b in range(min(count, views.shape[0])):
      fig = viz.correspondence_figure(
          views[b, 0, ..., 0], views[b, 1, ..., 0],
          {"true C": true[b, 0], "predicted C": pred[b, 0]}, self.config.labels.patch,
          caption=f"Validation sample {b}: query patches of view 0 (outlined), their true and "
                  "predicted C in view 1.", panel_size=192)
      out[f"sample_{b}"] = np.asarray(fig)
    out["pr_curve"] = np.asarray(curves.pr_curve_figure(
        np.concatenate(m.scores), np.concatenate(m.targets),
        caption=f"Validation, C > {m.threshold:g} positive."))
    return out
