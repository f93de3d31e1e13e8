"""jaxcorr.ct.fracture on a hand-made tube bone, the phantoms and one real CT."""

import numpy as np
import pytest
from scipy import ndimage

from jaxcorr.ct import CTError, fracture, io, long_bones, phantoms, preprocess, Volume

N = 40
SOFT = 40.0
KW = dict(min_length_mm=20.0)  # the tube is 32 mm long


def _tube():
  """A 40^3 block of soft tissue (1 mm voxels) with a z-aligned tube: cortex 1500 HU for
  4.5 <= r < 7 mm around marrow at 200 HU, z in [4, 36). Returns (volume, bone mask)."""
  i, j, k = np.meshgrid(*[np.arange(N)] * 3, indexing="ij")
  r = np.hypot(i - 19.5, j - 19.5)
  hu = np.full((N, N, N), SOFT, np.float32)
  bone = (k >= 4) & (k < 36) & (r < 7)
  hu[bone] = 1500.0
  hu[bone & (r < 4.5)] = 200.0
  return Volume(hu, np.ones(3), np.zeros(3), "tube"), bone


def _world(shape):
  return np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij"), -1)


def _signed(info, shape):
  return (_world(shape) - info.point) @ info.normal


def test_the_tube_is_one_long_bone_with_its_marrow():
  vol, bone = _tube()
  (b,) = long_bones.find_long_bones(vol, **KW)
  np.testing.assert_allclose(np.abs(b.axis), [0, 0, 1], atol=1e-6)
  np.testing.assert_allclose(b.centroid, [19.5, 19.5, 19.5], atol=1e-6)
  np.testing.assert_allclose(b.length_mm, np.sqrt(32 ** 2 - 1), rtol=1e-3)  # sqrt(12 var)
  region = np.zeros(bone.shape, bool)
  region[b.box] = b.mask
  np.testing.assert_array_equal(region, bone)  # the 200 HU marrow is in, nothing else
  assert long_bones.find_long_bones(vol) == []  # 32 mm < the default 40 mm


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gap_is_soft_tissue_where_the_info_says_and_nothing_else_changes(seed):
  vol, bone = _tube()
  out, info = fracture.insert_fracture(vol, np.random.default_rng(seed), gap_mm=3.0,
                                       max_tilt_deg=15.0, soft_tissue_hu=SOFT, **KW)
  d = _signed(info, vol.shape)
  gap = bone & (np.abs(d) < 1.5)
  assert gap.sum() > 100 and info.gap_voxels == gap.sum()
  np.testing.assert_array_equal(out.data[gap], SOFT)
  np.testing.assert_array_equal(out.data[~gap], vol.data[~gap])
  np.testing.assert_array_equal(info.changed, gap & (vol.data != SOFT))
  assert not info.displaced and np.all(info.translation == 0)
  # On the axis, in the middle third, tilted by at most 15 degrees.
  np.testing.assert_allclose(info.point[:2], 19.5, atol=0.5)
  assert abs(info.point[2] - 19.5) <= 32 / 6 + 1
  assert abs(info.normal @ info.axis) >= np.cos(np.deg2rad(15)) - 1e-9
  assert np.array_equal(vol.data, _tube()[0].data)  # the input is untouched


def test_zero_gap_and_zero_displacement_change_nothing():
  vol, _ = _tube()
  out, info = fracture.insert_fracture(vol, np.random.default_rng(0), gap_mm=0.0, **KW)
  np.testing.assert_array_equal(out.data, vol.data)
  assert info.n_changed == 0 and info.gap_voxels == 0 and info.fragment_voxels == 0


def _centroid(mask):
  return np.argwhere(mask).mean(0)


@pytest.mark.parametrize("seed", [0, 3])
def test_displacement_moves_the_fragment_centroid_by_the_translation(seed):
  vol, bone = _tube()
  out, info = fracture.insert_fracture(vol, np.random.default_rng(seed), gap_mm=2.0,
                                       displacement_mm=4.0, max_tilt_deg=0.0,
                                       axial_fraction=0.0, **KW)
  t = info.translation
  assert info.displaced and 2.0 - 1e-9 <= np.linalg.norm(t) <= 4.0 + 1e-9
  assert abs(t @ info.axis) < 1e-9  # perpendicular, as axial_fraction=0 asks
  d = _signed(info, vol.shape)
  before, after = vol.data > 1000, out.data > 1000
  moved = _centroid(after & (d > 1)) - _centroid(before & (d > 1))
  np.testing.assert_allclose(moved, t, atol=1.0)
  # The moved side is the smaller one; the other side is untouched.
  assert (bone & (d > 1)).sum() <= (bone & (d < -1)).sum()
  np.testing.assert_array_equal(out.data[d < -1], vol.data[d < -1])
  near = ndimage.distance_transform_edt(~bone) <= info.neighbourhood_mm
  assert info.changed.any() and not (info.changed & ~near).any()


def test_angulation_turns_the_fragment_about_the_fracture_point():
  vol, bone = _tube()
  out, info = fracture.insert_fracture(vol, np.random.default_rng(5), gap_mm=2.0,
                                       angulation_deg=20.0, max_tilt_deg=0.0, **KW)
  assert 10.0 - 1e-9 <= info.rotation_deg <= 20.0 + 1e-9
  np.testing.assert_allclose(info.translation, 0.0)
  assert abs(info.rotation_axis @ info.axis) < 1e-9
  d = _signed(info, vol.shape)
  before = _centroid((vol.data > 1000) & (d > 1))
  a, angle = info.rotation_axis, np.deg2rad(info.rotation_deg)
  k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
  rot = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k
  expected = info.point + rot @ (before - info.point)
  world = _world(vol.shape)
  # The moved fragment: cortex voxels on its side of the plane (it stays there for <= 20 deg).
  after = _centroid((out.data > 1000) & (d > 1) & (np.linalg.norm(world - info.point, axis=-1) > 2))
  np.testing.assert_allclose(after, expected, atol=1.0)
  near = ndimage.distance_transform_edt(~bone) <= info.neighbourhood_mm
  assert not (info.changed & ~near).any()


def test_no_long_bone_and_bad_settings_are_clear_errors():
  soft = Volume(np.full((32, 32, 32), SOFT, np.float32), np.ones(3), np.zeros(3), "soft.nii.gz")
  with pytest.raises(long_bones.NoLongBoneError,
                     match=r"soft\.nii\.gz: no long bone.*min_length_mm"):
    fracture.insert_fracture(soft, np.random.default_rng(0))
  assert issubclass(long_bones.NoLongBoneError, CTError)
  vol, _ = _tube()
  with pytest.raises(ValueError, match="fracture.max_tilt_deg=95"):
    fracture.insert_fracture(vol, np.random.default_rng(0), max_tilt_deg=95, **KW)
  with pytest.raises(ValueError, match="fracture.gap_mm=-1"):
    fracture.insert_fracture(vol, np.random.default_rng(0), gap_mm=-1, **KW)


def test_negatives_never_touch_bone_and_keep_their_kind():
  vol, bone = _tube()
  same, info = fracture.make_negative(vol, np.random.default_rng(0), p_change=0.0)
  assert same is vol and info.kind == "none" and info.changed_voxels == 0
  kinds = set()
  for seed in range(12):
    out, info = fracture.make_negative(vol, np.random.default_rng(seed), p_change=1.0,
                                       jitter_hu=20.0, blob_hu=30.0)
    kinds.add(info.kind)
    diff = out.data - vol.data
    assert abs(info.offset_hu) <= (20.0 if info.kind == "jitter" else 30.0)
    if info.kind == "jitter":  # one offset everywhere (no air in this block)
      np.testing.assert_allclose(diff, info.offset_hu, atol=1e-3)
    else:
      assert not diff[bone].any() and np.count_nonzero(diff) == info.changed_voxels
      np.testing.assert_allclose(diff[diff != 0], info.offset_hu, atol=1e-3)
  assert kinds == {"jitter", "blob"}


@pytest.mark.parametrize("kind", ["forearm", "knee"])
def test_phantoms_fracture_deterministically_near_their_bones(kind):
  vol = phantoms.make_phantom(kind, seed=1, size=48)
  args = dict(gap_mm=8.0, displacement_mm=6.0, angulation_deg=10.0)
  out, info = fracture.insert_fracture(vol, np.random.default_rng(0), **args)
  again, _ = fracture.insert_fracture(vol, np.random.default_rng(0), **args)
  np.testing.assert_array_equal(out.data, again.data)
  assert info.gap_voxels > 0 and info.displaced and info.n_changed > info.gap_voxels
  bones = long_bones.find_long_bones(vol)
  (bone,) = [b for b in bones if b.label == info.component]
  region = np.zeros(vol.shape, bool)
  region[bone.box] = bone.mask
  near = ndimage.distance_transform_edt(~region, sampling=vol.spacing) <= info.neighbourhood_mm
  assert not (info.changed & ~near).any()


def test_a_real_thigh_ct_gets_a_femur_fracture(shared_data):
  path = shared_data / "ct" / "ibsi_sts_STS_013_ct.nii.gz"
  if not path.exists():
    pytest.skip(f"{path} is absent")
  cube = preprocess.to_cube(io.load_ct(path), size=64)
  (femur, *_) = long_bones.find_long_bones(cube)
  assert femur.length_mm > 200 and abs(femur.axis[2]) > 0.9  # the femur runs along z
  out, info = fracture.insert_fracture(cube, np.random.default_rng(0), bones=[femur],
                                       gap_mm=2 * cube.spacing[0], displacement_mm=8.0)
  assert info.component == femur.label and info.gap_voxels > 10 and info.displaced
  region = np.zeros(cube.shape, bool)
  region[femur.box] = femur.mask
  near = ndimage.distance_transform_edt(~region, sampling=cube.spacing) <= info.neighbourhood_mm
  assert not (info.changed & ~near).any()
  np.testing.assert_array_equal(out.data[~info.changed], cube.data[~info.changed])
