"""How much of each view the anatomy fills, with views framed on the cube or on the anatomy.

  python -m jaxcorr.benchmarks.framing [--ct=PATH] [--samples=32] [--size=128]
      [--out=docs/figures/framing.png]

For one CT (default the lower leg STS_049 of ../shared/data/ct), `--samples` recipes of the
pretraining sampler (`configs/pretrain.py`, views.preset 'jaxcorr', 2 views, coverage
rejection) are drawn with `views.framing='cube'`; each is then framed on the anatomy
(`anatomy_framing.frame`, the defaults of `configs/common.py`), so the two differ in
`detector_mm` and `detector_offset` only. Per view it projects two masks of the CT cube with
the views as rendered: the bone (HU >= 300, the box the framing fits) and the body
(HU >= -500), and prints the fraction of the image's width and of its area that each covers
(pixels with a non-zero line integral): mean, min and max over the samples' views.

It draws `--out`: the first sample's DRRs, framed on the cube (top) and on the anatomy
(bottom), with a scale bar at the isocentre.
"""

from __future__ import annotations

import functools
import os

import jax
import numpy as np
from absl import app, flags

from configs import pretrain
from jaxcorr.ct import preprocess
from jaxcorr.data import anatomy_framing, from_config, sampler, samples
from jaxcorr.pictures import style
from jaxcorr.projection import drr

_HERE = os.path.dirname(__file__)
_DEFAULT_CT = os.path.join(_HERE, "..", "..", "..", "shared", "data", "ct",
                           "ibsi_sts_STS_049_ct.nii.gz")
_DEFAULT_OUT = os.path.join(_HERE, "..", "..", "docs", "figures", "framing.png")


def _define_flags() -> None:
  """The command line's flags, defined when run as a script only: tests import this module's
  functions beside other benchmarks that define flags of the same names (`ct`, `size`)."""
  flags.DEFINE_string("ct", _DEFAULT_CT, "CT file or DICOM folder.")
  flags.DEFINE_integer("samples", 32, "Recipes drawn (two views each).")
  flags.DEFINE_integer("size", 128, "CT cube edge and detector side, in voxels/pixels.")
  flags.DEFINE_string("out", _DEFAULT_OUT, "Where to write the figure (PNG); '' for none.")

MASKS = (("bone", 300.0), ("body", -500.0))


def config_for(ct: str, size: int, framing: str):
  """The pretraining config on one CT at `size`, with `views.framing` = `framing`."""
  config = pretrain.get_config()
  config.ct.path = ct
  config.update_from_flattened_dict({"ct.size": size, "views.detector_size": (size, size),
                                     "views.framing": framing})
  return config


@functools.partial(jax.jit, static_argnames=("size",))
def _project(volume, origin, spacing, extent, params, *, size: int):
  views = sampler.views_from_params(params, extent_mm=extent, detector_size=(size, size))
  return drr.project(volume, origin, spacing, views, height=size, width=size)


def coverage(view: np.ndarray) -> tuple[float, float]:
  """(fraction of columns, fraction of pixels) where a mask's DRR [H, W] is non-zero."""
  seen = view > 0
  return float(seen.any(0).mean()), float(seen.mean())


def measure(ct: str, samples_count: int, size: int):
  """Recipes framed both ways, their DRRs and mask coverages; see the module docstring.

  Returns:
    (table {framing: {mask: [S * 2, 2] (width, area) fractions}}, first DRRs {framing:
    [2, H, W]}, first recipes {framing: params}, the cube's edge in mm).
  """
  cube_config = config_for(ct, size, "cube")
  bank = from_config.build_bank([ct], cube_config)
  hu = preprocess.to_cube(from_config.hu_volume(ct, cube_config.ct), size=size)
  framed = from_config.framing(config_for(ct, size, "anatomy"))
  maker = from_config.recipe_maker(cube_config, bank)
  rng = np.random.default_rng(0)
  table = {f: {m: [] for m, _ in MASKS} for f in anatomy_framing.FRAMINGS}
  first_images, first = {}, {}
  geom = lambda r: {k: r[k] for k in sampler.GEOMETRY_KEYS}
  for s in range(samples_count):
    recipe = geom(maker({"volume": 0}, rng))
    zoom_u, shift_u = anatomy_framing.uniforms_numpy(rng, 2)
    both = {"cube": recipe,
            "anatomy": samples.frame(recipe, bank.anatomy_box[0], zoom_u, shift_u, framed,
                                     float(bank.extent[0]))}
    for name, params in both.items():
      render = functools.partial(_project, origin=hu.origin, spacing=hu.spacing,
                                 extent=float(bank.extent[0]), params=params, size=size)
      for mask, hu_min in MASKS:
        views = np.asarray(render((hu.data >= hu_min).astype(np.float32)))
        table[name][mask] += [coverage(v) for v in views]
      if s == 0:
        first_images[name] = np.asarray(render(bank.images[0]))
        first[name] = params
  table = {f: {m: np.asarray(v) for m, v in t.items()} for f, t in table.items()}
  return table, first_images, first, float(bank.extent[0])


def _grey(view: np.ndarray) -> np.ndarray:
  lo, hi = np.percentile(view, [1, 99.5])
  return (np.clip((view - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)


def figure(images: dict, params: dict, table: dict, extent: float, size: int):
  """Cube framing above anatomy framing, one column per view, each with a scale bar."""
  rows = []
  for name in ("cube", "anatomy"):
    p = params[name]
    views = sampler.views_from_params(p, extent_mm=extent, detector_size=(size, size))
    panels = []
    for n in range(images[name].shape[0]):
      mm_per_px = float(np.linalg.norm(np.asarray(views.det_u)[n]))
      mag = float(p["sdd"][n]) / float(p["sid"][n])
      img = style.upscale(_grey(images[name][n]), 384)
      img = style.scale_bar(img, mm_per_px / mag * size / img.width, "at isocentre")
      panels.append(style.caption(img, f"view {n + 1}: gantry {float(p['gantry'][n]):.0f} deg"))
    bone, body = (table[name][m][:, 0].mean() for m in ("bone", "body"))
    rows.append(style.caption(style.beside(*panels), (
        f"views.framing='{name}': bone spans {bone:.0%} of the width, body {body:.0%} "
        f"(mean of {len(table[name]['bone'])} views)")))
  return style.stack(*rows)


def main(argv):
  del argv
  f = flags.FLAGS
  table, images, params, extent = measure(f.ct, f.samples, f.size)
  print(f"{os.path.basename(f.ct)}: {f.samples} samples x 2 views, {f.size}^2 px")
  print("framing   mask  width mean (min-max)   area mean (min-max)")
  for name, per_mask in table.items():
    for mask, v in per_mask.items():
      print(f"{name:8s}  {mask:4s}  {v[:, 0].mean():.3f} ({v[:, 0].min():.3f}-{v[:, 0].max():.3f})"
            f"     {v[:, 1].mean():.3f} ({v[:, 1].min():.3f}-{v[:, 1].max():.3f})")
  if f.out:
    print("wrote", style.save(f.out, figure(images, params, table, extent, f.size)))


if __name__ == "__main__":
  _define_flags()
  app.run(main)
