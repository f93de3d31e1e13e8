"""The `Volume` container shared by readers, preprocessing, phantoms and the projector.

Frame. Every volume in jaxcorr lives in the LPS patient frame that ITK (and so RTK) uses for
physical points: +x towards the patient's Left, +y Posterior, +z Superior, in millimetres.
After loading, data are stored on an axis-aligned grid in that frame:

    world(i, j, k) = origin + (i * sx, j * sy, k * sz)       (voxel centres, mm)

so `data[i, j, k]` increases i towards Left, j towards Posterior, k towards Superior. This is
exactly an ITK image with identity direction, `data` being ITK's array transposed ([z, y, x] in
ITK's NumPy view becomes [x, y, z] here).
"""

from __future__ import annotations

import dataclasses

import numpy as np


class CTError(ValueError):
  """A CT input that cannot be used; the message names the source and what to do."""


@dataclasses.dataclass(frozen=True)
class Volume:
  """A scalar volume on an axis-aligned grid in the LPS frame.

  Attributes:
    data: float32 [X, Y, Z] values (HU after loading; mu or weights after an intensity map).
    spacing: (3,) voxel size in mm along x, y, z.
    origin: (3,) world position (mm) of the centre of voxel (0, 0, 0).
    source: provenance (a file path, or a description of a phantom).
  """

  data: np.ndarray
  spacing: np.ndarray
  origin: np.ndarray
  source: str = ""

  def __post_init__(self):
    object.__setattr__(self, "spacing", np.asarray(self.spacing, np.float64).reshape(3))
    object.__setattr__(self, "origin", np.asarray(self.origin, np.float64).reshape(3))
    if np.ndim(self.data) != 3:
      raise CTError(f"{self.source or 'volume'}: expected a 3D array, got shape {np.shape(self.data)}")
    if np.any(self.spacing <= 0):
      raise CTError(f"{self.source or 'volume'}: voxel spacing must be positive, got {self.spacing}")

  @property
  def shape(self) -> tuple[int, int, int]:
    return tuple(int(s) for s in np.shape(self.data))

  @property
  def extent(self) -> np.ndarray:
    """Physical size (mm) covered by the voxels, edge to edge."""
    return np.asarray(self.shape) * self.spacing

  @property
  def center(self) -> np.ndarray:
    """World position (mm) of the volume's geometric centre."""
    return self.origin + (np.asarray(self.shape) - 1) * self.spacing / 2

  def replace(self, **changes) -> "Volume":
    return dataclasses.replace(self, **changes)
