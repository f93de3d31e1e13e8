"""Optional bridge to ITK-RTK (`pip install itk-rtk`), the projector the paper's authors use.

Used by tests and benchmarks to run RTK's JosephForwardProjectionImageFilter on exactly the
volume and views jaxcorr renders, so the two can be compared side by side, and to build the
correspondence labels the authors' way (`correspondence_loop`: one RTK projection per coarse
voxel). Nothing in the training or rendering path imports it.
"""

from __future__ import annotations

import numpy as np

from jaxcorr.projection import labels


def available() -> bool:
  """True when `itk` with the RTK module can be imported."""
  try:
    import itk  # pylint: disable=import-outside-toplevel
    return hasattr(itk, "JosephForwardProjectionImageFilter")
  except ImportError:
    return False


def _itk():
  import itk  # pylint: disable=import-outside-toplevel
  return itk


def volume_image(data: np.ndarray, origin, spacing):
  """An ITK float image of a jaxcorr [X, Y, Z] volume (identity direction, LPS world)."""
  itk = _itk()
  img = itk.image_from_array(np.ascontiguousarray(np.transpose(data, (2, 1, 0)), np.float32))
  img.SetOrigin([float(o) for o in origin])
  img.SetSpacing([float(s) for s in spacing])
  return img


def circular_geometry(*, sid, sdd, gantry_angles, out_of_plane_angles=0.0, in_plane_angles=0.0,
                      source_offset=(0.0, 0.0), projection_offset=(0.0, 0.0)):
  """An RTK ThreeDCircularProjectionGeometry with one projection per gantry angle (degrees)."""
  itk = _itk()
  n = len(np.atleast_1d(gantry_angles))
  per_view = lambda a: np.broadcast_to(np.asarray(a, np.float64), (n,) + np.shape(a)[1:])
  gantry = per_view(gantry_angles)
  oop, inp = per_view(out_of_plane_angles), per_view(in_plane_angles)
  so = np.broadcast_to(np.asarray(source_offset, np.float64), (n, 2))
  po = np.broadcast_to(np.asarray(projection_offset, np.float64), (n, 2))
  geo = itk.ThreeDCircularProjectionGeometry.New()
  for i in range(n):
    geo.AddProjection(float(sid), float(sdd), float(gantry[i]), float(po[i, 0]), float(po[i, 1]),
                      float(oop[i]), float(inp[i]), float(so[i, 0]), float(so[i, 1]))
  return geo


def joseph_project(volume_img, geometry, *, detector_size, pixel_spacing, detector_origin=None):
  """RTK Joseph forward projection; returns float32 [N, H, W] (RTK's array order).

  Args:
    volume_img: an ITK image from `volume_image`.
    geometry: an RTK geometry (N projections).
    detector_size: (H, W) rows and columns.
    pixel_spacing: (row, column) spacing in mm (or a scalar).
    detector_origin: (u0, v0) mm of pixel (0, 0); default centred.
  """
  itk = _itk()
  h, w = detector_size
  sv, su = np.broadcast_to(np.asarray(pixel_spacing, np.float64), 2)
  if detector_origin is None:
    detector_origin = (-(w - 1) / 2 * su, -(h - 1) / 2 * sv)
  n = len(geometry.GetGantryAngles())
  image_type = itk.Image[itk.F, 3]
  source = itk.ConstantImageSource[image_type].New()
  source.SetOrigin([float(detector_origin[0]), float(detector_origin[1]), 0.0])
  source.SetSpacing([float(su), float(sv), 1.0])
  source.SetSize([int(w), int(h), int(n)])
  source.SetConstant(0.0)
  proj = itk.JosephForwardProjectionImageFilter[image_type, image_type].New()
  proj.SetInput(0, source.GetOutput())
  proj.SetInput(1, volume_img)
  proj.SetGeometry(geometry)
  proj.Update()
  return np.asarray(itk.array_from_image(proj.GetOutput()), np.float32).copy()


def correspondence_loop(weights, coarse_origin, coarse_spacing, geometry, *, patch_grid,
                        patch_spacing, threshold=labels.DEFAULT_THRESHOLD,
                        voxels=None) -> np.ndarray:
  """The authors' label loop: one RTK Joseph projection per coarse voxel.

  Each voxel v of `voxels` is set to 1 in an otherwise empty coarse image and projected onto the
  patch grid of every view; voxels with weight above the threshold then add w_v p_i^v (p_j^v)^T
  to a running max, p min-max normalised as in `jaxcorr.projection.labels` (whose module docstring
  defines C). Voxels at or below the threshold are still projected, as the authors do, but add
  nothing.

  Args:
    weights: [X', Y', Z'] pooled weights (`labels.pool_weights`), NumPy.
    coarse_origin, coarse_spacing: (3,) their grid (`labels.coarse_grid`), mm.
    geometry: an RTK geometry (`circular_geometry`) of N views.
    patch_grid: (h, w) patches per view (the detector size / k).
    patch_spacing: (row, column) patch pitch in mm (k times the pixel spacing), or a scalar; the
      grid is centred on the detector, as `geometry.coarsen` of a centred detector.
    threshold: voxels with weight <= threshold add nothing.
    voxels: the (i, j, k) voxels to project; default all of them.

  Returns:
    float32 [P, L, L] in `labels.pair_indices` order, L = h * w.
  """
  itk = _itk()
  weights = np.asarray(weights, np.float32)
  h, w = (int(s) for s in patch_grid)
  image = volume_image(np.zeros(weights.shape, np.float32), coarse_origin, coarse_spacing)
  buffer = itk.array_view_from_image(image)  # [Z, Y, X] view of the image's memory
  n = len(geometry.GetGantryAngles())
  pairs = labels.pair_indices(n)
  out = np.zeros((len(pairs), h * w, h * w), np.float32)
  for v in np.ndindex(*weights.shape) if voxels is None else voxels:
    buffer[v[2], v[1], v[0]] = 1.0
    image.Modified()
    p = joseph_project(image, geometry, detector_size=(h, w),
                       pixel_spacing=patch_spacing).reshape(n, -1)
    buffer[v[2], v[1], v[0]] = 0.0
    if weights[v] <= threshold:
      continue
    lo, hi = p.min(axis=1, keepdims=True), p.max(axis=1, keepdims=True)
    p = np.where(hi > lo, (p - lo) / np.where(hi > lo, hi - lo, 1.0), 0.0)
    for q, (i, j) in enumerate(pairs):
      np.maximum(out[q], weights[v] * np.outer(p[i], p[j]), out=out[q])
  return out
