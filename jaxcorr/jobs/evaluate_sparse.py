"""The `evaluate_sparse` job: the paper's Table 2 on sparse annotations (zero-shot, fine-tuned,
baseline), scored on the annotated entries only.

Each run of `config.runs` (a pretraining workdir scores zero-shot, a fine-tuning workdir as
fine-tuned, a `head='pair_mlp'` fine-tuning workdir as the frozen-backbone baseline) is restored
with `Predictor` from its best checkpoint and predicts C for every study of `config.split` of
the split file `config.splits` (a fine-tuning workdir's splits.json, so every row sees the same
held-out studies; empty: all studies). Only annotated patch pairs are scored: precision and
recall at 0.2 and AP (`jaxcorr.metrics.correspondence`). Writes results.md (printed too),
results.csv and results.json.
"""

from __future__ import annotations

import csv
import io as io_lib
import json
import os

import numpy as np
from absl import logging

from jaxcorr.core import files
from jaxcorr.data import sparse
from jaxcorr.inference.predictor import Predictor
from jaxcorr.metrics import correspondence as metrics
from jaxcorr.xray import annotations as ann_lib


def _row_name(run_dir: str) -> str:
  config = files.run_config(run_dir)
  if config.job == "pretrain":
    look = config.get("augment", {}).get("appearance", {}).get("enabled", False)
    return "zero-shot (pretrained, appearance randomisation)" if look else "zero-shot (pretrained)"
  if config.model.get("kind") == "pair_mlp":
    return f"baseline: frozen {config.model.backbone} + MLP"
  return "fine-tuned"


def _score_run(run_dir: str, studies, batch_size: int, select="best") -> dict:
  """Metrics of one run on the annotated entries of `studies`."""
  predictor = Predictor.from_checkpoint(run_dir, select=select, batch_size=batch_size)
  samples = sparse.load_samples(studies, image_size=predictor.image_size, patch=predictor.patch,
                                max_pairs=max(1, max(s.n_pairs for s in studies)))
  m = metrics.CorrespondenceMetrics()
  for batch in sparse.eval_batches(samples, batch_size):
    corr = predictor.predict_images(batch["views"][..., 0])
    scores = np.asarray(sparse.gather(corr, batch))
    m.update(scores[batch["mask"]], batch["label"][batch["mask"]])
  return {**m.result(), "annotated": int(sum(s["mask"].sum() for s in samples))}


def run(config, workdir: str) -> None:
  files.prepare_workdir(config, workdir)
  runs = [r for r in config.runs if r]
  if not runs:
    raise ValueError("config.runs is empty: give pretraining / fine-tuning workdirs, e.g. "
                     "--config.runs=\"('/tmp/pretrain','/tmp/finetune')\"")
  if not config.annotations:
    raise ValueError("config.annotations is empty: give the sparse-annotation file")
  studies = ann_lib.load_annotations(config.annotations)
  if config.splits:
    wanted = set(files.read_json(config.splits)[config.split])
    studies = [s for s in studies if s.study in wanted]
    if not studies:
      raise ValueError(f"config.splits={config.splits!r}: no study of {config.annotations} is "
                       f"in its {config.split!r} split")
  rows = []
  for run_dir in runs:
    result = {"run": _row_name(run_dir), "workdir": os.path.abspath(run_dir),
              **_score_run(run_dir, studies, config.batch_size,
                           config.get("which_checkpoint", "best"))}
    logging.info("%s: %s", run_dir, result)
    rows.append(result)
  keys = ["run", "precision", "recall", "ap", "annotated", "workdir"]
  text = io_lib.StringIO()
  writer = csv.DictWriter(text, fieldnames=keys, extrasaction="ignore")
  writer.writeheader()
  writer.writerows(rows)
  files.atomic_write_text(os.path.join(workdir, "results.csv"), text.getvalue())
  files.atomic_write_text(os.path.join(workdir, "results.json"), json.dumps(rows, indent=2))
  table = [f"Sparse annotations, {len(studies)} studies ({config.split if config.splits else 'all'})",
           "", "| run | precision | recall | AP | annotated pairs |", "|---|---|---|---|---|"]
  table += [f"| {r['run']} | {100 * r['precision']:.1f} | {100 * r['recall']:.1f} | "
            f"{100 * r['ap']:.1f} | {r['annotated']} |" for r in rows]
  files.atomic_write_text(os.path.join(workdir, "results.md"), "\n".join(table) + "\n")
  print("\n".join(table))
