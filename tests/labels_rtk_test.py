"""jaxcorr's correspondence labels against the paper's construction run with the authors' projector.

The authors build C with one ITK-RTK Joseph projection per coarse voxel (`rtk.correspondence_loop`).
Here that loop runs on a real CT with the true coarse geometry, the same one jaxcorr uses (coarse
voxels keep their physical size; the patch grid is the detector coarsened by k), and the two C
must agree: binarised at 0.2 their IoU is at least 0.9 (the MSE is printed).

One convention differs. RTK's Joseph integrates only between the first and last voxel centres of
the volume (its box is [0, n - 1] in voxel index), jaxcorr over the voxels' full extent (see
drr_rtk_test.py). On the authors' unpadded coarse grid, a voxel on the grid's border therefore
loses half of its footprint in RTK, or all of it for rays that graze the border face, and after
min-max normalisation its labels change a lot; this CT's body touches the border of its 8^3
grid (74 of its 322 voxels above the threshold), so the unpadded loop's IoU with jaxcorr is only
~0.73-0.83. The comparison therefore runs RTK on the grid padded with one voxel of zeros on
every side, which moves RTK's box beyond every voxel's support without changing C (padding
voxels have weight 0; jaxcorr's C is checked to be unchanged by it). A second test runs the
unpadded loop and checks that the disagreement comes from the border voxels only.

Needs itk-rtk and the shared CT (`../shared/data/ct`); skipped without either. Importing itk with
RTK takes ~17 s on a 2-core CPU; the rest of the test takes a few seconds.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from jaxcorr.ct import io, preprocess
from jaxcorr.projection import geometry, labels, rtk

pytestmark = pytest.mark.filterwarnings("ignore:builtin type:DeprecationWarning")

CT = "ct/totalseg_example_ct_abdomen_pelvis_3mm.nii.gz"
SIZE, K, DET = 128, 16, 128   # 128^3 CT -> 8^3 coarse voxels; 128^2 detector -> 8 x 8 patches
SID, SDD = 1000.0, 1500.0
BINARY_AT = 0.2

# Keyword arguments of both `geometry.circular_views` and `rtk.circular_geometry`, per case.
GEOMETRIES = {
    "gantry_0_90_45": dict(gantry_angles=[0.0, 90.0, 45.0]),
    "tilted_pair": dict(gantry_angles=[30.0, 125.0], out_of_plane_angles=[10.0, -15.0],
                        in_plane_angles=[0.0, 20.0], source_offset=[(15.0, -10.0), (-20.0, 5.0)],
                        projection_offset=[(-20.0, 12.0), (10.0, -30.0)]),
}


@pytest.fixture
def coarse(shared_data):
  """(weights [8, 8, 8], coarse origin, coarse spacing, pixel spacing) of the CT."""
  if not rtk.available():
    pytest.skip("itk-rtk is not installed (pip install itk-rtk)")
  path = shared_data / CT
  if not path.exists():
    pytest.skip(f"shared test CT not found at {path}")
  vol = preprocess.to_cube(io.load_ct(path), size=SIZE)
  weights = labels.pool_weights(preprocess.bone_sigmoid(vol.data, x0=850.0), K)
  c_origin, c_spacing = labels.coarse_grid(vol.origin, vol.spacing, K)
  pixel = geometry.fit_pixel_spacing(float(vol.extent.max()), sid=SID, sdd=SDD,
                                     detector_size=(DET, DET))
  return np.asarray(weights), np.asarray(c_origin), np.asarray(c_spacing), pixel


def _compare(ours, theirs, what):
  """(IoU of the labels > BINARY_AT, MSE); prints them."""
  a, b = ours > BINARY_AT, theirs > BINARY_AT
  iou = float((a & b).sum() / max((a | b).sum(), 1))
  mse = float(np.mean((ours - theirs) ** 2))
  print(f"{what}: {int(b.sum())} RTK labels > {BINARY_AT}, IoU {iou:.4f}, MSE {mse:.2e}, "
        f"max |diff| {np.abs(ours - theirs).max():.3f}")
  assert b.sum() > 50  # not vacuous
  return iou, mse


def _both(weights, c_origin, c_spacing, pixel, name, *, pad=0, voxels=None):
  """jaxcorr's C and the RTK loop's C (over `voxels`, default those above the threshold)."""
  params = dict(sid=SID, sdd=SDD, **GEOMETRIES[name])
  views = geometry.circular_views(detector_size=(DET, DET), pixel_spacing=pixel, **params)
  ours = np.asarray(labels.correspondence_jit(jnp.asarray(weights), c_origin, c_spacing, views,
                                              height=DET, width=DET, k=K))
  if voxels is None:
    voxels = list(zip(*np.nonzero(weights > labels.DEFAULT_THRESHOLD)))
  theirs = rtk.correspondence_loop(
      np.pad(weights, pad), c_origin - pad * c_spacing, c_spacing, rtk.circular_geometry(**params),
      patch_grid=(DET // K, DET // K), patch_spacing=K * pixel,
      voxels=[tuple(int(i) + pad for i in v) for v in voxels])
  return ours, theirs


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_labels_match_the_rtk_per_voxel_loop(coarse, name):
  weights, c_origin, c_spacing, pixel = coarse
  assert (weights > labels.DEFAULT_THRESHOLD).sum() >= 50, "the CT should fill the coarse grid"
  ours, theirs = _both(weights, c_origin, c_spacing, pixel, name, pad=1)
  # Zero padding leaves jaxcorr's labels as they are (so RTK's padded loop computes the same C).
  pad_ours, _ = _both(np.pad(weights, 1), c_origin - c_spacing, c_spacing, pixel, name, voxels=[])
  np.testing.assert_allclose(pad_ours, ours, atol=1e-5)
  iou, mse = _compare(ours, theirs, f"{name}, RTK on the zero-padded grid")
  assert iou >= 0.9
  assert mse <= 1e-4


def test_unpadded_rtk_loop_differs_on_border_voxels_only(coarse):
  weights, c_origin, c_spacing, pixel = coarse
  name = "gantry_0_90_45"
  ours, theirs = _both(weights, c_origin, c_spacing, pixel, name)
  iou_all, _ = _compare(ours, theirs, f"{name}, RTK on the authors' unpadded grid")
  border = np.ones(weights.shape, bool)
  border[1:-1, 1:-1, 1:-1] = False
  inner = np.where(border, 0.0, weights).astype(np.float32)
  assert (weights[border] > labels.DEFAULT_THRESHOLD).sum() >= 20  # the body touches the border
  ours, theirs = _both(inner, c_origin, c_spacing, pixel, name)
  iou, mse = _compare(ours, theirs, f"{name}, unpadded grid, interior voxels only")
  assert iou_all < 0.9
  assert iou >= 0.9
  assert mse <= 1e-4
