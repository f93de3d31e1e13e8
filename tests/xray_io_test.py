"""Tests for jaxcorr.xray.io: round trips, grey-level rules, errors, and the real CR files."""

import logging
import pathlib

import numpy as np
import pytest
from PIL import Image

from jaxcorr.xray import io

pydicom = pytest.importorskip("pydicom", minversion="3.0")
Dataset, Sequence = pydicom.dataset.Dataset, pydicom.sequence.Sequence


def _ramp(h=20, w=24):
  """A [h, w] image whose values sweep [0, 1] row-major, with every value distinct."""
  return np.linspace(0.0, 1.0, h * w).reshape(h, w)


def _edit(path, **attrs):
  """Rewrites a DICOM file with some attributes changed."""
  ds = pydicom.dcmread(path)
  for key, value in attrs.items():
    setattr(ds, key, value)
  ds.save_as(path)
  return path


def _stored_dicom(path, stored, bits=12, **kwargs):
  """A DICOM whose stored values are exactly `stored` (integers < 2^bits)."""
  io.write_dicom(path, np.asarray(stored, np.float64) / (2**bits - 1), bits_stored=bits, **kwargs)
  np.testing.assert_array_equal(pydicom.dcmread(path).pixel_array, stored)
  return path


# Round trips.


@pytest.mark.parametrize("bits", [8, 16])
def test_png_round_trip(tmp_path, bits):
  path = tmp_path / "a.png"
  io.write_png(path, _ramp(), bits=bits)
  r = io.read_radiograph(path)
  assert r.image.dtype == np.float32 and r.shape == (20, 24) and r.spacing is None
  assert r.meta["format"] == "PNG" and r.meta["bits_stored"] == bits
  np.testing.assert_allclose(r.image, _ramp(), atol=0.5 / (2**bits - 1) + 1e-7)
  assert not list(tmp_path.glob(".*tmp*"))  # the atomic writer leaves no temp file


@pytest.mark.parametrize("dtype,scale", [(np.uint8, 255), (np.uint16, 65535)])
def test_tiff_8_and_16_bit(tmp_path, dtype, scale):
  path = tmp_path / "a.tif"
  stored = np.rint(_ramp() * scale).astype(dtype)
  Image.fromarray(stored).save(path)
  np.testing.assert_allclose(io.read_radiograph(path).image, stored / scale, atol=1e-6)


def test_float_tiff_in_unit_range_kept_else_stretched(tmp_path):
  Image.fromarray(_ramp().astype(np.float32)).save(tmp_path / "f.tif")
  np.testing.assert_allclose(io.read_radiograph(tmp_path / "f.tif").image, _ramp(), atol=1e-6)
  Image.fromarray((_ramp() * 1000 - 300).astype(np.float32)).save(tmp_path / "g.tif")
  r = io.read_radiograph(tmp_path / "g.tif")
  assert r.meta["voi"] == "percentile" and r.image.min() == 0 and r.image.max() == 1
  assert np.all(np.diff(r.image.ravel()) >= 0)  # monotone in the stored values


def test_jpeg_grey_and_rgb_grey(tmp_path):
  smooth = np.rint(_ramp(32, 32) * 255).astype(np.uint8)
  Image.fromarray(smooth).save(tmp_path / "l.jpg", quality=95)
  Image.fromarray(np.stack([smooth] * 3, -1)).save(tmp_path / "rgb.jpg", quality=95)
  for name in ("l.jpg", "rgb.jpg"):
    r = io.read_radiograph(tmp_path / name)
    assert r.meta["format"] == "JPEG"
    np.testing.assert_allclose(r.image, smooth / 255, atol=4 / 255)


def test_rgb_with_equal_channels_is_grey(tmp_path):
  grey = np.rint(_ramp() * 255).astype(np.uint8)
  Image.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / "rgb.png")
  np.testing.assert_allclose(io.read_radiograph(tmp_path / "rgb.png").image, grey / 255, atol=1e-6)


@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
@pytest.mark.parametrize("bits", [10, 12, 16])
def test_dicom_round_trip(tmp_path, photometric, bits):
  path = tmp_path / "a.dcm"
  uid = io.write_dicom(path, _ramp(), spacing=(0.15, 0.2), photometric=photometric,
                       bits_stored=bits, modality="CR", body_part="ANKLE")
  levels = 2**bits - 1
  raw = pydicom.dcmread(path).pixel_array
  expected_raw = np.rint((1 - _ramp() if photometric == "MONOCHROME1" else _ramp()) * levels)
  np.testing.assert_array_equal(raw, expected_raw)  # MONOCHROME1 stores bone dark
  r = io.read_radiograph(path)
  np.testing.assert_allclose(r.image, _ramp(), atol=0.5 / levels + 1e-6)
  assert r.spacing == (0.15, 0.2) and r.meta["spacing_source"] == "PixelSpacing"
  assert r.meta["photometric"] == photometric and r.meta["bits_stored"] == bits
  assert r.meta["body_part"] == "ANKLE" and r.meta["sop_uid"] == uid
  assert r.meta["voi"] == "window"


# DICOM grey levels.


def test_dicom_linear_window_first_value(tmp_path):
  # LINEAR: 0 at or below c - 0.5 - (w - 1) / 2 = 749.5, 1 above c - 0.5 + (w - 1) / 2 =
  # 1249.5, in between (x - (c - 0.5)) / (w - 1) + 0.5; only the first of several windows counts.
  path = _stored_dicom(tmp_path / "w.dcm", np.tile([700, 749, 750, 1000, 1249, 1250], (16, 3)))
  _edit(path, WindowCenter=[1000, 3000], WindowWidth=[501, 10])
  row = io.read_radiograph(path).image[0, :6]
  np.testing.assert_allclose(row, [0, 0, 0.001, 0.501, 0.999, 1], atol=1e-6)


def test_dicom_rescale_then_window_then_monochrome1(tmp_path):
  # Rescale to 2 x - 100 first; the window is in rescaled units; MONOCHROME1 inverts last.
  path = _stored_dicom(tmp_path / "r.dcm", np.tile([50, 100, 150, 300], (16, 4)))
  _edit(path, RescaleSlope=2, RescaleIntercept=-100, WindowCenter=100.5, WindowWidth=201,
        VOILUTFunction="LINEAR_EXACT")
  # LINEAR_EXACT: (x - c) / w + 0.5 on the rescaled values 0, 100, 200, 500, clipped.
  expected = np.asarray([0, 0.5 - 0.5 / 201, 0.5 + 99.5 / 201, 1])
  np.testing.assert_allclose(io.read_radiograph(path).image[0, :4], expected, atol=1e-6)
  _edit(path, PhotometricInterpretation="MONOCHROME1")
  np.testing.assert_allclose(io.read_radiograph(path).image[0, :4], 1 - expected, atol=1e-6)


def test_dicom_voi_lut_sequence_wins_over_window(tmp_path):
  path = _stored_dicom(tmp_path / "v.dcm", np.tile([990, 1000, 1001, 1002, 1003, 2000], (16, 3)))
  ds = pydicom.dcmread(path)
  item = Dataset()
  item.add_new(0x00283002, "US", [4, 1000, 8])  # LUTDescriptor: 4 entries from 1000, 8 bits
  item.add_new(0x00283006, "US", [0, 51, 102, 255])  # LUTData
  ds.VOILUTSequence = Sequence([item])
  ds.save_as(path)
  r = io.read_radiograph(path)
  assert r.meta["voi"] == "lut"
  np.testing.assert_allclose(r.image[0, :6], [0, 0, 0.2, 0.4, 1, 1], atol=1e-6)


def test_dicom_without_window_uses_robust_minmax(tmp_path):
  path = tmp_path / "n.dcm"
  io.write_dicom(path, _ramp(40, 50), window=False, bits_stored=16)
  r = io.read_radiograph(path)
  assert r.meta["voi"] == "percentile"
  flat = r.image.ravel()
  assert np.all(np.diff(flat) >= 0) and flat[0] == 0 and flat[-1] == 1
  assert (flat == 0).sum() == (flat == 1).sum() == 10  # 0.5% of 2000 pixels at each end


def test_dicom_spacing_pixel_wins_then_imager(tmp_path):
  path = tmp_path / "s.dcm"
  io.write_dicom(path, _ramp(), spacing=(0.1, 0.1))
  _edit(path, ImagerPixelSpacing=[0.12, 0.125])
  assert io.read_radiograph(path).spacing == (0.1, 0.1)
  ds = pydicom.dcmread(path)
  del ds.PixelSpacing
  ds.save_as(path)
  r = io.read_radiograph(path)
  assert r.spacing == (0.12, 0.125) and r.meta["spacing_source"] == "ImagerPixelSpacing"
  io.write_dicom(path, _ramp())
  assert io.read_radiograph(path).spacing is None


def test_other_modality_read_with_warning(tmp_path, caplog):
  io.write_dicom(tmp_path / "o.dcm", _ramp())
  path = _edit(tmp_path / "o.dcm", Modality="XA")
  with caplog.at_level(logging.WARNING):
    r = io.read_radiograph(path)
  assert r.meta["modality"] == "XA" and "'XA' is not a radiograph" in caplog.text


# Errors name the file.


def _raises(path, *fragments):
  with pytest.raises(io.XRayError) as e:
    io.read_radiograph(path)
  for fragment in (str(path),) + fragments:
    assert fragment in str(e.value), str(e.value)


def test_missing_folder_and_unsupported(tmp_path):
  _raises(tmp_path / "nope.png", "no such file")
  _raises(tmp_path, "a folder")
  (tmp_path / "a.txt").write_text("hello")
  _raises(tmp_path / "a.txt", "unsupported file type '.txt'")
  Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "a.gif")
  _raises(tmp_path / "a.gif", "unsupported file type '.gif'")


def test_colour_png_and_dicom(tmp_path):
  rgb = np.zeros((20, 20, 3), np.uint8)
  rgb[..., 0] = 200
  Image.fromarray(rgb).save(tmp_path / "c.png")
  _raises(tmp_path / "c.png", "colour image")
  path = tmp_path / "c.dcm"
  io.write_dicom(path, _ramp())
  _edit(path, SamplesPerPixel=3, PhotometricInterpretation="RGB", PlanarConfiguration=0,
        BitsAllocated=8, BitsStored=8, HighBit=7, PixelData=rgb.tobytes(), Rows=20, Columns=20)
  _raises(path, "colour DICOM (RGB")


def test_multi_frame_dicom_and_multi_page_tiff(tmp_path):
  path = tmp_path / "m.dcm"
  io.write_dicom(path, _ramp())
  ds = pydicom.dcmread(path)
  _edit(path, NumberOfFrames=2, PixelData=ds.PixelData * 2)
  assert pydicom.dcmread(path).pixel_array.shape == (2, 20, 24)  # a valid 2-frame file
  _raises(path, "multi-frame DICOM (2 frames)")
  pages = [Image.fromarray(np.zeros((20, 20), np.uint8))] * 2
  pages[0].save(tmp_path / "m.tif", save_all=True, append_images=pages[1:])
  _raises(tmp_path / "m.tif", "2 frames/pages")


@pytest.mark.parametrize("name", ["t.png", "t.dcm"])
def test_truncated(tmp_path, name):
  path = tmp_path / name
  if name.endswith(".png"):
    io.write_png(path, np.random.default_rng(0).random((64, 64)))
  else:
    io.write_dicom(path, _ramp(64, 64))
  data = path.read_bytes()
  path.write_bytes(data[:len(data) // 2])
  _raises(path, "truncated or corrupt")


def test_tiny_images(tmp_path):
  io.write_png(tmp_path / "one.png", np.ones((1, 1)))
  _raises(tmp_path / "one.png", "1x1 pixels", f"at least {io.MIN_SIDE}")
  io.write_dicom(tmp_path / "thin.dcm", np.ones((15, 40)))
  _raises(tmp_path / "thin.dcm", "15x40 pixels")


def test_compressed_dicom_without_decoder_names_packages(tmp_path):
  syntax = pydicom.uid.JPEGLSLossless
  if pydicom.pixels.get_decoder(syntax).is_available:
    pytest.skip("a JPEG-LS decoder is installed here")
  path = tmp_path / "j.dcm"
  io.write_dicom(path, _ramp())
  ds = pydicom.dcmread(path)
  ds.file_meta.TransferSyntaxUID = syntax
  ds.PixelData = pydicom.encaps.encapsulate([b"\xff\xd8\xff\xf7 not really JPEG-LS"])
  ds["PixelData"].VR = "OB"
  ds.save_as(path)
  _raises(path, "JPEG-LS", "no decoder is installed", "pylibjpeg")


def test_batch_names_bad_file(tmp_path):
  io.write_png(tmp_path / "good.png", _ramp())
  good = io.read_radiographs([tmp_path / "good.png"] * 2)
  assert len(good) == 2
  with pytest.raises(io.XRayError, match=r"radiograph 1 of 3 .*bad\.png: no such file"):
    io.read_radiographs([tmp_path / "good.png", tmp_path / "bad.png", tmp_path / "good.png"])


def test_writers_refuse_bad_input(tmp_path):
  with pytest.raises(io.XRayError, match="in \\[0, 1\\]"):
    io.write_png(tmp_path / "x.png", _ramp() * 2)
  with pytest.raises(io.XRayError, match="choose 8 or 16"):
    io.write_png(tmp_path / "x.png", _ramp(), bits=12)
  with pytest.raises(io.XRayError, match="photometric='RGB' is not allowed"):
    io.write_dicom(tmp_path / "x.dcm", _ramp(), photometric="RGB")
  assert not list(tmp_path.iterdir())


def test_interrupted_write_keeps_the_old_file(tmp_path, monkeypatch):
  path = tmp_path / "a.png"
  io.write_png(path, np.zeros((20, 20)))
  before = path.read_bytes()
  def half_then_fail(self, fp, *args, **kwargs):
    del self, args, kwargs
    pathlib.Path(fp).write_bytes(before[:10])
    raise KeyboardInterrupt
  monkeypatch.setattr(Image.Image, "save", half_then_fail)
  with pytest.raises(KeyboardInterrupt):
    io.write_png(path, np.ones((20, 20)))
  assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["a.png"]


def test_image_size_reads_headers(tmp_path):
  io.write_png(tmp_path / "a.png", _ramp(20, 30))
  io.write_dicom(tmp_path / "a.dcm", _ramp(25, 17))
  assert io.image_size(tmp_path / "a.png") == (20, 30)
  assert io.image_size(tmp_path / "a.dcm") == (25, 17)


# The real CR files.


def test_real_cr_monochrome1_tibia(shared_data):
  path = shared_data / "xray" / "nema_wg04_RG3_UNC_CR_distal_tibia_NOF.dcm"
  raw = pydicom.dcmread(path).pixel_array
  r = io.read_radiograph(path)
  assert r.meta["photometric"] == "MONOCHROME1" and r.meta["bits_stored"] == 10
  assert raw.max() <= 1023 and r.shape == raw.shape == (1760, 1760)
  assert r.spacing is None and r.meta["spacing_source"] is None
  # Inverted: the output is a non-increasing function of the stored value, and not constant.
  order = np.argsort(raw.ravel(), kind="stable")
  assert np.all(np.diff(r.image.ravel()[order]) <= 0)
  assert r.image[raw == raw.min()].min() > r.image[raw == raw.max()].max()
  # Window 550 / 1024 (LINEAR), then inverted.
  expected = 1 - np.clip((raw - 549.5) / 1023 + 0.5, 0, 1)
  np.testing.assert_allclose(r.image, expected, atol=1e-6)


def test_real_cr_hip_spacing_and_window(shared_data):
  path = shared_data / "xray" / "nema_wg04_RG2_UNC_CR_hip.dcm"
  ds = pydicom.dcmread(path)
  assert "PixelSpacing" in ds and "ImagerPixelSpacing" not in ds
  r = io.read_radiograph(path)
  assert r.spacing == (0.2, 0.2) and r.meta["spacing_source"] == "PixelSpacing"
  assert r.meta["photometric"] == "MONOCHROME2" and r.meta["modality"] == "CR"
  assert r.meta["bits_stored"] == 10 and ds.pixel_array.max() <= 1023
  assert r.shape == (2140, 1760) and r.meta["body_part"] == "HIP"
  np.testing.assert_allclose(r.image, (ds.pixel_array + 1.0) / 1023, atol=1e-6)  # c 511, w 1024
