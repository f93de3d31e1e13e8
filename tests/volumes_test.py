"""z-splitting of long CTs and the bank of preprocessed cubes."""

import functools

import numpy as np
import pytest

from jaxcorr.ct import phantoms, preprocess, Volume
from jaxcorr.data import volumes


def test_split_z_covers_the_volume_with_equal_chunks():
  data = np.arange(4 * 4 * 100, dtype=np.float32).reshape(4, 4, 100)
  vol = Volume(data, (1.0, 1.0, 2.0), (0.0, 0.0, -50.0), "long.nii.gz")
  chunks = volumes.split_z(vol, max_length_mm=60.0, overlap_mm=10.0)
  assert len(chunks) == 4 and len({c.shape for c in chunks}) == 1
  assert all(c.extent[2] <= 60.0 for c in chunks)
  z = np.concatenate([c.origin[2] + np.arange(c.shape[2]) * 2.0 for c in chunks])
  np.testing.assert_array_equal(np.unique(z), -50.0 + 2.0 * np.arange(100))
  for c in chunks:  # each chunk holds the original values at its world positions
    k0 = int(round((c.origin[2] + 50.0) / 2.0))
    np.testing.assert_array_equal(c.data, data[:, :, k0:k0 + c.shape[2]])
  assert "z chunk 1/4" in chunks[0].source
  assert volumes.split_z(vol, 0.0) == [vol]
  with pytest.raises(ValueError, match="overlap_mm"):
    volumes.split_z(vol, 60.0, overlap_mm=60.0)


def test_bank_entries_and_subset():
  entries = []
  for seed in range(2):
    cube = preprocess.to_cube(phantoms.make_phantom("knee", seed=seed, size=32), size=32)
    entries.append(volumes.make_entry(
        cube, image_intensity=preprocess.bone_sigmoid,
        label_intensity=functools.partial(preprocess.bone_sigmoid, x0=850.0), patch=8,
        pooling="mean", threshold=0.1))
  bank = volumes.stack(entries)
  assert bank.images.shape == (2, 32, 32, 32) and bank.weights.shape == (2, 4, 4, 4)
  assert len(bank) == 2 and bank.subset([1]).names == [bank.names[1]]
  # Anatomy points are the centres of the coarse voxels above the threshold.
  assert len(bank.anatomy[0]) == int((bank.weights[0] > 0.1).sum()) > 0
  np.testing.assert_allclose(np.abs(bank.anatomy[0]).max(axis=0) <= bank.extent[0] / 2, True)
  with pytest.raises(ValueError, match="empty"):
    volumes.stack([])
