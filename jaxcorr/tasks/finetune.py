"""Fine-tuning on real radiographs with sparse labels (the paper's section 3.3, Table 2).

Starts from a pretraining run (`config.init_from`), reads the studies of a sparse-annotation
file (`config.annotations`, docs/annotations.md), splits them 60/10/30 by patient (or by study
when the file names no patient) into `splits.json` in the workdir (reused on every later run),
and trains the same model with a masked loss: only the annotated patch pairs count
(`data.sparse.masked_mse`). Evaluation scores the annotated entries of a split: precision and
recall at 0.2 and AP, as the paper's Table 2 (`metrics.CorrespondenceMetrics`).

Two heads (`config.model.kind`, resolved by the finetune job from the pretraining run):
  'correspondence'  the pretrained model, every parameter restored, all of it trained
  'pair_mlp'        the frozen-backbone baseline (`models.pair_mlp`): the pretrained backbone
                    restored and frozen, a new MLP on patch pairs trained
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from jaxcorr.core import files, sharding
from jaxcorr.data import pipeline, radiometric, sparse, splits as splits_lib
from jaxcorr.metrics import correspondence as metrics
from jaxcorr.models import build, transfer
from jaxcorr.tasks import base as task_lib
from jaxcorr.xray import annotations as ann_lib


def study_splits(studies, fractions, seed: int, workdir: str | None) -> dict[str, list[str]]:
  """{split: [study ids]} grouped by patient (or study), saved in / read from the workdir."""
  path = os.path.join(workdir, "splits.json") if workdir else None
  if path and os.path.exists(path):
    saved = files.read_json(path)
    known = {s for part in saved.values() for s in part}
    missing = [s.study for s in studies if s.study not in known]
    if missing:
      raise ValueError(f"{path}: studies {missing[:5]} are not in the saved split; the "
                       "annotation file changed since this workdir was made - use a new workdir")
    return saved
  group_of = {s.study: (s.patient or s.study) for s in studies}
  groups = sorted(set(group_of.values()))
  by_group = splits_lib.assign_splits(groups, fractions, seed)
  split_of = {g: name for name, part in by_group.items() for g in part}
  result = {name: [s for s, g in group_of.items() if split_of[g] == name] for name in by_group}
  if path:
    files.write_json(path, result)
  return result


class FinetuneTask(task_lib.Task):
  """Sparse-label fine-tuning of a pretrained correspondence model (or the MLP baseline)."""

  def __init__(self, config, workdir: str | None, mesh):
    self.config = config
    self.mesh = mesh
    self.model = build.build_model(config.model)
    self.image_size = tuple(int(s) for s in config.image_size)
    self.studies = ann_lib.load_annotations(config.annotations)
    self.splits = study_splits(self.studies, config.split, config.seed, workdir)
    self._samples = {}
    self._batch_sharding = sharding.batch_sharding(mesh)
    n_views = {len(s.views) for s in self.studies}
    if len(n_views) != 1:
      raise ValueError(f"{config.annotations}: studies have {sorted(n_views)} views; a run "
                       "needs the same number of views in every study")
    self.n_views = n_views.pop()

  def samples(self, split: str) -> list[dict]:
    if split not in self._samples:
      wanted = set(self.splits[split])
      studies = [s for s in self.studies if s.study in wanted]
      self._samples[split] = sparse.load_samples(
          studies, image_size=self.image_size, patch=self.config.patch,
          max_pairs=self.config.max_pairs)
      logging.info("%s: %d studies", split, len(studies))
    return self._samples[split]

  # Task interface --------------------------------------------------------------------------

  def batch_spec(self) -> dict:
    b, k, (h, w) = self.config.batch_size, self.config.max_pairs, self.image_size
    spec = {"views": jax.ShapeDtypeStruct((b, self.n_views, h, w, 1), jnp.float32),
            "label": jax.ShapeDtypeStruct((b, k), jnp.float32),
            "mask": jax.ShapeDtypeStruct((b, k), jnp.bool_)}
    for key in ("pair", "row", "col"):
      spec[key] = jax.ShapeDtypeStruct((b, k), jnp.int32)
    return spec

  def init_variables(self, rng, batch):
    return self.model.init({"params": rng}, batch["views"], train=False)

  def restore_init(self, params, model_state):
    src_params, src_state, _ = transfer.read_checkpoint_params(
        self.config.init_from, self.config.get("which_checkpoint", "best"))
    if self.config.model.get("kind", "correspondence") == "correspondence":
      params, report = transfer.load_subtree(params, src_params, target_path=(),
                                             source_path=())
      if model_state:
        model_state, _ = transfer.load_subtree(model_state, src_state, target_path=(),
                                               source_path=())
    else:   # the baseline keeps only the backbone (and its BatchNorm statistics)
      params, report = transfer.load_subtree(params, src_params)
      if model_state.get("batch_stats", {}).get("backbone") is not None:
        model_state, _ = transfer.load_subtree(model_state, src_state,
                                               target_path=("batch_stats", "backbone"),
                                               source_path=("batch_stats", "backbone"))
    logging.info("initialised from %s:\n%s", self.config.init_from, report.format())
    return params, model_state

  def loss_fn(self, params, model_state, batch, rng, *, train=True):
    del rng
    (pred, _), new_state = self.model.apply({"params": params, **model_state}, batch["views"],
                                            train=train, mutable=list(model_state.keys()))
    scores = sparse.gather(pred, batch)
    loss = sparse.masked_mse(scores, batch, self.config.loss.pos_weight)
    return loss, ({"annotated": jnp.sum(batch["mask"]) / batch["mask"].shape[0]},
                  dict(new_state))

  def train_batches(self):
    c = self.config
    if c.batch_size % self.mesh.size:
      raise ValueError(f"config.batch_size={c.batch_size} must be a multiple of the "
                       f"{self.mesh.size} devices of the mesh")
    ds = sparse.make_dataset(self.samples("train"), seed=c.seed, batch_size=c.batch_size,
                             process_index=jax.process_index(),
                             process_count=jax.process_count())
    rad = c.augment.radiometric
    aug = radiometric.Radiometric(**{k: v for k, v in rad.items() if k != "enabled"}) \
        if rad.enabled else None
    return pipeline.Batches(ds, functools.partial(sparse.finish, augmentation=aug),
                            sharding=self._batch_sharding)

  @functools.cached_property
  def _scores(self):
    def scores(params, model_state, batch):
      pred, _ = self.model.apply({"params": params, **model_state}, batch["views"], train=False)
      return sparse.gather(pred, batch)
    return jax.jit(scores)

  def score_split(self, params, model_state, split: str):
    """(scores, labels) of every annotated entry of a split, flattened."""
    out_s, out_y = [], []
    for batch in sparse.eval_batches(self.samples(split), self.config.eval.batch_size):
      s = sharding.to_host(self._scores(params, model_state, sharding.replicate(batch, self.mesh)))
      out_s.append(s[batch["mask"]])
      out_y.append(batch["label"][batch["mask"]])
    return np.concatenate(out_s), np.concatenate(out_y)

  def evaluate(self, params, model_state, split: str = "validation") -> dict:
    scores, labels = self.score_split(params, model_state, split)
    m = metrics.CorrespondenceMetrics()
    m.update(scores, labels)
    return {**m.result(), "annotated": float(len(labels))}
