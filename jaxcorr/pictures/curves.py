"""The precision-recall curve of a set of scores, as numbers and as a picture.

`pr_curve` gives the curve's steps with ties handled as `jaxcorr.metrics.correspondence.
average_precision` does (scores sorted decreasingly, a run of equal scores enters together),
so the area under the steps, sum_k (R_k - R_k-1) P_k, is that AP. `pr_curve_figure` draws it
on [0, 1]^2 axes with grid lines every 0.2, the AP and the positive fraction (the precision of
a random ranking) in the caption. `line_figure` draws one or more series y(x) (e.g. held-out
AP against samples seen, one line per run) with a legend and optional horizontal reference
lines (e.g. the untrained model's AP).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from jaxcorr.pictures import style

# Line colours of `line_figure`, one per series in turn: the ramp's yellow, then the query
# colours (cyan, red, green, orange, pink), lilac, white and grey; distinct on the dark
# background.
SERIES_COLOURS = ((253, 231, 37),) + style.QUERY_COLOURS[1:2] + style.QUERY_COLOURS[:1] + \
    style.QUERY_COLOURS[2:] + ((170, 150, 255), (255, 255, 255), (150, 150, 150))


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


def line_figure(series: dict, *, xlabel: str, ylabel: str, references: dict | None = None,
                caption: str = "", width: int = 480, height: int = 300) -> Image.Image:
  """Lines with markers of `series` {name: (x [N], y [N])} on axes from 0 to round maxima.

  Args:
    series: one line per entry, in the distinct `SERIES_COLOURS` (in turn) and named in a
      legend under the plot.
    xlabel, ylabel: the axes' names (the y label goes in the caption, as in `pr_curve_figure`).
    references: {name: y} drawn as dashed grey horizontal lines, named at their right end.
    caption: text above the plot; the figure adds "y: <ylabel>".
  """
  if not series:
    raise ValueError("line_figure needs at least one series")
  references = references or {}
  xs = [np.asarray(x, np.float64) for x, _ in series.values()]
  ys = [np.asarray(y, np.float64) for _, y in series.values()]
  for name, x, y in zip(series, xs, ys):
    if x.shape != y.shape or x.ndim != 1 or x.size == 0:
      raise ValueError(f"series {name!r}: x and y must be equal-length non-empty 1-D arrays, "
                       f"got {x.shape} and {y.shape}")
  x_max = style.nice_ceil(max(float(np.max(x)) for x in xs))
  y_max = style.nice_ceil(max([float(np.max(y)) for y in ys] + list(references.values())))
  left, bottom, top_pad, right_pad = 56, 40, 10, 32
  legend = style.line_height(style.SMALL) * len(series) + style.GAP
  img = Image.new("RGB", (left + width + right_pad, top_pad + height + bottom + legend),
                  style.BACKGROUND)
  draw = ImageDraw.Draw(img)
  px = lambda v: left + v / x_max * width                # noqa: E731
  py = lambda v: top_pad + (1 - v / y_max) * height      # noqa: E731
  for t in np.linspace(0, 1, 6):
    draw.line([(px(t * x_max), py(0)), (px(t * x_max), py(y_max))], fill=(60, 60, 60))
    draw.line([(px(0), py(t * y_max)), (px(x_max), py(t * y_max))], fill=(60, 60, 60))
    draw.text((px(t * x_max), py(0) + 4), f"{t * x_max:g}", font=style.font(style.SMALL),
              fill=style.FOREGROUND, anchor="ma")
    draw.text((px(0) - 4, py(t * y_max)), f"{t * y_max:.3g}", font=style.font(style.SMALL),
              fill=style.FOREGROUND, anchor="rm")
  draw.rectangle([px(0), py(y_max), px(x_max), py(0)], outline=style.FOREGROUND)
  for name, value in references.items():
    y = py(value)
    for x0 in range(int(px(0)), int(px(x_max)), 10):
      draw.line([(x0, y), (min(x0 + 5, px(x_max)), y)], fill=(150, 150, 150))
    style.draw_text(draw, (px(x_max) - 4, y - 2), name, size=style.SMALL, anchor="rd")
  colours = [SERIES_COLOURS[n % len(SERIES_COLOURS)] for n in range(len(series))]
  for colour, x, y in zip(colours, xs, ys):
    order = np.argsort(x, kind="stable")
    points = [(px(a), py(b)) for a, b in zip(x[order], y[order])]
    if len(points) > 1:
      draw.line(points, fill=colour, width=2)
    for a, b in points:
      draw.ellipse([a - 3, b - 3, a + 3, b + 3], fill=colour)
  draw.text((px(x_max / 2), py(0) + bottom - 4), xlabel, font=style.font(),
            fill=style.FOREGROUND, anchor="md")
  for n, (name, colour) in enumerate(zip(series, colours)):   # legend, under the plot
    y = py(0) + bottom + style.GAP + n * style.line_height(style.SMALL)
    draw.line([(px(0), y + 7), (px(0) + 18, y + 7)], fill=colour, width=3)
    draw.text((px(0) + 24, y), name, font=style.font(style.SMALL), fill=style.FOREGROUND)
  return style.caption(img, (caption + " " if caption else "") + f"y: {ylabel}.")
