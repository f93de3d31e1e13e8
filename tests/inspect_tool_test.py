"""python -m jaxcorr.tools.inspect: a generated dataset's summary and contact sheet, and exact
label statistics on hand-made samples."""

import sys

import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from jaxcorr import jobs
from jaxcorr.tools import inspect

sys.path.insert(0, str(REPO))
from configs import generate  # pylint: disable=wrong-import-position


def test_split_stats_exact():
  c0 = np.zeros((1, 2, 2), np.float32)
  c0[0, 0, 0] = 0.5                        # 1 of 4 entries above 0.2, max 0.5
  c1 = np.full((1, 2, 2), 0.3, np.float32)  # all 4 above, max 0.3
  samples = [{"views": np.zeros((2, 4, 4), np.float32), "corr": c0, "label": np.int32(1),
              "visible": np.array([1, 0], np.uint8)},
             {"views": np.full((2, 4, 4), 2.0, np.float32), "corr": c1, "label": np.int32(0),
              "visible": np.array([0, 0], np.uint8)}]
  stats = inspect.split_stats(samples)
  assert stats == {"records": 2, "views_shape": [2, 4, 4], "views_min": 0.0, "views_max": 2.0,
                   "corr_shape": [1, 2, 2], "positive_fraction": pytest.approx(0.625),
                   "mean_max_c": pytest.approx(0.4), "fracture_fraction": 0.5,
                   "visible_views_of_fractures": 0.5}


def test_inspect_a_tiny_generated_dataset(tmp_path, capsys):
  config = generate.get_config("tiny")
  config.update_from_flattened_dict({"data.phantoms": 3, "generate.samples_per_volume": 2,
                                     "generate.render_batch": 2})
  jobs.run(config, str(tmp_path / "ds"))
  assert inspect.main([str(tmp_path / "ds"), "--samples=2"]) == 0
  out = capsys.readouterr().out
  assert "generate dataset" in out and "train      1 volumes, 2 samples" in out
  assert "train: records 2, views_shape [2, 64, 64]" in out and "positive_fraction" in out
  sheet = Image.open(tmp_path / "ds" / "contact_sheet.png")
  assert sheet.mode == "RGB" and sheet.width >= 3 * 192 and sheet.height >= 2 * 192
  assert inspect.main([str(tmp_path)]) == 1
  assert "no manifest.json" in capsys.readouterr().err
