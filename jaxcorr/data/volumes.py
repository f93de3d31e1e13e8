"""A bank of preprocessed CT cubes that samples are rendered from, and z-splitting of long CTs.

For each CT (or z-chunk of a long one) the bank keeps what rendering needs and nothing else:

  images    [K, S, S, S]  image intensity of the S^3 cube (e.g. bone_sigmoid x0=1500), float32
                          or bfloat16: what the DRR kernel projects.
  weights   [K, s, s, s]  correspondence weights pooled by the patch size k (s = S / k).
  origin    [K, 3]        world position of voxel (0, 0, 0), mm (every cube is centred on the
                          isocentre, so origin = -(S - 1) / 2 * spacing).
  spacing   [K, 3]        voxel size, mm.
  extent    [K]           cube edge, mm (sets the detector's field of view).
  anatomy   list of [A_k, 3] world centres of coarse voxels above the label threshold, used on
                          the host to reject views that see mostly air.
  anatomy_box [K, 2, 3]   (lo, hi) world box of the anatomy (HU >= `anatomy_hu`), mm, that
                          `views.framing='anatomy'` frames (`anatomy_framing.anatomy_box`).
  names     list of str   provenance (file and chunk).

The whole bank goes to the accelerator once; a sample only carries its volume's index.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxcorr.ct import preprocess, Volume
from jaxcorr.data import anatomy_framing
from jaxcorr.projection import labels

# `views.framing_hu`'s default: the anatomy that views are framed on is bone.
ANATOMY_HU = 300.0


def split_z(volume: Volume, max_length_mm: float, overlap_mm: float = 0.0) -> list[Volume]:
  """Splits a volume longer than `max_length_mm` along z into chunks of about that length.

  A whole-body CT becomes several samples' worth of anatomy (the authors' crops and splits).
  Chunks are equal, overlap by at least `overlap_mm` and together cover the whole volume.
  `max_length_mm <= 0` or a volume that already fits returns [volume].
  """
  length = volume.extent[2]
  if max_length_mm <= 0 or length <= max_length_mm:
    return [volume]
  if not 0 <= overlap_mm < max_length_mm:
    raise ValueError(f"overlap_mm={overlap_mm} must be in [0, max_length_mm={max_length_mm})")
  n = int(np.ceil((length - overlap_mm) / (max_length_mm - overlap_mm)))
  nz = volume.shape[2]
  size = int(np.ceil(nz * max_length_mm / length))
  starts = np.linspace(0, nz - size, n).round().astype(int)
  out = []
  for i, z0 in enumerate(starts):
    origin = volume.origin + np.array([0.0, 0.0, z0 * volume.spacing[2]])
    out.append(Volume(volume.data[:, :, z0:z0 + size], volume.spacing, origin,
                      f"{volume.source} [z chunk {i + 1}/{n}]"))
  return out


@dataclasses.dataclass
class VolumeBank:
  """Preprocessed cubes, stacked; see the module docstring."""

  images: np.ndarray
  weights: np.ndarray
  origin: np.ndarray
  spacing: np.ndarray
  extent: np.ndarray
  anatomy: list
  anatomy_box: np.ndarray
  names: list

  def __len__(self) -> int:
    return len(self.names)

  def subset(self, indices) -> "VolumeBank":
    """The bank restricted to `indices` (e.g. one split)."""
    idx = list(indices)
    return VolumeBank(self.images[idx], self.weights[idx], self.origin[idx], self.spacing[idx],
                      self.extent[idx], [self.anatomy[i] for i in idx], self.anatomy_box[idx],
                      [self.names[i] for i in idx])


def make_entry(cube: Volume, *, image_intensity, label_intensity, patch: int, pooling: str,
               threshold: float, anatomy_hu: float = ANATOMY_HU) -> dict:
  """One bank entry from an HU cube (`preprocess.to_cube`).

  Args:
    cube: S^3 HU volume.
    image_intensity: HU -> projected image quantity (e.g. partial(bone_sigmoid, x0=1500)).
    label_intensity: HU -> correspondence intensity (e.g. partial(bone_sigmoid, x0=850)).
    patch, pooling, threshold: the label settings (`jaxcorr.projection.labels`).
    anatomy_hu: the HU from which voxels count for the anatomy box (`views.framing_hu`).
  """
  weights = np.asarray(labels.pool_weights(label_intensity(cube.data), patch, pooling))
  c_origin, c_spacing = (np.asarray(a) for a in labels.coarse_grid(cube.origin, cube.spacing,
                                                                  patch))
  idx = np.argwhere(weights > threshold)
  anatomy = (c_origin + idx * c_spacing).astype(np.float32)
  return {"images": np.asarray(image_intensity(cube.data), np.float32), "weights": weights,
          "origin": cube.origin.astype(np.float32), "spacing": cube.spacing.astype(np.float32),
          "extent": np.float32(cube.extent.max()), "anatomy": anatomy,
          "anatomy_box": anatomy_framing.anatomy_box(cube.data, cube.origin, cube.spacing,
                                                     hu_min=anatomy_hu, patch=patch),
          "names": cube.source}


def stack(entries: list[dict]) -> VolumeBank:
  """A bank from `make_entry` outputs (all cubes the same size)."""
  if not entries:
    raise ValueError("no volumes: the bank is empty (check ct.path or data.phantoms)")
  arrays = {k: np.stack([e[k] for e in entries]) for k in ("images", "weights", "origin",
                                                           "spacing", "extent", "anatomy_box")}
  return VolumeBank(**arrays, anatomy=[e["anatomy"] for e in entries],
                    names=[e["names"] for e in entries])


def cube_chunks(volume: Volume, *, size: int, split_mm: float, overlap_mm: float = 0.0):
  """Yields the S^3 HU cubes of a CT: split along z if long, each centred on the isocentre."""
  for chunk in split_z(volume, split_mm, overlap_mm):
    yield preprocess.to_cube(chunk, size=size)
