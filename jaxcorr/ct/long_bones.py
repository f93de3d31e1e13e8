"""Long bones of HU volumes: the bone components that `fracture.py` may cut, with their axes.

NumPy/SciPy on the host, on a `Volume` of HU (data [X, Y, Z] float32, LPS frame,
world(i, j, k) = origin + (i, j, k) * spacing in mm; see `volume.py`).

`find_long_bones`: voxels above `min_bone_hu` are labelled into 6-connected components
(`scipy.ndimage.label`). A component's principal axis `a` and length come from the covariance
of its voxel centres (world mm): with eigenvalues l1 >= l2 >= l3, length = sqrt(12 l1) (the
length of a uniform rod of that variance) and elongation = sqrt(l1 / l2). A component is a long
bone when length >= `min_length_mm` and elongation >= `min_elongation`. Its region (what a
fracture may cut or move) is the component, plus the 2D holes of each slice across the world axis
closest to `a` (the medullary cavity, whatever its HU: marrow is fatty in adult CTs), plus a
one-voxel rim of partial-volume voxels above `edge_hu`. At coarse grids adjacent bones can merge
into one component (radius and ulna at 64^3): a cut then breaks both, like a both-bone fracture.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from jaxcorr.ct.volume import CTError, Volume

CONNECTIVITY_26 = np.ones((3, 3, 3), bool)


class NoLongBoneError(CTError):
  """The volume has no bone component long and elongated enough to fracture."""


@dataclasses.dataclass(frozen=True)
class Bone:
  """One long-bone candidate of a volume (see the module docstring).

  Attributes:
    label: its component id in `scipy.ndimage.label(hu > min_bone_hu)`.
    box: index slices of its region's bounding box in the volume.
    mask: bool region (component + cavity + rim) inside `box`.
    centroid: (3,) mean of the component's voxel centres, world mm.
    axis: (3,) unit principal axis (sign arbitrary).
    length_mm: sqrt(12 l1), mm.
    elongation: sqrt(l1 / l2).
  """

  label: int
  box: tuple
  mask: np.ndarray
  centroid: np.ndarray
  axis: np.ndarray
  length_mm: float
  elongation: float


def expand_box(box, margin, shape):
  """Index slices `box` grown by `margin` voxels per axis, clipped to an array of `shape`."""
  return tuple(slice(max(0, s.start - m), min(n, s.stop + m))
               for s, m, n in zip(box, margin, shape))


def _region(component, hu, axis_index, edge_hu):
  """Component + its slice-wise holes across world axis `axis_index` + partial-volume rim."""
  structure = np.zeros((3, 3, 3), bool)
  plane = [slice(None)] * 3
  plane[axis_index] = 1
  structure[tuple(plane)] = ndimage.generate_binary_structure(2, 1)
  filled = ndimage.binary_fill_holes(component, structure=structure)
  rim = ndimage.binary_dilation(filled, CONNECTIVITY_26) & ~filled & (hu > edge_hu)
  return filled | rim


def find_long_bones(volume: Volume, *, min_bone_hu: float = 300.0, min_length_mm: float = 40.0,
                    min_elongation: float = 1.4, edge_hu: float = 150.0,
                    min_voxels: int = 20) -> list[Bone]:
  """The long-bone candidates of an HU volume, longest first (see the module docstring).

  Args:
    volume: HU volume.
    min_bone_hu: bone threshold, HU.
    min_length_mm: shortest principal-axis length sqrt(12 l1) kept, mm.
    min_elongation: smallest sqrt(l1 / l2) kept.
    edge_hu: partial-volume rim voxels above this HU join the region.
    min_voxels: components with fewer voxels are ignored.

  Returns:
    A list of `Bone`, possibly empty.
  """
  hu = np.asarray(volume.data, np.float32)
  labels, _ = ndimage.label(hu > min_bone_hu)
  bones = []
  for label, box in enumerate(ndimage.find_objects(labels), start=1):
    if box is None:
      continue
    component = labels[box] == label
    idx = np.argwhere(component)
    if len(idx) < max(min_voxels, 4):
      continue
    world = volume.origin + (idx + [s.start for s in box]) * volume.spacing
    centroid = world.mean(0)
    evals, evecs = np.linalg.eigh(np.cov((world - centroid).T))
    l1, l2 = max(evals[2], 0.0), max(evals[1], 1e-12)
    length, elongation = float(np.sqrt(12 * l1)), float(np.sqrt(l1 / l2))
    if length < min_length_mm or elongation < min_elongation:
      continue
    axis = evecs[:, 2] / np.linalg.norm(evecs[:, 2])
    big = expand_box(box, (1, 1, 1), hu.shape)
    comp_big = labels[big] == label
    region = _region(comp_big, hu[big], int(np.argmax(np.abs(axis))), edge_hu)
    bones.append(Bone(label, big, region, centroid, axis, length, elongation))
  return sorted(bones, key=lambda b: -b.length_mm)


def require_long_bones(volume: Volume, *, min_bone_hu: float = 300.0,
                       min_length_mm: float = 40.0, min_elongation: float = 1.4,
                       edge_hu: float = 150.0) -> list[Bone]:
  """`find_long_bones`, raising `NoLongBoneError` (naming the volume and what to do) if none."""
  bones = find_long_bones(volume, min_bone_hu=min_bone_hu, min_length_mm=min_length_mm,
                          min_elongation=min_elongation, edge_hu=edge_hu)
  if not bones:
    raise NoLongBoneError(
        f"{volume.source or 'volume'}: no long bone (a component above {min_bone_hu:g} HU with "
        f"principal length >= {min_length_mm:g} mm and elongation >= {min_elongation:g}); use a "
        "CT of a limb, or lower fracture.min_bone_hu / min_length_mm / min_elongation")
  return bones
