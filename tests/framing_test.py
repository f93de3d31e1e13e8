"""Views framed on the anatomy (`views.framing='anatomy'`): the box of the anatomy, the framed
views containing it, labels and DRRs exact under the framed geometry, the detector offset's
analytic shift, and the config's errors."""

import functools
import sys

import numpy as np
import pytest

from conftest import REPO
from jaxcorr.ct import preprocess
from jaxcorr.data import anatomy_framing, from_config, sampler, samples, validation
from jaxcorr.projection import drr, geometry, labels

sys.path.insert(0, str(REPO))
from configs import pretrain  # pylint: disable=wrong-import-position


def _config(framing="anatomy", preset="jaxcorr", **overrides):
  config = pretrain.get_config("tiny")
  config.views.framing = framing
  config.views.preset = preset
  config.update_from_flattened_dict(overrides)
  return config


@pytest.fixture(scope="module")
def bank():
  return from_config.build_bank(["phantom:0"], _config())


def test_the_anatomy_box_is_the_faces_of_the_bone_voxels_without_lone_noisy_ones():
  hu = np.full((32, 32, 32), -1000.0, np.float32)
  hu[5:12, 8:20, 3:30] = 800.0              # bone
  hu[30, 1, 1] = 2000.0                    # one noisy voxel: 1/512 of its 8^3 block
  origin, spacing = np.array([-10.0, 0.0, 5.0]), np.array([1.0, 2.0, 0.5])
  box = anatomy_framing.anatomy_box(hu, origin, spacing, hu_min=300.0, patch=8)
  np.testing.assert_allclose(box[0], origin + (np.array([5, 8, 3]) - 0.5) * spacing)
  np.testing.assert_allclose(box[1], origin + (np.array([11, 19, 29]) + 0.5) * spacing)
  # The body (HU >= -500) is the same block here; no anatomy at all: the whole cube.
  air = anatomy_framing.anatomy_box(np.full((16,) * 3, -1000.0), origin, spacing, hu_min=300.0,
                                    patch=8)
  np.testing.assert_allclose(air, [origin - spacing / 2, origin + 15.5 * spacing])


def test_the_bank_carries_each_volumes_box_and_the_framing_follows_the_config(bank):
  config = _config()
  assert bank.anatomy_box.shape == (1, 2, 3) and bank.subset([0]).anatomy_box.shape == (1, 2, 3)
  assert np.all(bank.anatomy_box[0, 0] < bank.anatomy_box[0, 1])
  assert np.all(np.abs(bank.anatomy_box) <= bank.extent[0] / 2 + 1e-3)
  fit = from_config.framing(config).anatomy
  assert fit == anatomy_framing.AnatomyFit(margin=0.1, zoom=(1.0, 1.3), shift=0.04)
  assert from_config.framing(_config("cube")).anatomy is None
  np.testing.assert_array_equal(samples.bank_arrays(bank)["anatomy_box"], bank.anatomy_box)


def _independent_views(recipe, h, w):
  """The recipe's views built straight from RTK's parameters (orbit 'rtk', fov_scale 1)."""
  return geometry.circular_views(
      sid=recipe["sid"], sdd=recipe["sdd"], gantry_angles=recipe["gantry"],
      out_of_plane_angles=recipe["out_of_plane"], in_plane_angles=recipe["in_plane"],
      projection_offset=recipe["detector_offset"], detector_size=(h, w),
      pixel_spacing=np.stack([recipe["detector_mm"] / max(h, w)] * 2, -1),   # [N, 2]: (sv, su)
      volume_translation=recipe["translation"])


@pytest.mark.parametrize("preset", ["jaxcorr", "authors"])
def test_labels_and_views_of_the_framed_geometry_equal_those_recomputed_from_the_ct(bank, preset):
  config = _config(preset=preset)
  recipe = from_config.recipe_maker(config, bank)({"volume": 0}, np.random.default_rng(5))
  assert np.all(recipe["detector_mm"] > 0) and np.abs(recipe["detector_offset"]).max() > 1.0
  views, corr = samples.render_batch(samples.bank_arrays(bank),
                                     {k: np.asarray(recipe[k])[None] for k in samples.RECIPE_KEYS},
                                     framing=from_config.framing(config),
                                     threshold=config.labels.threshold)
  h, w = config.views.detector_size
  k = config.labels.patch
  mine = _independent_views(recipe, h, w)
  # The CT again from its name: HU cube, label and image intensities, then the slow oracle.
  hu = preprocess.to_cube(from_config.hu_volume("phantom:0", config.ct), size=config.ct.size)
  label = preprocess.bone_sigmoid(hu.data, x0=config.labels.intensity.x0)
  wc = labels.pool_weights(label, k)
  c_origin, c_spacing = labels.coarse_grid(hu.origin, hu.spacing, k)
  want = labels.correspondence_reference(wc, c_origin, c_spacing, mine, height=h, width=w, k=k,
                                         threshold=config.labels.threshold)
  assert want.max() > 0.3
  np.testing.assert_allclose(np.asarray(corr)[0], want, atol=1e-4)
  image = preprocess.bone_sigmoid(hu.data, x0=config.intensity.x0)
  want_views = drr.project(image, hu.origin, hu.spacing, mine, height=h, width=w, method="dense")
  np.testing.assert_allclose(np.asarray(views)[0], np.asarray(want_views), rtol=1e-3, atol=1e-3)


def _mask_extent(bank, config, recipe):
  """Fraction of the image's width and height spanned by the bone (HU >= 300) DRR: [N, 2]."""
  hu = preprocess.to_cube(from_config.hu_volume("phantom:0", config.ct), size=config.ct.size)
  h, w = config.views.detector_size
  views = sampler.views_from_params(recipe, extent_mm=float(bank.extent[0]), detector_size=(h, w),
                                    orbit=config.views.orbit)
  img = np.asarray(drr.project((hu.data >= 300).astype(np.float32), hu.origin, hu.spacing, views,
                               height=h, width=w, method="dense"))
  out = []
  for view in img > 0:
    rows, cols = np.flatnonzero(view.any(1)), np.flatnonzero(view.any(0))
    out.append([(cols[-1] - cols[0] + 1) / w if cols.size else 0.0,
                (rows[-1] - rows[0] + 1) / h if rows.size else 0.0])
  return np.asarray(out)


@pytest.mark.parametrize("orbit", ["rtk", "patient"])
def test_framed_views_contain_the_anatomy_box_and_it_fills_them(bank, orbit):
  # No zoom bound here (this phantom's bone is small: the default bound of 2 would hold).
  config = _config(**{"views.framing_zoom": (1.0, 1.0), "views.framing_shift": 0.0,
                      "views.orbit": orbit, "views.framing_max_zoom": 8.0})
  h, w = config.views.detector_size
  corners = np.asarray(anatomy_framing.corners(bank.anatomy_box[0]))
  hom = np.concatenate([corners, np.ones((8, 1))], -1)
  maker = from_config.recipe_maker(config, bank)
  cube = from_config.recipe_maker(_config("cube", **{"views.orbit": orbit}), bank)
  fill, fill_cube = [], []
  for seed in range(4):
    recipe = maker({"volume": 0}, np.random.default_rng(seed))
    views = (_independent_views(recipe, h, w) if orbit == "rtk" else sampler.views_from_params(
        recipe, extent_mm=float(bank.extent[0]), detector_size=(h, w), orbit=orbit))
    mats = np.asarray(geometry.views_to_matrices(views), np.float64)
    p = np.einsum("nij,aj->nai", mats, hom)
    px = p[..., :2] / p[..., 2:] + 0.5                    # pixel edges: 0 .. W
    lo, hi = px.min(1), px.max(1)
    # Without jitter, the box's projection is centred and its longer side spans 1 / 1.1 of
    # the detector: a margin of 0.1 / 1.1 / 2 of the side on each end of that axis.
    np.testing.assert_allclose((lo + hi) / 2, [[w / 2, h / 2]] * 2, atol=1e-2)
    np.testing.assert_allclose((hi - lo).max(1) / w, 1 / 1.1, rtol=1e-4)
    assert np.all(lo >= 0.045 * w - 1e-2) and np.all(hi <= 0.955 * w + 1e-2)
    fill.append(_mask_extent(bank, config, recipe).max(1))
    fill_cube.append(_mask_extent(bank, config, cube({"volume": 0},
                                                     np.random.default_rng(seed))).max(1))
  # The bone spans most of each framed view, several times what it spans of the cube's view.
  fill, fill_cube = np.concatenate(fill), np.concatenate(fill_cube)
  assert fill.min() > 0.6 and fill.mean() > 2 * fill_cube.mean(), (fill, fill_cube)


def test_the_box_stays_inside_with_the_default_jitter(bank):
  """shift 0.04 <= (1 - 1 / 1.1) / 2: no draw of zoom and shift crops the box."""
  config = _config()
  h, w = config.views.detector_size
  params = [sampler.ViewSampler().sample(np.random.default_rng(s)) for s in range(64)]
  rng = np.random.default_rng(0)
  fit = from_config.framing(config)
  for p in params:
    zoom_u, shift_u = anatomy_framing.uniforms_numpy(rng, 2)
    framed = samples.frame(p, bank.anatomy_box[0], zoom_u, shift_u, fit)
    lo, hi = anatomy_framing.detector_box(framed, bank.anatomy_box[0], detector_size=(h, w))
    half = np.asarray(framed["detector_mm"])[:, None] / 2       # square detector
    off = np.asarray(framed["detector_offset"])
    assert np.all(np.asarray(lo) >= off - half) and np.all(np.asarray(hi) <= off + half)


def test_device_recipes_frame_each_kept_candidate_on_its_volumes_box(bank):
  from jaxcorr.data import device_recipes  # pylint: disable=import-outside-toplevel
  config = _config(**{"views.framing_zoom": (1.0, 1.0), "views.framing_shift": 0.0,
                      "views.framing_max_zoom": 8.0})
  rec = device_recipes.recipes(samples.bank_arrays(bank), np.zeros(3, np.int32),
                               np.arange(3, dtype=np.uint32), view_sampler=sampler.ViewSampler(),
                               framing=from_config.framing(config), min_coverage=0.02,
                               max_tries=3)
  for b in range(3):
    params = {k: np.asarray(rec[k][b]) for k in sampler.GEOMETRY_KEYS}
    lo, hi = (np.asarray(x) for x in anatomy_framing.detector_box(
        params, bank.anatomy_box[0], detector_size=(64, 64)))
    np.testing.assert_allclose((lo + hi) / 2, params["detector_offset"], atol=1e-3)
    np.testing.assert_allclose((hi - lo).max(1) * 1.1, params["detector_mm"], rtol=1e-5)


def test_a_zero_offset_renders_the_old_views_and_an_offset_shifts_them_by_whole_pixels():
  vol = np.zeros((24, 24, 24), np.float32)
  vol[6:18, 9:14, 4:20] = 1.0
  vol[8, 16:20, 10] = 3.0
  origin, spacing = np.full(3, -11.5 * 4.0), np.full(3, 4.0)
  params = {"gantry": np.float32([10.0, 100.0]), "out_of_plane": np.float32([5.0, -3.0]),
            "sid": np.float32([1000.0, 1050.0]), "sdd": np.float32([1800.0, 2000.0]),
            "translation": np.float32([4.0, -6.0, 2.0])}
  h, w = 32, 40
  render = functools.partial(drr.project, vol, origin, spacing, height=h, width=w,
                             method="dense")
  proj = functools.partial(sampler.views_from_params, extent_mm=96.0, detector_size=(h, w))
  old = np.asarray(render(proj(params)))          # a record written before detector_offset
  zero = np.asarray(render(proj({**params, "detector_offset": np.zeros((2, 2), np.float32)})))
  np.testing.assert_array_equal(zero, old)
  # Pixel spacing s; an offset of (a s, b s) puts pixel (r, c) where (r + b, c + a) was.
  s = np.asarray(geometry.fit_pixel_spacing(96.0, params["sid"], params["sdd"], (h, w)))
  a, b = np.array([3, -2]), np.array([-4, 5])
  offset = np.stack([a * s, b * s], -1).astype(np.float32)
  moved = np.asarray(render(proj({**params, "detector_offset": offset})))
  for n in range(2):
    rows = slice(max(0, -b[n]), h - max(0, b[n]))
    cols = slice(max(0, -a[n]), w - max(0, a[n]))
    src = old[n][rows.start + b[n]:rows.stop + b[n], cols.start + a[n]:cols.stop + a[n]]
    np.testing.assert_allclose(moved[n][rows, cols], src, rtol=1e-4, atol=1e-4)
    assert not np.allclose(moved[n], old[n])


def test_bad_framing_values_are_named():
  config = _config(**{"views.framing_margin": -0.1, "views.framing_zoom": (1.2, 1.0),
                      "views.framing_shift": 0.5, "views.framing_hu": 1e4})
  config.views.framing = "collimated"
  found = validation.problems(config)
  assert found == [
      "config.views.framing_margin=-0.1: expected a number >= 0",
      "config.views.framing_zoom=(1.2, 1.0): expected (lo, hi) with 0 < lo <= hi",
      "config.views.framing_shift=0.5: expected a number in [0, 0.5)",
      "config.views.framing_hu=10000.0: expected a number in [-2000, 5000)",
      "config.views.framing='collimated' is not allowed; allowed: cube, anatomy"], found
  with pytest.raises(ValueError, match="config.views.framing='collimated'.*cube, anatomy"):
    from_config.framing(config)
  with pytest.raises(ValueError, match="anatomy boxes"):
    samples.RecipeMaker(sampler.ViewSampler(), [np.zeros((1, 3))], np.ones(1),
                        from_config.framing(_config()))


def test_the_framing_benchmark_measures_both_framings_and_draws_them(tmp_path):
  from jaxcorr.benchmarks import framing as bench  # pylint: disable=import-outside-toplevel
  view = np.zeros((4, 8), np.float32)
  view[1:3, 2:5] = 0.5
  assert bench.coverage(view) == (3 / 8, 6 / 32)
  table, images, params, extent = bench.measure("phantom:0", 2, 32)
  for mask in ("bone", "body"):
    assert table["cube"][mask].shape == table["anatomy"][mask].shape == (4, 2)
    assert table["anatomy"][mask][:, 1].mean() > 1.5 * table["cube"][mask][:, 1].mean()
  for key in ("gantry", "sid", "translation"):
    np.testing.assert_array_equal(params["cube"][key], params["anatomy"][key])
  assert images["cube"].shape == (2, 32, 32) and extent > 0
  path = tmp_path / "framing.png"
  from jaxcorr.pictures import style  # pylint: disable=import-outside-toplevel
  style.save(str(path), bench.figure(images, params, table, extent, 32))
  assert path.stat().st_size > 10_000


def test_a_small_anatomy_is_magnified_at_most_max_zoom_times_the_cube_framing(bank):
  """The field of view never goes below the cube framing's / framing_max_zoom, so the sparse
  labels' tile (`AnatomyFit.label_window`) holds every coarse voxel's footprint."""
  config = _config(**{"views.framing_zoom": (1.0, 1.0), "views.framing_shift": 0.0})
  fit = from_config.framing(config)
  assert fit.anatomy.max_zoom == 2.0 and fit.anatomy.label_window == 9
  h, w = config.views.detector_size
  recipe = from_config.recipe_maker(config, bank)({"volume": 0}, np.random.default_rng(0))
  cube = geometry.fit_pixel_spacing(float(bank.extent[0]), recipe["sid"], recipe["sdd"], (h, w))
  np.testing.assert_allclose(recipe["detector_mm"] / max(h, w), cube / 2.0, rtol=1e-5)
