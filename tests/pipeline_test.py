"""The input pipeline: determinism, resumable state, per-process slices, offline == on the fly,
and the generate job (shards, splits by volume, resume after a kill)."""

import json
import os
import sys

import numpy as np
import pytest

from conftest import REPO
from jaxcorr import jobs
from jaxcorr.data import from_config, pipeline, records, sampler, samples, splits as splits_lib


sys.path.insert(0, str(REPO))
from configs import common, generate  # pylint: disable=wrong-import-position


def _config(**overrides):
  config = generate.get_config("tiny")
  config.data.phantoms = 4
  config.generate.samples_per_volume = 8
  config.generate.render_batch = 4
  config.augment = common.augment()  # the generate job does not augment; training does
  config.update_from_flattened_dict(overrides)
  return config


@pytest.fixture(scope="module")
def bank():
  config = _config()
  return from_config.build_bank(splits_lib.list_volumes(config), config)


def _batches(config, bank, n, *, threads=2, state=None, augment=True, process=(0, 1)):
  ds = pipeline.make_dataset(mode="on_the_fly", seed=config.seed, batch_size=4,
                             recipe_maker=from_config.recipe_maker(config, bank), n_volumes=len(bank),
                             threads=threads, process_index=process[0],
                             process_count=process[1])
  it = pipeline.DeviceBatches(ds, bank=samples.bank_arrays(bank), framing=from_config.framing(config),
                              threshold=config.labels.threshold,
                              augmentation=from_config.augmentation(config, augment), render=True)
  if state is not None:
    it.set_state(state)
  return it, [{k: np.asarray(v) for k, v in next(it).items()} for _ in range(n)]


def test_batches_have_the_documented_keys_shapes_and_ranges(bank):
  _, (b,) = _batches(_config(), bank, 1)
  assert b["views"].shape == (4, 2, 64, 64, 1) and b["corr"].shape == (4, 1, 16, 16)
  np.testing.assert_array_equal(b["pairs"], [[0, 1]])
  assert 0 <= b["views"].min() and b["views"].max() <= 1
  assert 0 <= b["corr"].min() and b["corr"].max() <= 1 and b["corr"].max() > 0.1
  assert set(b["volume"]) <= set(range(len(bank)))


def test_same_seed_same_batches_whatever_the_threads_and_state_resumes(bank):
  config = _config()
  it, a = _batches(config, bank, 3, threads=1)
  _, b = _batches(config, bank, 3, threads=3)
  for x, y in zip(a, b):
    for k in x:
      np.testing.assert_array_equal(x[k], y[k])
  # Resume from the state after the first batch: the 2nd and 3rd batches come again.
  it2, first = _batches(config, bank, 1)
  state = it2.get_state()
  _, rest = _batches(config, bank, 2, state=state)
  np.testing.assert_array_equal(first[0]["views"], a[0]["views"])
  np.testing.assert_array_equal(rest[0]["corr"], a[1]["corr"])
  np.testing.assert_array_equal(rest[1]["views"], a[2]["views"])
  _, other = _batches(_config(seed=1), bank, 1)
  assert not np.array_equal(other[0]["views"], a[0]["views"])


def test_each_process_reads_its_own_slice(bank):
  config = _config(**{"augment.radiometric.enabled": False, "augment.geometric.enabled": False})
  ds_all = pipeline.make_dataset(mode="on_the_fly", seed=0, batch_size=1,
                                 recipe_maker=from_config.recipe_maker(config, bank), n_volumes=len(bank))
  whole = [next(iter_) for iter_ in [iter(ds_all)] for _ in range(1)]
  it_all = iter(ds_all)
  stream = [next(it_all)["seed"][0] for _ in range(8)]
  seeds = []
  for p in range(2):
    ds = pipeline.make_dataset(mode="on_the_fly", seed=0, batch_size=2,
                               recipe_maker=from_config.recipe_maker(config, bank), n_volumes=len(bank),
                               process_index=p, process_count=2)
    it = iter(ds)
    seeds.append(np.concatenate([next(it)["seed"] for _ in range(4)]))
  np.testing.assert_array_equal(seeds[0], stream[0::2])
  np.testing.assert_array_equal(seeds[1], stream[1::2])
  assert whole[0]["seed"][0] == stream[0]
  with pytest.raises(ValueError, match="not divisible"):
    pipeline.make_dataset(mode="on_the_fly", seed=0, batch_size=3, n_volumes=1,
                          recipe_maker=None, process_count=2)
  with pytest.raises(ValueError, match="on_the_fly, offline"):
    pipeline.make_dataset(mode="online", seed=0, batch_size=2)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("ds")
  jobs.run(_config(), str(workdir))
  return workdir


def test_generate_writes_split_shards_and_a_manifest(generated):
  manifest = json.loads((generated / "manifest.json").read_text())
  splits = json.loads((generated / "splits.json").read_text())
  names = [n for part in splits.values() for n in part]
  assert sorted(names) == [f"phantom:{i}" for i in range(4)] and len(set(names)) == 4
  assert sum(c["samples"] for c in manifest["counts"].values()) == 4 * 8
  assert all(manifest["counts"][s]["volumes"] >= 1 for s in ("train", "validation", "test"))
  assert "jaxcorr" in manifest["code_version"]


def test_offline_records_equal_on_the_fly_rendering_of_their_recipe(generated, bank):
  config = _config()
  shard = sorted((generated / "train").glob("*.array_record"))[0]
  from array_record.python import array_record_module  # pylint: disable=import-outside-toplevel
  reader = array_record_module.ArrayRecordReader(str(shard))
  rec = records.decode(reader.read([0])[0])
  reader.close()
  index = int(rec["volume"].split(":")[1])  # phantom seed == bank index for this config
  recipe = {k: np.asarray(rec[k])[None] for k in sampler.GEOMETRY_KEYS}
  recipe.update(volume=np.array([index], np.int32), seed=np.array([0], np.uint32),
                rejected=np.array([0], np.int32))
  views, corr = samples.render_batch(samples.bank_arrays(bank), recipe,
                                     framing=from_config.framing(config), threshold=0.1)
  np.testing.assert_allclose(rec["views"], np.asarray(views)[0], rtol=2e-3, atol=2e-3)
  np.testing.assert_allclose(rec["corr"], np.asarray(corr)[0], atol=1e-3)


def test_offline_and_on_the_fly_have_the_same_statistics(generated, bank):
  config = _config(**{"augment.radiometric.enabled": False, "augment.geometric.enabled": False})
  shards = records.shard_paths(str(generated), "train")
  off = pipeline.DeviceBatches(
      pipeline.make_dataset(mode="offline", seed=0, batch_size=4, shards=shards),
      framing=from_config.framing(config), threshold=0.1, augmentation=from_config.augmentation(config, False),
      render=False)
  b_off = [next(off) for _ in range(8)]
  # On the fly from the same (training) volumes.
  names = json.loads((generated / "splits.json").read_text())["train"]
  train_bank = bank.subset(int(n.split(":")[1]) for n in names)
  _, b_on = _batches(config, train_bank, 8, augment=False)
  for key in ("views", "corr"):
    m_off = np.mean([np.asarray(b[key]).mean() for b in b_off])
    m_on = np.mean([b[key].mean() for b in b_on])
    assert abs(m_off - m_on) < 0.3 * max(m_off, m_on), (key, m_off, m_on)


def test_generate_resumes_after_a_kill_and_never_reads_partial_shards(generated):
  train = sorted((generated / "train").glob("*.array_record"))
  victim = train[0]
  before = {p.name: p.stat().st_mtime_ns for p in train[1:]}
  os.remove(victim)
  (generated / "train" / (victim.name + ".partial")).write_bytes(b"half a shard")
  assert str(victim) not in records.shard_paths(str(generated), "train")
  jobs.run(_config(), str(generated))
  assert victim.exists()
  assert {p.name: p.stat().st_mtime_ns for p in train[1:]} == before
  with pytest.raises(FileNotFoundError, match="--config=configs/generate.py --workdir="):
    records.shard_paths(str(generated / "empty"), "train")
  with pytest.raises(ValueError, match="split='nothing' is not allowed"):
    records.shard_paths(str(generated), "nothing")


def test_worker_processes_give_the_same_batches(bank):
  config = _config()
  maker = from_config.recipe_maker(config, bank)
  streams = []
  for workers in (0, 2):
    ds = pipeline.make_dataset(mode="on_the_fly", seed=3, batch_size=2, recipe_maker=maker,
                               n_volumes=len(bank), workers=workers)
    it = iter(ds)
    streams.append([next(it) for _ in range(3)])
  for a, b in zip(*streams):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])


def test_appearance_changes_the_views_only(bank):
  config = _config(**{"augment.radiometric.enabled": False, "augment.geometric.enabled": False})
  _, (plain,) = _batches(config, bank, 1)
  config.augment.appearance.enabled = True
  config.augment.appearance.p_invert = 0.0
  _, (look,) = _batches(config, bank, 1)
  np.testing.assert_array_equal(look["corr"], plain["corr"])
  assert 0 <= look["views"].min() and look["views"].max() <= 1
  assert np.abs(look["views"] - plain["views"]).mean() > 0.01
