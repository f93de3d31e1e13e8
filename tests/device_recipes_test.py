"""Recipes on the device: the JAX samplers reproduce the NumPy samplers' distributions, the
coverage rejection keeps what the host's does, and the same seeds give the same recipes."""

import jax
import numpy as np
import pytest

from jaxcorr.data import device_recipes, sampler as sampler_lib, samples

DRAWS = 4000


def _ks(a, b) -> float:
  """The two-sample Kolmogorov-Smirnov distance sup |F_a - F_b|."""
  grid = np.sort(np.concatenate([a, b]))
  fa = np.searchsorted(np.sort(a), grid, side="right") / len(a)
  fb = np.searchsorted(np.sort(b), grid, side="right") / len(b)
  return float(np.abs(fa - fb).max())


def _same_columns(host, dev, name, bound=0.047):
  """Every column of [DRAWS, ...] host and device draws: KS distance and mean."""
  host, dev = host.reshape(len(host), -1), dev.reshape(len(dev), -1)
  for column in range(host.shape[1]):
    a, b = host[:, column], dev[:, column]
    assert _ks(a, b) < bound, (name, column, _ks(a, b))
    np.testing.assert_allclose(b.mean(), a.mean(), atol=5 * (a.std() + 1e-6) / np.sqrt(len(a)))


@pytest.mark.parametrize("view_sampler", [sampler_lib.ViewSampler(n_views=3),
                                          sampler_lib.AuthorsSampler(n_views=3)],
                         ids=["jaxcorr", "authors"])
def test_the_jax_samplers_draw_the_numpy_samplers_distributions(view_sampler):
  extent = 300.0
  rng = np.random.default_rng(0)
  host = [view_sampler.sample(rng, extent) for _ in range(DRAWS)]
  host = {k: np.stack([h[k] for h in host]) for k in sampler_lib.GEOMETRY_KEYS}
  keys = jax.random.split(jax.random.key(0), DRAWS)
  dev = jax.jit(jax.vmap(lambda k: device_recipes.draw(k, view_sampler, extent)))(keys)
  dev = {k: np.asarray(v) for k, v in dev.items()}
  # With 4,000 draws a side and ~40 columns compared, the KS distance a 1% test allows after
  # Bonferroni's correction (alpha = 0.01 / 40) is 2.12 * sqrt(2 / 4000) = 0.047. (At 40,000
  # draws every column here is within 0.011, the distributions agree.)
  for k in sampler_lib.GEOMETRY_KEYS:
    assert dev[k].shape == host[k].shape and dev[k].dtype == np.float32, k
    _same_columns(host[k], dev[k], k)
  if isinstance(view_sampler, sampler_lib.AuthorsSampler):   # integer mm grids, as theirs
    u = extent / sampler_lib.AUTHORS_VOXELS
    np.testing.assert_allclose(dev["sid"] / u, np.round(dev["sid"] / u), atol=1e-3)
    assert set(np.round(dev["translation"][:, 1:], 6).ravel()) == {0.0}


def _bank_and_recipes(volume, seed, min_coverage, max_tries=6):
  # One volume whose anatomy is a small ball at the centre, one far off the axis: views that
  # miss it are rejected.
  ball = np.stack(np.meshgrid(*[np.linspace(-10, 10, 5)] * 3), -1).reshape(-1, 3)
  anatomy = [ball, ball + np.array([140.0, 0.0, 0.0])]
  points, counts = samples.anatomy_arrays(anatomy)
  bank = {"points": points, "counts": counts, "extent": np.full(2, 300.0, np.float32)}
  framing = samples.Framing(detector_size=(64, 64), patch=16, fov_scale=0.4)
  kw = dict(view_sampler=sampler_lib.ViewSampler(), framing=framing,
            min_coverage=min_coverage, max_tries=max_tries)
  out = device_recipes.recipes(bank, np.asarray(volume, np.int32), np.asarray(seed, np.uint32),
                               **kw)
  return bank, framing, {k: np.asarray(v) for k, v in out.items()}


def test_coverage_rejection_keeps_the_first_candidate_that_sees_the_anatomy():
  volume, seed = [0] * 8 + [1] * 8, np.arange(16)
  bank, framing, rec = _bank_and_recipes(volume, seed, min_coverage=0.05)
  assert set(rec) == set(samples.RECIPE_KEYS)
  for b in range(16):
    params = {k: rec[k][b] for k in sampler_lib.GEOMETRY_KEYS}
    cover = np.asarray(samples._coverage(bank["points"][volume[b]], bank["counts"][volume[b]],  # pylint: disable=protected-access
                                         params, bank["extent"][volume[b]], framing))
    assert cover.min() >= 0.05 or rec["rejected"][b] == 5, (b, cover, rec["rejected"][b])
  # The centred ball is seen by (nearly) every draw; the off-axis one needs redraws.
  assert rec["rejected"][:8].mean() < rec["rejected"][8:].mean()
  _, _, free = _bank_and_recipes(volume, seed, min_coverage=0.0)
  assert not free["rejected"].any()


def test_the_same_seeds_give_the_same_recipes_in_any_batch():
  _, _, a = _bank_and_recipes([0, 1, 0, 1], [7, 8, 9, 10], 0.05)
  _, _, b = _bank_and_recipes([1, 0], [10, 9], 0.05)      # another batch, another order
  for k in samples.RECIPE_KEYS:
    np.testing.assert_array_equal(b[k], a[k][[3, 2]])
  _, _, c = _bank_and_recipes([0, 1, 0, 1], [7, 8, 9, 11], 0.05)
  assert not np.array_equal(c["gantry"][3], a["gantry"][3])


def test_auto_draws_on_the_device_only_on_an_accelerator():
  assert device_recipes.resolve("auto", "cpu") == "host"
  assert device_recipes.resolve("auto", "gpu") == "device"
  assert device_recipes.resolve("auto", "tpu") == "device"
  assert device_recipes.resolve("device", "cpu") == "device"


def test_device_recipe_batches_are_deterministic_and_count_the_rejected_draws():
  """The input pipeline with `data.recipes='device'`: the host sends volume indices and seeds,
  the batches have the documented keys, shapes and ranges, and the same seed gives them again."""
  from pipeline_test import _config  # pylint: disable=import-outside-toplevel
  from jaxcorr.data import from_config, pipeline, splits  # pylint: disable=import-outside-toplevel
  config = _config(**{"data.recipes": "device", "data.phantoms": 2})
  bank = from_config.build_bank(splits.list_volumes(config), config)
  spec = from_config.device_recipe_spec(config)
  assert spec.max_tries == config.views.max_tries

  def batches():
    ds = pipeline.make_dataset(mode="on_the_fly", seed=0, batch_size=4, n_volumes=len(bank),
                               recipe_maker=device_recipes.seeds_only, threads=1)
    it = pipeline.DeviceBatches(ds, bank=samples.bank_arrays(bank),
                                framing=from_config.framing(config),
                                threshold=config.labels.threshold,
                                augmentation=from_config.augmentation(config, True),
                                render=True, recipes=spec)
    return it, [{k: np.asarray(v) for k, v in next(it).items()} for _ in range(2)]

  it, first = batches()
  _, again = batches()
  assert set(first[0]) == {"views", "corr", "pairs", "volume"}
  assert first[0]["views"].shape == (4, 2, 64, 64, 1) and first[0]["corr"].shape == (4, 1, 16, 16)
  assert 0 <= first[0]["views"].min() and first[0]["views"].max() <= 1
  assert 0 <= first[0]["corr"].min() and first[0]["corr"].max() <= 1 and first[0]["corr"].max() > 0
  for a, b in zip(first, again):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
  assert isinstance(it.rejected, int) and 0 <= it.rejected <= 8 * (spec.max_tries - 1)



@pytest.mark.parametrize("view_sampler", [sampler_lib.ViewSampler(), sampler_lib.AuthorsSampler()],
                         ids=["jaxcorr", "authors"])
def test_anatomy_framing_draws_the_same_distribution_on_the_host_and_the_device(view_sampler):
  """`views.framing='anatomy'`: the host's `RecipeMaker.draw` and the device's `framed_draw`
  share `anatomy_framing.frame`; their framed detector sizes and offsets agree in law."""
  from jaxcorr.data import anatomy_framing  # pylint: disable=import-outside-toplevel
  box = np.array([[-30.0, -20.0, -90.0], [40.0, 25.0, 110.0]], np.float32)
  framing = samples.Framing(detector_size=(64, 64), anatomy=anatomy_framing.AnatomyFit())
  maker = samples.RecipeMaker(view_sampler, [box], np.full(1, 300.0), framing, min_coverage=0.0,
                              anatomy_box=box[None])
  draws = 1000
  rng = np.random.default_rng(1)
  host = [maker.draw(0, rng) for _ in range(draws)]
  keys = jax.random.split(jax.random.key(1), draws)
  dev = jax.jit(jax.vmap(lambda k: device_recipes.framed_draw(k, view_sampler, 300.0, framing,
                                                              box)))(keys)
  # 2 views x 3 columns at 1,000 draws a side: 1.88 * sqrt(2 / 1000) = 0.084 (alpha 0.01 / 6).
  for k in ("detector_mm", "detector_offset"):
    assert np.all(np.stack([h["detector_mm"] for h in host]) > 0)
    _same_columns(np.stack([h[k] for h in host]), np.asarray(dev[k]), k, bound=0.084)
