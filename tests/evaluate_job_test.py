"""The evaluate job on a tiny pretraining run: table rows, files, the untrained baseline."""

import json
import sys

import nibabel as nib
import numpy as np
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
  # Beside MSE/P/R/AP: the test CTs, the samples scored (2 batches of 2) and the label density.
  saved = json.loads((tiny_pretrain_run / "splits.json").read_text())
  for r in rows:
    assert r["test_cts"] == len(saved["test"]) and r["samples"] == 4
    assert 0 < r["positive_fraction"] < 1
  table = (tmp_path / "eval" / "results.md").read_text().splitlines()
  assert table[0] == ("| run | model | step | test CTs | samples | positives % | MSE | "
                      "precision | recall | AP | best F1 | at |")
  r = rows[1]
  # The best checkpoint (the fixture's one evaluation, step 12 of batch 4).
  assert (r["checkpoint"], r["step"], r["samples_seen"]) == ("best", 12, 48)
  assert (rows[0]["step"], rows[0]["samples_seen"]) == (0, 0)
  assert table[3] == (f"| {r['run']} | standard transformer | 12 | {len(saved['test'])} | 4 | "
                      f"{100 * r['positive_fraction']:.3f} | {r['mse']:.2e} | "
                      f"{100 * r['precision']:.1f} | {100 * r['recall']:.1f} | "
                      f"{100 * r['ap']:.1f} | {100 * r['best_f1']:.1f} | "
                      f"{r['f1_threshold']:.3f} |")
  assert (tmp_path / "eval" / "results.csv").read_text().splitlines()[0] == (
      "run,model,checkpoint,step,samples_seen,test_cts,mse,precision,recall,ap,best_f1,"
      "f1_threshold,samples,positive_fraction")
  assert list((tmp_path / "eval").glob("overlay_*.png"))


def test_evaluate_on_a_ct_given_by_path(tiny_pretrain_run, tmp_path):
  # A tiny CT: a soft-tissue block holding a bone rod and a bone ball (32^3, 4 mm voxels).
  i, j, k = np.meshgrid(*[np.arange(32)] * 3, indexing="ij")
  hu = np.full((32, 32, 32), -1000, np.int16)
  hu[6:26, 6:26, 2:30] = 40
  hu[(np.hypot(i - 16, j - 16) < 3) & (k > 4) & (k < 28)] = 1500
  hu[np.sqrt((i - 10) ** 2 + (j - 20) ** 2 + (k - 16) ** 2) < 5] = 1500
  nib.save(nib.Nifti1Image(hu, np.diag([4.0, 4.0, 4.0, 1.0])), str(tmp_path / "hand.nii.gz"))
  config = evaluate.get_config("tiny")
  config.runs = (str(tiny_pretrain_run),)
  config.untrained = False
  config.overlays = 0
  config.eval.batch_size = 2
  config.data.test_path = (str(tmp_path / "hand.nii.gz"),)
  jobs.run(config, str(tmp_path / "eval"))
  (row,) = json.loads((tmp_path / "eval" / "results.json").read_text())
  assert row["test_cts"] == 1 and row["samples"] == 4 and 0 < row["positive_fraction"] < 1
  # The run's own splits.json is left as it was.
  assert str(tmp_path / "hand.nii.gz") not in (tiny_pretrain_run / "splits.json").read_text()


def test_every_checkpoint_on_the_same_batches_and_the_ap_curve(tiny_pretrain_run, tmp_path):
  """checkpoint='all' scores each saved step (the fixture's 6 and 12) on the same samples; the
  latest one's scores equal checkpoint='12''s, and ap_vs_samples.png draws the run's line."""
  config = evaluate.get_config("tiny")
  config.update_from_flattened_dict({"runs": (str(tiny_pretrain_run),), "checkpoint": "all",
                                     "eval.batch_size": 2, "overlays": 0, "eval.batches": 1})
  jobs.run(config, str(tmp_path / "all"))
  rows = json.loads((tmp_path / "all" / "results.json").read_text())
  assert [(r["checkpoint"], r["step"], r["samples_seen"]) for r in rows] == [
      ("untrained", 0, 0), ("6", 6, 24), ("12", 12, 48)]
  assert len({r["positive_fraction"] for r in rows}) == 1     # the same held-out samples
  assert rows[1]["mse"] != rows[2]["mse"]
  config.update_from_flattened_dict({"checkpoint": "12", "untrained": False})
  jobs.run(config, str(tmp_path / "one"))
  (one,) = json.loads((tmp_path / "one" / "results.json").read_text())
  assert one["ap"] == pytest.approx(rows[2]["ap"], rel=1e-6)
  assert one["mse"] == pytest.approx(rows[2]["mse"], rel=1e-5)
  png = tmp_path / "all" / "ap_vs_samples.png"
  assert png.exists() and not (tmp_path / "one" / "ap_vs_samples.png").exists()
  from PIL import Image  # pylint: disable=import-outside-toplevel
  assert min(Image.open(png).size) >= 256


def test_every_run_can_be_scored_on_the_same_views_and_labels(tiny_pretrain_run):
  """views_preset and label_threshold override each run's (AP depends on both); the
  defaults keep the run's own."""
  from jaxcorr.jobs import evaluate as evaluate_job  # pylint: disable=import-outside-toplevel
  config = evaluate.get_config("tiny")
  own = evaluate_job._run_config(str(tiny_pretrain_run), config)
  assert (own.views.preset, own.labels.threshold) == ("jaxcorr", 0.1)
  config.views_preset = "authors"
  config.label_threshold = 0.0
  other = evaluate_job._run_config(str(tiny_pretrain_run), config)
  assert (other.views.preset, other.labels.threshold) == ("authors", 0.0)


def test_evaluate_needs_runs(tmp_path):
  with pytest.raises(ValueError, match="config.runs is empty"):
    jobs.run(evaluate.get_config("tiny"), str(tmp_path))


def test_every_run_can_be_scored_on_views_of_one_framing(tiny_pretrain_run):
  """`framing` overrides each run's views.framing (AP depends on it); empty keeps the run's."""
  from jaxcorr.jobs import evaluate as evaluate_job  # pylint: disable=import-outside-toplevel
  config = evaluate.get_config("tiny")
  assert evaluate_job._run_config(str(tiny_pretrain_run), config).views.framing == "cube"
  config.framing = "anatomy"
  assert evaluate_job._run_config(str(tiny_pretrain_run), config).views.framing == "anatomy"
