"""The appearance chain on one phantom DRR: each effect alone, all together, and its cost.

  python -m jaxcorr.benchmarks.appearance_figure [--phantom=knee] [--out=PNG]

(from the repository root: the render settings come from configs/render.py).

Renders one 256^2 frontal DRR of a built-in synthetic phantom (256^3, gantry 0 of the patient
orbit) twice: of the paper's bone sigmoid, as pretraining does, and of physical attenuation mu.
Applies `jaxcorr.data.appearance` to the first with fixed parameters, one effect per tile
(heel, scatter and noise on top of attenuation, which they act on), then the REALISTIC
benchmark set and random training draws of the default `Appearance` to both, and writes a
grey PNG grid (docs/figures/appearance.png, ~70 KB). It prints the median time of one jitted
`Appearance` call on [2, 256, 256] (after compilation) and of the batched call the pipeline
makes ([16, 2, 256, 256], vmapped).
"""

from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from PIL import Image, ImageDraw

from configs import render as render_config
from jaxcorr.benchmarks import timing
from jaxcorr.data import appearance, from_config, radiometric
from jaxcorr.pictures import style
from jaxcorr.projection import drr


_DEFAULT_OUT = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "figures",
                            "appearance.png")
_OUT = flags.DEFINE_string("out", _DEFAULT_OUT, "Where to write the figure (PNG).")
_PHANTOM = flags.DEFINE_string("phantom", "knee", "Built-in phantom: forearm, hand, foot, knee.")
_TILE = flags.DEFINE_integer("tile", 192, "Tile size in pixels in the figure.")

_ATT = dict(attenuation=True, contrast=-math.log(0.02))


def tiles() -> list[tuple[str, str, appearance.Params | int | None]]:
  """(caption, intensity model, what) of each tile: fixed parameters, an int = the key of a
  random draw of the default `Appearance`, None = `radiometric.normalize` (today's path)."""
  p = appearance.make_params
  bone, mu = "bone_sigmoid", "attenuation"
  return [
      ("normalize (today)", bone, None),
      ("attenuation, t_min 2%", bone, p(**_ATT)),
      ("+ noise, N0 1000", bone, p(**_ATT, noise=True, photons=1e3)),
      ("+ heel, h 0.2, ->", bone, p(**_ATT, heel=0.2)),
      ("+ scatter, k 0.5", bone, p(**_ATT, scatter=0.5, scatter_sigma=0.1)),
      ("display: window, USM 1.2, g 0.8", bone,
       p(display=True, window_air=0.05, window_low=0.02, window_high=0.995, sharpen=1.2,
         sharpen_radius=0.015, gamma=0.8)),
      ("shutters (white)", bone, p(shutter=(0.12, 0.0, 0.08, 0.1), shutter_value=1.0)),
      ("glyphs 'L', '2'", bone, p(glyphs=(True, True, False), glyph_ids=(0, 8, 0),
                                  glyph_top=(0.05, 0.9, 0.0), glyph_left=(0.9, 0.05, 0.0),
                                  glyph_height=0.07)),
      ("inversion", bone, p(invert=True)),
      ("all: REALISTIC (benchmark)", bone, appearance.REALISTIC),
      ("training draw, key 12", bone, 12),
      ("training draw, key 19", bone, 19),
      ("mu DRR: normalize (today)", mu, None),
      ("mu DRR: REALISTIC", mu, appearance.REALISTIC),
      ("mu DRR: training draw, key 26", mu, 26),
      ("mu DRR: training draw, key 11", mu, 11),
  ]


def render_drr(phantom: str, intensity: str) -> np.ndarray:
  """[1, 256, 256] line integrals of the phantom, seen from the front (gantry 0, IEC orbit)."""
  config = render_config.get_config()
  config.ct.phantom = phantom
  config.intensity.model = intensity
  config.geometry.angles = (0.0,)
  config.geometry.orbit = "patient"
  vol = from_config.load_volume(config.ct)
  mu = from_config.intensity_volume(vol.data, config.intensity)
  views, (h, w) = from_config.make_views(config.geometry, vol)
  return np.asarray(drr.project_jit(jnp.asarray(mu), vol.origin, vol.spacing, views, height=h,
                                    width=w))


def figure(images: dict, tile: int) -> Image.Image:
  """The grid (4 columns) of `tiles()`; `images` maps an intensity model to its [1, H, W] DRR."""
  font, band = style.font(style.SMALL), style.line_height(style.SMALL) + 2
  cells = []
  for caption, model, what in tiles():
    image = images[model]
    if what is None:
      x = radiometric.normalize(image)
    elif isinstance(what, int):
      x = appearance.Appearance()(image, jax.random.key(what))
    else:
      x = appearance.fixed(image, what, jax.random.key(0))
    grey = Image.fromarray((np.asarray(x[0]) * 255 + 0.5).astype(np.uint8))
    cell = Image.new("L", (tile, tile + band), 0)
    cell.paste(grey.resize((tile, tile), Image.BILINEAR), (0, band))
    ImageDraw.Draw(cell).text((3, 1), caption, fill=255, font=font)
    cells.append(cell)
  cols = 4
  rows = -(-len(cells) // cols)
  grid = Image.new("L", (cols * (tile + 2), rows * (tile + band + 2)), 64)
  for n, cell in enumerate(cells):
    grid.paste(cell, ((n % cols) * (tile + 2), (n // cols) * (tile + band + 2)))
  return grid


def main(argv):
  del argv
  images = {m: render_drr(_PHANTOM.value, m) for m in ("bone_sigmoid", "attenuation")}
  out = os.path.abspath(_OUT.value)
  os.makedirs(os.path.dirname(out), exist_ok=True)
  figure(images, _TILE.value).save(out, optimize=True)
  print(f"wrote {out} ({os.path.getsize(out) / 1024:.0f} KiB)")
  aug = appearance.Appearance()
  image = images["bone_sigmoid"]
  views = jnp.asarray(np.concatenate([image, image[:, ::-1]]))
  one = jax.jit(aug)
  t1 = timing.median_seconds(lambda: one(views, jax.random.key(0)).block_until_ready(), 20)
  batch = jnp.broadcast_to(views, (16,) + views.shape)
  keys = jax.random.split(jax.random.key(0), 16)
  many = jax.jit(jax.vmap(aug))
  t16 = timing.median_seconds(lambda: many(batch, keys).block_until_ready(), 5)
  print(f"| call | shape | ms (median, jitted, {jax.devices()[0].platform}) |\n|---|---|---|\n"
        f"| Appearance() | [2, 256, 256] | {t1 * 1e3:.1f} |\n"
        f"| vmap(Appearance()) | [16, 2, 256, 256] | {t16 * 1e3:.1f} |")


if __name__ == "__main__":
  app.run(main)
