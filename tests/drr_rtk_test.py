"""jaxcorr's projector against RTK's JosephForwardProjectionImageFilter on a real CT.

The same RTK parameters go to `rtk.ThreeDCircularProjectionGeometry` and to
`geometry.circular_views`; the images must agree pixel for pixel (same rows, columns and signs).
They are not identical: RTK's Joseph integrates between the first and last voxel centres along
the dominant axis (its box is [0, n - 1] in voxel index), jaxcorr over the voxels' full extent
([-1/2, n - 1/2]), so where the body crosses the volume's border (here the axial cut of the
abdomen) jaxcorr is higher by up to one voxel's worth of mu (about 2% in this test).

Needs itk-rtk and the shared CT (`../shared/data/ct`); skipped without either.
"""

from __future__ import annotations

import pathlib

import jax.numpy as jnp
import numpy as np
import pytest

from jaxcorr.projection import drr, geometry

pytestmark = pytest.mark.filterwarnings("ignore:builtin type:DeprecationWarning")

CT = (pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ct"
      / "totalseg_example_ct_abdomen_pelvis_3mm.nii.gz")
SPACING = 4.5       # resampled voxel size, mm (81 x 67 x 75 voxels)
H, W = 96, 128      # detector rows, columns
SV, SU = 6.5, 6.0   # detector spacing between rows, columns, mm

# (sid, sdd, gantry, out_of_plane, in_plane, source_offset, projection_offset)
GEOMETRIES = {
    "gantry0": (1000., 1500., 0., 0., 0., (0., 0.), (0., 0.)),
    "gantry37_tilted": (1000., 1500., 37., 10., 20., (15., -10.), (-20., 12.)),
    "gantry90_tilted": (1000., 1500., 90., -15., -30., (-20., 5.), (10., -30.)),
    "gantry200_tilted": (1000., 1500., 200., 5., 90., (8., 12.), (25., 5.)),
    "gantry37_short": (700., 1100., 37., 0., 0., (0., 0.), (0., 0.)),
}


@pytest.fixture(scope="module")
def itk():
  mod = pytest.importorskip("itk", reason="itk-rtk (pip install itk-rtk) is not installed")
  if not hasattr(mod, "JosephForwardProjectionImageFilter"):
    pytest.skip("itk is installed without RTK (pip install itk-rtk)")
  return mod


@pytest.fixture(scope="module")
def ct(itk):
  """The CT as mu (1/mm) on an identity-direction LPS grid, translated to the isocentre.

  Returns:
    (data [X, Y, Z], origin, spacing, t, rtk_volume): jaxcorr projects `data` at `origin` with
    `volume_translation=t`; RTK projects `rtk_volume`, the same data with origin + t.
  """
  if not CT.exists():
    pytest.skip(f"shared test CT not found at {CT}")
  image_type = itk.Image[itk.F, 3]
  img = itk.imread(str(CT), itk.F)
  size = np.asarray(itk.size(img))
  corners = [img.TransformIndexToPhysicalPoint([int(i), int(j), int(k)])
             for i in (0, size[0] - 1) for j in (0, size[1] - 1) for k in (0, size[2] - 1)]
  lo, hi = np.min(corners, 0), np.max(corners, 0)
  out_size = (np.floor((hi - lo) / SPACING) + 1).astype(int)
  direction = itk.Matrix[itk.D, 3, 3]()
  direction.SetIdentity()
  resample = itk.ResampleImageFilter[image_type, image_type].New(
      Input=img, OutputOrigin=lo.tolist(), OutputSpacing=[SPACING] * 3,
      Size=out_size.tolist(), OutputDirection=direction, DefaultPixelValue=-1000.)
  resample.Update()
  hu = itk.array_from_image(resample.GetOutput())                      # [Z, Y, X]
  mu = np.clip(0.0206 * (1 + hu / 1000.), 0, None).astype(np.float32)
  data, spacing = mu.transpose(2, 1, 0), np.full(3, SPACING)
  t = -(lo + (np.asarray(data.shape) - 1) / 2 * spacing)               # centre -> isocentre
  rtk_volume = itk.image_from_array(mu)
  rtk_volume.SetOrigin((lo + t).tolist())
  rtk_volume.SetSpacing([SPACING] * 3)
  return data, lo, spacing, t, rtk_volume


def _rtk_project(itk, volume, params):
  sid, sdd, gantry, oop, inp, so, po = params
  geom = itk.ThreeDCircularProjectionGeometry.New()
  geom.AddProjection(sid, sdd, gantry, po[0], po[1], oop, inp, so[0], so[1])
  stack = itk.image_from_array(np.zeros((1, H, W), np.float32))
  stack.SetOrigin([-(W - 1) / 2 * SU, -(H - 1) / 2 * SV, 0.])         # centred detector
  stack.SetSpacing([SU, SV, 1.])
  image_type = itk.Image[itk.F, 3]
  joseph = itk.JosephForwardProjectionImageFilter[image_type, image_type].New()
  joseph.SetInput(0, stack)
  joseph.SetInput(1, volume)
  joseph.SetGeometry(geom)
  joseph.Update()
  return np.asarray(itk.array_from_image(joseph.GetOutput()))[0]     # [H, W]


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_drr_matches_rtk_joseph(itk, ct, name):
  params = GEOMETRIES[name]
  data, origin, spacing, t, rtk_volume = ct
  sid, sdd, gantry, oop, inp, so, po = params
  views = geometry.circular_views(
      sid=sid, sdd=sdd, gantry_angles=[gantry], out_of_plane_angles=oop, in_plane_angles=inp,
      source_offset=so, projection_offset=po, detector_size=(H, W), pixel_spacing=(SV, SU),
      volume_translation=t)
  ours = np.asarray(drr.project_jit(jnp.asarray(data), jnp.asarray(origin), jnp.asarray(spacing),
                                    views, height=H, width=W))[0]
  ref = _rtk_project(itk, rtk_volume, params)
  assert (ref > 0).mean() > 0.5, "the CT should cover most of the detector"
  corr = np.corrcoef(ours.ravel(), ref.ravel())[0, 1]
  rel = np.linalg.norm(ours - ref) / np.linalg.norm(ref)
  print(f"{name}: pearson {corr:.5f}, relative L2 {rel:.4f}")
  assert corr >= 0.99
  assert rel <= 0.05
