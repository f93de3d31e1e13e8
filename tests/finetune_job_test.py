"""Real radiographs end to end: pretrain (tiny) -> make_sparse -> finetune -> evaluate_sparse."""

import csv
import json
import os
import sys

import numpy as np
from PIL import Image
import pytest

from conftest import REPO
from jaxcorr import jobs
from jaxcorr.data import sparse
from jaxcorr.tasks import finetune
from jaxcorr.xray import annotations

sys.path.insert(0, str(REPO))
from configs import evaluate_sparse, finetune as finetune_config, make_sparse  # pylint: disable=wrong-import-position


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("sparse")
  config = make_sparse.get_config("tiny")
  config.update_from_flattened_dict({"data.phantoms": 4, "sparse.studies_per_volume": 2})
  jobs.run(config, str(workdir))
  return workdir


def test_make_sparse_writes_valid_user_files_with_known_truth(benchmark):
  report = annotations.validate(str(benchmark / "annotations.jsonl"))
  assert report.ok, report.format()
  studies = annotations.load_annotations(str(benchmark / "annotations.jsonl"))
  assert len(studies) == 8 and {s.patient for s in studies} == {f"phantom:{i}" for i in range(4)}
  for study in studies:
    assert study.views[0].endswith(".dcm") and study.views[1].endswith(".png")
    assert (study.label == 0).sum() == 20 and 1 <= (study.label == 1).sum() <= 3
    truth = np.load(benchmark / "truth" / f"{study.study}.npy")
    # Every click lands on the patch pair it was drawn from: positives on C > 0.2, negatives 0.
    s = sparse.load_sample(study, image_size=(64, 64), patch=16, max_pairs=32)
    values = truth[s["pair"], s["row"], s["col"]][s["mask"]]
    labels = s["label"][s["mask"]]
    assert np.all(values[labels == 1] > 0.2) and np.all(values[labels == 0] == 0)
    # The preview to look at: both views, 8-bit RGB, each at least 256 px.
    preview = Image.open(benchmark / "previews" / f"{study.study}.png")
    assert preview.mode == "RGB" and preview.width >= 2 * 256 and preview.height > 256


def test_make_sparse_resumes_only_missing_studies(benchmark, tmp_path):
  import shutil  # pylint: disable=import-outside-toplevel
  work = tmp_path / "copy"
  shutil.copytree(benchmark, work)
  before = (work / "annotations.jsonl").read_text()
  victim = sorted((work / "studies").iterdir())[4]
  victim.unlink()
  kept = (work / "studies" / sorted(os.listdir(work / "studies"))[0]).stat().st_mtime_ns
  config = make_sparse.get_config("tiny")
  config.update_from_flattened_dict({"data.phantoms": 4, "sparse.studies_per_volume": 2})
  jobs.run(config, str(work))
  assert (work / "annotations.jsonl").read_text() == before      # same seeds, same study
  assert (work / "studies" / sorted(os.listdir(work / "studies"))[0]).stat().st_mtime_ns == kept


def test_splits_by_patient_are_saved_and_reused(benchmark, tmp_path):
  studies = annotations.load_annotations(str(benchmark / "annotations.jsonl"))
  split = finetune.study_splits(studies, (0.6, 0.1, 0.3), 0, str(tmp_path))
  patient = {s.study: s.patient for s in studies}
  groups = [{patient[s] for s in part} for part in split.values()]
  assert sum(len(g) for g in groups) == 4 and not set.intersection(*groups)
  assert finetune.study_splits(studies, (0.2, 0.2, 0.6), 1, str(tmp_path)) == split


def _finetune(init_from, benchmark, **overrides):
  config = finetune_config.get_config("tiny")
  config.update_from_flattened_dict({"init_from": str(init_from),
                                     "annotations": str(benchmark / "annotations.jsonl"),
                                     **overrides})
  return config


def test_finetune_beats_zero_shot_resumes_and_evaluates(tiny_pretrain_run, benchmark, tmp_path):
  ft = tmp_path / "ft"
  jobs.run(_finetune(tiny_pretrain_run, benchmark, stop_after_step=20), str(ft))
  assert max(int(s) for s in os.listdir(ft / "checkpoints")) == 20
  jobs.run(_finetune(tiny_pretrain_run, benchmark), str(ft))    # resumes at 20
  lines = [json.loads(l) for l in (ft / "metrics.jsonl").read_text().splitlines()]
  assert [l["step"] for l in lines if "train/loss" in l][-1] == 40
  config = json.loads((ft / "config.json").read_text())
  assert config["model"]["kind"] == "correspondence" and config["image_size"] == [64, 64]
  mlp = tmp_path / "mlp"
  jobs.run(_finetune(tiny_pretrain_run, benchmark, head="pair_mlp", steps=10), str(mlp))
  ev = evaluate_sparse.get_config()
  ev.update_from_flattened_dict({
      "annotations": str(benchmark / "annotations.jsonl"), "splits": str(ft / "splits.json"),
      "split": "train", "runs": (str(tiny_pretrain_run), str(ft), str(mlp))})
  jobs.run(ev, str(tmp_path / "table"))
  rows = {r["run"]: r for r in csv.DictReader(open(tmp_path / "table" / "results.csv"))}
  assert set(rows) == {"zero-shot (pretrained)", "fine-tuned",
                       "baseline: frozen resnet_tiny + MLP"}
  # The studies it was fine-tuned on: the fine-tuned model ranks them at least as well.
  assert float(rows["fine-tuned"]["ap"]) >= float(rows["zero-shot (pretrained)"]["ap"])
  assert "| fine-tuned |" in (tmp_path / "table" / "results.md").read_text()


def test_finetune_refuses_missing_fields(benchmark):
  with pytest.raises(ValueError, match="config.init_from is empty"):
    jobs.run(_finetune("", benchmark), "/tmp/unused_ft")
  with pytest.raises(ValueError, match="config.head='dino'"):
    jobs.run(_finetune("/tmp", benchmark, head="dino"), "/tmp/unused_ft")
