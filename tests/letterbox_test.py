"""Tests for jaxcorr.xray.letterbox: geometry, exact inverses, patches, area resampling."""

import json

import numpy as np
import pytest

from jaxcorr.xray.letterbox import Letterbox

# (original shape, model shape, scale, (ox, oy)): landscape, portrait, upsampled, odd sizes.
CASES = [((100, 200), (64, 64), 0.32, (0.0, 16.0)),
         ((200, 100), (64, 64), 0.32, (16.0, 0.0)),
         ((20, 10), (64, 96), 3.2, (32.0, 0.0)),
         ((2140, 1760), (512, 512), 512 / 2140, ((512 - 1760 * 512 / 2140) / 2, 0.0))]
IDS = ["landscape", "portrait", "upsampled", "hip"]


@pytest.mark.parametrize("shape,out,scale,offset", CASES, ids=IDS)
def test_scale_and_centred_offset(shape, out, scale, offset):
  box = Letterbox(shape, out)
  assert box.scale == pytest.approx(scale, rel=1e-12)
  np.testing.assert_allclose(box.offset, offset, atol=1e-12)
  # The content's edges land on the model's edges on the tight axis, centred on the other.
  corners = box.to_model([[-0.5, -0.5], [shape[1] - 0.5, shape[0] - 0.5]])
  np.testing.assert_allclose(corners[0] + corners[1], [out[1] - 1, out[0] - 1], atol=1e-9)


def test_known_point():
  box = Letterbox((100, 200), (64, 64))
  # Pixel (0, 0)'s centre is 0.5 pixel from the edges: 0.5 * 0.32 model pixels, plus the offset.
  np.testing.assert_allclose(box.to_model([0, 0]), [0.16 - 0.5, 16 + 0.16 - 0.5], atol=1e-12)
  np.testing.assert_allclose(box.to_model([199, 99]), [63.5 - 0.16, 47.5 - 0.16], atol=1e-12)


@pytest.mark.parametrize("shape,out", [c[:2] for c in CASES], ids=IDS)
def test_exact_inverses(shape, out):
  box = Letterbox(shape, out)
  pts = np.random.default_rng(0).uniform(-3, max(shape) + 3, (5, 7, 2))
  np.testing.assert_allclose(box.to_original(box.to_model(pts)), pts, atol=1e-9)
  np.testing.assert_allclose(box.to_model(box.to_original(pts)), pts, atol=1e-9)


@pytest.mark.parametrize("shape,out", [c[:2] for c in CASES[:3]], ids=IDS[:3])
def test_clicked_pixel_lands_in_its_patch(shape, out):
  box = Letterbox(shape, out)
  patch, gw = 8, box.grid(8)[1]
  rng = np.random.default_rng(1)
  for r, c in zip(rng.integers(0, shape[0], 20), rng.integers(0, shape[1], 20)):
    delta = np.zeros(shape)
    delta[r, c] = 1.0
    model = box.apply(delta)
    mx, my = np.rint(box.to_model([c, r])).astype(int)
    assert model[my, mx] > 0  # the model pixel under the click sees the clicked pixel
    assert box.patch_of([c, r], patch) == (my // patch) * gw + mx // patch
    # The clicked pixel's footprint is inside the patches around that one.
    rows, cols = np.nonzero(model)
    assert set((rows // patch) * gw + cols // patch) <= {
        (my // patch + dr) * gw + mx // patch + dc for dr in (-1, 0, 1) for dc in (-1, 0, 1)}


def test_patch_of_known_indices_and_padding():
  box = Letterbox((128, 256), (64, 64))  # s = 0.25, 16 padding rows above and below
  # Pixel (r=50, c=200) -> model (49.625, 28.125) -> patch row 3, column 6 of an 8 x 8 grid.
  np.testing.assert_allclose(box.to_model([200, 50]), [49.625, 28.125])
  off = [[-0.51, 10], [255.5, 10], [10, -0.6], [10, 127.5], [np.nan, 3]]
  got = box.patch_of([[200, 50], [0, 0], [255.4, 127.4], [-0.5, -0.5]] + off, 8)
  np.testing.assert_array_equal(got, [30, 16, 47, 16, -1, -1, -1, -1, -1])
  # Points in the padding band, mapped back from the model grid, are off the image.
  padding = box.to_original([[10.0, 5.0], [40.0, 60.0]])
  np.testing.assert_array_equal(box.patch_of(padding, 8), [-1, -1])
  assert box.patch_of(np.zeros((3, 0, 2)), 8).shape == (3, 0)


@pytest.mark.parametrize("shape,out", [c[:2] for c in CASES], ids=IDS)
def test_patch_center_round_trip(shape, out):
  box = Letterbox(shape, out)
  gh, gw = box.grid(16)
  index = np.arange(gh * gw)
  centres = box.patch_center(index, 16)
  back = box.patch_of(centres, 16)
  content = box.patch_coverage(16) > 0.5  # centre on the image iff over half covered
  np.testing.assert_array_equal(back[content], index[content])
  np.testing.assert_array_equal(back[~content], -1)
  with pytest.raises(ValueError, match="patch indices must lie in"):
    box.patch_center([gh * gw], 16)


@pytest.mark.parametrize("shape,out", [c[:2] for c in CASES], ids=IDS)
def test_apply_keeps_constant_and_mass(shape, out):
  box = Letterbox(shape, out)
  model = box.apply(np.full(shape, 0.7))
  assert model.shape == out and model.dtype == np.float32
  coverage = box.patch_coverage(16).reshape(box.grid(16))
  pooled = model.reshape(coverage.shape[0], 16, coverage.shape[1], 16).mean((1, 3))
  np.testing.assert_allclose(pooled, 0.7 * coverage, atol=1e-5)
  np.testing.assert_allclose(model[pooled.repeat(16, 0).repeat(16, 1) > 0.7 - 1e-5], 0.7,
                             atol=1e-5)  # constant inside the content; padding 0
  image = np.random.default_rng(2).random(shape)
  np.testing.assert_allclose(box.apply(image).sum(), image.sum() * box.scale**2, rtol=1e-4)


def test_apply_area_average_exact():
  box = Letterbox((4, 8), (2, 4))  # s = 0.5: each model pixel averages 2 x 2 originals
  image = np.arange(32.0).reshape(4, 8)
  np.testing.assert_allclose(box.apply(image), image.reshape(2, 2, 4, 2).mean((1, 3)))
  box = Letterbox((2, 4), (4, 4))  # s = 1, padding rows 0 and 3
  np.testing.assert_allclose(box.apply(np.ones((2, 4))), [[0] * 4, [1] * 4, [1] * 4, [0] * 4])


def test_to_mm():
  box = Letterbox((100, 200), (64, 64))
  np.testing.assert_allclose(box.to_mm([[10, 20], [0, 0]], (0.2, 0.1)), [[1.0, 4.0], [0, 0]])
  with pytest.raises(ValueError, match="spacing is unknown"):
    box.to_mm([1, 2], None)


def test_dict_round_trip_and_errors():
  box = Letterbox((2140, 1760), (512, 512))
  d = json.loads(json.dumps(box.to_dict()))
  assert Letterbox.from_dict(d) == box and d["scale"] == box.scale
  with pytest.raises(ValueError, match="lacks out_shape"):
    Letterbox.from_dict({"shape": [1, 2]})
  with pytest.raises(ValueError, match="disagrees"):
    Letterbox.from_dict({**d, "scale": 0.5})
  with pytest.raises(ValueError, match="two positive integers"):
    Letterbox((0, 5), (8, 8))
  with pytest.raises(ValueError, match="divide the model input"):
    box.grid(24)
  with pytest.raises(ValueError, match="got an image of shape"):
    box.apply(np.zeros((10, 10)))
