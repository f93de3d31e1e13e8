"""The `evaluate` job: the paper's Table 1 on held-out CT volumes, for one or more runs.

For every pretraining workdir in `config.runs` (and, with `config.untrained`, the first run's
model at initialisation), the model of that run's `config.json` is restored from its best (or
latest, or a given step, or every saved one: `config.checkpoint`) checkpoint, logged, and
scored on the 'test' split of that run's `splits.json` (volumes never seen in training), or on
the CTs `data.test_path` names (a file, folder, .txt list or tuple; a warning names any the run
trained on), each row named as the paper's Table 1 names it (`models.build.row_name`): MSE,
precision and recall at 0.2, AP over all patch pairs, and the best F1 with the threshold that
gives it (the operating point for predict's `threshold`), on `eval.batches` fixed batches,
with the number of samples and the fraction of patch pairs whose true C > 0.2 (AP depends
strongly on it). Writes
`results.csv`, `results.json`, `results.md` (also printed; each row with the checkpoint's step
and the training samples it had seen), and `overlay_<row>_<n>.png` pictures of true vs
predicted correspondences. With `checkpoint='all'` every saved checkpoint of each run is scored
on the same batches and `ap_vs_samples.png` draws held-out AP against samples seen. The
held-out views and labels are each run's own unless `framing`, `views_preset` or
`label_threshold` set them for every run (AP depends on them: compare runs on the same).

On several processes (`main --distributed`) every process restores the checkpoint (a
collective), the evaluation batches are global arrays over every device (`mesh.num_devices`,
0 = all), each process rendering its share, and predictions and labels are gathered to every
process before scoring: the scores equal one process's. Process 0 alone writes.
"""

from __future__ import annotations

import csv
import json
import os

import ml_collections
from absl import logging

from jaxcorr.core import checkpoints, files, sharding
from jaxcorr.data import splits as splits_lib
from jaxcorr.metrics import correspondence as metrics
from jaxcorr.models import build
from jaxcorr.pictures import curves, style, viz
from jaxcorr.tasks import correspondence
from jaxcorr.train import checkpoint, loop, state as state_lib


def _run_config(run_dir: str, config) -> ml_collections.ConfigDict:
  path = os.path.join(run_dir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"config.runs entry {run_dir!r}: no config.json; pass the workdir "
                            "of a pretraining run")
  with open(path) as f:
    run = ml_collections.ConfigDict(json.load(f))
  run.eval.batches = config.eval.batches
  run.eval.batch_size = config.eval.batch_size
  run.eval.seed = config.eval.seed
  # The kernels are this machine's choice, not the run's (older runs have no drr block).
  run.drr = config.drr
  run.labels.method = config.labels.method
  # Score every run on the same views and labels (the positive fraction, and AP, depend on
  # the views' framing and distribution and on the label threshold).
  if config.get("framing"):
    run.views.framing = config.framing
  if config.get("views_preset"):
    run.views.preset = config.views_preset
  if config.get("label_threshold", -1.0) >= 0:
    run.labels.threshold = config.label_threshold
  test_path = config.get("data", {}).get("test_path", "")
  if test_path:   # a new dict: a run's str field cannot take a tuple
    run.data = ml_collections.ConfigDict({**run.data.to_dict(), "test_path": test_path})
    _warn_if_trained_on(run_dir, splits_lib.list_paths(test_path, "data.test_path"))
  return run


def _warn_if_trained_on(run_dir: str, names: list[str]) -> None:
  path = os.path.join(run_dir, "splits.json")
  seen = set()
  if os.path.exists(path):
    saved = files.read_json(path)
    seen = set(saved.get("train", [])) | set(saved.get("validation", []))
  if seen & set(names):
    logging.warning("%s trained or validated on %d of the CTs of data.test_path: %s; those "
                    "scores are not held out", run_dir, len(seen & set(names)),
                    sorted(seen & set(names))[:5])


def _variables(run_dir: str, task, mesh, which):
  """(params, model_state, step) of `which`: 'untrained' (the run's model at initialisation,
  step 0) or a checkpoint selector (`checkpoints.resolve`)."""
  if which == "untrained":
    tx = state_lib.make_optimizer(task.config.optim, 1)
    state, _ = loop.init_state(task, tx, mesh, seed=task.config.seed)
    return state.params, state.model_state, 0
  loaded = checkpoints.resolve(run_dir, which, field="checkpoint")
  ckpt = checkpoint.Checkpoints(run_dir)
  try:
    state, _ = ckpt.restore_raw(loaded.step,
                                best=os.path.basename(os.path.dirname(loaded.directory)) == "best")
  finally:
    ckpt.close()
  logging.info("loaded %s", loaded.describe())
  # Replicated over the mesh, so they meet global batches in one jitted call on N processes.
  params, model_state = sharding.replicate(
      (state["params"], state.get("model_state", {}) or {}), mesh)
  return params, model_state, loaded.step


def run(config, workdir: str) -> None:
  files.prepare_workdir(config, workdir)
  runs = [r for r in config.runs if r]
  if not runs:
    raise ValueError("config.runs is empty: give the workdirs of pretraining runs, e.g. "
                     "--config.runs=\"('/tmp/pretrain',)\"")
  every = str(config.checkpoint).strip() == "all"
  if not every:
    checkpoints.parse_select(config.checkpoint, field="checkpoint")
  mesh = sharding.make_mesh(config.mesh.num_devices)
  rows, skipped = [], []
  for number, run_dir in enumerate(runs):
    run_cfg = _run_config(run_dir, config)
    task = correspondence.CorrespondenceTask(run_cfg, run_dir, mesh)
    selected = checkpoints.all_steps(run_dir) if every else [config.checkpoint]
    if config.untrained and number == 0:
      selected = ["untrained"] + selected
    # The same held-out batches score every checkpoint of the run (rendered once).
    batches = task.batches("test", seed=config.eval.seed, train=False,
                           batch_size=config.eval.batch_size)
    batches = [next(batches) for _ in range(config.eval.batches)]
    for which in selected:
      params, model_state, step = _variables(run_dir, task, mesh, which)
      name = build.row_name(run_cfg.model) + (" (untrained)" if which == "untrained" else "")
      m = metrics.CorrespondenceMetrics()
      for n, batch in enumerate(batches):
        pred = sharding.to_host(task.predict(params, model_state, batch["views"]))
        true = sharding.to_host(batch["corr"])
        m.update(pred, true)
        if n == 0 and (which == selected[-1] or which == "untrained"):
          views = sharding.to_host(batch["views"])[..., 0]
          _overlays(workdir, len(rows), views, pred, true, run_cfg.labels.patch,
                    config.overlays)
      result = m.result()
      rows.append({"run": os.path.basename(os.path.normpath(run_dir)), "model": name,
                   "checkpoint": str(which), "step": step,
                   "samples_seen": step * run_cfg.batch_size,
                   "test_cts": _test_cts(run_cfg, run_dir), **result})
      logging.info("%s, step %d: %s", name, step, result)
    skipped.extend(t for t in task.skipped if t not in skipped)
  splits_lib.write_skipped(workdir, skipped)
  _write(workdir, rows)
  _curve(workdir, rows)


def _test_cts(run_cfg, run_dir: str) -> int | str:
  """How many CTs the test split holds ('-' for an offline run's shards)."""
  if run_cfg.data.mode != "on_the_fly":
    return "-"
  return len(splits_lib.load_or_assign(run_cfg, run_dir)["test"])


def _overlays(workdir, index, views, pred, true, patch, count) -> None:
  if not files.is_writer():
    return
  for b in range(min(count, views.shape[0])):
    fig = viz.correspondence_figure(
        views[b, 0], views[b, 1], {"true C": true[b, 0], "predicted C": pred[b, 0]}, patch,
        caption="Views 0 (i) and 1 (j) of a held-out sample: query patches of view 0 "
                "(outlined) and their true and predicted correspondence in view 1.")
    style.save(os.path.join(workdir, f"overlay_{index}_{b}.png"), fig)


def _write(workdir, rows) -> None:
  if not files.is_writer():
    return
  files.write_json(os.path.join(workdir, "results.json"), rows)
  with open(os.path.join(workdir, "results.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  lines = ["| run | model | step | test CTs | samples | positives % | MSE | precision | recall "
           "| AP | best F1 | at |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['run']} | {r['model']} | {r['step']} | {r['test_cts']} | {r['samples']} | "
                 f"{100 * r['positive_fraction']:.3f} | {r['mse']:.2e} | "
                 f"{100 * r['precision']:.1f} | {100 * r['recall']:.1f} | {100 * r['ap']:.1f} | "
                 f"{100 * r['best_f1']:.1f} | {r['f1_threshold']:.3f} |")
  table = "\n".join(lines)
  files.atomic_write_text(os.path.join(workdir, "results.md"), table + "\n")
  print(table)


def _curve(workdir, rows) -> None:
  """ap_vs_samples.png: held-out AP against samples seen, one line per run with two or more
  scored checkpoints (`checkpoint='all'`), the untrained model as a reference line."""
  if not files.is_writer():
    return
  series = {}
  for r in rows:
    if r["checkpoint"] != "untrained":
      x, y = series.setdefault(r["run"], ([], []))
      x.append(r["samples_seen"])
      y.append(100 * r["ap"])
  series = {k: v for k, v in series.items() if len(v[0]) > 1}
  if not series:
    return
  references = {"untrained": 100 * r["ap"] for r in rows if r["checkpoint"] == "untrained"}
  last = rows[-1]   # every row of a run scores the same samples
  fig = curves.line_figure(
      series, xlabel="training samples seen", ylabel="held-out AP (%)", references=references,
      caption=f"Held-out AP of every saved checkpoint on {last['samples']} test samples of "
              f"{last['test_cts']} CT(s), {100 * last['positive_fraction']:.2f}% positive "
              "patch pairs (true C > 0.2).")
  style.save(os.path.join(workdir, "ap_vs_samples.png"), fig)
