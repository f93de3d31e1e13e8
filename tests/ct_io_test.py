"""Tests for jaxcorr.ct.io: orientation vs ITK, DICOM series, validation errors, folders."""

import pathlib

import nibabel as nib
import numpy as np
import pytest

from jaxcorr.ct import io
from jaxcorr.ct.volume import CTError

DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"

def _shared(paths, what):
  """The shared files as test parameters, or one skipped parameter saying what is missing."""
  skip = pytest.mark.skip(reason=f"shared {what} not found under {DATA}")
  return [pytest.param(p, id=p.name) for p in paths] or [pytest.param(None, marks=skip)]


NIFTIS = _shared(sorted((DATA / "ct").glob("*.nii.gz")), "CT NIfTI files")
DICOM_SERIES = _shared(sorted(p for p in (DATA / "ct_dicom").glob("*") if p.is_dir()),
                       "DICOM series")


def _ct(shape=(6, 5, 4), seed=0):
  """A small int16 CT-like array: air, soft tissue and a bone voxel."""
  data = np.random.default_rng(seed).integers(-100, 100, shape).astype(np.int16)
  data[0] = -1000
  data[-1, -1, -1] = 1200
  return data


def _write_nifti(path, data, affine=None, **header):
  img = nib.Nifti1Image(data, np.eye(4) if affine is None else affine)
  for key, value in header.items():
    img.header[key] = value
  img.to_filename(str(path))
  return path


def _index_of(volume, world):
  return np.round((np.asarray(world) - volume.origin) / volume.spacing).astype(int)


# ITK agreement on the shared files.


def _assert_matches_itk(volume, image, rng, n=20):
  import itk  # pylint: disable=g-import-not-at-top
  arr = itk.array_view_from_image(image)  # [z, y, x]
  size = np.asarray(arr.shape[::-1])
  np.testing.assert_array_equal(sorted(volume.shape), sorted(size))
  corners = np.asarray([image.TransformIndexToPhysicalPoint([int(c) for c in idx]) for idx in
                        np.stack(np.meshgrid(*[(0, s - 1) for s in size]), -1).reshape(-1, 3)])
  np.testing.assert_allclose(corners.min(0), volume.origin, atol=1e-3)
  np.testing.assert_allclose(corners.max(0), volume.origin + (np.asarray(volume.shape) - 1) *
                             volume.spacing, atol=1e-3)
  for idx in rng.integers(0, size, (n, 3)):
    point = image.TransformIndexToPhysicalPoint([int(i) for i in idx])
    ours = _index_of(volume, point)
    np.testing.assert_allclose(volume.origin + ours * volume.spacing, point, atol=1e-3)
    assert volume.data[tuple(ours)] == pytest.approx(float(arr[idx[2], idx[1], idx[0]]))


@pytest.mark.parametrize("path", NIFTIS)
def test_nifti_world_matches_itk(path):
  itk = pytest.importorskip("itk")
  volume = io.load_ct(path, hu_window=None)
  assert volume.data.dtype == np.float32 and volume.source == str(path)
  _assert_matches_itk(volume, itk.imread(str(path)), np.random.default_rng(0))


@pytest.mark.parametrize("folder", DICOM_SERIES)
def test_dicom_world_matches_itk(folder):
  itk = pytest.importorskip("itk")
  volume = io.load_ct(folder, hu_window=None)
  names = itk.GDCMSeriesFileNames.New(Directory=str(folder)).GetInputFileNames()
  _assert_matches_itk(volume, itk.imread(list(names)), np.random.default_rng(1))


# NIfTI reading and orientation.


def test_nifti_ras_is_reoriented_to_lps(tmp_path):
  data = _ct()
  # RAS+ axes scaled 2 mm, i.e. i -> Right, j -> Anterior: both must flip.
  affine = np.diag([2.0, 3.0, 4.0, 1.0])
  affine[:3, 3] = (10.0, 20.0, 30.0)
  volume = io.load_ct(_write_nifti(tmp_path / "ras.nii.gz", data, affine))
  np.testing.assert_allclose(volume.spacing, (2, 3, 4))
  np.testing.assert_allclose(volume.origin, (-10 - 2 * 5, -20 - 3 * 4, 30))
  np.testing.assert_array_equal(volume.data, io.clean_hu(data[::-1, ::-1, :]))


def test_nifti_permuted_axes(tmp_path):
  data = _ct()
  affine = np.zeros((4, 4))
  affine[2, 0], affine[0, 1], affine[1, 2], affine[3, 3] = 1.5, -1.0, -2.0, 1.0  # i->S, j->L, k->P
  volume = io.load_ct(_write_nifti(tmp_path / "perm.nii", data, affine))
  np.testing.assert_allclose(volume.spacing, (1.0, 2.0, 1.5))
  np.testing.assert_array_equal(volume.data, io.clean_hu(data.transpose(1, 2, 0)))


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.float32, np.uint8])
def test_nifti_dtypes_and_scaling(tmp_path, dtype):
  hu = _ct().astype(np.float32)
  if dtype == np.uint8:
    stored, slope, inter = np.round((hu + 1000) / 10).astype(np.uint8), 10.0, -1000.0
    expected = stored * 10.0 - 1000.0
  else:
    stored, slope, inter = ((hu + 1000) / 2).astype(dtype), 2.0, -1000.0
    expected = stored.astype(np.float64) * 2 - 1000
  img = nib.Nifti1Image(stored, np.eye(4))
  img.header.set_slope_inter(slope, inter)
  img.to_filename(str(tmp_path / "s.nii.gz"))
  volume = io.load_ct(tmp_path / "s.nii.gz", hu_window=None)
  np.testing.assert_allclose(volume.data, expected[::-1, ::-1], atol=1e-3)


def test_nifti_units_in_meters(tmp_path):
  img = nib.Nifti1Image(_ct(), np.diag([-0.001, -0.002, 0.003, 1.0]))
  img.header.set_xyzt_units("meter")
  img.to_filename(str(tmp_path / "m.nii"))
  volume = io.load_ct(tmp_path / "m.nii")
  np.testing.assert_allclose(volume.spacing, (1, 2, 3))
  itk = pytest.importorskip("itk")
  np.testing.assert_allclose(itk.imread(str(tmp_path / "m.nii")).GetSpacing(), (1, 2, 3))


def test_oblique_nifti_is_resampled(tmp_path):
  # A field linear in world LPS coordinates is reproduced exactly by trilinear resampling.
  c, s = np.cos(0.3), np.sin(0.3)
  rot = np.asarray([[c, -s, 0], [s, c, 0], [0, 0, 1]])
  lps = np.eye(4)
  lps[:3, :3], lps[:3, 3] = rot @ np.diag([2.0, 2.0, 3.0]), (5.0, -7.0, 11.0)
  field = lambda w: -1500 + 40 * w[..., 0] + 30 * w[..., 1] + 50 * w[..., 2]
  idx = np.stack(np.meshgrid(*map(np.arange, (12, 10, 8)), indexing="ij"), -1)
  data = field(idx @ lps[:3, :3].T + lps[:3, 3]).astype(np.float32)
  assert data.min() < -900 and data.max() > 300
  ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
  volume = io.load_ct(_write_nifti(tmp_path / "obl.nii.gz", data, ras), hu_window=None)
  np.testing.assert_allclose(volume.spacing, (2, 2, 3))
  grid = np.stack(np.meshgrid(*map(np.arange, volume.shape), indexing="ij"), -1)
  world = volume.origin + grid * volume.spacing
  inside = np.all((0 <= (world - lps[:3, 3]) @ np.linalg.inv(lps[:3, :3]).T) &
                  ((world - lps[:3, 3]) @ np.linalg.inv(lps[:3, :3]).T <= (11, 9, 7)), -1)
  assert inside.sum() > 100
  np.testing.assert_allclose(volume.data[inside], field(world[inside]), atol=0.05)
  assert volume.data[0, 0, 0] == io.AIR  # a corner of the bounding box lies outside the scan


# Validation errors.


@pytest.mark.parametrize("shape,match", [((6, 5), "not a 3D volume"), ((6, 1, 4), "singleton"),
                                         ((6, 5, 4, 2), "2 volumes")])
def test_bad_shapes(tmp_path, shape, match):
  data = np.resize(_ct(), shape)
  data.flat[0], data.flat[1] = -1000, 1000
  with pytest.raises(CTError, match=match):
    io.load_ct(_write_nifti(tmp_path / "bad.nii", data))


def test_4d_single_volume_is_accepted(tmp_path):
  assert io.load_ct(_write_nifti(tmp_path / "one.nii", _ct()[..., None])).shape == (6, 5, 4)


@pytest.mark.parametrize("fill,match", [
    (lambda d: d.__setitem__((1, 1, 1), np.nan), "NaN/inf"),
    (lambda d: d.__setitem__(Ellipsis, -1000.0), "all voxels are air"),
    (lambda d: d.__setitem__(Ellipsis, np.arange(d.size).reshape(d.shape) % 5), "no air"),
    (lambda d: d.__setitem__(Ellipsis, np.arange(d.size).reshape(d.shape) * 20.0), "no air"),
    (lambda d: d.__setitem__(Ellipsis, np.minimum(d, 200.0)), "no bone"),
], ids=["nan", "all_air", "mask", "mr", "no_bone"])
def test_bad_values(tmp_path, fill, match):
  data = _ct().astype(np.float32)
  fill(data)
  path = _write_nifti(tmp_path / "bad.nii.gz", data)
  with pytest.raises(CTError, match=match) as err:
    io.load_ct(path)
  assert str(path) in str(err.value)


def test_missing_path_and_wrong_suffix(tmp_path):
  with pytest.raises(CTError, match="no such file"):
    io.load_ct(tmp_path / "nope.nii.gz")
  (tmp_path / "scan.mha").write_bytes(b"x")
  with pytest.raises(CTError, match="not a NIfTI file"):
    io.load_ct(tmp_path / "scan.mha")


@pytest.mark.parametrize("keep", [0.3, 0.9])
def test_truncated_nifti(tmp_path, keep):
  path = _write_nifti(tmp_path / "ct.nii.gz", _ct((40, 40, 40)))
  raw = path.read_bytes()
  path.write_bytes(raw[:int(len(raw) * keep)])
  with pytest.raises(CTError, match="truncated or corrupt") as err:
    io.load_ct(path)
  assert str(path) in str(err.value)


def test_max_voxels(tmp_path):
  path = _write_nifti(tmp_path / "ct.nii.gz", _ct())
  with pytest.raises(CTError, match=r"120 voxels \(0.00 GiB.*ct.max_voxels"):
    io.load_ct(path, max_voxels=100)
  assert io.load_ct(path, max_voxels=120).shape == (6, 5, 4)


def test_clean_hu():
  hu = np.asarray([-32768, -3024, -2048, -1025, -1024, -1000, 0, 2500, 5000], np.float32)
  np.testing.assert_array_equal(io.clean_hu(hu), [-1000, -1000, -1000, -1000, -1000, -1000, 0,
                                                  2500, 3000])
  np.testing.assert_array_equal(io.clean_hu(hu, window=(-1100, 4000)),
                                [-1000, -1000, -1000, -1000, -1024, -1000, 0, 2500, 4000])
  with pytest.raises(ValueError, match="low < high"):
    io.clean_hu(hu, window=(10, 0))


# DICOM series written with pydicom.


def _write_dicom(path, pixels, position, *, series="1.2.3.4", orientation=(1, 0, 0, 0, 1, 0),
                 spacing=(0.5, 0.8), slope=1.0, intercept=-1024.0):
  pydicom = pytest.importorskip("pydicom")
  uid = pydicom.uid
  meta = pydicom.dataset.FileMetaDataset()
  meta.MediaStorageSOPClassUID = uid.CTImageStorage
  meta.MediaStorageSOPInstanceUID = uid.generate_uid()
  meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
  ds = pydicom.dataset.Dataset()
  ds.file_meta = meta
  ds.SOPClassUID, ds.SOPInstanceUID = uid.CTImageStorage, meta.MediaStorageSOPInstanceUID
  ds.Modality, ds.SeriesInstanceUID = "CT", series
  ds.ImagePositionPatient = [float(p) for p in position]
  ds.ImageOrientationPatient = [float(o) for o in orientation]
  ds.PixelSpacing = [float(s) for s in spacing]
  ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
  ds.Rows, ds.Columns = pixels.shape
  ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
  ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
  ds.PixelData = pixels.astype(np.uint16).tobytes()
  pydicom.dcmwrite(path, ds, enforce_file_format=True)


def _dicom_series(folder, n=4, step=(0, 0, 2.5), skip=(), slope=1.0, intercept=-1024.0,
                  **kwargs):
  """n slices [rows=3, cols=5] at (-10, 20, 100) + k step, files written in reverse order.

  Returns:
    The HU values [slice, row, col].
  """
  folder.mkdir(exist_ok=True)
  raw = (np.arange(n * 15).reshape(n, 3, 5) * 37 % 1500 + 24).astype(np.uint16)
  raw[:, 0, 0] = 2400  # bone
  for k in reversed(range(n)):
    if k not in skip:
      _write_dicom(folder / f"s{n - k:03d}.dcm", raw[k], np.add((-10.0, 20.0, 100.0),
                                                                np.multiply(k, step)),
                   slope=slope, intercept=intercept, **kwargs)
  return raw * np.float32(slope) + np.float32(intercept)


def test_dicom_series_axial(tmp_path):
  hu = _dicom_series(tmp_path / "series")
  (tmp_path / "series" / "README.txt").write_text("not dicom")
  volume = io.load_ct(tmp_path / "series", hu_window=None)
  np.testing.assert_allclose(volume.spacing, (0.8, 0.5, 2.5))
  np.testing.assert_allclose(volume.origin, (-10, 20, 100))
  np.testing.assert_array_equal(volume.data, hu.transpose(2, 1, 0))


def test_dicom_series_coronal_with_rescale(tmp_path):
  # Rows run along +x (Left), columns along -z (Inferior), so the normal (slice step) is +y.
  hu = _dicom_series(tmp_path / "cor", step=(0, 2.5, 0), orientation=(1, 0, 0, 0, 0, -1),
                     slope=2.0, intercept=-2048.0)
  volume = io.load_ct(tmp_path / "cor", hu_window=None)
  np.testing.assert_allclose(volume.spacing, (0.8, 2.5, 0.5))
  np.testing.assert_allclose(volume.origin, (-10, 20, 100 - 2 * 0.5))
  np.testing.assert_array_equal(volume.data, hu.transpose(2, 0, 1)[:, :, ::-1])


def test_dicom_mixed_series(tmp_path):
  _dicom_series(tmp_path / "mix")
  _write_dicom(tmp_path / "mix" / "other.dcm", np.zeros((3, 5)), (0, 0, 0), series="9.9")
  with pytest.raises(CTError, match=r"2 DICOM series \(1.2.3.4: 4 files, 9.9: 1 files\).*one "
                     "series"):
    io.load_ct(tmp_path / "mix")


def test_dicom_missing_slices(tmp_path):
  _dicom_series(tmp_path / "gap", n=6, skip=(3,))  # z = 100, 102.5, 105, (107.5), 110, 112.5
  with pytest.raises(CTError, match=r"missing slices.*105.000 -> 110.000 mm"):
    io.load_ct(tmp_path / "gap")


def test_dicom_single_slice_and_empty(tmp_path):
  _dicom_series(tmp_path / "one", n=1)
  with pytest.raises(CTError, match="not a 3D volume"):
    io.load_ct(tmp_path / "one")
  (tmp_path / "empty").mkdir()
  (tmp_path / "empty" / "notes.txt").write_text("hello")
  with pytest.raises(CTError, match="no DICOM image slices"):
    io.load_ct(tmp_path / "empty")


def test_dicom_without_pydicom(tmp_path, monkeypatch):
  monkeypatch.setitem(__import__("sys").modules, "pydicom", None)
  (tmp_path / "d").mkdir()
  with pytest.raises(CTError, match=r"pip install jaxcorr\[dicom\]"):
    io.load_ct(tmp_path / "d")


# Folders of CTs.


def _folder(tmp_path):
  _write_nifti(tmp_path / "a.nii.gz", _ct())
  _write_nifti(tmp_path / "b.nii", np.zeros((4, 4, 4), np.int16))  # all-air: bad
  _dicom_series(tmp_path / "c_series")
  (tmp_path / "notes.txt").write_text("ignored")
  return tmp_path


def test_iter_ct_folder_skip(tmp_path, monkeypatch):
  warnings = []
  monkeypatch.setattr(io.logging, "warning", lambda msg, *a: warnings.append(msg % a))
  skipped = []
  got = list(io.iter_ct_folder(_folder(tmp_path), on_error="skip", skipped=skipped))
  assert [pathlib.Path(p).name for p, _ in got] == ["a.nii.gz", "c_series"]
  assert got[1][1].shape == (5, 3, 4)
  assert [pathlib.Path(p).name for p, _ in skipped] == ["b.nii"]
  assert any("b.nii" in w and "air" in w for w in warnings)
  assert any("notes.txt" in w for w in warnings)


def test_iter_ct_folder_raise_and_list(tmp_path):
  folder = _folder(tmp_path)
  with pytest.raises(CTError, match="b.nii"):
    list(io.iter_ct_folder(folder))
  got = list(io.iter_ct_folder([folder / "c_series", folder / "a.nii.gz"]))
  assert [pathlib.Path(p).name for p, _ in got] == ["c_series", "a.nii.gz"]
  with pytest.raises(ValueError, match="raise, skip"):
    io.iter_ct_folder(folder, on_error="ignore")  # at the call, before iterating
  (tmp_path / "empty").mkdir()
  with pytest.raises(CTError, match="holds no NIfTI file"):
    io.iter_ct_folder(tmp_path / "empty")
