"""The common parts of every picture jaxcorr writes, so they all look the same.

  font(size)            one scalable font (Pillow's built-in, `load_default(size=...)`); TEXT px
                        for captions and labels, SMALL px for tick labels and annotations
  caption(img, lines)   a dark bar above the image with the lines wrapped to its width
  draw_text(...)        text with a dark outline, kept inside the image (an error when it is
                        wider than the image), so labels read on any background
  colormap(x)           x in [0, 1] -> RGB, a perceptual dark-blue .. green .. yellow ramp
                        (viridis' end points); `heat_overlay` blends it over a grey image with
                        opacity growing with x, so 0 leaves the radiograph as it is
  colour_bar(...)       a vertical bar of that ramp with its range and a label
  beside / stack        images side by side / top to bottom on a dark background
  ring(draw, xy, r)     a red circle on a black rim (seen on bone and on air) around a point
  scale_bar, orientation_labels   for radiographs: a bar of a round number of mm, and the
                        patient direction (L, R, A, P, S, I) of each image edge
  save(path, img)       an atomic write with a new file's normal permissions
                        (`jaxcorr.core.files.atomic_output`)

Sizes are in pixels of the written PNG; every figure is at least MIN_SIDE px on its shorter
image side, so text at TEXT px is readable without zooming.
"""

from __future__ import annotations

import functools
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from jaxcorr.core import files

TEXT = 16           # captions, labels
SMALL = 13          # tick labels, annotations on images
MIN_SIDE = 256      # shortest side of an image panel, after upscaling
GAP = 6
BACKGROUND = (24, 24, 24)
FOREGROUND = (235, 235, 235)
# Distinct colours for query patches (red, cyan, green, orange, pink) and their names.
QUERY_COLOURS = ((255, 60, 60), (0, 220, 230), (80, 240, 80), (255, 150, 0), (255, 110, 200))
QUERY_NAMES = ("red", "cyan", "green", "orange", "pink")
_RAMP = np.array([(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)],
                 np.float32)


@functools.lru_cache(maxsize=None)
def font(size: int = TEXT) -> ImageFont.FreeTypeFont:
  """Pillow's built-in scalable font at `size` px (Pillow >= 10.1)."""
  return ImageFont.load_default(size=size)


def text_width(text: str, size: int = TEXT) -> int:
  return int(np.ceil(font(size).getlength(text)))


def line_height(size: int = TEXT) -> int:
  """Pixels from one caption line to the next."""
  return int(round(size * 1.3))


def wrap(lines, width: int, size: int = TEXT) -> list[str]:
  """Breaks each line at spaces so it fits `width` px (a single long word stays whole)."""
  out = []
  for line in ([lines] if isinstance(lines, str) else lines):
    for part in str(line).split("\n"):
      current = ""
      for word in part.split(" "):
        trial = f"{current} {word}" if current else word
        if current and text_width(trial, size) > width:
          out.append(current)
          current = word
        else:
          current = trial
      out.append(current)
  return out


def as_image(image) -> Image.Image:
  """A PIL RGB image of a PIL image or a uint8 array [H, W] / [H, W, 3]."""
  if isinstance(image, Image.Image):
    return image.convert("RGB")
  a = np.asarray(image)
  if a.dtype != np.uint8:
    raise ValueError(f"expected a uint8 image, got {a.dtype}")
  if a.ndim == 2:
    a = np.repeat(a[..., None], 3, -1)
  return Image.fromarray(a, "RGB")


def upscale(image, min_side: int = MIN_SIDE, resample=Image.BILINEAR) -> Image.Image:
  """The image enlarged (aspect kept) until its shorter side is at least `min_side` px."""
  img = as_image(image)
  short = min(img.size)
  if short >= min_side:
    return img
  f = min_side / short
  return img.resize((int(round(img.width * f)), int(round(img.height * f))), resample)


def draw_text(draw: ImageDraw.ImageDraw, xy, text: str, *, size: int = TEXT,
              fill=FOREGROUND, anchor: str = "la") -> tuple[int, int, int, int]:
  """Draws `text` with a dark outline at `xy` (moved inward so it stays inside the image);
  returns its bounding box. Raises ValueError when the text is larger than the image."""
  f = font(size)
  width, height = draw.im.size
  x0, y0, x1, y1 = draw.textbbox(xy, text, font=f, anchor=anchor, stroke_width=2)
  if x1 - x0 > width or y1 - y0 > height:
    raise ValueError(f"text {text!r} at {size} px is larger than the {width}x{height} image")
  dx = max(0, -x0) - max(0, x1 - width)
  dy = max(0, -y0) - max(0, y1 - height)
  xy = (xy[0] + dx, xy[1] + dy)
  draw.text(xy, text, font=f, fill=fill, anchor=anchor, stroke_width=2, stroke_fill=(0, 0, 0))
  return (x0 + dx, y0 + dy, x1 + dx, y1 + dy)


def caption(image, lines, size: int = TEXT) -> Image.Image:
  """The image with a dark bar above it holding `lines` (a string or a list), wrapped to the
  image's width."""
  img = as_image(image)
  text = wrap(lines, img.width - 2 * GAP, size) if lines else []
  if not text:
    return img
  bar = line_height(size) * len(text) + GAP
  out = Image.new("RGB", (img.width, img.height + bar), BACKGROUND)
  out.paste(img, (0, bar))
  draw = ImageDraw.Draw(out)
  for n, line in enumerate(text):
    draw.text((GAP, GAP // 2 + n * line_height(size)), line, font=font(size), fill=FOREGROUND)
  return out


def colormap(x) -> np.ndarray:
  """RGB uint8 [..., 3] of values x in [0, 1] (clipped): dark blue, teal, green, yellow."""
  x = np.clip(np.nan_to_num(np.asarray(x, np.float32)), 0, 1) * (len(_RAMP) - 1)
  n = np.minimum(x.astype(np.int32), len(_RAMP) - 2)
  t = (x - n)[..., None]
  return (_RAMP[n] * (1 - t) + _RAMP[n + 1] * t + 0.5).astype(np.uint8)


def heat_overlay(grey_rgb, values, floor: float = 0.02) -> np.ndarray:
  """`colormap(values)` over an RGB image [H, W, 3] (values in [0, 1], [H, W]); opacity 0.45
  at `floor` rising to 0.85 at 1, so the colour reads against the image; below `floor` the
  image shows unchanged."""
  base = np.asarray(grey_rgb, np.float32)
  v = np.clip(np.asarray(values, np.float32), 0, 1)
  a = np.where(v > floor, 0.45 + 0.4 * v, 0.0)[..., None]
  return (base * (1 - a) + colormap(v).astype(np.float32) * a + 0.5).astype(np.uint8)


def colour_bar(height: int, lo: float, hi: float, label: str, *, size: int = SMALL,
               fmt: str = "{:.2g}", colours=None) -> Image.Image:
  """A vertical colour bar, `hi` at the top, with three tick labels and `label` above it.

  `colours` maps values in [0, 1] to RGB [..., 3] (default `colormap`).
  """
  colours = colours or colormap
  bar_w = 16
  labels = [fmt.format(v) for v in (hi, (lo + hi) / 2, lo)]
  width = max(bar_w + 6 + max(text_width(t, size) for t in labels),
              *(text_width(w, size) for w in label.split("\n"))) + 2 * GAP
  title = wrap(label, width - 2 * GAP, size)
  top = line_height(size) * len(title) + GAP + size // 2
  bar_h = max(height - top - size, 32)
  out = Image.new("RGB", (width, max(height, top + bar_h + size)), BACKGROUND)
  ramp = colours(np.linspace(1, 0, bar_h))[:, None, :].repeat(bar_w, 1)
  out.paste(Image.fromarray(np.asarray(ramp, np.uint8)), (GAP, top))
  draw = ImageDraw.Draw(out)
  for n, line in enumerate(title):
    draw.text((GAP, GAP // 2 + n * line_height(size)), line, font=font(size), fill=FOREGROUND)
  for text, y in zip(labels, (top, top + bar_h // 2, top + bar_h - 1)):
    draw.line([(GAP + bar_w, y), (GAP + bar_w + 4, y)], fill=FOREGROUND)
    draw.text((GAP + bar_w + 6, y), text, font=font(size), fill=FOREGROUND, anchor="lm")
  return out


def beside(*images, gap: int = GAP) -> Image.Image:
  """Images left to right, top-aligned, `gap` px apart on the dark background."""
  imgs = [as_image(i) for i in images]
  out = Image.new("RGB", (sum(i.width for i in imgs) + gap * (len(imgs) - 1),
                          max(i.height for i in imgs)), BACKGROUND)
  x = 0
  for img in imgs:
    out.paste(img, (x, 0))
    x += img.width + gap
  return out


def ring(draw: ImageDraw.ImageDraw, xy, radius: float, colour=(255, 60, 60)) -> None:
  """A circle of `radius` px around `xy`: `colour` 2 px on a 4 px black rim."""
  x, y = xy
  draw.ellipse([x - radius - 1, y - radius - 1, x + radius + 1, y + radius + 1],
               outline=(0, 0, 0), width=4)
  draw.ellipse([x - radius, y - radius, x + radius, y + radius], outline=colour, width=2)


def stack(*images, gap: int = GAP) -> Image.Image:
  """Images top to bottom, left-aligned, `gap` px apart on the dark background."""
  imgs = [as_image(i) for i in images]
  out = Image.new("RGB", (max(i.width for i in imgs),
                          sum(i.height for i in imgs) + gap * (len(imgs) - 1)), BACKGROUND)
  y = 0
  for img in imgs:
    out.paste(img, (0, y))
    y += img.height + gap
  return out


def nice_ceil(value: float) -> float:
  """The smallest of 1, 2, 5 x 10^k at least `value` (> 0; 1 for anything else)."""
  if not value > 0:
    return 1.0
  k = 10.0 ** np.floor(np.log10(value))
  return float(min(m * k for m in (1, 2, 5, 10) if m * k >= value * (1 - 1e-9)))


def nice_length(target: float) -> float:
  """The largest of 1, 2, 5 x 10^k not above `target` (> 0)."""
  k = 10.0 ** np.floor(np.log10(target))
  return float(max(m * k for m in (1, 2, 5) if m * k <= target))


def scale_bar(image, mm_per_px: float, note: str = "") -> Image.Image:
  """Draws, bottom left, a bar of a round number of mm about a fifth of the image wide, labelled
  with its length (and `note`, e.g. "at isocentre")."""
  img = as_image(image)
  mm = nice_length(img.width / 5 * mm_per_px)
  px = int(round(mm / mm_per_px))
  draw = ImageDraw.Draw(img)
  x0, y = GAP + 2, img.height - GAP - 4
  draw.rectangle([x0 - 1, y - 4, x0 + px + 1, y + 2], fill=(0, 0, 0))
  draw.rectangle([x0, y - 3, x0 + px, y + 1], fill=FOREGROUND)
  draw_text(draw, (x0, y - 8), f"{mm:g} mm" + (f" {note}" if note else ""), size=SMALL,
            anchor="lb")
  return img


_AXES = ((("L", "R")), ("P", "A"), ("S", "I"))   # +x, -x; +y, -y; +z, -z of LPS


def direction_label(vector) -> str:
  """Patient-direction letters of an LPS vector: its components above 0.3 of its length,
  largest first (e.g. (1, 0, 0) -> "L", (0.7, -0.7, 0) -> "LA")."""
  v = np.asarray(vector, np.float64)
  v = v / max(np.linalg.norm(v), 1e-12)
  order = np.argsort(-np.abs(v), kind="stable")
  return "".join(_AXES[a][0 if v[a] > 0 else 1] for a in order if abs(v[a]) > 0.3)


def orientation_labels(image, det_u, det_v) -> Image.Image:
  """Labels each edge with the patient direction it points to, for a detector whose column
  index grows along LPS vector `det_u` and row index along `det_v`."""
  img = as_image(image)
  draw = ImageDraw.Draw(img)
  w, h = img.size
  for vec, xy, anchor in ((-np.asarray(det_v), (w // 2, GAP), "mt"),
                          (np.asarray(det_v), (w // 2, h - GAP), "mb"),
                          (-np.asarray(det_u), (GAP, h // 2), "lm"),
                          (np.asarray(det_u), (w - GAP, h // 2), "rm")):
    label = direction_label(vec)
    if label:
      draw_text(draw, xy, label, size=TEXT, fill=(255, 230, 90), anchor=anchor)
  return img


def save(path: str, image) -> str:
  """Writes the image atomically, format from the suffix (PNG by default), with a new file's
  normal permissions; returns `path`."""
  with files.atomic_output(path, suffix=os.path.splitext(path)[1] or ".png") as tmp:
    as_image(image).save(tmp)
  return path
