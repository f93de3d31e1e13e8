"""Bad inputs and bad configs, each run as a user would meet it (tiny shapes), each ending in a
clear error that names the file or field: no traceback into JAX internals. docs/reliability.md
gives the whole table (what was tried, what each gets, which test checks it); what other test
modules already cover is listed there, not repeated here."""

import gzip
import json
import os
import sys

import nibabel as nib
import numpy as np
import pytest

from conftest import REPO
from jaxcorr import jobs
from jaxcorr.ct import CTError, io

sys.path.insert(0, str(REPO))
from configs import generate, pretrain  # pylint: disable=wrong-import-position

# Small enough for seconds on a CPU: 32^3 cubes, 32^2 views (2 x 2 patches of the tiny model's 16).
_SMALL = {"ct.size": 32, "views.detector_size": (32, 32)}


def _raised_in_jaxcorr(excinfo) -> bool:
  """The error was raised by jaxcorr's own checks, not deep in JAX or NumPy."""
  return f"{os.sep}jaxcorr{os.sep}" in str(excinfo.traceback[-1].path)


def _nothing_trained(workdir) -> bool:
  return (not os.listdir(workdir / "checkpoints") and not (workdir / "metrics.jsonl").exists())


def _ct_folder(folder, good=("a", "b", "c"), bad=("bad",)):
  """A folder of tiny CTs (24^3, 4 mm voxels: air, a soft-tissue block, a bone ball) and of
  text files named like NIfTI (unreadable CTs)."""
  folder.mkdir()
  i, j, k = np.meshgrid(*[np.arange(24)] * 3, indexing="ij")
  for n, name in enumerate(good):
    hu = np.full((24, 24, 24), -1000, np.int16)
    hu[4:20, 4:20, 2:22] = 40
    hu[np.sqrt((i - 12 - n) ** 2 + (j - 12) ** 2 + (k - 12) ** 2) < 4] = 1500
    nib.save(nib.Nifti1Image(hu, np.diag([4.0, 4.0, 4.0, 1.0])), str(folder / f"{name}.nii.gz"))
  for name in bad:
    (folder / f"{name}.nii.gz").write_text("not a CT\n")
  return folder


def _tiny_pretrain(ct_path, **overrides):
  config = pretrain.get_config("tiny")
  config.update_from_flattened_dict({
      **_SMALL, "ct.path": str(ct_path), "steps": 2, "log_every": 1, "eval_every": 2,
      "ckpt.every": 2, "eval.batches": 1, "batch_size": 2, "eval.batch_size": 2, **overrides})
  return config


def _declared_huge(path, shape=(1000, 1000, 1000), payload=2048):
  """A NIfTI whose header declares `shape` float32 voxels followed by `payload` bytes of data."""
  header = nib.Nifti1Header()
  header.set_data_shape(shape)
  header.set_data_dtype(np.float32)
  header.set_qform(np.eye(4), code=1)
  header["vox_offset"] = 352
  data = np.random.default_rng(0).integers(0, 256, payload, np.uint8).tobytes()  # incompressible
  raw = header.binaryblock + b"\0" * 4 + data
  path.write_bytes(gzip.compress(raw) if path.name.endswith(".gz") else raw)
  return path


@pytest.mark.parametrize("name", ["huge.nii", "huge.nii.gz"])
def test_nifti_header_declaring_more_than_the_file_fails_before_reading(tmp_path, name,
                                                                        monkeypatch):
  path = _declared_huge(tmp_path / name)
  assert path.stat().st_size < 3000
  # Any read of the voxel data (the 4 GB allocation) would fail the test.
  monkeypatch.setattr(nib.dataobj_images.DataobjImage, "get_fdata",
                      lambda *a, **k: pytest.fail("voxel data read before the size check"))
  with pytest.raises(CTError) as err:
    io.load_ct(path, max_voxels=2 * 1000 ** 3)
  message = str(err.value)
  assert str(path) in message and "(1000, 1000, 1000) voxels of float32" in message
  assert "4,000,000,352 bytes" in message and "truncated or corrupt" in message


def test_nifti_gz_short_by_its_trailer_is_counted_not_read(tmp_path, monkeypatch):
  # 40^3 float32 declared (256 kB), 2 kB of data: within deflate's ratio, so the gzip trailer
  # and then a streamed count decide.
  path = _declared_huge(tmp_path / "short.nii.gz", shape=(40, 40, 40))
  monkeypatch.setattr(nib.dataobj_images.DataobjImage, "get_fdata",
                      lambda *a, **k: pytest.fail("voxel data read before the size check"))
  with pytest.raises(CTError, match=r"\(40, 40, 40\) voxels of float32 \(256,352 bytes.*holds "
                                    r"2,400 bytes"):
    io.load_ct(path)


# ct.on_error='skip' ---------------------------------------------------------------------------

def test_generate_skips_an_unreadable_ct_writes_the_rest_and_lists_why(tmp_path):
  cts = _ct_folder(tmp_path / "cts")
  config = generate.get_config("tiny")
  config.update_from_flattened_dict({**_SMALL, "ct.path": str(cts), "ct.on_error": "skip",
                                     "generate.samples_per_volume": 1,
                                     "generate.render_batch": 1})
  out = tmp_path / "ds"
  for _ in range(2):   # the rerun goes through too (and tries the bad CT again)
    jobs.run(config, str(out))
    manifest = json.loads((out / "manifest.json").read_text())
    (skipped,) = manifest["skipped"]
    assert skipped["volume"] == str(cts / "bad.nii.gz")
    assert "cannot read NIfTI data" in skipped["reason"]
    assert sum(c["volumes"] for c in manifest["counts"].values()) == 3
    assert sum(c["samples"] for c in manifest["counts"].values()) == 3
  config.ct.on_error = "raise"
  with pytest.raises(CTError, match="bad.nii.gz: cannot read NIfTI data") as err:
    jobs.run(config, str(tmp_path / "raise"))
  assert _raised_in_jaxcorr(err)


def _run_with_splits(tmp_path, *, train, validation, test=("c",)):
  """A folder of CTs a, b, c and an unreadable 'bad' (`_ct_folder`), and a workdir whose
  splits.json assigns them by name: (CT folder, workdir, {name: path})."""
  cts = _ct_folder(tmp_path / "cts")
  work = tmp_path / "run"
  work.mkdir()
  names = {n: str(cts / f"{n}.nii.gz") for n in ("a", "b", "c", "bad")}
  (work / "splits.json").write_text(json.dumps(
      {"train": [names[n] for n in train], "validation": [names[n] for n in validation],
       "test": [names[n] for n in test]}))
  return cts, work, names


def test_pretraining_data_skip_an_unreadable_ct_and_train_on_the_rest(tmp_path):
  """The pretraining task's banks skip the bad CT and the batches come from the rest (the job
  writing skipped.json: the next test)."""
  from jaxcorr.core import sharding  # pylint: disable=import-outside-toplevel
  from jaxcorr.tasks import correspondence  # pylint: disable=import-outside-toplevel
  cts, work, names = _run_with_splits(tmp_path, train=("a", "bad"), validation=("b",))
  config = _tiny_pretrain(cts, **{"ct.on_error": "skip"})
  task = correspondence.CorrespondenceTask(config, str(work), sharding.make_mesh(1))
  batch = next(task.train_batches())
  assert batch["views"].shape == (2, 2, 32, 32, 1)
  assert task.skipped[0][0] == names["bad"] and "cannot read NIfTI" in task.skipped[0][1]
  assert [len(task._banks[s][0]) for s in ("train", "validation")] == [1, 1]


def test_a_split_whose_only_ct_is_skipped_stops_before_training(tmp_path):
  cts, work, names = _run_with_splits(tmp_path, train=("a", "b"), validation=("bad",))
  with pytest.raises(ValueError, match=r"no volumes left for split 'validation': all 1 of its CTs "
                                       r"were skipped .*bad.nii.gz: .*cannot read NIfTI") as err:
    jobs.run(_tiny_pretrain(cts, **{"ct.on_error": "skip"}), str(work))
  assert _raised_in_jaxcorr(err)
  assert _nothing_trained(work)
  assert json.loads((work / "skipped.json").read_text())[0]["volume"] == names["bad"]


# Split sizes ----------------------------------------------------------------------------------

def test_two_cts_leave_validation_empty_an_error_before_training(tmp_path):
  cts = _ct_folder(tmp_path / "cts", good=("a", "b"), bad=())
  work = tmp_path / "run"
  with pytest.raises(ValueError) as err:
    jobs.run(_tiny_pretrain(cts), str(work))
  message = str(err.value)
  assert message.startswith("split 'validation' holds no volume: the 2 volumes of ct.path=")
  assert "train 2, validation 0, test 0 (data.splits=(0.8, 0.1, 0.1)" in message
  assert "Add CTs" in message and "--config.data.splits=" in message
  assert _raised_in_jaxcorr(err)
  assert _nothing_trained(work)


# Resume guards --------------------------------------------------------------------------------

def _workdir_with_work(tmp_path, config, work="checkpoints/2"):
  """A workdir as an earlier run of `config` leaves it: config.json and some work."""
  from jaxcorr.core import files  # pylint: disable=import-outside-toplevel
  workdir = tmp_path / "w"
  files.prepare_workdir(config, str(workdir))
  (workdir / work).parent.mkdir(parents=True, exist_ok=True)
  (workdir / work).mkdir() if "." not in work else (workdir / work).write_bytes(b"")
  return workdir


def test_resume_with_another_model_or_seed_names_the_fields_and_the_override(tmp_path, caplog):
  from jaxcorr.core import config_diff  # pylint: disable=import-outside-toplevel
  workdir = _workdir_with_work(tmp_path, pretrain.get_config("tiny"))
  new = pretrain.get_config("tiny")
  new.update_from_flattened_dict({"model.d_model": 32, "seed": 1, "batch_size": 4,
                                  "log_every": 7, "steps": 300})
  with pytest.raises(config_diff.ResumeError) as err:
    jobs.run(new, str(workdir))
  message = str(err.value)
  assert "\n  batch_size: 8 -> 4\n  eval.batch_size: 8 -> 4\n" not in message  # eval: harmless
  lines = message.splitlines()
  assert lines[1:4] == ["  batch_size: 8 -> 4", "  model.d_model: 64 -> 32", "  seed: 0 -> 1"]
  assert "--config.resume_anyway=True" in lines[-1] and "log_every" not in message
  assert _raised_in_jaxcorr(err)
  # Only harmless changes (cadences, more steps): logged, and the guard lets the run go on.
  breaking, harmless = config_diff.diff(json.loads((workdir / "config.json").read_text()),
                                        json.loads(new.to_json_best_effort()))
  assert [h.split(":")[0] for h in harmless] == ["eval.batch_size", "log_every", "steps"]
  fewer = pretrain.get_config("tiny")
  fewer.steps = 100
  assert config_diff.diff(pretrain.get_config("tiny").to_dict(), fewer.to_dict())[0] == [
      "steps: 200 -> 100"]
  new.resume_anyway = True
  config_diff.check_resume(new, str(workdir))   # accepted, with a warning
  assert len(breaking) == 3


def test_resume_guard_leaves_a_workdir_without_work_alone(tmp_path):
  from jaxcorr.core import config_diff, files  # pylint: disable=import-outside-toplevel
  files.prepare_workdir(pretrain.get_config("tiny"), str(tmp_path))   # a run that failed early
  new = pretrain.get_config("tiny")
  new.seed = 5
  config_diff.check_resume(new, str(tmp_path))
  assert not config_diff.has_work(str(tmp_path))


def test_generate_refuses_to_mix_shard_configurations(tmp_path):
  from jaxcorr.core import config_diff  # pylint: disable=import-outside-toplevel
  config = generate.get_config("tiny")
  workdir = _workdir_with_work(tmp_path, config, "train/00000.array_record")
  config.generate.samples_per_volume = 8
  config.generate.render_batch = 2
  with pytest.raises(config_diff.ResumeError,
                     match=r"\n  generate.samples_per_volume: 4 -> 8\nUse a new --workdir"):
    jobs.run(config, str(workdir))
  # Accepted with the override, the manifest says which fields the earlier shards differ in.
  from jaxcorr.core import files  # pylint: disable=import-outside-toplevel
  from jaxcorr.data import records  # pylint: disable=import-outside-toplevel
  (workdir / "train" / "00000.array_record").unlink()
  files.write_json(str(workdir / "manifest.json"), {"config": generate.get_config("tiny").to_dict()})
  config.resume_anyway = True
  records.write_manifest(str(workdir), config, rejected=0)
  manifest = json.loads((workdir / "manifest.json").read_text())
  assert manifest["mixed_configs"] == ["generate.samples_per_volume: 4 -> 8"]
  assert manifest["config"]["generate"]["samples_per_volume"] == 8


# A radiograph without contrast ---------------------------------------------------------------

def test_predict_marks_the_matches_of_a_blank_radiograph_unreliable(tiny_pretrain_run, tmp_path,
                                                                    caplog):
  import csv  # pylint: disable=import-outside-toplevel
  from absl import logging as absl_logging  # pylint: disable=import-outside-toplevel
  from configs import predict as predict_config  # pylint: disable=import-outside-toplevel
  from jaxcorr.xray import io as xray_io  # pylint: disable=import-outside-toplevel
  blank, bone = tmp_path / "blank.png", tmp_path / "bone.png"
  xray_io.write_png(blank, np.full((64, 64), 0.5, np.float32))
  xray_io.write_png(bone, np.random.default_rng(0).uniform(size=(64, 64)).astype(np.float32))
  config = predict_config.get_config()
  config.update_from_flattened_dict({"checkpoint": str(tiny_pretrain_run), "top_k": 5,
                                     "views": (str(blank), str(bone))})
  caplog.set_level("WARNING")
  absl_logging.get_absl_logger().propagate = True
  jobs.run(config, str(tmp_path / "p"))
  with open(tmp_path / "p" / "study" / "matches.csv") as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 5 and {r["reliable"] for r in rows} == {"0"}
  (warning,) = json.loads((tmp_path / "p" / "study" / "study.json").read_text())["warnings"]
  assert warning.startswith(f"view 0 ({blank}) has no contrast")
  assert f"{blank}: no contrast" in caplog.text and "bone.png: no contrast" not in caplog.text
  # Two views with contrast: every match reliable, no warning.
  config.views = (str(bone), str(bone))
  jobs.run(config, str(tmp_path / "q"))
  with open(tmp_path / "q" / "study" / "matches.csv") as f:
    assert {r["reliable"] for r in csv.DictReader(f)} == {"1"}
  assert json.loads((tmp_path / "q" / "study" / "study.json").read_text())["warnings"] == []


def test_a_label_patch_that_is_not_the_backbone_stride_is_named_before_any_work(tmp_path):
  """labels.patch=8 with a stride-16 backbone used to end in a raw JAX shape TypeError."""
  from jaxcorr.data import validation  # pylint: disable=import-outside-toplevel
  from pretrain_job_test import _tiny  # pylint: disable=import-outside-toplevel
  with pytest.raises(validation.ConfigError, match=r"labels.patch=8.*set labels.patch=16"):
    jobs.run(_tiny(**{"labels.patch": 8}), str(tmp_path))
  assert not (tmp_path / "checkpoints").exists()
