"""Tests for jaxcorr.ct.preprocess: separable resampling, the centred cube, intensity models."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcorr.ct import preprocess
from jaxcorr.ct.volume import Volume


def _random_volume(shape=(7, 6, 5), spacing=(1.0, 1.5, 2.0), origin=(-3.0, 2.0, 10.0), seed=0):
  data = np.random.default_rng(seed).uniform(-1000, 2000, shape).astype(np.float32)
  return Volume(data, spacing, origin, "random")


def _reference(volume, spacing, shape, origin, fill):
  """Plain trilinear sampling of every output voxel with jax map_coordinates."""
  axes = [(origin[a] + spacing[a] * np.arange(shape[a]) - volume.origin[a]) / volume.spacing[a]
          for a in range(3)]
  coords = np.meshgrid(*axes, indexing="ij")
  out = jax.scipy.ndimage.map_coordinates(jnp.asarray(volume.data, jnp.float32),
                                          [jnp.asarray(c, jnp.float32) for c in coords],
                                          order=1, mode="constant", cval=fill)
  return np.asarray(out)


@pytest.mark.parametrize("spacing,shape,origin,fill", [
    ((0.7, 1.1, 0.9), (11, 9, 12), (-4.2, 1.1, 8.7), -1000.0),  # finer, partly outside
    ((2.5, 3.0, 4.5), (4, 3, 3), (-2.0, 3.0, 11.0), 0.0),       # coarser, inside
    ((1.0, 1.5, 2.0), (7, 6, 5), (-3.5, 2.75, 9.0), 5.0),       # half-voxel shift
])
def test_resample_matches_map_coordinates(spacing, shape, origin, fill):
  volume = _random_volume()
  out = preprocess.resample(volume, spacing, shape, origin, fill=fill)
  assert out.shape == shape and out.data.dtype == np.float32
  np.testing.assert_allclose(out.spacing, spacing)
  np.testing.assert_allclose(out.origin, origin)
  ref = _reference(volume, spacing, shape, origin, fill)
  np.testing.assert_allclose(out.data / 3000, ref / 3000, atol=1e-5)


def test_resample_identity_and_integer_shift():
  volume = _random_volume()
  same = preprocess.resample(volume, volume.spacing, volume.shape, volume.origin)
  np.testing.assert_array_equal(same.data, volume.data)
  shifted = preprocess.resample(volume, volume.spacing, volume.shape,
                                volume.origin + (2 * volume.spacing[0], 0, 0))
  np.testing.assert_array_equal(shifted.data[:-2], volume.data[2:])
  np.testing.assert_array_equal(shifted.data[-2:], -1000.0)


def test_to_cube_keeps_extent_centres_and_pads():
  # 40 x 20 x 10 mm slab with a bright 2x2x2 mm block at a known offset from its centre.
  data = np.full((20, 10, 5), 0.0, np.float32)
  data[14:16, 2:4, 2:3] = 1000.0
  volume = Volume(data, (2.0, 2.0, 2.0), (100.0, -50.0, 30.0), "slab")
  block = volume.origin + np.asarray((14.5, 2.5, 2.0)) * volume.spacing - volume.center
  cube = preprocess.to_cube(volume, size=40, isocenter=(5.0, 6.0, 7.0))
  assert cube.shape == (40, 40, 40)
  np.testing.assert_allclose(cube.spacing, 1.0)
  np.testing.assert_allclose(cube.extent, 40.0)  # edge = largest extent
  np.testing.assert_allclose(cube.center, (5, 6, 7))
  # Padding: beyond the slab's y and z extent it is air; inside, the slab's soft tissue.
  assert cube.data[:, 0].max() == -1000.0 and cube.data[:, :, -1].max() == -1000.0
  assert cube.data[20, 20, 20] == 0.0
  # The block moved with the volume: same offset from the centre.
  idx = np.round((np.asarray((5.0, 6.0, 7.0)) + block - cube.origin) / cube.spacing).astype(int)
  assert cube.data[tuple(idx)] > 500
  peak = np.unravel_index(np.argmax(cube.data), cube.shape)
  np.testing.assert_allclose(cube.origin + np.asarray(peak) * cube.spacing - (5, 6, 7), block,
                             atol=1.5)


def test_to_cube_identity_for_centred_cube():
  data = np.random.default_rng(1).uniform(-1000, 1000, (8, 8, 8)).astype(np.float32)
  volume = Volume(data, (1.5,) * 3, (-5.25,) * 3, "cube")
  cube = preprocess.to_cube(volume, size=8)
  np.testing.assert_allclose(cube.origin, volume.origin)
  np.testing.assert_array_equal(cube.data, data)


def test_to_cube_anisotropic_is_isotropic():
  volume = Volume(np.zeros((10, 20, 5), np.float32), (2.0, 0.5, 3.0), (0, 0, 0), "aniso")
  cube = preprocess.to_cube(volume, size=16, fill=-1000.0)
  np.testing.assert_allclose(cube.spacing, 20.0 / 16)  # max extent (x: 20 mm, z: 15 mm)
  np.testing.assert_allclose(cube.center, 0.0, atol=1e-12)
  assert cube.data[8, 8, 8] == 0.0 and cube.data[8, 0, 8] == -1000.0


def test_bone_sigmoid_values():
  hu = np.asarray([500.0, -150.0, -1000.0, 3000.0], np.float32)
  got = preprocess.bone_sigmoid(hu)
  assert isinstance(got, np.ndarray) and got.dtype == np.float32
  np.testing.assert_allclose(got[0], 0.5)
  np.testing.assert_allclose(preprocess.bone_sigmoid(hu, x0=850.0)[1], 0.5)
  expected = 1 / (1 + np.exp(-0.005 * ((hu.astype(np.float64) + 1000) - 1500)))
  np.testing.assert_allclose(got, expected, rtol=1e-6)
  assert np.all(np.diff(preprocess.bone_sigmoid(np.linspace(-1000, 3000, 50))) > 0)


def test_attenuation_values():
  got = preprocess.attenuation(np.asarray([0.0, -1000.0, -3024.0, 1000.0]))
  np.testing.assert_allclose(got, [0.0206, 0.0, 0.0, 0.0412])


def test_intensity_dispatch_and_jax():
  hu = jnp.asarray([500.0, 0.0])
  f = jax.jit(lambda h: preprocess.intensity(h, "bone_sigmoid", x0=1500.0, k=0.005,
                                             mu_water=0.0206))
  out = f(hu)
  assert isinstance(out, jax.Array)
  np.testing.assert_allclose(out[0], 0.5)
  np.testing.assert_allclose(preprocess.intensity(hu, "attenuation", mu_water=0.02), [0.03, 0.02])
  grad = jax.grad(lambda h: preprocess.intensity(h, "bone_sigmoid").sum())(hu)
  np.testing.assert_allclose(grad[0], 0.005 / 4, rtol=1e-5)
  with pytest.raises(ValueError, match="bone_sigmoid, attenuation"):
    preprocess.intensity(hu, "linear")
