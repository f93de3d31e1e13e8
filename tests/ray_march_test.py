"""Tests of the clipped, tiled marcher: the same sums as the dense projector, fewer samples."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcorr.projection import drr, ray_march
from jaxcorr.projection.geometry import Views


def _volume_with_air(rng, shape=(14, 11, 17), box=((3, 2, 5), (9, 8, 12)), background=0.0):
  """Random values inside `box` (inclusive voxel indices), `background` around it."""
  vol = np.full(shape, background, np.float32)
  (x0, y0, z0), (x1, y1, z1) = box
  vol[x0:x1 + 1, y0:y1 + 1, z0:z1 + 1] = rng.random((x1 - x0 + 1, y1 - y0 + 1, z1 - z0 + 1))
  return vol


def _random_rays(rng, vol, origin, spacing, n=300):
  """Rays from all directions: through the volume, missing it, starting or ending inside it,
  and exactly parallel to the axes."""
  extent = (np.array(vol.shape) - 1) * spacing
  centre = origin + extent / 2
  dirs = rng.normal(size=(n, 3))
  dirs[:30] = np.eye(3)[rng.integers(0, 3, 30)] * rng.choice([-1, 1], (30, 1))
  dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
  offsets = rng.normal(size=(n, 3)) * extent / 4         # some rays miss the volume
  length = rng.uniform(5, 60, size=(n, 1))              # short rays start or end inside
  start = centre + offsets - length / 2 * dirs
  return start, start + length * dirs


@pytest.mark.parametrize("background", [0.0, 0.37])
def test_clipped_equals_dense_and_the_numpy_reference_on_random_rays(background):
  rng = np.random.default_rng(0)
  vol = _volume_with_air(rng, background=background)
  origin, spacing = np.array([-3.0, -2.0, -5.0]), np.array([1.0, 0.8, 1.2])
  s, q = _random_rays(rng, vol, origin, spacing)
  dense = drr.project_rays(jnp.asarray(vol), origin, spacing, s, q, method="dense")
  clipped = drr.project_rays(jnp.asarray(vol), origin, spacing, s, q, batch_size=128)
  # Rays through the patient, rays that miss the grid (0) and rays through air only (b x length).
  through_air = np.isclose(np.asarray(dense), background * np.asarray(drr.project_rays(
      jnp.ones_like(vol), origin, spacing, s, q, method="dense")), rtol=1e-5, atol=1e-6)
  assert np.count_nonzero(~through_air) > 100 and np.count_nonzero(through_air) > 20
  np.testing.assert_allclose(np.asarray(clipped), np.asarray(dense), rtol=1e-5, atol=1e-5)
  from drr_test import _numpy_joseph  # pylint: disable=import-outside-toplevel
  want = np.array([_numpy_joseph(vol, origin, spacing, s[i], q[i]) for i in range(40)])
  np.testing.assert_allclose(np.asarray(clipped)[:40], want, rtol=1e-5, atol=1e-5)


def test_grid_integral_is_the_projection_of_a_constant_volume():
  # A constant volume has an empty content box: the whole image is the closed-form sum
  # (ramps at the faces where rays enter and leave, grazing and axis-parallel rays).
  rng = np.random.default_rng(3)
  vol = np.full((9, 12, 7), 1.0, np.float32)
  origin, spacing = np.array([1.0, -2.0, 0.5]), np.array([1.1, 0.7, 1.3])
  s, q = _random_rays(rng, vol, origin, spacing, n=400)
  dense = np.asarray(drr.project_rays(jnp.asarray(vol), origin, spacing, s, q, method="dense"))
  box = np.asarray(drr.content_box(jnp.asarray(vol)))
  assert np.all(box[0] > box[1])
  clipped = np.asarray(drr.project_rays(jnp.asarray(vol), origin, spacing, s, q))
  assert np.count_nonzero(dense) > 200
  np.testing.assert_allclose(clipped, dense, rtol=1e-5, atol=2e-5)


def test_content_box_is_the_box_of_voxels_that_differ_from_the_corner():
  for background in (0.0, 0.25):
    vol = np.full((6, 7, 8), background, np.float32)
    vol[1, 3, 2] = 1.0
    vol[4, 2, 6] = -2.0
    box = np.asarray(drr.content_box(jnp.asarray(vol)))
    np.testing.assert_array_equal(box, [[1, 2, 2], [4, 3, 6]])
    np.testing.assert_array_equal(
        np.asarray(drr.content_box(drr.pad(jnp.asarray(vol)), padded=True)), box)
    assert float(ray_march.background(drr.pad(jnp.asarray(vol)))) == background
  # A lone value in a corner is content, not background: the corners must agree.
  vol = np.zeros((6, 7, 8), np.float32)
  vol[5, 0, 7] = 3.0
  assert float(ray_march.background(drr.pad(jnp.asarray(vol)))) == 0.0
  np.testing.assert_array_equal(np.asarray(drr.content_box(jnp.asarray(vol))),
                                [[5, 0, 7], [5, 0, 7]])
  np.testing.assert_array_equal(np.asarray(ray_march.full_box((6, 7, 8))), [[0, 0, 0], [5, 6, 7]])


def test_all_zero_volume_gives_a_zero_image_without_marching():
  vol = jnp.zeros((10, 10, 10), jnp.float32)
  box = np.asarray(drr.content_box(vol))
  assert np.any(box[0] > box[1])
  views = Views(*(jnp.asarray(a, jnp.float32) for a in
                  ([[0, 0, 50.0]], [[-6.0, -6.0, -30.0]], [[1.0, 0, 0]], [[0, 1.0, 0]])))
  img = drr.project_jit(vol, np.full(3, -4.5), np.ones(3), views, height=12, width=12)
  np.testing.assert_array_equal(np.asarray(img), 0.0)


def test_ray_planes_count_only_the_planes_of_the_box():
  dims, strides = (20, 20, 20), (23 * 23, 23, 1)
  box = jnp.asarray([[5, 6, 7], [12, 15, 9]], jnp.int32)
  # Along +x through the middle of the box: planes x = 5 ... 12.
  s, q = jnp.asarray([[-30.0, 10.0, 8.0]]), jnp.asarray([[50.0, 10.0, 8.0]])
  r = ray_march.ray_planes(dims, strides, jnp.ones(3), s, q, box)
  assert int(r.m0[0]) == 5 and int(r.count[0]) == 8
  # Ending inside the box at x = 9.5: planes 5 ... 9.
  r = ray_march.ray_planes(dims, strides, jnp.ones(3), s, jnp.asarray([[9.5, 10.0, 8.0]]), box)
  assert int(r.m0[0]) == 5 and int(r.count[0]) == 5
  # Passing beside the box (z = 11 > 9 + 1): no planes.
  r = ray_march.ray_planes(dims, strides, jnp.ones(3), s.at[0, 2].set(11.0),
                           q.at[0, 2].set(11.0), box)
  assert int(r.count[0]) == 0


def test_given_box_equals_computed_box_and_full_box():
  rng = np.random.default_rng(1)
  vol = jnp.asarray(_volume_with_air(rng))
  c, s_ = np.cos(0.5), np.sin(0.5)
  views = Views(*(jnp.asarray(a, jnp.float32) for a in
                  ([[0, 0, 60.0], [60 * s_, 3.0, 60 * c]],
                   [[-9.0, -7.0, -30.0], [-9.0 * c - 30 * s_, -7.0, 9.0 * s_ - 30 * c]],
                   [[1.4, 0, 0], [1.4 * c, 0, -1.4 * s_]], [[0, 1.4, 0], [0, 1.4, 0]])))
  args = (vol, np.array([-7.0, -5.0, -8.0]), np.ones(3), views)
  kw = dict(height=13, width=21)  # not whole 8 x 8 tiles
  dense = np.asarray(drr.project_jit(*args, method="dense", **kw))
  for box in (None, drr.content_box(vol), ray_march.full_box(vol.shape)):
    got = np.asarray(drr.project_jit(*args, box=box, **kw))
    np.testing.assert_allclose(got, dense, rtol=1e-5, atol=1e-5)
  assert dense.max() > 1.0


def test_derivatives_come_from_the_dense_formulation():
  # Reverse mode (by transposing this rule) is checked against finite differences in drr_test.
  rng = np.random.default_rng(2)
  vol = jnp.asarray(_volume_with_air(rng, background=0.2))
  origin, spacing = np.array([-3.0, -2.0, -5.0]), np.array([1.0, 0.8, 1.2])
  s, q = (jnp.asarray(a, jnp.float32) for a in _random_rays(rng, np.asarray(vol), origin,
                                                              spacing, n=64))
  f = lambda method: (lambda v, s_: drr.project_rays(v, origin, spacing, s_, q, method=method))
  dv, ds = jnp.asarray(rng.normal(size=vol.shape), jnp.float32), jnp.ones_like(s)
  _, t_clipped = jax.jvp(f("clipped"), (vol, s), (dv, ds))
  _, t_dense = jax.jvp(f("dense"), (vol, s), (dv, ds))
  np.testing.assert_allclose(np.asarray(t_clipped), np.asarray(t_dense), rtol=1e-5, atol=1e-5)
  # Voxels outside the content box still move the image.
  outside = jnp.zeros_like(vol).at[0].set(1.0)
  _, t_out = jax.jvp(f("clipped"), (vol, s), (outside, jnp.zeros_like(s)))
  assert float(jnp.abs(t_out).sum()) > 0


def test_unknown_method_is_an_error_that_lists_the_choices():
  with pytest.raises(ValueError, match="clipped.*dense"):
    drr.project_rays(jnp.zeros((4, 4, 4)), np.zeros(3), np.ones(3), jnp.zeros((1, 3)),
                     jnp.ones((1, 3)), method="siddon")
