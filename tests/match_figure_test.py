"""Tests of jaxcorr.pictures.match_figure: the exact top-match list, and figures whose colours land where
the correspondence says (heat maps in view j, query outlines in view i, the colour bar)."""

import os

import numpy as np
import pytest
from PIL import Image

from jaxcorr.pictures import match_figure as mf, style, viewer


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


def _row_top(n):
  """y of query row n (0-based) in a one-pair figure with one-line titles."""
  head = style.line_height() + style.GAP
  return 2 * head + style.GAP + n * (128 + style.GAP)


def test_heat_map_in_view_j_and_query_outline_in_view_i():
  images, rects = _two_views()
  c = np.zeros((64, 64))
  c[19, 5::8] = 1.0   # query 19 (row 2, col 3) -> column 5 of view 1
  c[40, 48:56] = 1.0  # query 40 (row 5, col 0) -> row 6 of view 1
  fig = np.asarray(mf.match_figure(images, rects, [c], [(0, 1)], queries=[19, 40], height=128,
                                   titles=["a", "b"]))
  hot = np.round(0.85 * style.colormap(1.0).astype(float)).astype(int)
  x_right = 128 + style.GAP
  for n, (ys, xs) in enumerate(((slice(0, 128), slice(80, 96)), (slice(96, 112), slice(0, 128)))):
    y0 = _row_top(n)
    right = fig[y0:y0 + 128, x_right:x_right + 128].astype(int)
    expected = np.zeros((128, 128, 3), int)
    expected[ys, xs] = hot
    np.testing.assert_allclose(right, expected, atol=1)
  left = fig[_row_top(0):_row_top(0) + 128, :128]
  np.testing.assert_array_equal(left[31, 56], style.QUERY_COLOURS[0])   # outline of patch 19
  np.testing.assert_array_equal(left[40, 56], 0)                        # inside: the image
  left2 = fig[_row_top(1):_row_top(1) + 128, :128]
  np.testing.assert_array_equal(left2[79, 8], style.QUERY_COLOURS[1])   # patch 40's top edge
  # The colour bar on the right starts at C = 1 (yellow) at its top.
  bar = fig[:, 2 * (128 + style.GAP):].astype(int)
  assert (np.abs(bar - style.colormap(1.0)).sum(-1) == 0).sum() >= 16   # a row of the bar


def test_sizes_for_unequal_heights_and_three_views(tmp_path):
  images, rects = _two_views(right_shape=(64, 96))
  c = np.zeros((64, 64))
  c[9, 10] = 1.0
  fig = mf.match_figure(images, rects, [c], [(0, 1)], queries=[9], height=128, titles="ab")
  bar = style.colour_bar(min(fig.height, 256), 0, 1, "C (corre-\nspondence)")
  assert fig.width == 128 + style.GAP + 192 + style.GAP + bar.width  # view 1 scaled 2x
  y0 = _row_top(0)
  right = np.asarray(fig)[y0:y0 + 128, 128 + style.GAP:128 + style.GAP + 192]
  # Patch 10 (row 1, col 2) of view 1: display rect x 24..36, y 8..16, doubled.
  hot = np.round(0.85 * style.colormap(1.0).astype(float))
  np.testing.assert_allclose(right[16:32, 48:72], np.broadcast_to(hot, (16, 24, 3)), atol=1)
  assert right[:16].max() == 0 and right[32:].max() == 0

  rng = np.random.default_rng(0)
  images3 = images + [np.full((32, 32), 0.5)]
  rects3 = rects + [viewer.patch_rects((2, 2), 16, 1.0, (0, 0), (32, 32))]
  corr = [rng.random((64, 64)), rng.random((64, 4)), rng.random((64, 4))]
  pairs = [(0, 1), (0, 2), (1, 2)]
  fig3 = mf.match_figure(images3, rects3, corr, pairs, n_queries=2, queries=[0, 36])
  assert fig3.height > 3 * 2 * mf.HEIGHT
  path = mf.save_match_figure(str(tmp_path / "matches.png"), images3, rects3, corr, pairs,
                              n_queries=2, queries=[0, 36])
  assert os.listdir(tmp_path) == ["matches.png"]
  assert oct(os.stat(path).st_mode & 0o777) == oct(0o666 & ~_umask())
  np.testing.assert_array_equal(np.asarray(Image.open(path)), np.asarray(fig3))


def _umask():
  u = os.umask(0)
  os.umask(u)
  return u


def test_default_queries_avoid_flat_background():
  rng = np.random.default_rng(1)
  image = np.zeros((128, 128), np.uint8)
  image[64:, :64] = rng.integers(0, 255, (64, 64))   # structure only in the lower-left quarter
  rects = [viewer.patch_rects((8, 8), 16, 1.0, (0, 0), (128, 128))]
  structured = mf.structured_patches(image, rects[0].reshape(-1, 4))
  np.testing.assert_array_equal(structured.reshape(8, 8),
                                np.kron([[0, 0], [1, 0]], np.ones((4, 4))).astype(bool))
  c = np.zeros((64, 64))
  c[3, 0] = 1.0     # the strongest row is patch 3, on flat background: not taken
  c[40, 1] = 0.5    # patch 40 (row 5, col 0) shows structure
  c[63, 2] = 0.9    # flat again
  assert mf._queries_for(None, (0, 1), c, (8, 8), 3, image, rects[0].reshape(-1, 4)) == [40]
def test_bad_queries_are_refused():
  images, rects = _two_views()
  with pytest.raises(ValueError, match="query 64"):
    mf.match_figure(images, rects, [np.zeros((64, 64))], [(0, 1)], queries=[64])
