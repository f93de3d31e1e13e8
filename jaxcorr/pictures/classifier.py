"""Pictures of a fracture classifier's results (`jaxcorr.pictures.style` for the common parts).

  attention_figure   one row per study: a caption with the verdict first ('missed fracture',
                     'false fracture', 'correct'), the true and predicted class and
                     p(fracture), then each view plain and under the class token's attention
                     (panels labelled, at least 256 px; a known finding ringed in both);
                     attention is shown as a multiple of uniform attention (its mean over the
                     study's patches is 1), one colour scale for the figure, 0 to a round
                     number above the largest value shown (`style.nice_ceil`)
  confusion_figure   the 2x2 confusion matrix at a threshold: counts and row percentages, cells
                     coloured by the row fraction, class names on both axes
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from jaxcorr.pictures import style

CLASS_NAMES = ("no fracture", "fracture")


def _grey(view: np.ndarray) -> np.ndarray:
  """A view in [0, 1] (clipped) as uint8 RGB."""
  u8 = (np.clip(np.nan_to_num(np.asarray(view, np.float32)), 0, 1) * 255 + 0.5).astype(np.uint8)
  return np.repeat(u8[..., None], 3, -1)


def _panels(views: np.ndarray, ratio: np.ndarray, top: float, size: int,
            points=None) -> list[Image.Image]:
  """Per view: plain, then under its attention ratio [h, w] (None: the model saw no attention
  for that view); `points` [V, 2] (column, row in view pixels, NaN: none) are ringed."""
  out = []
  for v, view in enumerate(views):
    plain = style.upscale(_grey(view), size)
    panels = [(plain, f"view {v + 1}")]
    if v < len(ratio):
      heat = np.asarray(Image.fromarray(np.clip(ratio[v] / top, 0, 1).astype(np.float32),
                                        mode="F").resize(plain.size, Image.NEAREST))
      panels.append((Image.fromarray(style.heat_overlay(np.asarray(plain), heat)),
                     f"view {v + 1}: attention"))
    for img, label in panels:
      draw = ImageDraw.Draw(img)
      point = None if points is None else np.asarray(points[v], np.float64)
      if point is not None and np.all(np.isfinite(point)):
        scale = img.width / np.asarray(view).shape[-1]
        style.ring(draw, (point + 0.5) * scale, max(10, img.width // 14))
      if img.width >= 4 * style.text_width(label, style.SMALL) // 3:
        style.draw_text(draw, (style.GAP, style.GAP), label, size=style.SMALL)
      out.append(img)
  return out


def verdict(label: int, predicted: int, class_names=CLASS_NAMES) -> str:
  """'correct', 'missed <class 1>' or 'false <class 1>'."""
  if label == predicted:
    return "correct"
  return f"{'missed' if label else 'false'} {class_names[1]}"


def attention_figure(views, attention, labels, probs, threshold: float, *, ids=None,
                     caption: str = "", class_names=CLASS_NAMES, size: int = 256,
                     points=None) -> Image.Image:
  """The figure described in the module docstring.

  Args:
    views: [N, V, H, W] views as the model saw them, scaled to [0, 1] for display.
    attention: [N, A, h, w] class-token attention over each view's patch grid (heads averaged);
      A = V, or 1 when the model attends to view 0 only.
    labels, probs: [N] true class (0/1) and p(class 1).
    threshold: the decision threshold on probs.
    ids: per study, a name for its caption (default its index).
    caption: text above the figure.
    class_names: names of class 0 and class 1.
    size: px of the shorter side of every view panel.
    points: optional [N, V, 2] (column, row) of a known finding per view (NaN: none), ringed.
  """
  views, attention = np.asarray(views, np.float32), np.asarray(attention, np.float32)
  ids = list(range(len(views))) if ids is None else list(ids)
  ratios = [a / max(float(a.mean()), 1e-12) for a in attention]
  top = style.nice_ceil(max(float(r.max()) for r in ratios)) if ratios else 1.0
  rows = []
  for n, (v, r) in enumerate(zip(views, ratios)):
    y, guess = int(labels[n] > 0.5), int(probs[n] >= threshold)
    text = [f"study {ids[n]}: {verdict(y, guess, class_names).upper()}",
            f"true {class_names[y]}, predicted {class_names[guess]}: p({class_names[1]}) = "
            f"{probs[n]:.3f}, threshold {threshold:.3f}"]
    rows.append(style.caption(style.beside(*_panels(
        v, r, top, size, None if points is None else points[n])), text))
  body = style.stack(*rows, gap=2 * style.GAP)
  bar = style.colour_bar(min(body.height, 2 * size), 0.0, top,
                         "attention\n(x uniform)", fmt="{:.3g}")
  return style.caption(style.beside(body, bar), caption)


def confusion_counts(labels, probs, threshold: float) -> np.ndarray:
  """[[true 0 predicted 0, true 0 predicted 1], [true 1 predicted 0, true 1 predicted 1]]."""
  y = np.asarray(labels) > 0.5
  p = np.asarray(probs) >= threshold
  return np.array([[np.sum(~y & ~p), np.sum(~y & p)], [np.sum(y & ~p), np.sum(y & p)]])


def confusion_figure(labels, probs, threshold: float, *, class_names=CLASS_NAMES,
                     caption: str = "", cell: int = 120) -> Image.Image:
  """The confusion matrix figure described in the module docstring."""
  counts = confusion_counts(labels, probs, threshold)
  rows = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
  label_w = max(style.text_width(n) for n in class_names) + 2 * style.GAP
  head = style.line_height() + style.GAP
  img = Image.new("RGB", (label_w + 2 * cell + 1, 2 * head + 2 * cell + 1), style.BACKGROUND)
  draw = ImageDraw.Draw(img)
  draw.text((label_w + cell, style.GAP // 2), "predicted", font=style.font(), fill=style.FOREGROUND,
            anchor="ma")
  for k, name in enumerate(class_names):
    draw.text((label_w + k * cell + cell // 2, head + style.GAP // 2), name, font=style.font(),
              fill=style.FOREGROUND, anchor="ma")
    draw.text((label_w - style.GAP, 2 * head + k * cell + cell // 2), name, font=style.font(),
              fill=style.FOREGROUND, anchor="rm")
    for j in range(2):
      x0, y0 = label_w + j * cell, 2 * head + k * cell
      colour = tuple(int(c) for c in style.colormap(rows[k, j]))
      draw.rectangle([x0, y0, x0 + cell, y0 + cell], fill=colour, outline=style.BACKGROUND)
      ink = (0, 0, 0) if rows[k, j] > 0.6 else (255, 255, 255)
      draw.text((x0 + cell // 2, y0 + cell // 2), f"{counts[k, j]}\n{100 * rows[k, j]:.0f}%",
                font=style.font(), fill=ink, anchor="mm", align="center")
  draw.text((style.GAP, head + style.GAP // 2), "true", font=style.font(), fill=style.FOREGROUND)
  text = caption or f"confusion matrix at threshold {threshold:.2f} (row percentages)"
  return style.caption(img, text)
