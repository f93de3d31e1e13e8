"""Reading CT scans (NIfTI files, DICOM series folders) into `Volume`s on the LPS grid.

Every reader ends in the same place: a voxel-index -> world affine in the LPS frame (see
`volume.py`). NIfTI stores RAS+ world coordinates, so its affine's first two rows are negated;
DICOM patient coordinates are already LPS. The array is then transposed and flipped to the
closest canonical orientation, so that i grows towards Left, j Posterior, k Superior. If a
rotation remains after that (an oblique scan: any direction cosine off by more than
`OBLIQUE_TOL`), the volume is resampled trilinearly onto an axis-aligned grid with the same
voxel sizes that covers all voxel centres; points that fall outside the scan are air. The
resulting world positions agree with ITK's physical points (`itk.imread`) for axis-aligned scans.

Checks raise `CTError` naming the file, the problem and what to do: a missing path, a 2D image
or a singleton axis, several volumes in one file, NaN/inf, an all-air scan, values that are not
HU (no air below -900 or nothing above +300: an MR or a label mask), a truncated file, a NIfTI
header that declares more data than the file holds (checked before any allocation), and more
voxels than `ct.max_voxels`.

A path may be a URI (`gs://bucket/cts/a.nii.gz`, a folder of CTs or a DICOM series folder on an
object store): folders are listed through `etils.epath`, and a CT is read from its local copy
(`files.local_copy`, copied once into the cache), keeping the URI as its name and in its errors.
"""

from __future__ import annotations

import gzip
import itertools
import os
import pathlib
import struct
import zlib
from typing import Iterator

from absl import logging
import nibabel as nib
import numpy as np

from jaxcorr.core import files
from jaxcorr.ct.volume import CTError, Volume

NIFTI_SUFFIXES = (".nii", ".nii.gz")
ON_ERROR = ("raise", "skip")
# Largest |direction cosine - identity| still treated as axis-aligned after reorientation.
OBLIQUE_TOL = 1e-3
# Below this HU a value is scanner padding outside the reconstruction circle, not tissue.
PADDING_BELOW = -1024.0
AIR = -1000.0
_NIFTI_UNIT_MM = {"meter": 1000.0, "mm": 1.0, "micron": 1e-3, "unknown": 1.0}
# Deflate expands at most ~1032x (a 258-byte match in under 2 bits), so a .nii.gz of n bytes
# holds at most this many times n bytes.
DEFLATE_MAX_RATIO = 1032


def clean_hu(data, *, window=(-1000.0, 3000.0)) -> np.ndarray:
  """Turns padding into air and clips to a HU window.

  Rule: every value strictly below -1024 HU (scanners write -2048, -3024 or -32768 for pixels
  outside the field of view; real air is about -1000, stored no lower than -1024) becomes -1000
  (air); the result is then clipped to `window`.

  Args:
    data: HU values, any shape.
    window: (low, high) HU bounds, low < high.

  Returns:
    float32 array of the same shape.
  """
  low, high = (float(w) for w in window)
  if not low < high:
    raise ValueError(f"HU window must satisfy low < high, got {window}")
  out = np.array(data, np.float32)  # a copy, in the input's memory order
  out[out < PADDING_BELOW] = AIR
  return np.clip(out, low, high, out=out)


def load_ct(path, *, max_voxels=None, hu_window=(-1000.0, 3000.0)) -> Volume:
  """Reads a CT (a .nii/.nii.gz file or a DICOM series folder) onto the LPS grid.

  Args:
    path: a NIfTI file or a folder holding one DICOM series.
    max_voxels: refuse scans with more voxels than this (None: no limit).
    hu_window: window for `clean_hu`; None keeps the raw HU values.

  Returns:
    A `Volume` of float32 HU with `source` = path.

  Raises:
    CTError: the path is missing, unreadable, or not a usable 3D CT.
  """
  if files.is_uri(path):
    return _load_copy(os.fspath(path).rstrip("/"), max_voxels, hu_window)
  path = pathlib.Path(path)
  source = str(path)
  if not path.exists():
    raise CTError(f"{source}: no such file or folder; check `ct.path`.")
  if path.is_dir():
    data, affine = _read_dicom_series(path, max_voxels)
  elif path.name.lower().endswith(NIFTI_SUFFIXES):
    data, affine = _read_nifti(path, max_voxels)
  else:
    raise CTError(f"{source}: not a NIfTI file (.nii, .nii.gz) nor a DICOM series folder; for "
                  "DICOM, point at the folder that holds the series, not at one file.")
  _check_values(data, source)
  volume = _to_lps_grid(data, affine, source, max_voxels)
  if hu_window is not None:
    volume = volume.replace(data=clean_hu(volume.data, window=hu_window))
  return volume


def _load_copy(uri: str, max_voxels, hu_window) -> Volume:
  """`load_ct` of a URI, read from its local copy; the Volume and the errors name the URI."""
  try:
    local = files.local_copy(uri, "ct.path")
  except FileNotFoundError as e:
    raise CTError(f"{uri}: no such file or folder; check `ct.path`.") from e
  try:
    volume = load_ct(local, max_voxels=max_voxels, hu_window=hu_window)
  except CTError as e:
    raise CTError(str(e).replace(local, uri)) from e
  return volume.replace(source=uri)


def as_path(p):
  """`p` as a path object: an `epath.Path` for a URI, a `pathlib.Path` for a local path."""
  return files.path(p) if files.is_uri(p) else pathlib.Path(p)


def iter_ct_folder(folder_or_list, *, on_error="raise", max_voxels=None,
                   hu_window=(-1000.0, 3000.0), skipped=None) -> Iterator[tuple[str, Volume]]:
  """Yields the CTs of a folder (its NIfTI files and DICOM series subfolders) or of a list.

  Args:
    folder_or_list: a folder, or an iterable of paths (NIfTI files or DICOM series folders).
    on_error: 'raise' stops at the first bad CT with a `CTError` naming it; 'skip' logs a
      warning naming the file and the error, and goes on.
    max_voxels: as in `load_ct`.
    hu_window: as in `load_ct`.
    skipped: optional list; (path, message) of every skipped CT is appended to it.

  Returns:
    An iterator of (path, Volume) pairs, in sorted order for a folder; its return value
    (StopIteration.value) is the list of skipped (path, message) pairs.

  Raises:
    ValueError: `on_error` is not an allowed value (at the call, not at the first item).
    CTError: the folder is missing or holds no CT; with on_error='raise', a bad CT.
  """
  if on_error not in ON_ERROR:
    raise ValueError(f"on_error={on_error!r} is not one of the allowed values: "
                     f"{', '.join(ON_ERROR)}")
  # Checked here, at the call, rather than at the first next().
  paths = list_cts(folder_or_list)
  return _iter_cts(paths, on_error, max_voxels, hu_window, [] if skipped is None else skipped)


def _iter_cts(paths, on_error, max_voxels, hu_window, skipped):
  for path in paths:
    try:
      volume = load_ct(path, max_voxels=max_voxels, hu_window=hu_window)
    except CTError as e:
      if on_error == "raise":
        raise
      logging.warning("Skipping CT %s: %s", path, e)
      skipped.append((str(path), str(e)))
      continue
    yield str(path), volume
  if skipped:
    logging.warning("Skipped %d of %d CTs: %s", len(skipped), len(paths),
                    ", ".join(p for p, _ in skipped))
  return skipped


def list_cts(folder_or_list) -> list[pathlib.Path]:
  """NIfTI files and subfolders of a folder (others are logged), or the given list (`as_path`
  of each: `epath.Path` for URIs)."""
  if isinstance(folder_or_list, (str, os.PathLike)):
    folder = as_path(folder_or_list)
    if not folder.is_dir():
      raise CTError(f"{folder}: not a folder; pass a folder of CTs or a list of paths.")
    paths = []
    for p in sorted(folder.iterdir()):
      if p.name.lower().endswith(NIFTI_SUFFIXES) or p.is_dir():   # the name first: no RPC
        paths.append(p)
      else:
        logging.warning("Ignoring %s: neither a NIfTI file nor a DICOM series folder.", p)
    if not paths:
      raise CTError(f"{folder}: holds no NIfTI file (.nii, .nii.gz) and no DICOM series subfolder.")
    return paths
  return [as_path(p) for p in folder_or_list]


def _check_size(shape, source, max_voxels) -> None:
  n = int(np.prod(shape))
  if max_voxels is not None and n > max_voxels:
    raise CTError(f"{source}: {tuple(int(s) for s in shape)} = {n:,} voxels "
                  f"({n * 4 / 2**30:.2f} GiB as float32) exceeds the limit of {int(max_voxels):,}; "
                  "raise the config field `ct.max_voxels` or crop/downsample the scan.")


def _check_shape(shape, source) -> tuple[int, int, int]:
  """The 3D shape, dropping trailing singleton dimensions (a 4D file with one volume)."""
  shape = tuple(int(s) for s in shape)
  if len(shape) > 3 and any(s != 1 for s in shape[3:]):
    raise CTError(f"{source}: shape {shape} holds {int(np.prod(shape[3:]))} volumes (4D); "
                  "extract one 3D volume (e.g. one phase) and load that.")
  if len(shape) < 3 or any(s < 2 for s in shape[:3]):
    raise CTError(f"{source}: shape {shape} is not a 3D volume (a 2D image or a singleton axis); "
                  "a CT needs at least 2 voxels along each of x, y, z.")
  return shape[:3]


def _check_values(data, source) -> None:
  bad = ~np.isfinite(data)
  if bad.any():
    raise CTError(f"{source}: {int(bad.sum()):,} NaN/inf voxels; re-export the scan or fix those "
                  "voxels before loading.")
  if data.max() <= -200:
    raise CTError(f"{source}: all voxels are air (max {data.max():.0f} HU <= -200); "
                  "the scan is empty or the wrong file.")
  missing = [what for what, ok in (("air (< -900 HU)", data.min() < -900),
                                   ("bone (> 300 HU)", data.max() > 300)) if not ok]
  if missing:
    raise CTError(f"{source}: does not look like a CT in HU: no {' and no '.join(missing)}; "
                  f"values span {data.min():.4g}..{data.max():.4g}. Is it an MR, a label mask, "
                  "or a CT without its rescale slope/intercept?")


def _read_nifti(path, max_voxels):
  """(data [X, Y, Z] float32 in file order, 4x4 LPS affine) of a NIfTI file."""
  try:
    img = nib.load(path)
    shape = _check_shape(img.shape, path)
    _check_size(shape, path, max_voxels)
    _check_nifti_bytes(path, img.header, img.shape, getattr(img.dataobj, "offset", 0))
    data = img.get_fdata(dtype=np.float32, caching="unchanged").reshape(shape)
  except (EOFError, zlib.error, OSError, ValueError, nib.filebasedimages.ImageFileError) as e:
    if isinstance(e, CTError):
      raise
    raise CTError(f"{path}: cannot read NIfTI data, the file is truncated or corrupt "
                  f"({type(e).__name__}: {e}); re-download or re-export it.") from e
  affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ img.affine  # RAS+ -> LPS
  affine[:3] *= _NIFTI_UNIT_MM[img.header.get_xyzt_units()[0]]
  return data, affine


def _check_nifti_bytes(path, header, shape, offset: int) -> None:
  """Raises a CTError when the header declares more bytes than the file holds, before any
  allocation: against the file size for .nii; for .nii.gz against deflate's largest ratio, then
  the gzip trailer (ISIZE, the size mod 2^32 of the last member), confirmed by a streamed count
  (1 MiB at a time, stopping at the declared size) when the trailer says the data is short."""
  offset = int(offset)
  need = offset + int(np.prod(shape)) * header.get_data_dtype().itemsize
  size = os.path.getsize(path)
  have, bound = size, ""
  if str(path).lower().endswith(".gz"):
    have, bound = size * DEFLATE_MAX_RATIO, "at most "
    if have >= need:
      with open(path, "rb") as f:
        f.seek(max(size - 4, 0))
        (isize,) = struct.unpack("<I", f.read(4).rjust(4, b"\0"))
      if need >= 2**32 or isize >= need:
        return
      have, bound = _gunzip_length(path, need), ""
  if have < need:
    raise CTError(f"{path}: the header declares {tuple(int(s) for s in shape)} voxels of "
                  f"{header.get_data_dtype()} ({need:,} bytes with the {offset}-byte header), but "
                  f"the file holds {bound}{have:,} bytes; the file is "
                  "truncated or corrupt, or its header is wrong: re-download or re-export it.")


def _gunzip_length(path, limit: int) -> int:
  """Uncompressed bytes of a gzip file, counted up to `limit` (a truncated stream counts what
  decompresses)."""
  total = 0
  try:
    with gzip.open(path, "rb") as f:
      while total < limit:
        chunk = f.read(1 << 20)
        if not chunk:
          break
        total += len(chunk)
  except (EOFError, zlib.error, OSError):
    pass
  return total


def _import_pydicom():
  try:
    import pydicom  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise CTError("Reading DICOM needs pydicom: pip install jaxcorr[dicom]") from e
  return pydicom


def _dicom_slices(folder, pydicom):
  """Headers of the image slices of a folder, non-DICOM files logged and skipped."""
  slices = []
  for f in sorted(p for p in folder.iterdir() if p.is_file()):
    try:
      ds = pydicom.dcmread(f, stop_before_pixels=True)
    except (pydicom.errors.InvalidDicomError, EOFError, OSError) as e:
      logging.warning("Skipping %s: not a DICOM file (%s).", f, e)
      continue
    if "ImagePositionPatient" not in ds or "ImageOrientationPatient" not in ds:
      logging.warning("Skipping %s: DICOM without image position/orientation (not a slice).", f)
      continue
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
      raise CTError(f"{f}: multi-frame DICOM is not supported; convert the series to NIfTI "
                    "(e.g. with dcm2niix) and load that.")
    slices.append((f, ds))
  if not slices:
    raise CTError(f"{folder}: no DICOM image slices found; point at a DICOM series folder.")
  series = {}
  for f, ds in slices:
    series.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append((f, ds))
  if len(series) > 1:
    counts = ", ".join(f"{uid or '<none>'}: {len(v)} files" for uid, v in sorted(series.items()))
    raise CTError(f"{folder}: holds {len(series)} DICOM series ({counts}); point at a folder "
                  "with one series.")
  return slices


def _read_dicom_series(folder, max_voxels):
  """(data [cols, rows, slices] float32 HU, 4x4 LPS affine) of a DICOM series folder."""
  pydicom = _import_pydicom()
  slices = _dicom_slices(folder, pydicom)
  f0, ds0 = slices[0]
  iop = np.asarray(ds0.ImageOrientationPatient, np.float64)
  for f, ds in slices:
    if not np.allclose(np.asarray(ds.ImageOrientationPatient, np.float64), iop, atol=1e-4):
      raise CTError(f"{folder}: {f.name} has orientation {list(ds.ImageOrientationPatient)}, "
                    f"{f0.name} has {list(iop)}; the folder mixes stacks (a localizer?).")
    if (ds.Rows, ds.Columns) != (ds0.Rows, ds0.Columns):
      raise CTError(f"{folder}: slice sizes differ ({f.name}: {ds.Rows}x{ds.Columns}, "
                    f"{f0.name}: {ds0.Rows}x{ds0.Columns}).")
  shape = (int(ds0.Columns), int(ds0.Rows), len(slices))
  _check_shape(shape, folder)
  _check_size(shape, folder, max_voxels)
  row_dir, col_dir = iop[:3], iop[3:]
  normal = np.cross(row_dir, col_dir)
  ipp = np.asarray([ds.ImagePositionPatient for _, ds in slices], np.float64)
  order = np.argsort(ipp @ normal, kind="stable")
  slices, ipp = [slices[o] for o in order], ipp[order]
  dz = _slice_spacing(ipp @ normal, [f for f, _ in slices], folder)
  step = (ipp[-1] - ipp[0]) / (len(slices) - 1)
  if np.linalg.norm(step - dz * normal) > 1e-2 * dz:
    logging.warning("%s: slices are sheared (gantry tilt); resampling onto an axis-aligned grid.",
                    folder)
  else:
    step = dz * normal
  ps = np.asarray(ds0.PixelSpacing, np.float64)  # (between rows, between columns)
  affine = np.eye(4)
  affine[:3, 0], affine[:3, 1], affine[:3, 2] = row_dir * ps[1], col_dir * ps[0], step
  affine[:3, 3] = ipp[0]
  data = np.empty(shape, np.float32)
  for k, (f, _) in enumerate(slices):
    data[:, :, k] = _dicom_hu(f, pydicom).T
  return data, affine


def _slice_spacing(pos, files, folder) -> float:
  """The uniform spacing of sorted slice positions; raises on duplicates and gaps."""
  gaps = np.diff(pos)
  dz = float(np.median(gaps))
  if gaps.min() <= 1e-3 * max(dz, 1e-3):
    k = int(np.argmin(gaps))
    raise CTError(f"{folder}: {files[k].name} and {files[k + 1].name} share the slice position "
                  f"{pos[k]:.3f} mm; remove duplicates or split the series.")
  bad = np.flatnonzero(np.abs(gaps - dz) > 1e-2 * dz + 1e-3)
  if bad.size:
    where = "; ".join(f"{pos[k]:.3f} -> {pos[k + 1]:.3f} mm ({files[k].name} -> "
                      f"{files[k + 1].name})" for k in bad[:5])
    kind = "missing slices" if gaps[bad].max() > 1.5 * dz else "non-uniform slice spacing"
    raise CTError(f"{folder}: {kind}: expected a {dz:.4g} mm step along the slice normal, got "
                  f"{where}; re-export the complete series.")
  return dz


def _dicom_hu(f, pydicom) -> np.ndarray:
  """One slice's HU [rows, cols]: rescale applied, PixelPaddingValue made air."""
  ds = pydicom.dcmread(f)
  try:
    raw = ds.pixel_array
  except Exception as e:  # pylint: disable=broad-except  (decoder plugins raise anything)
    raise CTError(f"{f}: cannot decode pixel data ({type(e).__name__}: {e}); compressed series "
                  "need a decoder: pip install pylibjpeg pylibjpeg-openjpeg or python-gdcm.") from e
  hu = raw.astype(np.float64) * float(ds.get("RescaleSlope", 1) or 1) + float(
      ds.get("RescaleIntercept", 0) or 0)
  if "PixelPaddingValue" in ds:
    hu[raw == ds.PixelPaddingValue] = AIR
  return hu.astype(np.float32)


def _to_lps_grid(data, affine, source, max_voxels) -> Volume:
  """Reorders/flips axes to L, P, S; resamples if a rotation remains."""
  ornt = nib.orientations.io_orientation(affine)
  if np.isnan(ornt).any():
    raise CTError(f"{source}: degenerate voxel-to-world affine {affine[:3].tolist()}; "
                  "fix the header (qform/sform or ImageOrientationPatient).")
  affine = affine @ nib.orientations.inv_ornt_aff(ornt, data.shape)
  data = nib.orientations.apply_orientation(data, ornt)
  spacing = np.linalg.norm(affine[:3, :3], axis=0)
  if np.abs(affine[:3, :3] / spacing - np.eye(3)).max() <= OBLIQUE_TOL:
    return Volume(np.asarray(data, np.float32), spacing, affine[:3, 3], source)
  return _resample_oblique(data, affine, spacing, source, max_voxels)


def _resample_oblique(data, affine, spacing, source, max_voxels) -> Volume:
  """Trilinear resampling onto the axis-aligned grid covering all voxel centres."""
  corners = np.asarray(list(itertools.product(*[(0, n - 1) for n in data.shape])), np.float64)
  world = corners @ affine[:3, :3].T + affine[:3, 3]
  low, high = world.min(0), world.max(0)
  shape = tuple(int(n) for n in np.ceil((high - low) / spacing - 1e-6).astype(int) + 1)
  _check_size(shape, source, max_voxels)
  logging.warning("%s: oblique scan, resampled trilinearly onto an axis-aligned %s grid.",
                  source, shape)
  inv = np.linalg.inv(affine)
  padded = np.pad(data.astype(np.float32), 1, constant_values=AIR)
  gx, gy = np.meshgrid(low[0] + spacing[0] * np.arange(shape[0]),
                       low[1] + spacing[1] * np.arange(shape[1]), indexing="ij")
  out = np.empty(shape, np.float32)
  for k in range(shape[2]):
    pts = np.stack([gx, gy, np.full_like(gx, low[2] + spacing[2] * k)], -1)
    out[:, :, k] = _trilinear(padded, pts @ inv[:3, :3].T + inv[:3, 3])
  return Volume(out, spacing, low, source)


def _trilinear(padded, idx) -> np.ndarray:
  """Samples an array padded by one fill voxel at fractional indices [..., 3] of the original."""
  i0 = np.floor(idx)
  w = (idx - i0).astype(np.float32)
  top = np.asarray(padded.shape) - 1
  lo = np.clip(i0 + 1, 0, top).astype(np.intp)
  hi = np.clip(i0 + 2, 0, top).astype(np.intp)
  out = 0.0
  for cx, cy, cz in itertools.product((0, 1), repeat=3):
    weight = ((w[..., 0] if cx else 1 - w[..., 0]) * (w[..., 1] if cy else 1 - w[..., 1]) *
              (w[..., 2] if cz else 1 - w[..., 2]))
    ix, iy, iz = (hi if c else lo for c in (cx, cy, cz))
    out = out + weight * padded[ix[..., 0], iy[..., 1], iz[..., 2]]
  return out
