"""Data on several processes (multiprocess_helpers.py): each process's slice of the stream, generate's
shard ownership and offline pretraining on 2 real processes."""

import json
import os

import numpy as np

import multiprocess_helpers as mp


def test_each_process_reads_its_own_slice_and_together_they_read_the_global_batch():
  """The host pipeline of N processes: process p's batch k holds records p, p + N, ... of the
  1-process batch k, so the processes together read every record of an epoch once."""
  from jaxcorr.data import pipeline  # pylint: disable=import-outside-toplevel
  recipe = lambda record, rng: {"volume": np.int32(record["volume"]),
                                "seed": np.uint32(rng.integers(2 ** 32))}

  def batches(index, count, n=3):
    ds = pipeline.make_dataset(mode="on_the_fly", seed=0, batch_size=4, recipe_maker=recipe,
                               n_volumes=8, threads=0, process_index=index, process_count=count)
    it = iter(ds)
    return [next(it) for _ in range(n)]

  one = batches(0, 1)
  for count in (2, 4):
    parts = [batches(p, count) for p in range(count)]
    for k in range(3):
      for key in ("volume", "seed"):
        np.testing.assert_array_equal(
            np.sort(np.concatenate([part[k][key] for part in parts])), np.sort(one[k][key]))
  epoch = np.concatenate([b["volume"] for b in one[:2]])   # 8 volumes, batches of 4
  assert sorted(epoch.tolist()) == list(range(8))


def test_generate_and_offline_pretraining_on_two_processes(tmp_path):
  """Generate splits the shards between 2 processes (each written once, the manifest counts
  all of them); offline pretraining on them with 2 processes gives the losses of 1 process (run
  here, in the test's own process). The model is an alternating self/cross variant (LoFTR-style),
  so this is also the offline job's end-to-end test for one of the variants whose forward pass
  and shapes models_correspondence_test.py checks."""
  from jaxcorr import jobs  # pylint: disable=import-outside-toplevel
  from pretrain_job_test import _tiny  # pylint: disable=import-outside-toplevel
  gen = {"data.phantoms": 3, "generate.samples_per_volume": 2, "generate.render_batch": 2,
         "drr.method": "dense"}
  logs = mp.main("configs/generate.py:tiny", tmp_path / "ds", gen, processes=2)
  written = [sum("samples/s" in line for line in log.splitlines()) for log in logs]
  assert sorted(written) == [1, 2], logs        # 3 shards, owned by index mod 2
  manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
  assert {s: c["samples"] for s, c in manifest["counts"].items()} == {
      "train": 2, "validation": 2, "test": 2}
  off = {**mp.TINY, "data.mode": "offline", "data.shards": str(tmp_path / "ds"), "steps": 2,
         "eval_every": 2, "model.attention": "loftr"}
  jobs.run(_tiny(**off), str(tmp_path / "one"))
  assert "2" in os.listdir(tmp_path / "one" / "checkpoints")
  mp.main("configs/pretrain.py:tiny", tmp_path / "two", off, processes=2)
  for key in ("train/loss", "eval/mse"):
    a, b = mp.rows(tmp_path / "one", key), mp.rows(tmp_path / "two", key)
    assert sorted(a) == sorted(b) and np.all(np.isfinite(list(a.values())))
    np.testing.assert_allclose(list(b.values()), list(a.values()), rtol=1e-4)
