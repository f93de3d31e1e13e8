"""Tests of the correspondence labels: fast paths vs the per-voxel oracle, analytic footprints,
symmetry, pair order, batching, pooling and argument errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcorr.ct import phantoms, preprocess
from jaxcorr.projection import geometry, labels


def _random_case(seed, *, dims=(5, 4, 6), det=(48, 64), k=8):
  """Random coarse weights (some below the threshold) and a random circular geometry."""
  rng = np.random.default_rng(seed)
  n = int(rng.integers(2, 5))
  spacing = rng.uniform(3.0, 5.0, 3)
  origin = -(np.asarray(dims) - 1) / 2 * spacing + rng.uniform(-2, 2, 3)
  weights = (rng.random(dims) * (rng.random(dims) < 0.7)).astype(np.float32)
  sid = rng.uniform(80.0, 150.0)
  sdd = sid * rng.uniform(1.3, 2.0)
  extent = float(np.max(np.asarray(dims) * spacing))
  views = geometry.circular_views(
      sid=sid, sdd=sdd, gantry_angles=rng.uniform(0, 360, n),
      out_of_plane_angles=rng.uniform(-20, 20, n), in_plane_angles=rng.uniform(-30, 30, n),
      source_offset=rng.uniform(-5, 5, (n, 2)), projection_offset=rng.uniform(-10, 10, (n, 2)),
      detector_size=det, volume_translation=rng.uniform(-3, 3, 3),
      pixel_spacing=geometry.fit_pixel_spacing(extent, sid=sid, sdd=sdd, detector_size=det))
  return weights, origin, spacing, views, dict(height=det[0], width=det[1], k=k)


@pytest.mark.parametrize("seed", range(6))
def test_fast_paths_match_reference_on_random_geometries(seed):
  weights, origin, spacing, views, det = _random_case(seed)
  want = labels.correspondence_reference(weights, origin, spacing, views, threshold=0.1, **det)
  n = views.source.shape[0]
  assert want.shape == (n * (n - 1) // 2, 6 * 8, 6 * 8)
  assert want.max() > 0.1  # not vacuous
  window = labels.footprint_span(weights.shape, origin, spacing, views, **det)
  assert window < 8  # the tiles are smaller than the grid: the column min is 0
  for method, kw in (("sparse", dict(window=window)), ("dense", dict(chunk=16))):
    got = labels.correspondence_jit(jnp.asarray(weights), origin, spacing, views, threshold=0.1,
                                    method=method, **kw, **det)
    # Both sides compute the same float32 numbers in different XLA programs; ray positions ~30
    # voxels from the source carry ~1e-6 voxel of rounding, which the min-max normalisation of a
    # barely seen voxel can magnify to a few 1e-5 relative.
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-5, err_msg=method)


def test_tiles_covering_the_grid_use_the_true_column_min():
  # Two huge voxels and a 2 x 2 patch grid: some voxels are seen by every patch (min > 0).
  weights, origin, spacing, views, det = _random_case(0, dims=(2, 1, 2), det=(16, 16), k=8)
  spacing = spacing * 4
  origin = -(np.array([2, 1, 2]) - 1) / 2 * spacing
  weights = np.full((2, 1, 2), 0.9, np.float32)
  want = labels.correspondence_reference(weights, origin, spacing, views, **det)
  for method in labels.METHODS:
    got = labels.correspondence_jit(jnp.asarray(weights), origin, spacing, views, method=method,
                                    window=2, **det)
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-5, err_msg=method)


def test_matches_reference_on_a_phantom():
  vol = phantoms.make_phantom("hand", seed=1, size=48)
  intensity = preprocess.bone_sigmoid(vol.data, x0=850.0)
  extent = float(vol.extent.max())
  views = geometry.circular_views(
      sid=400.0, sdd=600.0, gantry_angles=[0.0, 90.0, 30.0], detector_size=(96, 96),
      pixel_spacing=geometry.fit_pixel_spacing(extent, sid=400.0, sdd=600.0,
                                               detector_size=(96, 96)))
  det = dict(height=96, width=96, k=8)
  got = labels.correspondence_from_volume(intensity, vol.origin, vol.spacing, views, **det)
  wc = labels.pool_weights(intensity, 8)
  assert int(jnp.sum(wc > labels.DEFAULT_THRESHOLD)) >= 8
  c_origin, c_spacing = labels.coarse_grid(vol.origin, vol.spacing, 8)
  want = labels.correspondence_reference(wc, c_origin, c_spacing, views, **det)
  np.testing.assert_allclose(np.asarray(got), want, atol=1e-5)
  assert want.max() > 0.5
  np.testing.assert_array_equal(np.asarray(got) >= 0, True)
  assert float(got.max()) <= 1.0


# Near-parallel analytic geometry: source 1e5 mm away, magnification 2, k = 2 pixels of 0.5 mm,
# so patch centres are 0.5 mm apart at the isocentre, on a grid of 1 mm voxels centred on it.
_FAR = dict(sid=1e5, sdd=2e5, pixel_spacing=0.5)


def _tent(offset_mm):
  """Joseph's bilinear reach of a 1 mm voxel for a ray passing `offset_mm` from its centre."""
  return np.maximum(1.0 - np.abs(offset_mm), 0.0)


def _far_views(patches):
  views = geometry.circular_views(gantry_angles=[0.0, 90.0], detector_size=(2 * patches,) * 2,
                                  **_FAR)
  return views, dict(height=2 * patches, width=2 * patches, k=2)


def test_one_bright_voxel_gives_the_outer_product_of_its_footprints():
  n, patches = 7, 5
  weights = np.zeros((n, n, n), np.float32)
  weights[3, 3, 3] = 0.8  # at the world origin
  origin, spacing = np.full(3, -3.0), np.ones(3)
  views, det = _far_views(patches)
  got = np.asarray(labels.correspondence_jit(jnp.asarray(weights), origin, spacing, views,
                                             window=5, **det))
  # Patch (r, c) passes (c - 2) / 2 mm and (r - 2) / 2 mm from the voxel centre in both views.
  offsets = (np.arange(patches) - 2) / 2
  foot = np.outer(_tent(offsets), _tent(offsets)).ravel()  # peak 1: already normalised
  np.testing.assert_allclose(got[0], 0.8 * np.outer(foot, foot), atol=1e-4)


def test_voxel_column_seen_at_0_and_90_degrees_gives_a_band():
  n, patches = 7, 9
  weights = np.zeros((n, n, n), np.float32)
  heights = np.arange(n) - 3.0                # world y of voxel (3, j, 3)
  weights[3, :, 3] = 0.2 + 0.1 * np.arange(n)
  views, det = _far_views(patches)
  got = np.asarray(labels.correspondence_jit(jnp.asarray(weights), np.full(3, -3.0), np.ones(3),
                                             views, window=5, **det))[0]
  pos = (np.arange(patches) - 4) / 2         # patch rows (y) and columns at the isocentre, mm
  want = np.zeros_like(got)
  for j in range(n):
    rows = _tent(pos - heights[j])
    if rows.max() == 0:
      continue  # voxel j (y = +-3 mm) is outside every patch ray's reach
    foot = np.outer(rows / rows.max(), _tent(pos)).ravel()
    want = np.maximum(want, weights[3, j, 3] * np.outer(foot, foot))
  np.testing.assert_allclose(got, want, atol=1e-4)
  # A band: patches correspond only when their rows lie within 2 mm (one voxel's reach).
  r = np.repeat(np.arange(patches), patches)
  far = np.abs(pos[r][:, None] - pos[r][None, :]) >= 2.0
  assert got[far].max() == 0 and got.max() > 0.5


def test_swapping_views_transposes_and_pairs_follow_pair_indices():
  weights, origin, spacing, views, det = _random_case(3)
  views = jax.tree_util.tree_map(lambda x: x[:3], views) if views.source.shape[0] > 3 else views
  n = views.source.shape[0]
  full = np.asarray(labels.correspondence_jit(jnp.asarray(weights), origin, spacing, views,
                                              window=8, **det))
  np.testing.assert_array_equal(labels.pair_indices(4),
                                [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]])
  assert labels.pair_indices(1).shape == (0, 2)
  for p, (i, j) in enumerate(labels.pair_indices(n)):
    swapped = jax.tree_util.tree_map(lambda x, i=i, j=j: x[np.array([j, i])], views)
    c = labels.correspondence_jit(jnp.asarray(weights), origin, spacing, swapped, window=8, **det)
    np.testing.assert_allclose(np.asarray(c)[0], full[p].T, atol=1e-6)
    assert full[p].min() >= 0 and full[p].max() <= 1


def test_batched_over_samples_equals_per_sample():
  cases = [_random_case(s) for s in (10, 11)]
  cases = [(w, o, s, jax.tree_util.tree_map(lambda x: x[:2], v), d) for w, o, s, v, d in cases]
  det = cases[0][4]
  stack = lambda i: jnp.stack([jnp.asarray(c[i], jnp.float32) for c in cases])
  views = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *[c[3] for c in cases])
  batched = jax.jit(lambda *a: labels.correspondence_batch(*a, window=8, **det))(
      stack(0), stack(1), stack(2), views)
  for b, (w, o, s, v, _) in enumerate(cases):
    one = labels.correspondence_jit(jnp.asarray(w), o, s, v, window=8, **det)
    # Same arithmetic, different XLA programs: see the reference test for the tolerance.
    np.testing.assert_allclose(np.asarray(batched[b]), np.asarray(one), rtol=1e-4, atol=1e-5)


def test_footprint_wider_than_the_window_is_an_error_or_nan():
  weights, origin, spacing, views, det = _random_case(4)
  span = labels.footprint_span(weights.shape, origin, spacing, views, **det)
  assert span >= 2
  with pytest.raises(Exception, match=f"window={span - 1}"):
    jax.block_until_ready(labels.correspondence_jit(jnp.asarray(weights), origin, spacing, views,
                                                    window=span - 1, **det))
  c = labels.correspondence_jit(jnp.asarray(weights), origin, spacing, views, window=span - 1,
                                check=False, **det)
  assert np.all(np.isnan(np.asarray(c)))


def test_argument_errors():
  weights, origin, spacing, views, _ = _random_case(5)
  with pytest.raises(ValueError, match="multiple of the patch size k = 8"):
    labels.correspondence(jnp.asarray(weights), origin, spacing, views, height=60, width=64, k=8)
  with pytest.raises(ValueError, match="allowed: sparse, dense"):
    labels.correspondence(jnp.asarray(weights), origin, spacing, views, height=64, width=64, k=8,
                          method="topk")
  with pytest.raises(ValueError, match="multiple"):
    labels.correspondence_reference(weights, origin, spacing, views, height=64, width=66, k=8)
  with pytest.raises(ValueError, match="allowed: mean, max"):
    labels.pool_weights(np.zeros((4, 4, 4)), 2, "median")


def test_pooling_mean_and_max_with_zero_padding():
  x = np.zeros((4, 3, 2), np.float32)
  x[0, 0, 0], x[1, 1, 1], x[3, 2, 0] = 0.8, 0.4, 1.0
  x[2:, :2, :] = 0.5
  mean = np.asarray(labels.pool_weights(x, 2, "mean"))
  mx = np.asarray(labels.pool_weights(x, 2, "max"))
  assert mean.shape == mx.shape == (2, 2, 1)
  # Block (0, 1) covers y = 2 and a zero-padded y = 3: its mean divides by all 8 cells.
  np.testing.assert_allclose(mean[:, :, 0], [[1.2 / 8, 0.0], [4.0 / 8, 1.0 / 8]], rtol=1e-6)
  np.testing.assert_allclose(mx[:, :, 0], [[0.8, 0.0], [0.5, 1.0]])
  c_origin, c_spacing = labels.coarse_grid([-10.0, 0.0, 5.0], [1.0, 2.0, 0.5], 2)
  np.testing.assert_allclose(c_origin, [-9.5, 1.0, 5.25])
  np.testing.assert_allclose(c_spacing, [2.0, 4.0, 1.0])
