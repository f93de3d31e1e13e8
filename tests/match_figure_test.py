"""Tests of jaxcorr.pictures.match_figure: the exact top-match list, and figures whose colours land where
the correspondence says (band heat maps, query outlines, match lines)."""

import os

import numpy as np
import pytest
from PIL import Image

from jaxcorr.pictures import match_figure as mf, viewer


def _bar(fig, image_height=128):
  """Height of the caption bar (14 px a line plus 6; the line count depends on the font)."""
  bar = fig.shape[0] - image_height
  assert bar >= 14 + 6 and (bar - 6) % 14 == 0
  return bar


def test_top_matches_exact():
  c01 = np.array([[0.25, 0.75, 0.5],
                  [0.75, 0.0, 0.5]])
  c02 = np.array([[0.75, 1.0],
                  [0.5, 0.25]])
  pairs = [(0, 1), (0, 2)]
  assert mf.top_matches([c01, c02], pairs, 2) == [
      ((0, 2), 0, 1, 1.0),
      ((0, 1), 0, 1, 0.75), ((0, 1), 1, 0, 0.75), ((0, 2), 0, 0, 0.75)]
  # Ties at the cut: the k taken per pair are the first in (a, b) order.
  assert mf.top_matches([c01], [(0, 1)], 3) == [
      ((0, 1), 0, 1, 0.75), ((0, 1), 1, 0, 0.75), ((0, 1), 0, 2, 0.5)]
  assert mf.top_matches([c01, c02], pairs, None, threshold=0.5) == [
      ((0, 2), 0, 1, 1.0),
      ((0, 1), 0, 1, 0.75), ((0, 1), 1, 0, 0.75), ((0, 2), 0, 0, 0.75)]
  assert mf.top_matches([c01, c02], pairs, 1, threshold=0.9) == [((0, 2), 0, 1, 1.0)]
  assert mf.top_matches([c01, c02], pairs, 0) == []
  out = mf.top_matches([c01, c02], pairs, None)
  assert len(out) == 10 and [s for *_, s in out] == sorted((s for *_, s in out), reverse=True)
  assert all(isinstance(v, int) for _, a, b, _ in out for v in (a, b))


def _two_views(right_shape=(128, 128)):
  """Black 128x128 view 0 and a black view 1, both 8x8 grids of 16 px patches (view 1's
  patches scaled to its size)."""
  h, w = right_shape
  images = [np.zeros((128, 128), np.uint8), np.zeros(right_shape, np.uint8)]
  rects = [viewer.patch_rects((8, 8), 16, 1.0, (0, 0), (128, 128)),
           viewer.patch_rects((8, 8), 16, 1.0, (0, 0), (128, 128), display_shape=(h, w))]
  return images, rects


def test_band_heat_map_and_query_outline():
  images, rects = _two_views()
  c = np.zeros((64, 64))
  c[19, 5::8] = 1.0   # query 19 (row 2, col 3) -> column 5 of view 1
  c[40, 48:56] = 1.0  # query 40 (row 5, col 0) -> row 6 of view 1
  fig = np.asarray(mf.match_figure(images, rects, [c], [(0, 1)], top_k=0, queries=[19, 40]))
  bar = _bar(fig)
  assert fig.shape[1:] == (128 + 4 + 128, 3)
  right = fig[bar:, 132:].astype(int)
  red = np.round(0.7 * np.array(mf.QUERY_COLOURS[0])).astype(int)
  cyan = np.round(0.7 * np.array(mf.QUERY_COLOURS[1])).astype(int)
  expected = np.zeros((128, 128, 3), int)
  expected[96:112, :] = cyan
  expected[:, 80:96] = red  # the first query wins where the bands cross
  np.testing.assert_allclose(right, expected, atol=1)
  left = fig[bar:, :128]
  np.testing.assert_array_equal(left[40, 48], mf.QUERY_COLOURS[0])  # outline of patch 19
  np.testing.assert_array_equal(left[88, 0], mf.QUERY_COLOURS[1])   # outline of patch 40
  np.testing.assert_array_equal(left[40, 56], 0)                    # inside patch 19: dark


def test_match_lines():
  images, rects = _two_views()
  c = np.zeros((64, 64))
  c[0, 63] = 0.9  # patch (0, 0) at (8, 8) -> patch (7, 7) at (120, 120) of view 1
  fig = np.asarray(mf.match_figure(images, rects, [c], [(0, 1)], top_k=1, queries=[]))
  bar = _bar(fig)
  assert fig.shape[1:] == (260, 3)
  yellow = mf._line_colour(1.0)
  assert yellow == (255, 230, 0)
  # The line runs from (8, 8) to (132 + 120, 120); halfway it crosses the gap at (130, 64).
  np.testing.assert_array_equal(fig[bar + 64, 130], yellow)
  np.testing.assert_array_equal(fig[bar + 8, 8], yellow)
  np.testing.assert_array_equal(fig[bar + 120, 252], yellow)
  assert (fig[bar:, 132:] == yellow).all(-1).sum() < 300  # a line, not a fill


def test_sizes_for_unequal_heights_and_three_views(tmp_path):
  images, rects = _two_views(right_shape=(64, 96))
  c = np.zeros((64, 64))
  c[9, 10] = 1.0
  fig = mf.match_figure(images, rects, [c], [(0, 1)], top_k=0, queries=[9])
  bar = _bar(np.asarray(fig))
  assert fig.width == 128 + 4 + 192  # view 1 scaled 2x to 128 rows
  right = np.asarray(fig)[bar:, 132:]
  # Patch 10 (row 1, col 2) of view 1: display rect x 24..36, y 8..16, doubled.
  red = np.round(0.7 * np.array(mf.QUERY_COLOURS[0]))
  np.testing.assert_allclose(right[16:32, 48:72], np.broadcast_to(red, (16, 24, 3)), atol=1)
  assert right[:16].max() == 0 and right[32:].max() == 0

  rng = np.random.default_rng(0)
  images3 = images + [np.full((32, 32), 0.5)]
  rects3 = rects + [viewer.patch_rects((2, 2), 16, 1.0, (0, 0), (32, 32))]
  corr = [rng.random((64, 64)), rng.random((64, 4)), rng.random((64, 4))]
  pairs = [(0, 1), (0, 2), (1, 2)]
  fig3 = mf.match_figure(images3, rects3, corr, pairs, top_k=5, n_queries=2)
  rows = [mf.match_figure(images3, rects3, [c], [p], top_k=5, n_queries=2)
          for c, p in zip(corr, pairs)]
  assert fig3.size == (max(r.width for r in rows), sum(r.height for r in rows) + 2 * mf.GAP)
  assert fig3.width == 128 + 4 + 192

  path = mf.save_match_figure(str(tmp_path / "matches.png"), images3, rects3, corr, pairs,
                              top_k=5, n_queries=2)
  assert os.listdir(tmp_path) == ["matches.png"]
  np.testing.assert_array_equal(np.asarray(Image.open(path)), np.asarray(fig3))


def test_default_queries_show_the_strongest_row():
  images, rects = _two_views()
  c = np.zeros((64, 64))
  c[27, 8:16] = 0.6  # the only row with any correspondence -> row 1 of view 1
  fig = np.asarray(mf.match_figure(images, rects, [c], [(0, 1)], top_k=0))
  bar = _bar(fig)
  band = fig[bar + 16:bar + 32, 132:].astype(int)
  np.testing.assert_allclose(band, np.broadcast_to(
      np.round(0.42 * np.array(mf.QUERY_COLOURS[0])), band.shape), atol=1)
  assert not fig[bar + 32:, 132:].any()


def test_bad_queries_are_refused():
  images, rects = _two_views()
  with pytest.raises(ValueError, match="query 64"):
    mf.match_figure(images, rects, [np.zeros((64, 64))], [(0, 1)], queries=[64])
