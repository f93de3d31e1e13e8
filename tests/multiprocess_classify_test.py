"""Fracture classification on 2 real processes (multiprocess_helpers.py) gives the 1-process run."""

import json
import sys

import numpy as np

import multiprocess_helpers as mp
from conftest import REPO


def test_fracture_classification_on_two_processes_matches_one(tmp_path):
  """classify (its own data pipeline, evaluation on batches every process reads whole): 2
  processes give the 1-process losses and test metrics."""
  sys.path.insert(0, str(REPO))
  from configs import classify  # pylint: disable=import-outside-toplevel
  from jaxcorr.jobs import classify as classify_job  # pylint: disable=import-outside-toplevel
  data = classify.get_config("tiny")
  data.update_from_flattened_dict({"data.phantoms": 4, "generate.samples_per_volume": 4,
                                   "generate.visibility": False,
                                   "data.shards": str(tmp_path / "data")})
  classify_job.ensure_data(data, str(tmp_path))              # made once, by this process
  run = {"data.shards": str(tmp_path / "data"), "data.phantoms": 4,
         "generate.samples_per_volume": 4, "generate.visibility": False, "steps": 2,
         "log_every": 1, "eval_every": 2, "ckpt.every": 2, "batch_size": 4,
         "eval.batch_size": 4}
  mp.main("configs/classify.py:tiny,late", tmp_path / "one", run, processes=1, devices=2)
  mp.main("configs/classify.py:tiny,late", tmp_path / "two", run, processes=2)
  a, b = mp.rows(tmp_path / "one", "train/loss"), mp.rows(tmp_path / "two", "train/loss")
  np.testing.assert_allclose(list(b.values()), list(a.values()), rtol=1e-4)
  one, two = (json.loads((tmp_path / r / "test_metrics.json").read_text())["test"]
              for r in ("one", "two"))
  assert one["n"] == two["n"] > 0
  np.testing.assert_allclose(two["accuracy"], one["accuracy"])
