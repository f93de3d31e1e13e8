"""Bad inputs and bad configs, each run as a user would meet it (tiny shapes), each ending in a
clear error that names the file or field: no traceback into JAX internals. docs/reliability.md
gives the whole table (what was tried, what each gets, which test checks it); what other test
modules already cover is listed there, not repeated here."""

import gzip

import nibabel as nib
import numpy as np
import pytest

from jaxcorr.ct import CTError, io


def _declared_huge(path, shape=(1000, 1000, 1000), payload=2048):
  """A NIfTI whose header declares `shape` float32 voxels followed by `payload` bytes of data."""
  header = nib.Nifti1Header()
  header.set_data_shape(shape)
  header.set_data_dtype(np.float32)
  header.set_qform(np.eye(4), code=1)
  header["vox_offset"] = 352
  data = np.random.default_rng(0).integers(0, 256, payload, np.uint8).tobytes()  # incompressible
  raw = header.binaryblock + b"\0" * 4 + data
  path.write_bytes(gzip.compress(raw) if path.name.endswith(".gz") else raw)
  return path


@pytest.mark.parametrize("name", ["huge.nii", "huge.nii.gz"])
def test_nifti_header_declaring_more_than_the_file_fails_before_reading(tmp_path, name,
                                                                        monkeypatch):
  path = _declared_huge(tmp_path / name)
  assert path.stat().st_size < 3000
  # Any read of the voxel data (the 4 GB allocation) would fail the test.
  monkeypatch.setattr(nib.dataobj_images.DataobjImage, "get_fdata",
                      lambda *a, **k: pytest.fail("voxel data read before the size check"))
  with pytest.raises(CTError) as err:
    io.load_ct(path, max_voxels=2 * 1000 ** 3)
  message = str(err.value)
  assert str(path) in message and "(1000, 1000, 1000) voxels of float32" in message
  assert "4,000,000,352 bytes" in message and "truncated or corrupt" in message


def test_nifti_gz_short_by_its_trailer_is_counted_not_read(tmp_path, monkeypatch):
  # 40^3 float32 declared (256 kB), 2 kB of data: within deflate's ratio, so the gzip trailer
  # and then a streamed count decide.
  path = _declared_huge(tmp_path / "short.nii.gz", shape=(40, 40, 40))
  monkeypatch.setattr(nib.dataobj_images.DataobjImage, "get_fdata",
                      lambda *a, **k: pytest.fail("voxel data read before the size check"))
  with pytest.raises(CTError, match=r"\(40, 40, 40\) voxels of float32 \(256,352 bytes.*holds "
                                    r"2,400 bytes"):
    io.load_ct(path)
