"""The view sampler reproduces the configured distribution, and views follow its parameters."""

import numpy as np
import pytest

from jaxcorr.data import sampler
from jaxcorr.projection import geometry


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
