"""Pictures of DRRs and correspondences that a person reads at a glance (`jaxcorr.pictures.style`
gives the font, colours, colour bars and atomic writes).

  save_radiograph       one DRR window-levelled like a radiograph (bone bright), at least
                        style.MIN_SIDE px, the patient direction on each edge and a scale bar in
                        mm at the isocentre, a caption above
  views_preview         a study's views side by side, each windowed to 8 bits
  correspondence_figure a few query patches of view i (outlined, left column) and, for each,
                        its row of C in view j as a heat map (one column per C: e.g. the true
                        and the predicted), with a colour bar; both views cropped to the
                        anatomy and enlarged
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from jaxcorr.pictures import style


def window_level(image: np.ndarray, low_pct: float = 1.0, high_pct: float = 99.7) -> np.ndarray:
  """Maps line integrals to uint8 like a radiograph: dense (bone) bright, air dark.

  The window spans the given percentiles of the pixels that see anything (> 0), so the
  background air does not squeeze the anatomy into a few grey levels.
  """
  image = np.asarray(image, np.float32)
  seen = image[image > 0]
  if seen.size == 0:
    return np.zeros(image.shape, np.uint8)
  lo, hi = np.percentile(seen, [low_pct, high_pct])
  lo = min(lo, 0.0)
  scaled = (image - lo) / max(hi - lo, 1e-12)
  return (np.clip(scaled, 0, 1) * 255 + 0.5).astype(np.uint8)


def window_percentiles(image: np.ndarray, low_pct: float = 0.5,
                       high_pct: float = 99.5) -> np.ndarray:
  """uint8 of an image (any range, e.g. a 16-bit radiograph) windowed to its own percentiles,
  so its contrast fills the 8 bits a screen shows."""
  image = np.asarray(image, np.float32)
  lo, hi = np.percentile(image, [low_pct, high_pct])
  scaled = (image - lo) / max(float(hi - lo), 1e-12)
  return (np.clip(scaled, 0, 1) * 255 + 0.5).astype(np.uint8)


def views_preview(images, titles, caption: str = "", size: int = style.MIN_SIDE) -> Image.Image:
  """Views side by side, each windowed to 8 bits (`window_percentiles`), at least `size` px on
  its shorter side, its title above it."""
  panels = [style.caption(style.upscale(window_percentiles(im), size), title)
            for im, title in zip(images, titles)]
  return style.caption(style.beside(*panels), caption)


def isocentre_mm_per_px(source, det_origin, det_u, det_v, isocentre=(0., 0., 0.)) -> float:
  """Size in mm at the isocentre of one detector pixel (its spacing over the magnification
  |S-detector| / |S-isocentre|, both measured along the detector's normal)."""
  source, det_origin, u, v = (np.asarray(x, np.float64) for x in (source, det_origin, det_u,
                                                                   det_v))
  normal = np.cross(u, v)
  normal /= np.linalg.norm(normal)
  to_detector = abs(np.dot(det_origin - source, normal))
  to_iso = abs(np.dot(np.asarray(isocentre, np.float64) - source, normal))
  return float(np.linalg.norm(u) * to_iso / to_detector)


def radiograph_picture(image: np.ndarray, caption: str = "", *, det_u=None, det_v=None,
                       mm_per_px: float | None = None) -> Image.Image:
  """The picture `save_radiograph` writes (see the module docstring)."""
  grey = window_level(image)
  img = style.upscale(grey)
  f = img.width / grey.shape[1]
  if det_u is not None and det_v is not None:
    img = style.orientation_labels(img, det_u, det_v)
  if mm_per_px:
    img = style.scale_bar(img, mm_per_px / f)
    caption = caption + ("\n" if caption else "") + "scale bar: mm at the isocentre"
  return style.caption(img, caption)


def save_radiograph(path: str, image: np.ndarray, caption: str = "", **kwargs) -> str:
  """Writes `radiograph_picture(image, caption, **kwargs)` to `path` (PNG)."""
  return style.save(path, radiograph_picture(image, caption, **kwargs))


def pick_queries(corr: np.ndarray, grid: tuple[int, int], n: int = 3, valid=None) -> list[int]:
  """Up to `n` query patches of view i with strong correspondences, spread over the image.

  Greedy: take the patch whose best match is strongest, then the next strongest at least a
  quarter of the grid away from those already taken (an eighth when too few are that far).
  `valid` ([L] bool, optional) limits the choice, e.g. to patches that show anatomy.
  """
  h, w = grid
  strength = np.asarray(corr, np.float64).max(axis=1)
  if valid is not None:
    strength = np.where(np.asarray(valid, bool), strength, -np.inf)
  order = np.argsort(-strength, kind="stable")
  for min_dist in (max(h, w) / 4, max(h, w) / 8):
    picked = []
    for a in order:
      if not strength[a] > 0 or len(picked) == n:
        break
      r, c = divmod(int(a), w)
      if all(np.hypot(r - pr, c - pc) >= min_dist for pr, pc in (divmod(p, w) for p in picked)):
        picked.append(int(a))
    if len(picked) == n:
      break
  return picked


def anatomy_box(image: np.ndarray, margin: int, fraction: float = 0.02) -> tuple[int, ...]:
  """(r0, c0, r1, c1): the pixels whose line integral exceeds `fraction` of the maximum, grown
  by `margin` px (the whole image when nothing is above)."""
  image = np.asarray(image, np.float32)
  h, w = image.shape
  above = image > fraction * image.max()
  rows, cols = np.nonzero(above.any(axis=1))[0], np.nonzero(above.any(axis=0))[0]
  if image.max() <= 0 or not len(rows):
    return 0, 0, h, w
  return (max(int(rows[0]) - margin, 0), max(int(cols[0]) - margin, 0),
          min(int(rows[-1]) + 1 + margin, h), min(int(cols[-1]) + 1 + margin, w))


def colour_range(values) -> float:
  """The top of a colour scale from 0 for `values`: their maximum rounded up to 1, 2 or 5 x
  10^k, at least 0.1 and at most 1."""
  tops = [float(np.max(v)) for v in values if np.size(v)]
  top = max(tops) if tops else 0.0
  return min(style.nice_ceil(max(top, 0.1)), 1.0)


class _Panel:
  """One view cropped to a box and enlarged by an integer factor; heat maps and outlines are
  drawn in the view's pixel coordinates."""

  def __init__(self, image, box, size: int):
    self.box = box
    r0, c0, r1, c1 = box
    self.grey = window_level(image)[r0:r1, c0:c1]
    self.f = max(1, int(np.ceil(size / max(r1 - r0, c1 - c0))))

    h, w = self.grey.shape
    self.big = np.asarray(Image.fromarray(self.grey).resize((w * self.f, h * self.f),
                                                            Image.BILINEAR))

  def plain(self) -> Image.Image:
    return style.as_image(self.big)

  def heat(self, values: np.ndarray) -> Image.Image:
    """The view under `values` ([H, W] of the full view, in [0, 1] of the colour scale)."""
    r0, c0, r1, c1 = self.box
    big = np.kron(values[r0:r1, c0:c1], np.ones((self.f, self.f), np.float32))
    return Image.fromarray(style.heat_overlay(np.repeat(self.big[..., None], 3, -1), big))

  def outline(self, img: Image.Image, rect, colour) -> Image.Image:
    """Outlines the pixel rectangle (x0, y0, x1, y1) of the full view."""
    r0, c0 = self.box[:2]
    x0, y0, x1, y1 = ((v - o) * self.f for v, o in zip(rect, (c0, r0, c0, r0)))
    draw = ImageDraw.Draw(img)
    draw.rectangle([x0 - 2, y0 - 2, x1 + 1, y1 + 1], outline=(0, 0, 0), width=1)
    draw.rectangle([x0 - 1, y0 - 1, x1, y1], outline=colour, width=3)
    return img


def correspondence_figure(image_i: np.ndarray, image_j: np.ndarray, corrs, patch: int,
                          queries=None, caption: str = "", n_queries: int = 3,
                          panel_size: int = 256) -> Image.Image:
  """Query patches of view i and their correspondence in view j, one row per query.

  Args:
    image_i, image_j: [H, W] DRRs (line integrals).
    corrs: C [L, L] between the patches of view i (rows) and view j (columns), or a dict
      {column title: C} (e.g. {"true C": ..., "predicted C": ...}); values shown on [0, 1].
    patch: patch size in pixels.
    queries: patch indices of view i; default `pick_queries` on the first C, among patches
      of view i that show anatomy.
    caption: text above the figure.
    n_queries: how many to pick when `queries` is None.
    panel_size: the longer side of each (cropped) view, in px.

  The colour scale runs from 0 to `colour_range` of the rows shown (1 when C reaches 1), the
  same for every column; each view is cropped to `anatomy_box` (half a patch of margin).
  """
  corrs = corrs if isinstance(corrs, dict) else {"C": corrs}
  h, w = image_i.shape[0] // patch, image_i.shape[1] // patch
  first = np.asarray(next(iter(corrs.values())), np.float32)
  if queries is None:
    content = np.asarray(image_i, np.float32)[:h * patch, :w * patch].reshape(
        h, patch, w, patch).max(axis=(1, 3))
    queries = pick_queries(first, (h, w), n_queries,
                           valid=(content > 0.1 * max(content.max(), 1e-12)).ravel())
  margin = max(patch // 2, 4)
  box = anatomy_box(image_i, margin)
  for a in queries:   # the query patches whole, with their outline
    r, c = divmod(int(a), w)
    box = (min(box[0], max(r * patch - 2, 0)), min(box[1], max(c * patch - 2, 0)),
           max(box[2], min((r + 1) * patch + 2, image_i.shape[0])),
           max(box[3], min((c + 1) * patch + 2, image_i.shape[1])))
  left = _Panel(image_i, box, panel_size)
  right = _Panel(image_j, anatomy_box(image_j, margin), panel_size)
  top = colour_range([np.asarray(c, np.float32)[list(queries)] for c in corrs.values()])
  titles = [style.caption(Image.new("RGB", (left.plain().width, 0)), "view i: query"),
            *(style.caption(Image.new("RGB", (right.plain().width, 0)), f"view j: {name}")
              for name in corrs)]
  rows = [style.beside(*titles)]
  for q, a in enumerate(queries):
    colour = style.QUERY_COLOURS[q % len(style.QUERY_COLOURS)]
    r, c = divmod(int(a), w)
    rect = (c * patch, r * patch, (c + 1) * patch, (r + 1) * patch)
    panels = [left.outline(left.plain(), rect, colour)]
    label = f"query {q + 1}: row {r}, col {c}"
    style.draw_text(ImageDraw.Draw(panels[0]), (style.GAP, panels[0].height - style.GAP), label,
                    size=style.SMALL, anchor="lb")
    for corr in corrs.values():
      row = np.clip(np.asarray(corr, np.float32)[a].reshape(h, w) / top, 0, 1)
      heat = np.zeros(image_j.shape, np.float32)
      heat[:h * patch, :w * patch] = np.kron(row, np.ones((patch, patch), np.float32))
      panels.append(right.heat(heat))
    rows.append(style.beside(*panels))
  grid = style.stack(*rows)
  bar = style.colour_bar(grid.height, 0.0, top, "C (corre-\nspondence)", fmt="{:.2g}")
  return style.caption(style.beside(grid, bar), caption)
