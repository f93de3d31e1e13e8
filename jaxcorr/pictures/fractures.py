"""The fracture benchmark's contact sheet: fractured and intact studies side by side, the fracture
ringed (`jaxcorr.pictures.style` for the common parts).

  fracture_sheet   one row per pair: a fractured study's views, each with a ring around the
                   fracture point (its projection, `fracture_px`), then an intact study's views
                   (from the same CT where there is one); a caption per row names both and gives
                   the gap, displacement and visible pixels per view. Views are min-max
                   normalised (as the classifier sees them) and enlarged to at least `size` px.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from jaxcorr.pictures import style

def _grey(view: np.ndarray) -> np.ndarray:
  """A view normalised to [0, 1] by its own min and max, as uint8 RGB."""
  v = np.nan_to_num(np.asarray(view, np.float32))
  lo, hi = float(v.min()), float(v.max())
  u8 = ((v - lo) / (hi - lo if hi > lo else 1.0) * 255 + 0.5).astype(np.uint8)
  return np.repeat(u8[..., None], 3, -1)


def _view_panel(view, point, size: int, label: str) -> Image.Image:
  """One view enlarged to `size`, a ring around `point` (column, row in view pixels; NaN or
  None: no ring) and `label` in its corner."""
  img = style.upscale(_grey(view), size)
  draw = ImageDraw.Draw(img)
  if point is not None and np.all(np.isfinite(point)):
    scale = img.width / np.asarray(view).shape[-1]
    x, y = (np.asarray(point, np.float64) + 0.5) * scale
    style.ring(draw, (x, y), max(10, img.width // 14))
  style.draw_text(draw, (style.GAP, style.GAP), label, size=style.SMALL)
  return img


def _study(views, points, size: int, name: str) -> Image.Image:
  points = [None] * len(views) if points is None else points
  return style.beside(*[_view_panel(v, p, size, f"{name}, view {i + 1}")
                        for i, (v, p) in enumerate(zip(views, points))])


def fracture_sheet(pairs, *, caption: str = "", size: int = 256) -> Image.Image:
  """The contact sheet of the module docstring.

  Args:
    pairs: dicts with 'fractured' and 'intact' samples (either may be None), each a dict of
      views [N, H, W] (line integrals or images), volume (str); fractured ones also
      fracture_px [N, 2] (column, row), gap_mm, displacement_mm, visible_px [N].
    caption: text above the sheet.
    size: px of the shorter side of every view panel.
  """
  rows = []
  for pair in pairs:
    pos, neg = pair.get("fractured"), pair.get("intact")
    panels, text = [], []
    if pos is not None:
      panels.append(_study(pos["views"], pos["fracture_px"], size, "fractured"))
      text.append(f"fractured: {pos['volume']}, gap {float(pos['gap_mm']):.1f} mm, displaced "
                  f"{float(pos['displacement_mm']):.1f} mm, visible px per view "
                  f"{', '.join(str(int(v)) for v in pos['visible_px'])}")
    if neg is not None:
      panels.append(_study(neg["views"], None, size, "intact"))
      text.append(f"intact: {neg['volume']}")
    if panels:
      rows.append(style.caption(style.beside(*panels, gap=4 * style.GAP), text))
  if not rows:
    rows = [Image.new("RGB", (size, size), style.BACKGROUND)]
  return style.caption(style.stack(*rows, gap=3 * style.GAP), caption)
