"""The precision-recall curve of a set of scores, as numbers and as a picture.

`pr_curve` gives the curve's steps with ties handled as `jaxcorr.metrics.correspondence.
average_precision` does (scores sorted decreasingly, a run of equal scores enters together),
so the area under the steps, sum_k (R_k - R_k-1) P_k, is that AP. `pr_curve_figure` draws it
on [0, 1]^2 axes with grid lines every 0.2, the AP and the positive fraction (the precision of
a random ranking) in the caption.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from jaxcorr.pictures import style


def pr_curve(scores, targets) -> tuple[np.ndarray, np.ndarray]:
  """(recall [K], precision [K]) at the end of each run of equal scores, strongest first;
  empty when there is no positive."""
  scores = np.asarray(scores, np.float64).ravel()
  targets = np.asarray(targets, bool).ravel()
  if not targets.any():
    return np.zeros(0), np.zeros(0)
  order = np.argsort(-scores, kind="stable")
  tp = np.cumsum(targets[order])
  last = np.r_[np.flatnonzero(np.diff(scores[order])), len(scores) - 1]
  return tp[last] / targets.sum(), tp[last] / (last + 1.0)


def pr_curve_figure(scores, targets, *, caption: str = "", size: int = 320) -> Image.Image:
  """The curve of `pr_curve` on a `size` px square plot with labelled axes."""
  recall, precision = pr_curve(scores, targets)
  ap = float(np.sum(np.diff(np.r_[0.0, recall]) * precision)) if recall.size else float("nan")
  base = float(np.mean(np.asarray(targets, bool)))
  left, bottom, top_pad, right_pad = 44, 40, 10, 14
  img = Image.new("RGB", (left + size + right_pad, top_pad + size + bottom), style.BACKGROUND)
  draw = ImageDraw.Draw(img)
  x = lambda r: left + r * size                       # noqa: E731
  y = lambda p: top_pad + (1 - p) * size              # noqa: E731
  for t in np.linspace(0, 1, 6):
    draw.line([(x(t), y(0)), (x(t), y(1))], fill=(60, 60, 60))
    draw.line([(x(0), y(t)), (x(1), y(t))], fill=(60, 60, 60))
    draw.text((x(t), y(0) + 4), f"{t:.1f}", font=style.font(style.SMALL), fill=style.FOREGROUND,
              anchor="ma")
    draw.text((x(0) - 4, y(t)), f"{t:.1f}", font=style.font(style.SMALL), fill=style.FOREGROUND,
              anchor="rm")
  draw.rectangle([x(0), y(1), x(1), y(0)], outline=style.FOREGROUND)
  draw.line([(x(0), y(base)), (x(1), y(base))], fill=(150, 150, 150), width=1)
  if recall.size:
    points = [(x(0), y(precision[0]))]
    for r, p in zip(recall, precision):   # steps: precision holds until the next recall
      points += [(x(r), points[-1][1]), (x(r), y(p))]
    draw.line(points, fill=tuple(int(c) for c in style.colormap(0.85)), width=2)
  draw.text((x(0.5), img.height - 4), "recall", font=style.font(), fill=style.FOREGROUND,
            anchor="md")
  text = (caption + " " if caption else "") + (
      f"Precision-recall: AP {100 * ap:.1f}; grey line: positive fraction {100 * base:.1f}% "
      "(a random ranking); y: precision.")
  return style.caption(img, text)
