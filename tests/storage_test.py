"""Workdirs on an object store: a `gs://` path reaches the storage layer as a URI (never a local
folder named `gs:`). No network: `gs://` is served by a local fsspec file system registered for
the test, the way gcsfs serves it in the cloud."""

import json
import os

import ml_collections
import numpy as np
import pytest
from fsspec.implementations.local import LocalFileSystem

from jaxcorr.core import files
from jaxcorr.train import checkpoint, writers


@pytest.fixture
def bucket(tmp_path, monkeypatch):
  """`gs://bucket/...` served from `tmp_path/bucket`; yields that local folder. The test runs in
  another empty folder, to see that nothing named `gs:` appears there."""
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
