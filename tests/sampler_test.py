"""The view sampler reproduces the configured distribution, and views follow its parameters."""

import sys

import numpy as np
import pytest

from conftest import REPO
from jaxcorr.data import from_config, sampler, samples, validation
from jaxcorr.projection import geometry

sys.path.insert(0, str(REPO))
from configs import pretrain  # pylint: disable=wrong-import-position


def test_distribution_matches_the_configuration():
  s = sampler.ViewSampler(n_views=2)
  rng = np.random.default_rng(0)
  draws = [s.sample(rng) for _ in range(4000)]
  gantry = np.concatenate([d["gantry"] for d in draws])
  # Nearest nominal mode of each angle: frequencies follow 0.4/0.3/0.2/0.1.
  modes = np.asarray(s.gantry_modes)
  diff = np.abs((gantry[:, None] - modes[None] + 180) % 360 - 180)
  freq = np.bincount(diff.argmin(1), minlength=4) / len(gantry)
  np.testing.assert_allclose(freq, s.gantry_probs, atol=0.02)
  assert abs(np.std(diff.min(1)) - s.gantry_spread * np.sqrt(1 - 2 / np.pi)) < 0.5
  oop = np.concatenate([d["out_of_plane"] for d in draws])
  assert abs(oop.mean()) < 0.3 and abs(oop.std() - 5.0) < 0.3
  sid = np.concatenate([d["sid"] for d in draws])
  idd = np.concatenate([d["sdd"] for d in draws]) - sid
  assert 1000 <= sid.min() and sid.max() <= 1100 and 800 <= idd.min() and idd.max() <= 1200
  t = np.stack([d["translation"] for d in draws])
  assert t.shape == (4000, 3) and np.abs(t).max() <= 50 and np.abs(t).max() > 45


def test_same_seed_same_draws_and_bad_settings_are_named():
  s = sampler.ViewSampler(n_views=3)
  a = s.sample(np.random.default_rng(7))
  b = s.sample(np.random.default_rng(7))
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  assert a["gantry"].shape == (3,)
  with pytest.raises(ValueError, match="gantry_probs"):
    sampler.ViewSampler(gantry_probs=(0.5, 0.5, 0.5, 0.5))
  with pytest.raises(ValueError, match="n_views"):
    sampler.ViewSampler(n_views=1)
  with pytest.raises(ValueError, match="idd_range"):
    sampler.ViewSampler(idd_range=(900.0, 800.0))


def test_views_follow_the_parameters():
  params = {"gantry": np.array([0.0, 90.0], np.float32), "out_of_plane": np.zeros(2, np.float32),
            "sid": np.array([1000.0, 1050.0], np.float32),
            "sdd": np.array([1900.0, 2000.0], np.float32),
            "translation": np.array([10.0, -5.0, 3.0], np.float32)}
  views = sampler.views_from_params(params, extent_mm=300.0, detector_size=(64, 64))
  src = np.asarray(views.source)
  # Sources sit at sid from the (translated) isocentre: the system moves by -t.
  np.testing.assert_allclose(src[0], [0 - 10.0, 5.0, 1000.0 - 3.0], atol=1e-3)
  np.testing.assert_allclose(src[1], [1050.0 - 10.0, 5.0, -3.0], atol=1e-3)
  spacing = np.linalg.norm(np.asarray(views.det_u), axis=-1)
  want = [geometry.fit_pixel_spacing(300.0, 1000.0, 1900.0, (64, 64)),
          geometry.fit_pixel_spacing(300.0, 1050.0, 2000.0, (64, 64))]
  np.testing.assert_allclose(spacing, want, rtol=1e-5)


class _Draws:
  """A stand-in for np.random.Generator that returns given draws, in the documented order."""

  def __init__(self, *draws):
    self.draws = list(draws)

  def _next(self, *args, **kwargs):
    del args, kwargs
    return self.draws.pop(0)

  integers = choice = standard_normal = _next


def _rot(axis, deg):
  c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
  return {"x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
          "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
          "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]


def test_authors_preset_follows_the_formulas_on_fixed_draws():
  s = sampler.AuthorsSampler(n_views=3)
  # Modes 0, 1, 2; key angles 90, 0, 0; N(0, 1) draws for a and for b; sid; idd; then the
  # translation's mode 1 (negative) and size 7.
  rng = _Draws(np.array([0, 1, 2]), np.array([90.0, 0.0, 0.0]), np.array([1.0, 2.0, -1.0]),
               np.array([-3.0, 0.5, 4.0]), np.array([1000, 1100, 1042]),
               np.array([800, 1200, 999]), 1, 7)
  p = s.sample(rng, extent_mm=512.0)          # u = 512 / 256 = 2 mm per authors' voxel
  # a: (90 + 45) mod 360 = 135; clip(15 * 2, -20, 20) = 20; (0 - 45) mod 360 = 315.
  # b: clip(180 - 45, 150, 210) = 150; clip(180 + 22.5, 0, 360) = 202.5; clip(420, 0, 360) = 360.
  np.testing.assert_array_equal(p["gantry"], [90.0, 90.0, 90.0])
  np.testing.assert_array_equal(p["out_of_plane"], [225.0, 110.0, 405.0])
  np.testing.assert_array_equal(p["in_plane"], [-60.0, -112.5, -270.0])
  np.testing.assert_array_equal(p["sid"], [2000.0, 2200.0, 2084.0])
  np.testing.assert_array_equal(p["sdd"], [3600.0, 4600.0, 4082.0])
  np.testing.assert_array_equal(p["detector_mm"], [1024.0, 1024.0, 1024.0])
  np.testing.assert_array_equal(p["translation"], [-14.0, 0.0, 0.0])
  assert set(p) == set(sampler.GEOMETRY_KEYS) and all(v.dtype == np.float32 for v in p.values())
  # Mode-1 clipping at the other end, translation mode 0 (none) and mode 2 (positive).
  one = sampler.AuthorsSampler(n_views=2).sample(
      _Draws(np.array([1, 0]), np.array([0.0, 270.0]), np.array([-2.0, 0.0]),
             np.array([-5.0, 5.0]), np.array([1000, 1000]), np.array([800, 800]), 0, 33), 256.0)
  np.testing.assert_array_equal(one["out_of_plane"], [340.0 + 90.0, 270.0 + 90.0])
  np.testing.assert_array_equal(one["in_plane"], [90.0 - 0.0, 90.0 - 210.0])
  np.testing.assert_array_equal(one["translation"], [0.0, 0.0, 0.0])
  two = s.sample(_Draws(*[np.zeros(3, int)] * 6, 2, 50), 256.0)
  np.testing.assert_array_equal(two["translation"], [50.0, 0.0, 0.0])


def test_authors_preset_distribution_on_a_seeded_rng():
  s = sampler.AuthorsSampler(n_views=2)
  rng = np.random.default_rng(0)
  draws = [s.sample(rng, extent_mm=256.0) for _ in range(3000)]
  sid = np.concatenate([d["sid"] for d in draws])
  idd = np.concatenate([d["sdd"] for d in draws]) - sid
  assert np.all(sid == np.round(sid)) and (sid.min(), sid.max()) == (1000, 1100)
  assert np.all(idd == np.round(idd)) and (idd.min(), idd.max()) == (800, 1200)
  b = 90.0 - np.concatenate([d["in_plane"] for d in draws])
  assert b.min() == 0.0 and b.max() == 360.0            # modes 1 and 2 clip at both ends
  # b outside [150, 210] only in modes 1 and 2: P = 2/3 * P(|N(0, 45 or 60)| > 30).
  out = np.mean((b < 150) | (b > 210))
  assert abs(out - (0.5050 + 0.6171) / 3) < 0.03
  t = np.stack([d["translation"] for d in draws])
  assert np.all(t[:, 1:] == 0) and np.all(np.abs(t[:, 0]) <= 50)
  np.testing.assert_allclose([np.mean(t[:, 0] == 0), np.mean(t[:, 0] < 0)], [1 / 3, 1 / 3],
                             atol=0.03)


def test_authors_views_are_rtk_add_projection_scaled_to_the_cube():
  params = {"gantry": np.float32([90.0, 90.0]), "out_of_plane": np.float32([225.0, 110.0]),
            "in_plane": np.float32([-60.0, -112.5]), "sid": np.float32([2000.0, 2200.0]),
            "sdd": np.float32([3600.0, 4600.0]), "detector_mm": np.float32([1024.0, 1024.0]),
            "translation": np.float32([-14.0, 0.0, 0.0])}
  views = sampler.views_from_params(params, extent_mm=512.0, detector_size=(64, 64))
  spacing = 1024.0 / 64                                   # the authors' 2 mm at 256 pixels, x 4
  for n in range(2):
    # RTK: world = M rotating, M = Ry(gantry) Rx(out_of_plane) Rz(in_plane); the source at
    # (0, 0, sid), the detector plane at z' = sid - sdd; the system moves by -translation.
    m = (_rot("y", 90.0) @ _rot("x", params["out_of_plane"][n])
         @ _rot("z", params["in_plane"][n]))
    t = params["translation"]
    np.testing.assert_allclose(views.source[n], m @ [0, 0, params["sid"][n]] - t, atol=2e-3)
    np.testing.assert_allclose(views.det_u[n], spacing * m[:, 0], atol=1e-4)
    np.testing.assert_allclose(views.det_v[n], spacing * m[:, 1], atol=1e-4)
    centre = views.det_origin[n] + 31.5 * (views.det_u[n] + views.det_v[n])
    np.testing.assert_allclose(centre, m @ [0, 0, params["sid"][n] - params["sdd"][n]] - t,
                               atol=5e-3)


def test_preset_from_config_reaches_the_rendered_views():
  config = pretrain.get_config("tiny")
  config.views.preset = "authors"
  config.data.phantoms = 1
  assert validation.problems(config) == []
  assert from_config.view_sampler(config) == sampler.AuthorsSampler(n_views=2)
  bank = from_config.build_bank(["phantom:0"], config)
  recipe = from_config.recipe_maker(config, bank)({"volume": 0}, np.random.default_rng(3))
  u = float(bank.extent[0]) / 256
  assert recipe["detector_mm"][0] == pytest.approx(512 * u) and np.all(recipe["gantry"] == 90)
  # The recipe's views are the ones rendered (in_plane and detector_mm travel with it), and
  # both see the phantom on more than min_coverage of their patches.
  maker = from_config.recipe_maker(config, bank)
  assert np.all(maker.coverage(0, recipe) >= config.views.min_coverage)
  got = samples._recipe_views(samples.bank_arrays(bank), recipe, from_config.framing(config))
  want = sampler.views_from_params(recipe, extent_mm=float(bank.extent[0]),
                                   detector_size=(64, 64))
  for a, b in zip(got, want):
    np.testing.assert_allclose(a, b, atol=1e-4)
  np.testing.assert_allclose(np.linalg.norm(got.det_u, axis=-1), 512 * u / 64, rtol=1e-5)
  config.views.orbit = "patient"
  assert validation.problems(config) == [
      "config.views.orbit='patient': views.preset='authors' places its views with RTK's own "
      "axes, as the authors do; use views.orbit='rtk'"]
  config.views.preset = "paper"
  with pytest.raises(ValueError, match="config.views.preset='paper'.*authors"):
    from_config.view_sampler(config)
