"""Reading radiographs (PNG, JPEG, TIFF, DICOM) into [0, 1] images, and writing test files.

Output convention. `Radiograph.image` is float32 [H, W] in [0, 1] in display polarity: bone
and metal bright, air dark (DICOM MONOCHROME2 sense, as the DRRs the model learns from).
`spacing` is (row, column) mm or None. Pixel (r, c) is the point (x, y) = (c, r) (`letterbox.py`).

Grey levels.
  PNG/TIFF/JPEG  8-bit (mode L) / 255; 16-bit (I;16*) / 65535, the full range: the file carries
                 no reliable count of significant bits, and this round-trips `write_png(bits=16)`.
                 A 12-bit image stored unscaled in 16 bits so reads dark (max ~0.06; a warning
                 says so). Mode I in [0, 65535] reads as 16-bit, F in [0, 1] as is, other I/F
                 ranges get the robust min-max below. RGB/palette images whose channels agree
                 within `GREY_RGB_TOLERANCE` levels (JPEG chroma rounding) are grey and
                 averaged; a colour image is an error; alpha must be opaque.
  DICOM          stored values -> modality LUT (RescaleSlope/Intercept or Modality LUT
                 Sequence) -> the first VOI LUT Sequence item, / (2^bits - 1) of its descriptor;
                 else the first WindowCenter/Width with VOILUTFunction (LINEAR, PS3.3
                 C.11.2.1.2.1, by default; LINEAR_EXACT; SIGMOID); else a robust min-max
                 (`ROBUST_PERCENTILES` -> 0, 1, clipped). MONOCHROME1 is then inverted (1 - v);
                 PresentationLUTShape INVERSE states that same inversion and is not reapplied.
  Spacing        PixelSpacing wins over ImagerPixelSpacing: in CR/DX it is the spacing stated
                 for the anatomy (calibrated or magnification-corrected), while
                 ImagerPixelSpacing is at the detector and overstates anatomy by the geometric
                 magnification (~1.1-1.2). `meta['spacing_source']` names the tag used;
                 EstimatedRadiographicMagnificationFactor is kept in meta, not applied.

Errors are `XRayError`s naming the file, the problem and the fix: a missing path, unsupported
extension or format, colour, several frames/pages, truncated or corrupt data, under `MIN_SIDE`
pixels per side, compressed DICOM without a decoder. DICOM needs pydicom >= 3
(pip install jaxcorr[dicom]), imported on first use.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

from absl import logging
import numpy as np
from PIL import Image

from jaxcorr.core.choices import check_choice

MIN_SIDE = 16
PIL_SUFFIXES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}
DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")
MODALITIES = ("CR", "DX")
ROBUST_PERCENTILES = (0.5, 99.5)
GREY_RGB_TOLERANCE = 2
PHOTOMETRIC = ("MONOCHROME1", "MONOCHROME2")
_META_TAGS = {"body_part": "BodyPartExamined", "view_position": "ViewPosition",
              "laterality": "Laterality", "patient_id": "PatientID",
              "study_uid": "StudyInstanceUID", "series_uid": "SeriesInstanceUID",
              "sop_uid": "SOPInstanceUID", "study_description": "StudyDescription",
              "imager_pixel_spacing": "ImagerPixelSpacing",
              "magnification": "EstimatedRadiographicMagnificationFactor"}
_SOP_CLASS = {"CR": "1.2.840.10008.5.1.4.1.1.1", "DX": "1.2.840.10008.5.1.4.1.1.1.1"}
_SUPPORTED = "PNG, JPEG, TIFF (.png .jpg .jpeg .tif .tiff) or DICOM (.dcm, or no extension)"


class XRayError(ValueError):
  """A radiograph that cannot be used; the message names the file, the problem and the fix."""


@dataclasses.dataclass(frozen=True)
class Radiograph:
  """One radiograph: `image` float32 [H, W] in [0, 1], bone bright; `spacing` (row, col) mm or
  None; `path`; `meta`, JSON-able facts: format, photometric, bits_stored, modality, body_part,
  voi (how grey levels were mapped: lut, window, percentile, bit_depth, range), raw_range,
  spacing_source, shape, and for DICOM the UIDs, view position and laterality."""

  image: np.ndarray
  spacing: tuple[float, float] | None
  path: str
  meta: dict = dataclasses.field(default_factory=dict)

  @property
  def shape(self) -> tuple[int, int]:
    return tuple(int(s) for s in self.image.shape)


def read_radiograph(path) -> Radiograph:
  """Reads one radiograph (PNG, JPEG, TIFF or single-frame greyscale DICOM) as a `Radiograph`
  (grey levels and spacing per the module docstring); XRayError naming the file otherwise."""
  path = pathlib.Path(path)
  if not path.is_file():
    what = "a folder, not a file" if path.is_dir() else "no such file"
    raise XRayError(f"{path}: {what}; pass the path of one radiograph ({_SUPPORTED}).")
  image, spacing, meta = _read_dicom(path) if _is_dicom(path) else _read_pil(path)
  if min(image.shape) < MIN_SIDE:
    raise XRayError(f"{path}: image is {image.shape[0]}x{image.shape[1]} pixels; a radiograph "
                    f"needs at least {MIN_SIDE} pixels per side. Is this a thumbnail or an icon?")
  image = np.clip(image, 0.0, 1.0).astype(np.float32)
  return Radiograph(image, spacing, str(path), {**meta, "shape": list(image.shape)})


def read_radiographs(paths) -> list[Radiograph]:
  """Reads several radiographs; an error names the bad file and its position in `paths`."""
  paths, out = list(paths), []
  for k, path in enumerate(paths):
    try:
      out.append(read_radiograph(path))
    except XRayError as e:
      raise XRayError(f"radiograph {k} of {len(paths)} (0-based) is unusable: {e}") from e
  return out


def image_size(path) -> tuple[int, int]:
  """(H, W) of a radiograph from its header only (cheap); XRayError when it cannot be read."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise XRayError(f"{path}: no such file; check the path.")
  if _is_dicom(path):
    ds = _dcmread(path, stop_before_pixels=True)
    return int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
  try:
    with Image.open(path) as img:
      return int(img.height), int(img.width)
  except (OSError, SyntaxError, ValueError) as e:
    raise XRayError(f"{path}: not a readable {_SUPPORTED} file ({e}).") from e


def _is_dicom(path: pathlib.Path) -> bool:
  suffix = path.suffix.lower()
  if suffix in PIL_SUFFIXES:
    return False
  if suffix in DICOM_SUFFIXES:
    return True
  with open(path, "rb") as f:
    if f.read(132)[128:] == b"DICM":
      return True
  raise XRayError(f"{path}: unsupported file type {suffix or '(no extension)'!r}; expected "
                  f"{_SUPPORTED}. Convert the image to one of these.")


def _read_pil(path):
  """(image [H, W] float64, spacing None, meta) of a PNG/JPEG/TIFF file."""
  try:
    with Image.open(path) as img:
      if img.format not in ("PNG", "JPEG", "TIFF"):
        raise XRayError(f"{path}: holds a {img.format} image; expected {_SUPPORTED}.")
      if getattr(img, "n_frames", 1) > 1:
        raise XRayError(f"{path}: holds {img.n_frames} frames/pages; save each view as its own "
                        "single-image file.")
      img.load()
      fmt, mode = img.format, img.mode
      image, bits, voi = _pil_grey(img, path)
  except XRayError:
    raise
  except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
    raise XRayError(f"{path}: cannot decode the image, the file is truncated or corrupt "
                    f"({type(e).__name__}: {e}); re-export or re-download it.") from e
  return image, None, {"format": fmt, "mode": mode, "photometric": "MONOCHROME2",
                       "bits_stored": bits, "voi": voi}


def _pil_grey(img, path):
  """(grey [H, W] in [0, 1], bits, voi) of a loaded Pillow image."""
  mode = img.mode
  if mode in ("L", "1"):  # 1: bilevel
    return np.asarray(img.convert("L"), np.float64) / 255.0, 8, "bit_depth"
  if mode.startswith("I;16"):
    raw = np.asarray(img).astype(np.float64)
    if raw.max() < 4096:
      logging.warning("%s: 16-bit image whose maximum is %d (< 4096): scaled by 65535, so it "
                      "reads dark; save it full-range if that is not intended.", path, raw.max())
    return raw / 65535.0, 16, "bit_depth"
  if mode in ("I", "F"):
    raw = np.asarray(img, np.float64)
    if not np.isfinite(raw).all():
      raise XRayError(f"{path}: holds NaN/inf pixels; fix or re-export the image.")
    if mode == "I" and raw.min() >= 0 and raw.max() <= 65535:
      return raw / 65535.0, 16, "bit_depth"
    if mode == "F" and raw.min() >= 0 and raw.max() <= 1:
      return raw, 32, "range"
    return _robust_minmax(raw, path), 32, "percentile"
  if mode in ("LA", "RGB", "RGBA", "P", "PA"):
    rgba = np.asarray(img.convert("RGBA"), np.int16)
    if (rgba[..., 3] != 255).any():
      raise XRayError(f"{path}: has transparent pixels (alpha < 255); save the radiograph "
                      "without an alpha channel.")
    spread = int(np.abs(rgba[..., :3] - rgba[..., :1]).max())
    if spread > GREY_RGB_TOLERANCE:
      raise XRayError(f"{path}: is a colour image ({mode}, channels differ by up to {spread} "
                      "levels); radiographs must be greyscale. Export it as a greyscale PNG "
                      "(or convert only if the colour is an overlay you can drop).")
    return rgba[..., :3].mean(-1) / 255.0, 8, "bit_depth"
  raise XRayError(f"{path}: unsupported Pillow mode {mode!r}; expected greyscale L, I;16, I or "
                  "F (or RGB with equal channels).")


def _robust_minmax(values, path) -> np.ndarray:
  """Maps the `ROBUST_PERCENTILES` of `values` to 0 and 1 (clipped)."""
  lo, hi = np.percentile(values, ROBUST_PERCENTILES)
  if hi <= lo:
    lo, hi = float(values.min()), float(values.max())
  if hi <= lo:
    logging.warning("%s: constant image (every pixel %g); reading it as all zeros.", path, lo)
    return np.zeros(values.shape)
  return np.clip((values - lo) / (hi - lo), 0.0, 1.0)


def _import_pydicom(path):
  try:
    import pydicom.pixels  # pylint: disable=import-outside-toplevel  (binds pydicom too)
  except ImportError as e:
    raise XRayError(f"{path}: DICOM needs pydicom >= 3: pip install 'jaxcorr[dicom]'") from e
  return pydicom


def _dcmread(path, **kwargs):
  pydicom = _import_pydicom(path)
  try:
    return pydicom.dcmread(path, **kwargs)
  except pydicom.errors.InvalidDicomError as e:
    raise XRayError(f"{path}: not a DICOM file (no 'DICM' marker: {e}); expected "
                    f"{_SUPPORTED}.") from e
  except Exception as e:  # pylint: disable=broad-except  (pydicom raises many kinds on bad bytes)
    raise XRayError(f"{path}: cannot parse the DICOM file, it is truncated or corrupt "
                    f"({type(e).__name__}: {e}); re-export or re-download it.") from e


def _read_dicom(path):
  """(image [H, W] in [0, 1], spacing, meta) of a single-frame greyscale DICOM file."""
  pydicom = _import_pydicom(path)
  ds = _dcmread(path)
  if "PixelData" not in ds:
    raise XRayError(f"{path}: DICOM without pixel data (a report?); point at the image file.")
  photometric = str(ds.get("PhotometricInterpretation", "")).strip()
  if int(ds.get("SamplesPerPixel", 1) or 1) != 1 or photometric not in PHOTOMETRIC:
    raise XRayError(f"{path}: colour DICOM ({photometric or 'no PhotometricInterpretation'}, "
                    f"{ds.get('SamplesPerPixel', 1)} samples/pixel); radiographs must be "
                    "MONOCHROME1 or MONOCHROME2.")
  if (frames := int(ds.get("NumberOfFrames", 1) or 1)) > 1:
    raise XRayError(f"{path}: multi-frame DICOM ({frames} frames); export each view as its own "
                    "single-frame file.")
  if (modality := str(ds.get("Modality", "")).strip()) not in MODALITIES:
    logging.warning("%s: modality %r is not a radiograph (%s); reading it anyway.", path,
                    modality, "/".join(MODALITIES))
  syntax = ds.file_meta.get("TransferSyntaxUID", None)
  if syntax is not None and syntax.is_compressed:
    decoder = pydicom.pixels.get_decoder(syntax)
    if not decoder.is_available:
      raise XRayError(f"{path}: compressed with {syntax.name} and no decoder is installed; "
                      f"install one of: {'; '.join(decoder.missing_dependencies)}.")
  try:
    raw = ds.pixel_array
  except Exception as e:  # pylint: disable=broad-except  (decoder plugins raise anything)
    raise XRayError(f"{path}: cannot decode the pixel data, the file is truncated or corrupt "
                    f"({type(e).__name__}: {e}); re-export or re-download it.") from e
  values = np.asarray(pydicom.pixels.apply_modality_lut(raw, ds), np.float64)
  image, voi = _dicom_voi(values, ds, pydicom, path)
  image = 1.0 - image if photometric == "MONOCHROME1" else image
  spacing, source = _dicom_spacing(ds, path)
  meta = {"format": "DICOM", "photometric": photometric,
          "bits_stored": int(ds.get("BitsStored", raw.dtype.itemsize * 8)),
          "modality": modality, "voi": voi, "raw_range": [float(raw.min()), float(raw.max())],
          "transfer_syntax": str(syntax or ""), "spacing_source": source}
  for key, tag in _META_TAGS.items():
    value = ds.get(tag, None)
    if value not in (None, ""):
      meta[key] = ([float(v) for v in value] if key == "imager_pixel_spacing" else
                   float(value) if key == "magnification" else str(value))
  return image, spacing, meta


def _dicom_voi(values, ds, pydicom, path):
  """The VOI stage: (values mapped to [0, 1], how)."""
  if "VOILUTSequence" in ds and len(ds.VOILUTSequence):
    bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
    out = pydicom.pixels.apply_voi(np.rint(values).astype(np.int64), ds, index=0)
    return np.asarray(out, np.float64) / (2.0**bits - 1), "lut"
  if ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
    first = lambda v: float(v[0] if isinstance(v, pydicom.multival.MultiValue) else v)
    c, w = first(ds.WindowCenter), first(ds.WindowWidth)
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
    if function == "SIGMOID" and w > 0:
      return 1.0 / (1.0 + np.exp(-4.0 * (values - c) / w)), "window"
    if function == "LINEAR_EXACT" and w > 0:
      return np.clip((values - c) / w + 0.5, 0.0, 1.0), "window"
    if function == "LINEAR" and w >= 1:
      if w == 1:
        return (values > c - 0.5).astype(np.float64), "window"
      return np.clip((values - (c - 0.5)) / (w - 1) + 0.5, 0.0, 1.0), "window"
    logging.warning("%s: unusable window (center %g, width %g, function %s); using a robust "
                    "min-max instead.", path, c, w, function)
  return _robust_minmax(values, path), "percentile"


def _dicom_spacing(ds, path):
  """(row, col) mm and the tag it came from, or (None, None)."""
  for tag in ("PixelSpacing", "ImagerPixelSpacing"):
    if not (value := ds.get(tag, None)):
      continue
    try:
      spacing = tuple(float(v) for v in np.asarray(value, np.float64).reshape(-1))
    except (TypeError, ValueError):
      spacing = ()
    if len(spacing) == 2 and min(spacing) > 0 and all(np.isfinite(spacing)):
      return spacing, tag
    logging.warning("%s: ignoring invalid %s %r (need two positive numbers).", path, tag, value)
  return None, None


# Writers, for tests and benchmark generators.


def _check_image01(path, image01) -> np.ndarray:
  image = np.asarray(image01, np.float64)
  if image.ndim != 2:
    raise XRayError(f"{path}: expected a 2D [H, W] image to write, got shape {image.shape}.")
  if not np.isfinite(image).all() or image.min() < 0 or image.max() > 1:
    raise XRayError(f"{path}: image values must be finite and in [0, 1] (got "
                    f"{np.nanmin(image):.4g}..{np.nanmax(image):.4g}); clip or rescale first.")
  return image


def _atomic(path, write) -> None:
  """Calls write(tmp) on a temp file beside `path`, then renames it onto `path`."""
  path = pathlib.Path(path)
  tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
  try:
    write(tmp)
    os.replace(tmp, path)
  except BaseException:
    tmp.unlink(missing_ok=True)
    raise


def write_png(path, image01, *, bits: int = 8) -> None:
  """Writes a [0, 1] image as an 8- or 16-bit greyscale PNG (round(x (2^bits - 1))), atomically."""
  if bits not in (8, 16):
    raise XRayError(f"{path}: bits={bits} is not allowed; choose 8 or 16.")
  stored = np.rint(_check_image01(path, image01) * (2**bits - 1))
  stored = stored.astype(np.uint8 if bits == 8 else np.uint16)
  _atomic(path, lambda tmp: Image.fromarray(stored).save(tmp, format="PNG"))


def write_dicom(path, image01, *, spacing=None, photometric: str = "MONOCHROME2",
                bits_stored: int = 12, modality: str = "DX", window: bool = True,
                patient_id: str = "ANONYMOUS", study_uid: str | None = None,
                series_uid: str | None = None, body_part: str = "", view_position: str = "",
                instance_number: int = 1) -> str:
  """Writes a [0, 1] display-polarity image as a single-frame CR/DX DICOM file, atomically.

  Stored values are round(x M), M = 2^bits_stored - 1 (round((1 - x) M) for MONOCHROME1), in
  16-bit words, explicit VR little endian, with a generated SOP instance UID. With `window`,
  WindowCenter/Width = 2^(bits-1), 2^bits make DICOM's LINEAR window the identity v / M, so
  `read_radiograph` gives the image back within 1 / (2 M); without it readers fall back to
  their own windowing (ours: robust min-max).

  Args: `image01` [H, W] in [0, 1], bone bright; `spacing` (row, col) mm, written as both
  PixelSpacing and ImagerPixelSpacing (None: neither); `photometric` MONOCHROME1 (bone dark in
  stored values) or MONOCHROME2; `bits_stored` 10, 12 or 16; `modality` CR or DX (the SOP
  class); `window`: write WindowCenter/Width; UIDs are generated when None (pass one study_uid
  for the views of a study); the other fields are written as given.

  Returns:
    The SOP instance UID written.
  """
  for name, value, allowed in (("photometric", photometric, PHOTOMETRIC),
                               ("bits_stored", bits_stored, (10, 12, 16)),
                               ("modality", modality, MODALITIES)):
    check_choice(f"{path}: {name}", value, allowed, XRayError)
  image = _check_image01(path, image01)
  pydicom = _import_pydicom(path)
  uids = pydicom.uid
  stored = np.rint((1.0 - image if photometric == "MONOCHROME1" else image) * (2**bits_stored - 1))
  sop_uid = uids.generate_uid()
  meta = pydicom.dataset.FileMetaDataset()
  meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = _SOP_CLASS[modality], sop_uid
  meta.TransferSyntaxUID = uids.ExplicitVRLittleEndian
  meta.ImplementationClassUID = uids.PYDICOM_IMPLEMENTATION_UID
  ds = pydicom.dataset.Dataset()
  ds.file_meta, ds.preamble = meta, b"\0" * 128
  ds.SOPClassUID, ds.SOPInstanceUID = _SOP_CLASS[modality], sop_uid
  ds.StudyInstanceUID = study_uid or uids.generate_uid()
  ds.SeriesInstanceUID = series_uid or uids.generate_uid()
  ds.update({"Modality": modality, "PatientID": patient_id, "PatientName": patient_id,
             "BodyPartExamined": body_part, "ViewPosition": view_position,
             "InstanceNumber": int(instance_number), "SeriesNumber": 1,
             "ImageType": ["ORIGINAL", "PRIMARY"], "SamplesPerPixel": 1,
             "PhotometricInterpretation": photometric, "Rows": int(image.shape[0]),
             "Columns": int(image.shape[1]), "BitsAllocated": 16, "BitsStored": bits_stored,
             "HighBit": bits_stored - 1, "PixelRepresentation": 0})
  for tag in ("StudyDate", "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName",
              "PatientBirthDate", "PatientSex", "PatientOrientation"):
    setattr(ds, tag, "")  # type 2: present, may be empty
  if modality == "DX":
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.PresentationLUTShape = "INVERSE" if photometric == "MONOCHROME1" else "IDENTITY"
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 1, 0, "US"
  if spacing is not None:
    ds.PixelSpacing = ds.ImagerPixelSpacing = [f"{float(s):.6g}" for s in spacing]
  if window:
    ds.WindowCenter, ds.WindowWidth = 2**(bits_stored - 1), 2**bits_stored
  ds.PixelData = stored.astype("<u2").tobytes()
  _atomic(path, lambda tmp: pydicom.dcmwrite(tmp, ds, enforce_file_format=True))
  return str(sop_uid)
