"""Workdirs, CTs and shards on an object store: a `gs://` path reaches the storage layer as a URI
(never a local folder named `gs:`), CTs and shards are read from local copies in the cache. No
network: `gs://` is served by a local fsspec file system registered for the test, the way gcsfs
serves it in the cloud."""

import json
import os
import sys

import ml_collections
import nibabel as nib
import numpy as np
import pytest
from fsspec.implementations.local import LocalFileSystem

from conftest import REPO
from jaxcorr import jobs
from jaxcorr.core import files
from jaxcorr.ct import io
from jaxcorr.data import pipeline, records, splits
from jaxcorr.train import checkpoint, writers

sys.path.insert(0, str(REPO))
from configs import generate  # pylint: disable=wrong-import-position


@pytest.fixture
def bucket(tmp_path, monkeypatch):
  """`gs://bucket/...` served from `tmp_path/store/bucket`; yields that local folder. The test runs
  in another empty folder, to see that nothing named `gs:` appears there; the cache of local
  copies is `tmp_path/cache`."""
  import fsspec  # pylint: disable=import-outside-toplevel
  from etils.epath import backend  # pylint: disable=import-outside-toplevel
  root = tmp_path / "store"

  class FakeGcs(LocalFileSystem):
    """A local file system that takes `gs://b/k` for `<root>/b/k`."""
    protocol = ("gs", "gcs")

    def __init__(self, *args, **kwargs):
      del args, kwargs
      super().__init__(auto_mkdir=True)

    @classmethod
    def _strip_protocol(cls, path):
      path = str(path)
      for prefix in ("gs://", "gcs://"):
        if path.startswith(prefix):
          return str(root / path[len(prefix):])
      return super()._strip_protocol(path)

  for name in ("gs", "gcs"):
    fsspec.register_implementation(name, FakeGcs, clobber=True)
  backend.fsspec_backend._get_filesystem.cache_clear()   # pylint: disable=protected-access
  cwd = tmp_path / "cwd"
  cwd.mkdir()
  monkeypatch.chdir(cwd)
  monkeypatch.setenv(files.CACHE_ENV, str(tmp_path / "cache"))
  yield root / "bucket"
  backend.fsspec_backend._get_filesystem.cache_clear()   # pylint: disable=protected-access
  assert os.listdir(cwd) == []     # no local folder named 'gs:'


def test_a_uri_stays_a_uri_and_a_local_path_becomes_absolute(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert files.absolute("gs://bucket/run") == "gs://bucket/run"
  assert files.absolute("run") == str(tmp_path / "run")
  assert files.is_uri("s3://b/k") and not files.is_uri("/data/gs/run")
  assert files.run_workdir("gs://bucket/run/checkpoints/200") == "gs://bucket/run"


def test_workdir_files_are_written_to_and_read_from_the_bucket(bucket):
  config = ml_collections.ConfigDict({"job": "pretrain", "steps": 3})
  files.prepare_workdir(config, "gs://bucket/run")
  assert json.loads((bucket / "run" / "config.json").read_text())["steps"] == 3
  assert files.run_config("gs://bucket/run/checkpoints/3").steps == 3
  files.write_json("gs://bucket/run/splits.json", {"train": ["a.nii.gz"]})
  assert files.read_json("gs://bucket/run/splits.json") == {"train": ["a.nii.gz"]}
  files.atomic_save_npy("gs://bucket/run/drr.npy", np.arange(6.0).reshape(2, 3))
  np.testing.assert_array_equal(np.load(bucket / "run" / "drr.npy"), np.arange(6.0).reshape(2, 3))
  with pytest.raises(RuntimeError):             # a failed write publishes nothing
    with files.atomic_output("gs://bucket/run/half.png") as tmp:
      open(tmp, "w").write("half")
      raise RuntimeError("killed")
  assert sorted(os.listdir(bucket / "run")) == ["config.json", "drr.npy", "splits.json"]


def test_metrics_on_the_bucket_hold_one_row_per_step_after_a_resume(bucket):
  w = writers.MetricWriter("gs://bucket/run")
  for step in (1, 2, 3):
    w.write(step, {"train/loss": 1.0 / step})
  w.close()
  rows = [json.loads(l) for l in (bucket / "run" / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in rows] == [1, 2, 3]
  w = writers.MetricWriter("gs://bucket/run", resume_step=2)   # resumed from a step-2 checkpoint
  w.write(3, {"train/loss": 0.25})
  w.close()
  rows = [json.loads(l) for l in (bucket / "run" / "metrics.jsonl").read_text().splitlines()]
  assert [(r["step"], r["train/loss"]) for r in rows] == [(1, 1.0), (2, 0.5), (3, 0.25)]
  assert os.listdir(bucket / "run" / "tb")                   # the TensorBoard events


def test_checkpoint_managers_are_given_the_uri(monkeypatch):
  """Orbax takes the bucket path itself (it needs google-cloud-storage and a bucket, so the
  managers are only recorded here)."""
  seen = []
  monkeypatch.setattr(checkpoint.ocp, "CheckpointManager",
                      lambda directory, **kwargs: seen.append(directory))
  checkpoint.Checkpoints("gs://bucket/run")
  assert seen == ["gs://bucket/run/checkpoints", "gs://bucket/run/best"]


@pytest.fixture
def downloads(monkeypatch):
  """The objects copied into the cache (`files._download` calls), in order."""
  seen = []
  real = files._download   # pylint: disable=protected-access

  def spy(src, dst, stat):
    seen.append(os.fspath(src))
    real(src, dst, stat)
  monkeypatch.setattr(files, "_download", spy)
  return seen


def _nifti(path, shift=0):
  """A tiny CT (12^3, 3 mm voxels): air, a soft-tissue block, a bone cube."""
  hu = np.full((12, 12, 12), -1000, np.int16)
  hu[2:10, 2:10, 1:11] = 40
  hu[5 + shift:8 + shift, 5:8, 5:8] = 1500
  path.parent.mkdir(parents=True, exist_ok=True)
  nib.save(nib.Nifti1Image(hu, np.diag([3.0, 3.0, 3.0, 1.0])), str(path))


def test_cts_on_the_bucket_are_named_by_their_uris_and_read_from_the_cache(bucket, tmp_path,
                                                                           downloads):
  for i, name in enumerate("ab"):
    _nifti(bucket / "cts" / f"{name}.nii.gz", shift=i)
  (bucket / "cts" / "notes.md").write_text("not a CT")
  (bucket / "lists").mkdir()
  (bucket / "lists" / "cts.txt").write_text(
      "# two CTs\ngs://bucket/cts/b.nii.gz\ngs://bucket/cts/a.nii.gz\n")
  a, b = "gs://bucket/cts/a.nii.gz", "gs://bucket/cts/b.nii.gz"
  assert splits.list_paths("gs://bucket/cts") == [a, b]
  assert splits.list_paths(("gs://bucket/lists/cts.txt", a)) == [b, a]
  assert downloads == []                          # listing copies nothing

  local = io.load_ct(bucket / "cts" / "a.nii.gz")
  volume = io.load_ct(a)
  assert volume.source == a and downloads == [a]
  np.testing.assert_array_equal(volume.data, local.data)
  np.testing.assert_array_equal(volume.origin, local.origin)
  np.testing.assert_array_equal(volume.spacing, local.spacing)
  cached = files.cache_path(a)
  assert cached == str(tmp_path / "cache" / "gs" / "bucket" / "cts" / "a.nii.gz")
  np.testing.assert_array_equal(io.load_ct(a).data, local.data)
  assert downloads == [a]                         # the second load reads the cached copy

  whole = open(cached, "rb").read()               # a cut copy, with the object's mtime
  open(cached, "wb").write(whole[:len(whole) // 2])
  mtime = files.path(a).stat().mtime
  os.utime(cached, (mtime, mtime))
  np.testing.assert_array_equal(io.load_ct(a).data, local.data)
  assert downloads == [a, a] and open(cached, "rb").read() == whole
  assert [n for n in os.listdir(os.path.dirname(cached)) if n.startswith(".")] == []

  config = generate.get_config("tiny")          # a run's splits on the bucket name the URIs
  config.ct.path, config.data.test_path = "gs://bucket/cts", b
  assert splits.load_or_assign(config, "gs://bucket/run") == {
      "train": [a], "validation": [], "test": [b]}
  assert json.loads((bucket / "run" / "splits.json").read_text())["test"] == [b]
  (bucket / "run" / "splits.json").write_text(json.dumps({"train": [], "validation": [a]}))
  assert splits.load_or_assign(config, "gs://bucket/run")["validation"] == [a]   # re-used

  assert files.local_copy(str(bucket / "cts" / "b.nii.gz")) == str(bucket / "cts" / "b.nii.gz")
  with pytest.raises(io.CTError, match="gs://bucket/cts/c.nii.gz: no such file"):
    io.load_ct("gs://bucket/cts/c.nii.gz")
  (bucket / "cts" / "bad.nii.gz").write_bytes(whole[:200])
  with pytest.raises(io.CTError, match="^gs://bucket/cts/bad.nii.gz: .*truncated"):
    io.load_ct("gs://bucket/cts/bad.nii.gz")


def test_a_dicom_series_folder_on_the_bucket_is_copied_whole(bucket, downloads):
  from ct_io_test import _dicom_series   # pylint: disable=import-outside-toplevel
  (bucket / "study").mkdir(parents=True)
  hu = _dicom_series(bucket / "study" / "series")
  assert splits.list_paths("gs://bucket/study") == ["gs://bucket/study/series"]
  volume = io.load_ct("gs://bucket/study/series")
  np.testing.assert_array_equal(volume.data, io.load_ct(bucket / "study" / "series").data)
  assert volume.source == "gs://bucket/study/series" and len(downloads) == len(hu)
  io.load_ct("gs://bucket/study/series/")
  assert len(downloads) == len(hu)


def test_a_missing_fsspec_backend_names_the_field_and_the_package(monkeypatch):
  from etils.epath import backend  # pylint: disable=import-outside-toplevel
  backend.fsspec_backend._get_filesystem.cache_clear()   # pylint: disable=protected-access
  monkeypatch.setitem(sys.modules, "s3fs", None)         # not installed
  with pytest.raises(ImportError, match=r"config.data.test_path='s3://b/cts'.*pip install s3fs"):
    splits.list_paths("s3://b/cts", "data.test_path")
  backend.fsspec_backend._get_filesystem.cache_clear()   # pylint: disable=protected-access


def _tiny_generate():
  """The dataset of inspect_tool_test.py (the same compiled programs)."""
  config = generate.get_config("tiny")
  config.data.phantoms = 3
  config.generate.samples_per_volume = 2
  config.generate.render_batch = 2
  return config


def test_generate_writes_its_shards_to_the_bucket_and_training_reads_them_back(bucket, tmp_path,
                                                                               downloads):
  jobs.run(_tiny_generate(), "gs://bucket/ds")
  manifest = json.loads((bucket / "ds" / "manifest.json").read_text())
  assert sum(c["samples"] for c in manifest["counts"].values()) == 3 * 2
  assert json.loads((bucket / "ds" / "splits.json").read_text())["train"]
  stored = sorted((bucket / "ds").glob("*/*.array_record"))
  assert len(stored) == 3 and not list((bucket / "ds").glob("*/*.partial"))
  assert downloads == []           # the written shards are the cached copies already

  train = sorted((bucket / "ds" / "train").glob("*.array_record"))
  paths = records.shard_paths("gs://bucket/ds", "train")
  assert paths == [files.cache_path(f"gs://bucket/ds/train/{p.name}") for p in train]
  assert [records.read_shard(p) for p in paths] == [records.read_shard(str(p)) for p in train]
  os.remove(paths[0])              # another host: copied from the bucket
  assert records.shard_paths("gs://bucket/ds", "train") == paths and len(downloads) == 1
  batch = next(iter(pipeline.make_dataset(mode="offline", seed=0, batch_size=2, shards=paths,
                                          threads=1)))
  first = [records.decode(r) for p in paths for r in records.read_shard(p)]
  assert any(np.allclose(batch["views"][0], r["views"]) for r in first)

  victim, before = stored[0], {p: p.stat().st_mtime_ns for p in stored[1:]}
  victim.unlink()                  # a killed run: only the missing shard is made again
  jobs.run(_tiny_generate(), "gs://bucket/ds")
  assert victim.exists() and {p: p.stat().st_mtime_ns for p in stored[1:]} == before


def test_the_fracture_benchmark_is_made_in_and_resumed_from_a_bucket(bucket):
  """make_fractures into a gs:// workdir: shards, manifest (with the label counts read back from
  the shards) and samples.png on the bucket; a deleted shard alone is made again."""
  from make_fractures_job_test import _config  # pylint: disable=import-outside-toplevel
  jobs.run(_config(), "gs://bucket/fr")
  manifest = json.loads((bucket / "fr" / "manifest.json").read_text())
  assert sum(c["positive"] + c["negative"] for c in manifest["labels"].values()) == 4 * 4
  stored = sorted((bucket / "fr").glob("*/*.array_record"))
  assert len(stored) == 4 and (bucket / "fr" / "samples.png").exists()
  victim, before = stored[0], {p: p.stat().st_mtime_ns for p in stored[1:]}
  victim.unlink()
  jobs.run(_config(), "gs://bucket/fr")
  assert victim.exists() and {p: p.stat().st_mtime_ns for p in stored[1:]} == before
