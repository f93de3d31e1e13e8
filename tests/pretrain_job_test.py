"""End-to-end pretraining: the tiny preset for a few steps, resume, offline data, bad fields."""

import json
import os
import sys

import numpy as np
from absl import logging as absl_logging

from conftest import REPO
from jaxcorr import jobs

sys.path.insert(0, str(REPO))
from configs import pretrain  # pylint: disable=wrong-import-position


def _tiny(**overrides):
  config = pretrain.get_config("tiny")
  config.update_from_flattened_dict({
      "steps": 4, "log_every": 2, "eval_every": 4, "ckpt.every": 2, "data.phantoms": 3,
      "eval.batches": 1, "batch_size": 2, "eval.batch_size": 2, **overrides})
  return config


def test_pretrain_runs_writes_checkpoints_and_metrics_then_resumes(tmp_path, caplog):
  """A run stopped at step 2 and resumed writes what a run does, and ends with the parameters
  of a run that never stopped."""
  jobs.run(_tiny(), str(tmp_path / "straight"))
  tmp_path = tmp_path / "resumed"
  jobs.run(_tiny(**{"stop_after_step": 2}), str(tmp_path))
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2"]
  caplog.set_level("INFO")
  absl_logging.get_absl_logger().propagate = True
  jobs.run(_tiny(), str(tmp_path))
  assert "resuming from step 2" in caplog.text
  assert "4" in os.listdir(tmp_path / "checkpoints") and os.listdir(tmp_path / "best")
  lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  train = [l for l in lines if "train/loss" in l]
  assert [l["step"] for l in train] == [2, 4] and all(np.isfinite(l["train/loss"]) for l in train)
  (ev,) = [l for l in lines if "eval/ap" in l]
  assert ev["step"] == 4 and 0 <= ev["eval/precision"] <= 1 and 0 <= ev["eval/recall"] <= 1
  assert os.listdir(tmp_path / "tb") and (tmp_path / "config.json").exists()
  for a, b in zip(_final_params(tmp_path.parent / "straight"), _final_params(tmp_path)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _final_params(workdir):
  from jaxcorr.train import checkpoint  # pylint: disable=import-outside-toplevel
  ck = checkpoint.Checkpoints(str(workdir))
  try:
    state, _ = ck.restore_raw()
  finally:
    ck.close()
  import jax  # pylint: disable=import-outside-toplevel
  return jax.tree.leaves(state["params"])
