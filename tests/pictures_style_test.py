"""Tests of jaxcorr.pictures.style and viz: text that fits, the colour ramp and bar, scale bars
and orientation letters from the geometry, and the sizes of the DRR and correspondence figures."""

import os

import numpy as np
import pytest
from PIL import Image, ImageDraw

from jaxcorr.pictures import style, viz
from jaxcorr.projection import geometry


def test_font_is_readable_and_wrap_fits():
  assert style.font(style.TEXT).size == style.TEXT
  text = "a caption long enough to need wrapping at two hundred pixels, with many words"
  lines = style.wrap(text, 200)
  assert len(lines) > 1 and " ".join(lines) == text
  assert all(style.text_width(line) <= 200 for line in lines)
  img = style.caption(np.zeros((50, 200), np.uint8), text)
  assert img.size == (200, 50 + style.line_height() * len(style.wrap(text, 200 - 2 * style.GAP))
                      + style.GAP)


def test_draw_text_stays_inside_or_refuses():
  img = Image.new("RGB", (100, 40))
  box = style.draw_text(ImageDraw.Draw(img), (95, 38), "LP", anchor="la")
  assert box[0] >= 0 and box[1] >= 0 and box[2] <= 100 and box[3] <= 40
  assert np.asarray(img).any()
  with pytest.raises(ValueError, match="larger than the 100x40 image"):
    style.draw_text(ImageDraw.Draw(img), (0, 0), "far too long a label for this image")


def test_colormap_ends_and_bar():
  np.testing.assert_array_equal(style.colormap([0.0, 1.0, 2.0, -1.0]),
                                [[68, 1, 84], [253, 231, 37], [253, 231, 37], [68, 1, 84]])
  grey = np.full((2, 2, 3), 100, np.uint8)
  out = style.heat_overlay(grey, np.array([[0.0, 1.0], [0.01, 0.5]]))
  np.testing.assert_array_equal(out[0, 0], 100)        # no colour where C is 0
  np.testing.assert_array_equal(out[1, 0], 100)        # nor below the floor
  np.testing.assert_array_equal(out[0, 1], np.round(100 * 0.15 + 0.85 * np.array([253, 231, 37])))
  bar = np.asarray(style.colour_bar(200, 0.0, 0.5, "C"))
  assert bar.shape[0] == 200
  column = bar[:, style.GAP + 8]
  top = np.flatnonzero((column == style.colormap(1.0)).all(-1))
  bottom = np.flatnonzero((column == style.colormap(0.0)).all(-1))
  assert len(top) and len(bottom) and top[0] < bottom[0]


def test_scale_bar_length_and_orientation_letters():
  assert [style.nice_length(x) for x in (0.7, 1.0, 3.3, 7.0, 48.0)] == [0.5, 1.0, 2.0, 5.0, 20.0]
  img = style.scale_bar(np.zeros((100, 200), np.uint8), mm_per_px=0.5)   # 20 mm = 40 px
  row = np.asarray(img)[100 - style.GAP - 5]
  white = np.flatnonzero((row == style.FOREGROUND).all(-1))
  assert white[-1] - white[0] == 40
  assert style.direction_label((1, 0, 0)) == "L" and style.direction_label((0, 0, -2)) == "I"
  assert style.direction_label((0.7, -0.7, 0.1)) == "LA"
  # Gantry 90 (source on +x): columns run along +z'... as RTK: u = M (1,0,0) = (0, 0, -1).
  views = geometry.circular_views(sid=1000., sdd=1500., gantry_angles=(0., 90.),
                                  detector_size=(8, 8), pixel_spacing=(1., 1.))
  u, v = np.asarray(views.det_u), np.asarray(views.det_v)
  assert [style.direction_label(x) for x in (u[0], v[0], u[1], v[1])] == ["L", "P", "I", "P"]
  mm = viz.isocentre_mm_per_px(np.asarray(views.source[0]), np.asarray(views.det_origin[0]),
                               u[0], v[0])
  assert mm == pytest.approx(1000 / 1500)


def test_radiograph_and_correspondence_figures(tmp_path):
  image = np.zeros((64, 64), np.float32)
  image[20:44, 28:36] = 10.0
  path = viz.save_radiograph(str(tmp_path / "drr.png"), image, "view 0", det_u=(1, 0, 0),
                             det_v=(0, 1, 0), mm_per_px=1.0)
  png = Image.open(path)
  assert png.mode == "RGB" and png.width == style.MIN_SIDE and png.height > style.MIN_SIDE
  assert os.listdir(tmp_path) == ["drr.png"]
  c = np.zeros((16, 16))
  c[9, 6] = 0.3
  c[6, 9] = 0.2
  fig = viz.correspondence_figure(image, image, {"true C": c, "predicted C": c * 0.5}, 16,
                                  caption="x")
  assert viz.pick_queries(c, (4, 4), 3) == [9, 6]
  # Two query rows of the 24x40 px crop enlarged 7x (its longer side to >= 256 px), three
  # columns (query, true, predicted) and the colour bar.
  assert fig.height > 2 * 280 and fig.width > 3 * 168
  assert viz.colour_range([0.3, 0.15]) == 0.5 and viz.colour_range([1.0]) == 1.0
  assert viz.anatomy_box(image, 8) == (12, 20, 52, 44)
