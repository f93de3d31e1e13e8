"""The `classify` job: multi-view fracture classification (Table 3) with the one training loop.

It makes the CT-derived fracture benchmark into `data.shards` (default
`<workdir>/data`) when it is not there yet (`jobs.make_fractures`, resumable), trains, then
restores the best checkpoint (by validation AUROC), picks the threshold on the validation
split and scores the test split. Writes test_metrics.json, predictions_<split>.csv (per study:
id, label, probability, prediction) and errors.png (the most confident test errors with the
class-token attention over each view). The Table-3 rows are `classification.ROWS`, run
together by the `classify_sweep` job.
"""

from __future__ import annotations

import csv
import io as io_lib
import os

import jax
import numpy as np
from absl import logging

from jaxcorr.core import files, sharding
from jaxcorr.jobs import make_fractures
from jaxcorr.metrics import classification as cm
from jaxcorr.pictures import classifier as classifier_figures, style
from jaxcorr.tasks import classification
from jaxcorr.train import checkpoint, loop

def ensure_data(config, workdir: str) -> None:
  """Fills data.shards and makes the fracture benchmark there unless it is complete."""
  if config.studies.source != "fractures":
    return
  if not config.data.shards:
    config.data.shards = os.path.join(workdir, "data")
  if not files.path(os.path.join(config.data.shards, "manifest.json")).exists():
    # On several processes process 0 makes it (make_fractures runs on one host) while the
    # others wait for it at the barrier.
    if jax.process_index() == 0:
      logging.info("making the fracture benchmark in %s", config.data.shards)
      make_fractures.run(config, config.data.shards)
    sharding.gather_json(None)


def _errors_figure(path, task, probs, labels, attention, threshold, count=4):
  """The most confident test errors, each view plain and under its class-token attention."""
  wrong = np.nonzero((probs >= threshold) != (labels > 0.5))[0]
  if not len(wrong):
    return
  errors = len(wrong)
  wrong = wrong[np.argsort(-np.abs(probs[wrong] - threshold))][:count]
  views, att = task.display_views("test", wrong, attention)
  ids = task.study_ids.get("test") or list(range(len(probs)))
  shown = ("the class token's attention" if task.config.model.get("backbone", "vit") == "vit"
           else "its class activation map (the softmax of its per-position logits)")
  fig = classifier_figures.attention_figure(
      views, att, labels[wrong], probs[wrong], threshold, ids=[ids[i] for i in wrong],
      points=task.fracture_points("test", wrong),
      caption=f"The {len(wrong)} most confident test errors (of {errors}): each view as the "
              f"model saw it, then under {shown}; a fracture is ringed.")
  style.save(path, fig)


def run(config, workdir: str) -> dict:
  ensure_data(config, workdir)
  files.prepare_workdir(config, workdir)
  mesh = sharding.make_mesh(config.mesh.num_devices)
  task = classification.ClassificationTask(config, workdir, mesh)
  loop.train_and_evaluate(config, workdir, task, mesh)
  # Every process must restore the same checkpoint (a restore is a collective): wait until all
  # have finished training (process 0 finalises the last saves), then take process 0's choice.
  sharding.gather_json(None)
  ckpt = checkpoint.Checkpoints(workdir, best_metric=config.ckpt.best_metric)
  try:
    use_best = ckpt.best.latest_step() is not None
    step = ckpt.best.best_step() if use_best else ckpt.latest.latest_step()
    use_best, step = sharding.gather_json([use_best, step])[0]
    state, _ = ckpt.restore_raw(step, best=use_best)
  finally:
    ckpt.close()
  logging.info("scoring the %s checkpoint, step %d of %s", "best" if use_best else "latest",
               step, workdir)
  params = jax.device_put(state["params"], sharding.replicated(mesh))
  model_state = jax.device_put(state.get("model_state") or {}, sharding.replicated(mesh))
  val_p, val_y, _ = task.predict_split(params, "validation", model_state=model_state)
  threshold = cm.choose_threshold(val_p, val_y)
  results = {}
  for split in ("validation", "test"):
    probs, labels, attention = task.predict_split(params, split, keep_attention=True,
                                                  model_state=model_state)
    results[split] = cm.binary_metrics(probs, labels, threshold)
    text = io_lib.StringIO()
    w = csv.writer(text)
    w.writerow(["study", "label", "probability", "prediction"])
    ids = task.study_ids.get(split) or list(range(len(probs)))
    w.writerows([(ids[i], int(labels[i]), f"{probs[i]:.5f}", int(probs[i] >= threshold))
                 for i in range(len(probs))])
    files.atomic_write_text(os.path.join(workdir, f"predictions_{split}.csv"), text.getvalue())
  _errors_figure(os.path.join(workdir, "errors.png"), task, probs, labels, attention, threshold)
  files.write_json(os.path.join(workdir, "test_metrics.json"), results)
  logging.info("test (threshold %.3f from validation): %s", threshold, results["test"])
  return results
