"""A still picture of a many-to-many correspondence, and the list of its strongest matches.

`match_figure` draws, for each view pair (i, j), a few query patches of view i (by default
`jaxcorr.pictures.viz.pick_queries` among the patches that show structure, not flat
background), one row per query: view i with the query outlined in its colour, and view j
under the query's row of C as a heat map (`jaxcorr.pictures.style.heat_overlay`, patch by
patch), with one colour bar (0 to `viz.colour_range` of the rows shown) for the figure. No
lines: a many-to-many map drawn as lines is a tangle; the strongest pairs are in matches.csv.
The inputs are those of `jaxcorr.pictures.viewer` (images, per-view patch rectangles in
display pixels, per-pair C [L_i, L_j], pairs (i, j), i < j).

Layout: per pair a caption (the view names), a title row, then the query rows; every view is
resized to `height` px (aspect kept); pairs are stacked top to bottom, the colour bar on the
right.

`top_matches` lists the strongest (pair, a, b, score) of every pair, e.g. for a matches.csv.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from jaxcorr.pictures import style, viewer, viz

HEIGHT = 360   # px of each view in the figure


def top_matches(corr, pairs, k: int | None, threshold: float | None = None) -> list:
  """The strongest patch pairs of each view pair, strongest first.

  Args:
    corr: per pair, C [L_i, L_j].
    pairs: the (i, j) of each matrix.
    k: how many to take from each pair (None: all).
    threshold: keep only scores strictly above it (None: all).

  Returns:
    [((i, j), a, b, score)], a a patch of view i and b of view j, sorted by score descending;
    equal scores by pair order, then a, then b (so the list is deterministic).
  """
  if len(corr) != len(pairs):
    raise ValueError(f"{len(pairs)} pairs but {len(corr)} matrices")
  rows = []  # (score, pair number, a, b)
  for p, c in enumerate(corr):
    c = np.asarray(c)
    if c.ndim != 2:
      raise ValueError(f"pair {p}: C must be [L_i, L_j], got {c.shape}")
    flat = c.ravel()
    keep = np.arange(flat.size)
    if threshold is not None:
      keep = keep[flat[keep] > threshold]
    if k is not None and k < keep.size:
      if k <= 0:
        continue
      # Everything at least as strong as the k-th score, so ties at the cut are all seen.
      kth = np.partition(flat[keep], keep.size - k)[keep.size - k]
      keep = keep[flat[keep] >= kth]
    order = keep[np.argsort(-flat[keep], kind="stable")]
    if k is not None:
      order = order[:max(k, 0)]
    a, b = np.divmod(order, c.shape[1])
    rows += [(float(flat[n]), p, int(x), int(y)) for n, x, y in zip(order, a, b)]
  rows.sort(key=lambda r: (-r[0], r[1], r[2], r[3]))
  pairs = [(int(i), int(j)) for i, j in pairs]
  return [(pairs[p], a, b, s) for s, p, a, b in rows]


def _rgb_at_height(image: np.ndarray, height: int) -> tuple[np.ndarray, float]:
  """The image as RGB uint8 resized to `height` rows; returns it and the scale factor."""
  img = image if image.ndim == 3 else np.repeat(image[..., None], 3, -1)
  f = height / img.shape[0]
  if img.shape[0] != height:
    width = max(1, int(round(img.shape[1] * f)))
    img = np.asarray(Image.fromarray(img).resize((width, height), Image.BILINEAR))
  return img, f


def _pixel_box(rect: np.ndarray, shape) -> tuple[int, int, int, int]:
  x0, y0, x1, y1 = (int(round(v)) for v in rect)
  return max(x0, 0), max(y0, 0), min(x1, shape[1]), min(y1, shape[0])


def _heat(shape, rects: np.ndarray, scores: np.ndarray) -> np.ndarray:
  """[H, W] of the display: each patch's rectangle holds its score (later patches win where
  clipped rectangles touch)."""
  out = np.zeros(shape[:2], np.float32)
  for b in np.nonzero(scores > 0)[0]:
    x0, y0, x1, y1 = _pixel_box(rects[b], shape)
    if x1 > x0 and y1 > y0:
      out[y0:y1, x0:x1] = scores[b]
  return out


def structured_patches(image: np.ndarray, rects: np.ndarray) -> np.ndarray:
  """[L] bool: patches whose pixels vary (standard deviation above the median patch's and
  above 2 grey levels), i.e. not flat background, padding or a collimated border."""
  grey = image.mean(axis=-1) if image.ndim == 3 else image
  grey = np.asarray(grey, np.float32)
  spread = np.zeros(len(rects), np.float32)
  for b, rect in enumerate(rects):
    x0, y0, x1, y1 = _pixel_box(rect, grey.shape)
    if x1 > x0 and y1 > y0:
      spread[b] = grey[y0:y1, x0:x1].std()
  return (spread >= np.median(spread)) & (spread > 2)


def _queries_for(queries, pair, c, grid, n_queries, image, rects) -> list[int]:
  if queries is None:
    return viz.pick_queries(c, grid, n_queries, valid=structured_patches(image, rects))
  if isinstance(queries, dict):
    return [int(a) for a in queries.get(pair, [])]
  return [int(a) for a in queries]


def _pair_rows(imgs, rects, titles, pair, c, query_list, height, top) -> Image.Image:
  i, j = pair
  left, fi = _rgb_at_height(imgs[i], height)
  right, fj = _rgb_at_height(imgs[j], height)
  ri, rj = rects[i] * fi, rects[j] * fj
  head = style.beside(style.caption(Image.new("RGB", (left.shape[1], 0)), "queries"),
                      style.caption(Image.new("RGB", (right.shape[1], 0)), "C of each query"))
  rows = [head]
  for q, a in enumerate(query_list):
    colour = style.QUERY_COLOURS[q % len(style.QUERY_COLOURS)]
    panel = Image.fromarray(left)
    draw = ImageDraw.Draw(panel)
    x0, y0, x1, y1 = _pixel_box(ri[a], left.shape)
    if x1 > x0 and y1 > y0:
      draw.rectangle([x0 - 2, y0 - 2, x1 + 1, y1 + 1], outline=(0, 0, 0), width=1)
      draw.rectangle([x0 - 1, y0 - 1, x1, y1], outline=colour, width=3)
    style.draw_text(draw, (style.GAP, panel.height - style.GAP), f"query {q + 1}: patch {a}",
                    size=style.SMALL, anchor="lb")
    heat = style.heat_overlay(right, _heat(right.shape, rj, np.clip(c[a] / top, 0, 1)))
    rows.append(style.beside(panel, heat))
  body = style.stack(*rows)
  return style.caption(body, f"{titles[i]}  and  {titles[j]}")


def match_figure(images, rects, corr, pairs, *, queries=None, n_queries: int = 3,
                 titles=None, grids=None, height: int = HEIGHT) -> Image.Image:
  """The figure described in the module docstring, one block of rows per pair.

  Args:
    images, rects, corr, pairs, grids: as for `jaxcorr.pictures.viewer.write_viewer`.
    queries: patches of view i whose C is shown in view j: None (per pair,
      `jaxcorr.pictures.viz.pick_queries` among `structured_patches`: distinct strong rows
      spread over the grid), a list of patch indices used for every pair, or a dict
      {(i, j): list}.
    n_queries: how many queries to pick when `queries` is None.
    titles: per view, a name for the captions; default "view v".
    height: px of every view in the figure.
  """
  imgs, flat, grid_list, mats, pair_list = viewer.check_inputs(images, rects, corr, pairs, grids)
  titles = [f"view {v}" for v in range(len(imgs))] if titles is None else list(titles)
  chosen = []
  for pair, c in zip(pair_list, mats):
    query_list = _queries_for(queries, pair, c, grid_list[pair[0]], n_queries, imgs[pair[0]],
                              flat[pair[0]])
    for a in query_list:
      if not 0 <= a < c.shape[0]:
        raise ValueError(f"pair {pair}: query {a} is not a patch of view {pair[0]}")
    chosen.append(query_list)
  shown = [c[q] for c, q in zip(mats, chosen) if q]
  top = viz.colour_range(np.concatenate([np.ravel(x) for x in shown])) if shown else 1.0
  blocks = [_pair_rows(imgs, flat, titles, pair, c, q, height, top)
            for pair, c, q in zip(pair_list, mats, chosen)]
  body = style.stack(*blocks, gap=3 * style.GAP)
  bar = style.colour_bar(min(body.height, 2 * height), 0.0, top, "C (corre-\nspondence)",
                         fmt="{:.2g}")
  return style.beside(body, bar)


def save_match_figure(path: str, images, rects, corr, pairs, **kwargs) -> str:
  """Writes `match_figure(...)` to `path` atomically (format from the suffix); returns path."""
  return style.save(path, match_figure(images, rects, corr, pairs, **kwargs))
