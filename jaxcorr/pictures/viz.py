"""Pictures a person can read: DRRs window-levelled like radiographs, with a caption."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont


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


def captioned(image_u8: np.ndarray, caption: str, min_width: int = 256) -> Image.Image:
  """A grey image (upscaled to at least `min_width` columns) with a caption bar above it."""
  img = np.repeat(np.asarray(image_u8)[..., None], 3, -1)
  if img.shape[1] < min_width:
    f = -(-min_width // img.shape[1])
    img = np.kron(img, np.ones((f, f, 1), np.uint8))
  return captioned_rgb(img, caption)


def save_radiograph(path: str, image: np.ndarray, caption: str) -> None:
  """Saves one DRR as a window-levelled PNG with the caption above it."""
  captioned(window_level(image), caption).save(path)


_COLOURS = ((255, 64, 64), (64, 200, 255), (255, 200, 0), (120, 255, 120), (255, 100, 255))


def pick_queries(corr: np.ndarray, grid: tuple[int, int], n: int = 4) -> list[int]:
  """Up to `n` query patches of view i with strong correspondences, spread over the image.

  Greedy: take the patch whose best match is strongest, then the next strongest at least an
  eighth of the grid away from those already taken.
  """
  h, w = grid
  strength = np.asarray(corr).max(axis=1)
  order = np.argsort(-strength, kind="stable")
  min_dist = max(h, w) / 8
  picked = []
  for a in order:
    if strength[a] <= 0 or len(picked) == n:
      break
    r, c = divmod(int(a), w)
    if all(np.hypot(r - pr, c - pc) >= min_dist for pr, pc in (divmod(p, w) for p in picked)):
      picked.append(int(a))
  return picked


def correspondence_figure(image_i: np.ndarray, image_j: np.ndarray, corr: np.ndarray,
                          patch: int, queries=None, caption: str = "") -> Image.Image:
  """Views i and j side by side; query patches outlined in view i, their matches in view j.

  Each query gets a colour; in view j every patch b is tinted with that colour in proportion
  to C[a, b], so the band that X-ray transparency creates shows as a coloured streak (as in
  the paper's figures 2 and 3).

  Args:
    image_i, image_j: [H, W] DRRs (line integrals).
    corr: [L, L] correspondence between the patches of view i (rows) and view j (columns).
    patch: patch size in pixels.
    queries: patch indices in view i; default `pick_queries`.
    caption: text above the figure.
  """
  h, w = image_i.shape[0] // patch, image_i.shape[1] // patch
  queries = pick_queries(corr, (h, w)) if queries is None else list(queries)
  left = np.repeat(window_level(image_i)[..., None], 3, -1).astype(np.float32)
  right = np.repeat(window_level(image_j)[..., None], 3, -1).astype(np.float32)
  tint = np.zeros(right.shape[:2] + (3,), np.float32)
  alpha = np.zeros(right.shape[:2], np.float32)
  for q, a in enumerate(queries):
    colour = np.asarray(_COLOURS[q % len(_COLOURS)], np.float32)
    strength = np.kron(np.asarray(corr[a]).reshape(h, w), np.ones((patch, patch)))
    take = strength > alpha
    tint[take] = colour
    alpha = np.maximum(alpha, strength)
  a = 0.7 * np.clip(alpha, 0, 1)[..., None]
  right = right * (1 - a) + tint * a
  left_img = Image.fromarray(left.astype(np.uint8))
  draw = ImageDraw.Draw(left_img)
  for q, a_idx in enumerate(queries):
    r, c = divmod(a_idx, w)
    draw.rectangle([c * patch, r * patch, (c + 1) * patch - 1, (r + 1) * patch - 1],
                   outline=_COLOURS[q % len(_COLOURS)], width=2)
  pair = np.concatenate([np.asarray(left_img), np.full((left.shape[0], 4, 3), 255, np.uint8),
                         right.astype(np.uint8)], axis=1)
  return captioned_rgb(pair, caption)


def captioned_rgb(image: np.ndarray, caption: str) -> Image.Image:
  """An RGB uint8 image with a caption bar above it."""
  img = Image.fromarray(image)
  font = ImageFont.load_default()
  lines = caption.split("\n") if caption else []
  bar = 14 * len(lines) + 6 if lines else 0
  out = Image.new("RGB", (img.width, img.height + bar), "black")
  out.paste(img, (0, bar))
  draw = ImageDraw.Draw(out)
  for i, line in enumerate(lines):
    draw.text((4, 3 + 14 * i), line, fill="white", font=font)
  return out
