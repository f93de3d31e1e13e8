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
  img = Image.fromarray(image_u8, mode="L").convert("RGB")
  if img.width < min_width:
    f = -(-min_width // img.width)
    img = img.resize((img.width * f, img.height * f), Image.NEAREST)
  font = ImageFont.load_default()
  lines = caption.split("\n")
  bar = 14 * len(lines) + 6
  out = Image.new("RGB", (img.width, img.height + bar), "black")
  out.paste(img, (0, bar))
  draw = ImageDraw.Draw(out)
  for i, line in enumerate(lines):
    draw.text((4, 3 + 14 * i), line, fill="white", font=font)
  return out


def save_radiograph(path: str, image: np.ndarray, caption: str) -> None:
  """Saves one DRR as a window-levelled PNG with the caption above it."""
  captioned(window_level(image), caption).save(path)
