"""Prediction: the API on arrays and files, matches, TTA on rotated DRRs, export, the job."""

import csv
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import REPO
from jaxcorr import jobs
from jaxcorr.inference import export as export_lib, tta
from jaxcorr.inference.predictor import Predictor
from jaxcorr.metrics import correspondence as metrics
from jaxcorr.xray import io as xray_io

sys.path.insert(0, str(REPO))
from configs import predict as predict_config  # pylint: disable=wrong-import-position


@pytest.fixture(scope="module")
def predictor(tiny_pretrain_run):
  return Predictor.from_checkpoint(str(tiny_pretrain_run))


def test_predictor_on_arrays_of_any_size(predictor):
  rng = np.random.default_rng(0)
  views = [rng.uniform(size=(80, 50)).astype(np.float32), rng.uniform(size=(64, 64))]
  corr = predictor(views)
  grid = predictor.grid
  assert corr.shape == (1, grid[0] * grid[1], grid[0] * grid[1])
  batch = predictor([views, views[::-1]])
  assert batch.shape == (2,) + corr.shape
  np.testing.assert_allclose(batch[0], corr, atol=1e-5)   # batching changes nothing
  assert not np.allclose(batch[1], corr, atol=1e-3)


def test_matches_are_sorted_and_map_to_original_pixels(predictor):
  rng = np.random.default_rng(1)
  views = [rng.uniform(size=(128, 64)), rng.uniform(size=(64, 64))]
  prepared = predictor.prepare(views)
  corr = predictor.predict_images(prepared.images[None])[0]
  matches = predictor.matches(corr, prepared.boxes, top_k=5)
  assert len(matches) == 5
  scores = [m["score"] for m in matches]
  assert scores == sorted(scores, reverse=True) and scores[0] == pytest.approx(float(corr.max()))
  box = prepared.boxes[0]
  for m in matches:   # patch centres land on the image and map back to their patch
    assert 0 <= m["x_i"] < 64 and 0 <= m["y_i"] < 128
    assert box.patch_of((m["x_i"], m["y_i"]), predictor.patch) == m["patch_i"]
  assert all(m["score"] > 0.3 for m in predictor.matches(corr, prepared.boxes, threshold=0.3))


def test_bad_studies_give_clear_errors(predictor, tmp_path):
  with pytest.raises(ValueError, match="at least 2 views"):
    predictor([np.zeros((64, 64))])
  with pytest.raises(ValueError, match="very different sizes"):
    predictor([np.zeros((640, 640)), np.zeros((32, 32))])
  with pytest.raises(xray_io.XRayError, match="missing.png"):
    predictor([str(tmp_path / "missing.png"), str(tmp_path / "missing.png")])


def _drr_pair():
  """An upright DRR pair of a phantom with its exact C (64 px, patch 16)."""
  import jax  # pylint: disable=import-outside-toplevel
  from jaxcorr.projection import drr, geometry, labels  # pylint: disable=import-outside-toplevel
  from jaxcorr.ct import phantoms, preprocess  # pylint: disable=import-outside-toplevel
  vol = preprocess.to_cube(phantoms.make_phantom("knee", seed=0, size=64), size=64)
  views = geometry.circular_views(sid=1000.0, sdd=1500.0, gantry_angles=np.array([0.0, 90.0]),
                                  detector_size=(64, 64), pixel_spacing=(
                                      geometry.fit_pixel_spacing(float(np.max(vol.extent)),
                                                                 sid=1000.0, sdd=1500.0,
                                                                 detector_size=(64, 64))))
  images = np.asarray(drr.project(preprocess.bone_sigmoid(vol.data), vol.origin, vol.spacing,
                                  views, height=64, width=64))
  corr = np.asarray(labels.correspondence_from_volume(
      preprocess.bone_sigmoid(vol.data, x0=850.0), vol.origin, vol.spacing, views, height=64,
      width=64, k=16))
  del jax
  lo, hi = images.min(axis=(1, 2), keepdims=True), images.max(axis=(1, 2), keepdims=True)
  return (images - lo) / (hi - lo), corr


def test_tta_makes_rotated_inputs_score_like_upright_ones(predictor):
  images, corr = _drr_pair()
  predictor.tta = True
  try:
    upright = predictor.predict_images(images[None])[0]
    r = (1, False)                          # view 1 turned a quarter
    turned = np.stack([images[0], tta.apply(images[1], r)])
    pred = predictor.predict_images(turned[None])[0]
  finally:
    predictor.tta = False
  perm = tta.patch_permutation(predictor.grid, r)
  truth = np.empty_like(corr)
  truth[0][:, perm] = corr[0]               # exact C of the turned pair
  ap_up = metrics.average_precision(upright, corr > metrics.THRESHOLD)
  ap_turned = metrics.average_precision(pred, truth > metrics.THRESHOLD)
  assert ap_turned == pytest.approx(ap_up, abs=1e-3)


def test_export_round_trip_in_a_fresh_process(predictor, tmp_path):
  export_lib.export(predictor, str(tmp_path / "export"), n_views=2, platforms=("cpu",))
  views = np.random.default_rng(2).uniform(size=(3, 2) + predictor.image_size + (1,))
  np.save(tmp_path / "views.npy", views.astype(np.float32))
  expected = predictor.predict_images(views[..., 0])
  script = textwrap.dedent(f"""
      import numpy as np
      from jaxcorr.inference import export
      forward = export.load({str(tmp_path / 'export')!r})
      np.save({str(tmp_path / 'out.npy')!r}, forward(np.load({str(tmp_path / 'views.npy')!r})))
      import sys
      assert 'jaxcorr.models.correspondence' not in sys.modules, 'model code was imported'
  """)
  res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=300, check=False, env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert res.returncode == 0, res.stderr[-2000:]
  np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, atol=1e-5)


def _job_config(checkpoint, **overrides):
  config = predict_config.get_config()
  config.checkpoint = str(checkpoint)
  config.update_from_flattened_dict(overrides)
  return config


def test_predict_job_on_real_radiographs(tiny_pretrain_run, shared_data, tmp_path):
  xrays = sorted(str(p) for p in (shared_data / "xray").glob("*.dcm"))
  config = _job_config(tiny_pretrain_run, views=tuple(xrays), top_k=10, threshold=0.0)
  jobs.run(config, str(tmp_path))
  out = tmp_path / "study"
  for name in ("corr.npy", "matches.csv", "predict.png", "viewer.html", "study.json"):
    assert (out / name).stat().st_size > 0, name
  corr = np.load(out / "corr.npy")
  rows = list(csv.DictReader(open(out / "matches.csv")))
  assert len(rows) == 10 and float(rows[0]["score"]) == pytest.approx(float(corr.max()), abs=1e-3)
  assert rows[0]["x_i_mm"]                   # the hip file states its pixel spacing
  study = json.loads((out / "study.json").read_text())
  assert study["letterboxes"][0]["shape"] != study["letterboxes"][1]["shape"]


def test_batch_run_reports_a_bad_study_and_goes_on(tiny_pretrain_run, tmp_path):
  rng = np.random.default_rng(3)
  for name in ("a", "b"):
    xray_io.write_png(str(tmp_path / f"{name}.png"), rng.uniform(size=(70, 90)), bits=8)
  (tmp_path / "list.csv").write_text("study_id,view_1,view_2\ngood,a.png,b.png\n"
                                     "bad,a.png,nothere.png\nsingle,a.png\n")
  config = _job_config(tiny_pretrain_run, studies=str(tmp_path / "list.csv"))
  jobs.run(config, str(tmp_path / "out"))
  status = {r["study"]: r for r in csv.DictReader(open(tmp_path / "out" / "studies.csv"))}
  assert status["good"]["status"] == "ok" and (tmp_path / "out" / "good" / "viewer.html").exists()
  assert status["bad"]["status"] == "error" and "nothere.png" in status["bad"]["message"]
  assert status["single"]["status"] == "error" and "at least 2 views" in status["single"]["message"]
  with pytest.raises(ValueError, match=r"list2\.csv:2"):
    (tmp_path / "list2.csv").write_text("study_id,view_1\nlonely\n")
    jobs.run(_job_config(tiny_pretrain_run, studies=str(tmp_path / "list2.csv")),
             str(tmp_path / "out2"))


def test_a_classifier_checkpoint_is_refused(tmp_path):
  (tmp_path / "config.json").write_text(json.dumps({"job": "classify"}))
  with pytest.raises(ValueError, match="'classify' run, not a correspondence model"):
    Predictor.from_checkpoint(str(tmp_path))


def test_c_is_in_zero_one_where_users_see_it(predictor, monkeypatch):
  # The plain cosine head scores in [-1, 1]: whatever the network scores, the predictor (so
  # corr.npy, matches and pictures) gives C in [0, 1], negatives clipped to 0.
  l = predictor.grid[0] * predictor.grid[1]
  raw = np.random.default_rng(5).uniform(-1.0, 1.0, (2, 1, l, l)).astype(np.float32)
  monkeypatch.setattr(predictor, "_run", lambda images: raw)
  images = np.zeros((2, 2) + predictor.image_size, np.float32)
  np.testing.assert_array_equal(predictor.predict_images(images), np.clip(raw, 0.0, 1.0))
  monkeypatch.setattr(predictor, "tta", True)
  corr = predictor.predict_images(images)
  assert corr.min() >= 0.0 and corr.max() <= 1.0
