"""The evaluate job on a tiny pretraining run: table rows, files, the untrained baseline."""

import json
import sys

import pytest

from conftest import REPO
from jaxcorr import jobs

sys.path.insert(0, str(REPO))
from configs import evaluate  # pylint: disable=wrong-import-position


def test_evaluate_scores_a_run_and_its_untrained_model(tiny_pretrain_run, tmp_path):
  config = evaluate.get_config("tiny")
  config.runs = (str(tiny_pretrain_run),)
  config.eval.batch_size = 2
  jobs.run(config, str(tmp_path / "eval"))
  rows = json.loads((tmp_path / "eval" / "results.json").read_text())
  # Rows named as the paper's Table 1 names them.
  assert [r["model"] for r in rows] == ["standard transformer (untrained)", "standard transformer"]
  for r in rows:
    assert 0 <= r["precision"] <= 1 and 0 <= r["recall"] <= 1 and r["mse"] >= 0
  assert "| run | model | MSE |" in (tmp_path / "eval" / "results.md").read_text()
  assert (tmp_path / "eval" / "results.csv").exists()
  assert list((tmp_path / "eval").glob("overlay_*.png"))


def test_evaluate_needs_runs(tmp_path):
  with pytest.raises(ValueError, match="config.runs is empty"):
    jobs.run(evaluate.get_config("tiny"), str(tmp_path))
