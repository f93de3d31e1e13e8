"""A still picture of a many-to-many correspondence, and the list of its strongest matches.

`match_figure` draws, for each view pair (i, j), the two views side by side at one height:
the top-k patch pairs as lines between patch centres, coloured by score (blue weakest of those
drawn, through purple, to yellow strongest), and for a few query patches of view i the band
they map to in view j as a heat map in the query's colour (alpha 0.7 C), the query patch
outlined in view i in the same colour. Captions name the views, the score range of the lines
and the queries. The inputs are those of `jaxcorr.pictures.viewer` (images, per-view patch
rectangles in display pixels, per-pair C [L_i, L_j], pairs (i, j), i < j).

Layout: one row per pair, top to bottom in pair order; each row is a caption bar (14 px a
line plus 6, lines wrapped to the row's width) above [view i | 4 px gap | view j], both views
resized to the taller one's height; rows are 4 px apart on a black canvas as wide as the
widest row.

`top_matches` lists the strongest (pair, a, b, score) of every pair, e.g. for a matches.csv.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from jaxcorr.core import files
from jaxcorr.pictures import viewer, viz

QUERY_COLOURS = ((255, 50, 50), (0, 220, 220), (60, 230, 60), (255, 140, 0), (255, 105, 180))
_LINE_STOPS = np.array([(40, 90, 255), (190, 60, 255), (255, 230, 0)], np.float32)
GAP = 4


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


def _line_colour(t: float) -> tuple[int, int, int]:
  """Colour of a line at position t in [0, 1] of the drawn score range."""
  x = float(np.clip(t, 0, 1)) * (len(_LINE_STOPS) - 1)
  n = min(int(x), len(_LINE_STOPS) - 2)
  c = _LINE_STOPS[n] + (x - n) * (_LINE_STOPS[n + 1] - _LINE_STOPS[n])
  return tuple(int(round(v)) for v in c)


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


def _band(image: np.ndarray, rects: np.ndarray, rows: list[np.ndarray]) -> np.ndarray:
  """Tints each patch with the colour of the query that maps to it most strongly."""
  tint = np.zeros(image.shape, np.float32)
  alpha = np.zeros(image.shape[:2], np.float32)
  for q, scores in enumerate(rows):
    colour = np.asarray(QUERY_COLOURS[q % len(QUERY_COLOURS)], np.float32)
    for b in np.nonzero(scores > 0)[0]:
      x0, y0, x1, y1 = _pixel_box(rects[b], image.shape)
      if x1 <= x0 or y1 <= y0:
        continue
      s = min(float(scores[b]), 1.0)
      win = alpha[y0:y1, x0:x1]
      take = s > win
      tint[y0:y1, x0:x1][take] = colour
      win[take] = s
  a = 0.7 * alpha[..., None]
  return (image * (1 - a) + tint * a + 0.5).astype(np.uint8)


def _queries_for(queries, pair, c, grid, n_queries) -> list[int]:
  if queries is None:
    return viz.pick_queries(c, grid, n_queries)
  if isinstance(queries, dict):
    return [int(a) for a in queries.get(pair, [])]
  return [int(a) for a in queries]


def _pair_row(imgs, rects, grids, titles, pair, c, top_k, query_list) -> Image.Image:
  i, j = pair
  height = max(imgs[i].shape[0], imgs[j].shape[0])
  left, fi = _rgb_at_height(imgs[i], height)
  right, fj = _rgb_at_height(imgs[j], height)
  ri, rj = rects[i] * fi, rects[j] * fj
  right = _band(right.astype(np.float32), rj, [c[a] for a in query_list])
  canvas = np.zeros((height, left.shape[1] + GAP + right.shape[1], 3), np.uint8)
  canvas[:, :left.shape[1]] = left
  canvas[:, left.shape[1] + GAP:] = right
  out = Image.fromarray(canvas)
  draw = ImageDraw.Draw(out)
  dx = left.shape[1] + GAP
  for q, a in enumerate(query_list):
    x0, y0, x1, y1 = _pixel_box(ri[a], left.shape)
    if x1 > x0 and y1 > y0:
      draw.rectangle([x0, y0, x1 - 1, y1 - 1], outline=QUERY_COLOURS[q % len(QUERY_COLOURS)],
                     width=2)
  matches = top_matches([c], [pair], top_k) if top_k else []
  ci, cj = viewer.rect_centres(ri), viewer.rect_centres(rj)
  if matches:
    lo, hi = matches[-1][3], matches[0][3]
    for _, a, b, s in reversed(matches):  # strongest drawn last, on top
      colour = _line_colour((s - lo) / (hi - lo) if hi > lo else 1.0)
      (xa, ya), (xb, yb) = ci[a], cj[b] + (dx, 0)
      draw.line([(xa, ya), (xb, yb)], fill=colour, width=1)
      for x, y in ((xa, ya), (xb, yb)):
        draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
  names = ["red", "cyan", "green", "orange", "pink"]
  lines = [f"{titles[i]} | {titles[j]}"]
  if matches:
    lines.append(f"top {len(matches)} matches: lines, score {lo:.2f} (blue) to {hi:.2f} (yellow)")
  if query_list:
    gw = grids[i][1]
    lines.append("queries, their bands on the right: " + ", ".join(
        f"{names[q % len(names)]} #{a} (r{a // gw} c{a % gw})" for q, a in enumerate(query_list)))
  return viz.captioned_rgb(np.asarray(out), "\n".join(_wrap(lines, out.width - 8)))


def _wrap(lines: list[str], width: int) -> list[str]:
  """Breaks caption lines at spaces so each fits `width` pixels in the caption font."""
  font = ImageFont.load_default()
  out = []
  for line in lines:
    current = ""
    for word in line.split(" "):
      trial = f"{current} {word}" if current else word
      if current and font.getlength(trial) > width:
        out.append(current)
        current = word
      else:
        current = trial
    out.append(current)
  return out


def match_figure(images, rects, corr, pairs, *, top_k: int = 20, queries=None,
                 n_queries: int = 3, titles=None, grids=None) -> Image.Image:
  """The figure described in the module docstring, one row per pair.

  Args:
    images, rects, corr, pairs, grids: as for `jaxcorr.pictures.viewer.write_viewer`.
    top_k: lines per pair (0: none).
    queries: patches of view i whose band is shown in view j: None (per pair,
      `jaxcorr.pictures.viz.pick_queries`: distinct strong rows spread over the grid), a list of
      patch indices used for every pair, or a dict {(i, j): list}.
    n_queries: how many queries to pick when `queries` is None.
    titles: per view, a name for the captions; default "view v".
  """
  imgs, flat, grid_list, mats, pair_list = viewer.check_inputs(images, rects, corr, pairs, grids)
  titles = [f"view {v}" for v in range(len(imgs))] if titles is None else list(titles)
  rows = []
  for pair, c in zip(pair_list, mats):
    query_list = _queries_for(queries, pair, c, grid_list[pair[0]], n_queries)
    for a in query_list:
      if not 0 <= a < c.shape[0]:
        raise ValueError(f"pair {pair}: query {a} is not a patch of view {pair[0]}")
    rows.append(_pair_row(imgs, flat, grid_list, titles, pair, c, top_k, query_list))
  width = max(r.width for r in rows)
  height = sum(r.height for r in rows) + GAP * (len(rows) - 1)
  out = Image.new("RGB", (width, height), "black")
  y = 0
  for r in rows:
    out.paste(r, (0, y))
    y += r.height + GAP
  return out


def save_match_figure(path: str, images, rects, corr, pairs, **kwargs) -> str:
  """Writes `match_figure(...)` to `path` atomically (format from the suffix); returns path."""
  fig = match_figure(images, rects, corr, pairs, **kwargs)
  with files.atomic_output(path, suffix=os.path.splitext(path)[1] or ".png") as tmp:
    fig.save(tmp)
  return path
