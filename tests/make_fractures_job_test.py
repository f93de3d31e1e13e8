"""The make_fractures job: balanced labels per volume, splits by volume, record fields, resume
after a kill, CT folders with a volume that has no long bone, and the reader."""

import json
import os
import sys

import nibabel as nib
import numpy as np
import pytest

from conftest import REPO
from jaxcorr.ct import fracture, long_bones
from jaxcorr.data import fractures, records, splits as splits_lib
from jaxcorr.jobs import make_fractures

sys.path.insert(0, str(REPO))
from configs import make_fractures as fracture_config  # pylint: disable=wrong-import-position


def _shards(workdir, split):
  return records.shard_paths(workdir, split, job="make_fractures")


def _config(**overrides):
  config = fracture_config.get_config("tiny")
  config.data.phantoms = 4
  config.ct.phantom = "forearm"
  config.update_from_flattened_dict(overrides)
  return config


def _records(path):
  from array_record.python import array_record_module  # pylint: disable=import-outside-toplevel
  reader = array_record_module.ArrayRecordReader(str(path))
  out = [fractures.decode(r) for r in reader.read_all()]
  reader.close()
  return out


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  path = tmp_path_factory.mktemp("fractures")
  make_fractures.run(_config(), str(path))
  return path


def test_config_presets_and_checks():
  default, tiny = fracture_config.get_config(), fracture_config.get_config("tiny")
  assert default.job == tiny.job == "make_fractures"
  assert tuple(default.views.detector_size) == (256, 256) and default.labels.patch == 16
  assert tiny.ct.size == 64 and tiny.data.phantoms == 8 and tiny.generate.samples_per_volume == 4
  assert default.ct.on_error == "skip"
  assert set(default.fracture) >= {"gap_mm", "displacement_mm", "angulation_deg", "p_displace"}
  with pytest.raises(ValueError, match="p_displace=1.5 must be in"):
    make_fractures.run(_config(**{"fracture.p_displace": 1.5}), "/nonexistent")
  with pytest.raises(ValueError, match="split_mm=100.0: make_fractures renders whole cubes"):
    make_fractures.run(_config(**{"data.split_mm": 100.0}), "/nonexistent")


def test_labels_are_balanced_per_volume_and_seeded():
  y = fractures.volume_labels(0, 3, 8)
  assert y.sum() == 4 and len(y) == 8 and y.dtype == np.int32
  np.testing.assert_array_equal(y, fractures.volume_labels(0, 3, 8))
  assert any(not np.array_equal(y, fractures.volume_labels(s, 3, 8)) for s in range(1, 5))
  odd = fractures.volume_labels(0, 3, 5)
  assert len(odd) == 5 and odd.sum() in (2, 3)


def test_shards_split_by_volume_with_balanced_labels(workdir):
  splits = json.loads((workdir / "splits.json").read_text())
  manifest = json.loads((workdir / "manifest.json").read_text())
  names = sorted(n for part in splits.values() for n in part)
  assert names == [f"phantom:{i}" for i in range(4)]
  for split in splits_lib.SPLITS:
    volumes = set()
    for shard in _shards(str(workdir), split):
      recs = _records(shard)
      assert [r["label"] for r in recs].count(1) == 2 and len(recs) == 4  # half positive
      volumes |= {r["volume"] for r in recs}
      assert len({r["volume"] for r in recs}) == 1
    assert volumes == set(splits[split])  # no volume outside its split
    counts = manifest["labels"][split]
    assert (counts["positive"], counts["negative"]) == (2 * len(volumes), 2 * len(volumes))
  assert sum(c["samples"] for c in manifest["counts"].values()) == 16
  assert manifest["skipped_volumes"] == [] and manifest["config"]["job"] == "make_fractures"


def test_records_hold_views_labels_and_fracture_geometry(workdir):
  recs = _records(_shards(str(workdir), "train")[0])
  g = _config().generate
  for r in recs:
    assert r["views"].shape == (2, 64, 64) and r["views"].dtype == np.float32
    assert np.all(np.isfinite(r["views"])) and r["views"].max() > 1.0
    assert r["corr"].shape == (1, 16, 16) and 0 <= r["corr"].min() and r["corr"].max() <= 1
    assert r["corr"].max() > 0.1 and r["negative_kind"] in fracture.NEGATIVE_KINDS
    assert r["gantry"].shape == (2,) and r["translation"].shape == (3,)
    np.testing.assert_array_equal(r["visible"], r["visible_px"] >= g.visible_min_px)
    # A pixel above the noise exists exactly when the largest change is above it.
    np.testing.assert_array_equal(r["visible_px"] > 0, r["change"] >= g.visible_noise)
    assert r["redraws"] == 0   # invisible='keep'
    if r["label"] == 1:
      assert r["gap_mm"] == pytest.approx(6.0)
      assert np.all((r["fracture_px"] > 0) & (r["fracture_px"] < 64))  # whole cube in view
      assert np.all((r["ray_plane_deg"] >= 0) & (r["ray_plane_deg"] <= 90))
      assert r["change"].max() > 0.01  # rendering before/after differs
      if r["displacement_mm"] > 0:
        assert 4.0 - 1e-4 <= r["displacement_mm"] <= 8.0 + 1e-4 and r["angulation_deg"] >= 5.0
    else:
      assert r["gap_mm"] == r["displacement_mm"] == 0 and np.all(np.isnan(r["fracture_px"]))
      assert not r["change"].any() and not r["visible"].any() and not r["visible_px"].any()


def test_manifest_counts_the_positives_that_show_their_fracture(workdir):
  manifest = json.loads((workdir / "manifest.json").read_text())
  for split in splits_lib.SPLITS:
    positives = [r for shard in _shards(str(workdir), split) for r in _records(shard)
                 if r["label"] == 1]
    shown = sum(bool(r["visible"].any()) for r in positives)     # visible_in='any'
    counts = manifest["labels"][split]
    assert counts["positive"] == len(positives) and counts["visible"] == shown
    assert counts["visible_fraction"] == pytest.approx(shown / len(positives))
    assert counts["redraws"] == counts["dropped"] == 0


def test_contact_sheet_of_fractured_and_intact_studies(workdir):
  from PIL import Image  # pylint: disable=import-outside-toplevel
  sheet = Image.open(workdir / "samples.png")
  # One row per test CT (1 here): 2 fractured + 2 intact views of >= 256 px, with captions.
  assert sheet.width >= 4 * 256 and 256 < sheet.height < 3 * 256
  pixels = np.asarray(sheet.convert("RGB")).reshape(-1, 3).astype(int)
  red = (pixels[:, 0] > 200) & (pixels[:, 1] < 90) & (pixels[:, 2] < 90)
  assert red.sum() > 100   # the rings around the fracture


def test_downsample_averages_blocks_as_the_classifier_input():
  views = np.arange(2 * 4 * 6, dtype=np.float64).reshape(2, 4, 6)
  np.testing.assert_array_equal(fractures.downsample(views, (0, 0)), views)
  np.testing.assert_array_equal(fractures.downsample(views, (4, 6)), views)
  small = fractures.downsample(views, (2, 3))
  np.testing.assert_array_equal(small[0], [[3.5, 5.5, 7.5], [15.5, 17.5, 19.5]])
  with pytest.raises(ValueError, match="4 x 6 cannot be brought to the model's 3 x 3"):
    fractures.downsample(views, (3, 3))


def test_resume_rewrites_only_the_missing_shard_identically(workdir):
  shards = sorted(workdir.glob("*/*.array_record"))
  victim = sorted((workdir / "train").glob("*.array_record"))[0]
  others = [p for p in shards if p != victim]
  before = _records(victim)
  times = {p: p.stat().st_mtime_ns for p in others}
  os.remove(victim)
  (victim.parent / (victim.name + ".partial")).write_bytes(b"half a shard")
  assert str(victim) not in _shards(str(workdir), "train")
  make_fractures.run(_config(), str(workdir))
  assert {p: p.stat().st_mtime_ns for p in others} == times
  after = _records(victim)
  for a, b in zip(before, after):
    assert a["label"] == b["label"] and a["volume"] == b["volume"]
    np.testing.assert_allclose(a["views"], b["views"], atol=1e-3)


def _nifti(path, bone):
  """A 48^3 CT (2 mm voxels): air, a soft-tissue block and `bone` (a rod or a ball) at 1500 HU."""
  i, j, k = np.meshgrid(*[np.arange(48)] * 3, indexing="ij")
  hu = np.full((48, 48, 48), -1000, np.int16)
  hu[8:40, 8:40, 4:44] = 40
  if bone == "rod":
    hu[(np.hypot(i - 24, j - 24) < 4) & (k >= 6) & (k < 42)] = 1500
  else:
    hu[np.sqrt((i - 24) ** 2 + (j - 24) ** 2 + (k - 24) ** 2) < 6] = 1500
  nib.save(nib.Nifti1Image(hu, np.diag([2.0, 2.0, 2.0, 1.0])), str(path))


def test_ct_folder_with_a_volume_without_long_bone(tmp_path):
  cts = tmp_path / "cts"
  cts.mkdir()
  _nifti(cts / "a_rod.nii.gz", "rod")
  _nifti(cts / "b_ball.nii.gz", "ball")
  overrides = {"ct.path": str(cts), "ct.size": 48, "views.detector_size": (48, 48),
               "generate.with_corr": False, "generate.samples_per_volume": 2,
               "generate.render_batch": 2, "data.splits": (1.0, 0.0, 0.0),
               "fracture.gap_mm": 4.0}
  with pytest.raises(long_bones.NoLongBoneError, match="b_ball.nii.gz: no long bone"):
    make_fractures.run(_config(**overrides, **{"ct.on_error": "raise"}), str(tmp_path / "raise"))
  out = tmp_path / "skip"
  make_fractures.run(_config(**overrides, **{"ct.on_error": "skip"}), str(out))
  manifest = json.loads((out / "manifest.json").read_text())
  assert [os.path.basename(p) for p in manifest["skipped_volumes"]] == ["b_ball.nii.gz"]
  (skipped,) = manifest["skipped"]   # this run's, with the reason
  assert skipped["volume"].endswith("b_ball.nii.gz") and "no long bone" in skipped["reason"]
  assert manifest["labels"]["train"] == {"positive": 1, "negative": 1, "visible": 1,
                                         "redraws": 0, "dropped": 0, "visible_fraction": 1.0}
  (shard,) = _shards(str(out), "train")  # the empty shard is left out
  recs = _records(shard)
  assert sorted(r["label"] for r in recs) == [0, 1]
  assert recs[0]["volume"].endswith("a_rod.nii.gz") and recs[0]["corr"].shape == (0,)
  assert recs[0]["views"].shape == (2, 48, 48)
  with pytest.raises(FileNotFoundError, match="the make_fractures dataset .* has no samples in "
                                              "split 'test' .*'test': 0"):
    _shards(str(out), "test")
  with pytest.raises(ValueError, match="allowed: train, validation, test"):
    _shards(str(out), "valid")


def _rod(tmp_path, **overrides):
  """(path, config) of one rod CT (48^3, 2 mm voxels) with 1 fractured and 1 intact sample,
  every fracture displaced and every negative changed (no C: faster)."""
  path = tmp_path / "rod.nii.gz"
  _nifti(path, "rod")
  return str(path), _config(**{
      "ct.path": str(path), "ct.size": 48, "views.detector_size": (48, 48),
      "generate.with_corr": False, "generate.samples_per_volume": 2,
      "generate.render_batch": 2, "data.splits": (1.0, 0.0, 0.0), "fracture.gap_mm": 4.0,
      "fracture.p_displace": 1.0, "negative.p_change": 1.0, **overrides})


def _volume(path, config):
  recs = [fractures.decode(r) for r in fractures.volume_records(path, 0, config)[0]]
  return {int(r["label"]): r for r in recs}


def test_visible_pixels_zero_for_a_negative_positive_for_a_displaced_fracture(tmp_path):
  path, config = _rod(tmp_path)
  recs = _volume(path, config)
  neg, pos = recs[0], recs[1]
  assert neg["negative_kind"] != "none"    # a harmless change, but no fracture to see
  np.testing.assert_array_equal(neg["visible_px"], [0, 0])
  assert pos["displacement_mm"] >= 4.0 and pos["change"].max() > 0.05
  assert pos["visible_px"].max() > config.generate.visible_min_px and pos["visible"].any()
  # Counted at a model input of half the detector: the same record, at most 24 x 24 pixels.
  config.generate.visible_size = (24, 24)
  small = _volume(path, config)[1]
  np.testing.assert_array_equal(small["views"], pos["views"])
  assert 0 < small["visible_px"].max() <= 24 * 24 and small["redraws"] == 0


def test_invisible_positives_are_dropped_or_redrawn(tmp_path):
  # No view can have more changed pixels than it has: every positive is invisible.
  path, config = _rod(tmp_path, **{"generate.visible_min_px": 48 * 48 + 1})
  keep = _volume(path, config)
  kept = keep[1]
  assert not kept["visible"].any() and kept["redraws"] == 0
  config.generate.invisible = "redraw"
  config.generate.max_redraws = 1
  redrawn = _volume(path, config)
  assert redrawn[1]["redraws"] == 1   # tried once more, then kept
  for key in ("gantry", "in_plane", "sid", "translation"):   # the same views
    np.testing.assert_array_equal(redrawn[1][key], kept[key])
  assert redrawn[1]["negative_kind"] == kept["negative_kind"]
  assert not np.allclose(redrawn[1]["fracture_px"], kept["fracture_px"])   # a new fracture
  np.testing.assert_array_equal(redrawn[0]["views"], keep[0]["views"])  # negatives untouched
  config.generate.invisible = "drop"
  out = tmp_path / "drop"
  make_fractures.run(config, str(out))
  counts = json.loads((out / "manifest.json").read_text())["labels"]["train"]
  assert counts == {"positive": 0, "negative": 1, "visible": 0, "redraws": 0, "dropped": 1,
                    "visible_fraction": 0.0}
  with pytest.raises(ValueError, match="invisible='drop' needs the visibility count"):
    make_fractures.run(_rod(tmp_path, **{"generate.invisible": "drop",
                                         "generate.visibility": False})[1], str(out))
