"""Tests for jaxcorr.ct.phantoms: determinism, CT-like contents and anatomy sanity, tiny sizes."""

import numpy as np
import pytest

from jaxcorr.ct import phantoms
from jaxcorr.ct.volume import Volume

KINDS = phantoms.KINDS
SEEDS = (0, 1, 2)


def _neighbours(mask):
  """Voxels with at least one 6-neighbour in `mask` (the grid's faces count as outside)."""
  padded = np.pad(mask, 1)
  out = np.zeros_like(mask)
  for axis in range(3):
    for shift in (-1, 1):
      out |= np.roll(padded, shift, axis=axis)[1:-1, 1:-1, 1:-1]
  return out


def _erode(mask):
  return mask & ~_neighbours(~mask)


@pytest.mark.parametrize("kind", KINDS)
def test_volume_grid(kind):
  vol = phantoms.make_phantom(kind, seed=0, size=24)
  fov = phantoms.DEFAULT_FOV_MM[kind]
  assert isinstance(vol, Volume)
  assert vol.shape == (24, 24, 24) and vol.data.dtype == np.float32
  np.testing.assert_allclose(vol.spacing, fov / 24)
  np.testing.assert_allclose(vol.origin, -23 / 2 * fov / 24)
  np.testing.assert_allclose(vol.center, 0, atol=1e-9)
  np.testing.assert_allclose(vol.extent, fov)
  assert kind in vol.source and "synthetic" in vol.source


def test_fov_override():
  vol = phantoms.make_phantom("knee", size=16, fov_mm=400.0)
  np.testing.assert_allclose(vol.spacing, 25.0)


@pytest.mark.parametrize("kind", KINDS)
def test_deterministic(kind):
  a = phantoms.make_phantom(kind, seed=7, size=32)
  b = phantoms.make_phantom(kind, seed=7, size=32)
  np.testing.assert_array_equal(a.data, b.data)


@pytest.mark.parametrize("kind", KINDS)
def test_seeds_differ(kind):
  a = phantoms.make_phantom(kind, seed=0, size=32).data
  b = phantoms.make_phantom(kind, seed=1, size=32).data
  assert np.mean(np.abs(a - b) > 50) > 0.005


def test_random_phantom():
  kinds = set()
  for seed in range(12):
    vol = phantoms.random_phantom(seed, size=16)
    kind = next(k for k in KINDS if f" {k} " in vol.source)
    kinds.add(kind)
    np.testing.assert_array_equal(
        vol.data, phantoms.make_phantom(kind, seed=seed, size=16).data)
  assert len(kinds) >= 3
  np.testing.assert_array_equal(phantoms.random_phantom(5, size=16).data,
                                phantoms.random_phantom(5, size=16).data)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", SEEDS)
def test_tissue_fractions(kind, seed):
  data = phantoms.make_phantom(kind, seed=seed, size=48).data
  assert data.min() == phantoms.AIR_HU and data.max() < 2000
  air = np.mean(data < -900)
  soft = np.mean((data > -200) & (data < 150))
  fat = np.mean((data > -150) & (data < -50))
  bone = np.mean(data > 300)
  assert 0.85 < air < 0.995
  assert 0.005 < soft < 0.15
  assert fat > 0.0005
  assert 0.001 < bone < 0.05
  assert np.mean(data > 600) > 0  # Dense cortex survives partial volume at 6 mm voxels.


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", SEEDS)
def test_bone_inside_body(kind, seed):
  data = phantoms.make_phantom(kind, seed=seed, size=64).data
  bone, body = data > 300, data > -900
  assert bone.any()
  # Every bone voxel and its 6 neighbours hold tissue or bone, never (nearly pure) air.
  assert not np.any(_neighbours(bone) & ~body)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", SEEDS)
def test_cortical_shell(kind, seed):
  # At 80^3 (3.5-3.75 mm voxels) even the forearm's thin shafts have a core two voxels deep.
  data = phantoms.make_phantom(kind, seed=seed, size=80).data
  bone = data > 200
  shell = bone & ~_erode(bone)
  core = _erode(_erode(bone))
  assert core.sum() > 5
  assert data[shell].mean() > data[core].mean() + 100


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", SEEDS)
def test_air_margin(kind, seed):
  data = phantoms.make_phantom(kind, seed=seed, size=32).data
  for axis in range(3):
    for index in (0, -1):
      face = np.take(data, index, axis=axis)
      assert np.all(face == phantoms.AIR_HU), (axis, index)


def test_bad_kind():
  with pytest.raises(ValueError, match="phantom kind=.* is not allowed; allowed: ") as info:
    phantoms.make_phantom("elbow")
  for kind in KINDS:
    assert kind in str(info.value)


@pytest.mark.parametrize("size", [4, 12.5])
def test_bad_size(size):
  with pytest.raises(ValueError, match="size"):
    phantoms.make_phantom("hand", size=size)
