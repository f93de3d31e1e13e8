"""Fracture classification: every Table-3 row trains a step, pretraining init, the sweep table."""

import csv
import json
import os
import sys

import numpy as np
import pytest

from conftest import REPO
from eval_images_test import tb_images
from transfer_test import save_correspondence_run
from jaxcorr import jobs
from jaxcorr.tasks import classification

sys.path.insert(0, str(REPO))
from configs import classify, pretrain  # pylint: disable=wrong-import-position

ROWS = ("single", "late", "early", "early_pretrained", "early_guided")


@pytest.fixture(scope="module")
def fracture_data(tmp_path_factory):
  """The tiny fracture benchmark, made once for every test here."""
  workdir = tmp_path_factory.mktemp("fractures")
  config = classify.get_config("tiny")
  config.update_from_flattened_dict({"data.phantoms": 4, "generate.samples_per_volume": 4,
                                     "generate.visibility": False})
  from jaxcorr.jobs import classify as classify_job  # pylint: disable=import-outside-toplevel
  config.data.shards = str(workdir)
  classify_job.ensure_data(config, str(workdir))
  return workdir


@pytest.fixture(scope="module")
def vit_pretrain(tmp_path_factory):
  """A tiny ViT correspondence pretraining (the test ViT at 64 px) for the *_pretrained rows."""
  workdir = tmp_path_factory.mktemp("pretrain_vit")
  config = pretrain.get_config("tiny_vit")
  config.update_from_flattened_dict({
      "model.backbone": "vit_test", "views.detector_size": (64, 64), "ct.size": 64,
      "steps": 2, "log_every": 1, "eval_every": 2, "ckpt.every": 2, "data.phantoms": 3,
      "eval.batches": 1, "batch_size": 2, "eval.batch_size": 2})
  jobs.run(config, str(workdir))
  return workdir


def _config(data, row, pretrained="", **overrides):
  config = classify.get_config(f"tiny,{row}")
  config.update_from_flattened_dict({"data.shards": str(data), "steps": 2, "log_every": 1,
                                     "eval_every": 2, "ckpt.every": 2, "batch_size": 4,
                                     "eval.batch_size": 4, "pretrained": str(pretrained),
                                     **overrides})
  return config


@pytest.mark.parametrize("row", ROWS)
def test_every_row_trains_a_step_and_scores_the_test_split(fracture_data, vit_pretrain, row,
                                                           tmp_path):
  config = classification.apply_row(_config(fracture_data, "early", vit_pretrain), row)
  jobs.run(config, str(tmp_path))
  results = json.loads((tmp_path / "test_metrics.json").read_text())
  test = results["test"]
  assert 0 <= test["accuracy"] <= 1 and test["n"] > 0
  rows = list(csv.DictReader(open(tmp_path / "predictions_test.csv")))
  assert len(rows) == test["n"] and {r["label"] for r in rows} <= {"0", "1"}
  if "pretrained" in row or "guided" in row:
    report = json.loads((tmp_path / "init_report.json").read_text())
    assert report["loaded"] and any("pos_embed" in p for p in report["loaded"] + report.get("interpolated", []))
  # TensorBoard: the confusion matrix and the attention maps of the evaluation at step 2.
  images = tb_images(tmp_path)
  assert sorted(images) == [(2, "eval/attention"), (2, "eval/confusion")]
  assert min(images[(2, "eval/attention")].shape[:2]) >= 192


def test_balanced_labels_and_resume(fracture_data, tmp_path):
  manifest = json.loads((fracture_data / "manifest.json").read_text())
  for split, counts in manifest["labels"].items():   # half fractured in every split
    assert counts["positive"] == counts["negative"] > 0, (split, counts)
  config = _config(fracture_data, "late", **{"steps": 4, "stop_after_step": 2})
  jobs.run(config, str(tmp_path))
  assert max(int(s) for s in os.listdir(tmp_path / "checkpoints")) == 2
  config = _config(fracture_data, "late", steps=4)
  jobs.run(config, str(tmp_path))
  lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [l["step"] for l in lines if "train/loss" in l] == [1, 2, 3, 4]


def test_sweep_writes_mean_and_std(fracture_data, tmp_path):
  config = _config(fracture_data, "sweep", **{"steps": 1, "eval_every": 1, "ckpt.every": 1})
  config.sweep.rows = ("late",)
  config.sweep.seeds = (0, 1)
  jobs.run(config, str(tmp_path))
  table = (tmp_path / "sweep.md").read_text()
  assert "| late |" in table and "+-" in table
  rows = {r["row"]: r for r in csv.DictReader(open(tmp_path / "sweep.csv"))}
  assert rows["late"]["seeds"] == "2"
  accs = [json.loads((tmp_path / "late" / f"seed{s}" / "test_metrics.json").read_text())
          ["test"]["accuracy"] for s in (0, 1)]
  assert float(rows["late"]["accuracy_mean"]) == pytest.approx(np.mean(accs), abs=1e-4)


def test_the_resnet_baseline_trains_through_the_classify_job(fracture_data, tmp_path):
  """The CNN (model.backbone='resnet', single view) through the one loop: its BatchNorm
  statistics are the model state, trained, checkpointed and used for the test scores."""
  config = _config(fracture_data, "single", **{"model.backbone": "resnet",
                                               "model.resnet": "resnet_tiny",
                                               "corr.source": "none"})
  jobs.run(config, str(tmp_path))
  test = json.loads((tmp_path / "test_metrics.json").read_text())["test"]
  assert test["n"] > 0 and 0 <= test["accuracy"] <= 1
  from jaxcorr.train import checkpoint  # pylint: disable=import-outside-toplevel
  ckpt = checkpoint.Checkpoints(str(tmp_path), best_metric="auroc")
  try:
    state, _ = ckpt.restore_raw()
  finally:
    ckpt.close()
  stats = state["model_state"]["batch_stats"]["backbone"]["bn1"]
  assert not np.allclose(stats["mean"], 0.0)   # trained: running means moved off their init
  with pytest.raises(ValueError, match="ResNet baseline .* trains from scratch"):
    jobs.run(_config(fracture_data, "single", **{"model.backbone": "resnet",
                                                 "init_timm": "vit.safetensors"}),
             str(tmp_path / "refused"))


def test_correspondence_backbone_loads_a_pretraining_run_and_its_c(fracture_data, tmp_path):
  """model.backbone='correspondence', row early_guided: the whole pretrained model (params and
  BatchNorm statistics) initialises the classifier's backbone, and the same run gives C
  (corr.source='model')."""
  pre = tmp_path / "pretrain"
  pre.mkdir()
  save_correspondence_run(pre, "tiny", image=64)
  config = _config(fracture_data, "early_guided", pre, **{
      "model.backbone": "correspondence", "model.corr_size": "tiny", "corr.source": "model",
      "corr.checkpoint": str(pre), "init_from": str(pre), "steps": 1, "eval_every": 1,
      "ckpt.every": 1})
  jobs.run(config, str(tmp_path / "classify"))
  report = json.loads((tmp_path / "classify" / "init_report.json").read_text())
  assert not [p for p in report["reinitialised"] if "/backbone/" in p]
  assert any(p.startswith("batch_stats/backbone/backbone/") for p in report["loaded"])
  assert any(p.startswith("params/backbone/encoder/") for p in report["loaded"])
  assert json.loads((tmp_path / "classify" / "test_metrics.json").read_text())["test"]["n"] > 0
  config.corr.checkpoint = ""
  with pytest.raises(ValueError, match="corr.source='model' needs config.corr.checkpoint"):
    jobs.run(config, str(tmp_path / "refused"))


def test_guidance_without_a_matrix_is_refused(fracture_data, tmp_path):
  config = _config(fracture_data, "early_guided", **{"corr.source": "none"})
  with pytest.raises(ValueError, match="needs a correspondence matrix"):
    jobs.run(config, str(tmp_path))


def test_image_studies_read_c_from_npy_beside_the_first_view(tmp_path):
  from jaxcorr.data import studies  # pylint: disable=import-outside-toplevel
  from jaxcorr.tasks import classification  # pylint: disable=import-outside-toplevel
  from jaxcorr.xray import io as xray_io  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  paths = []
  for name in ("ap.png", "lat.png"):
    xray_io.write_png(str(tmp_path / name), rng.uniform(size=(40, 64)), bits=8)
    paths.append(str(tmp_path / name))
  study = studies.Study("s1", tuple(paths), 1)
  corr = rng.uniform(size=(1, 16, 16)).astype(np.float32)
  with pytest.raises(FileNotFoundError, match="ap.corr.npy is missing"):
    classification._image_sample(study, (64, 64), 16, with_npy=True)   # pylint: disable=protected-access
  np.save(classification.corr_path(paths[0]), corr)
  sample = classification._image_sample(study, (64, 64), 16, with_npy=True)   # pylint: disable=protected-access
  np.testing.assert_array_equal(sample["corr"], corr)
  assert sample["views"].shape == (2, 64, 64) and sample["label"] == 1
  np.save(classification.corr_path(paths[0]), corr[:, :4])
  with pytest.raises(ValueError, match=r"expected \(1, 16, 16\)"):
    classification._image_sample(study, (64, 64), 16, with_npy=True)   # pylint: disable=protected-access
