"""The `render` job: DRRs of one CT (or the built-in phantom) for the views of the config.

Outputs in the workdir: `drr.npy` (float32 [N, H, W] line integrals of the configured intensity,
rows and columns in RTK's projection array order), `drr_<n>.png` previews, `corr.npy` (float32
[P, L, L] correspondence labels, `labels.pair_indices` order, patches row-major as in drr.npy)
with `corr_<i>_<j>.png` pictures, `geometry.json` (the parameters and the [N, 3, 4] pixel-index
projection matrices), `config.json`.
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from jaxcorr.core import files
from jaxcorr.data import from_config
from jaxcorr.pictures import style, viz
from jaxcorr.projection import drr, geometry, labels


def run(config, workdir: str) -> None:
  files.prepare_workdir(config, workdir)
  dtype = from_config.volume_dtype(config)
  projector = from_config.projector(config)
  vol = from_config.load_volume(config.ct)
  mu = from_config.intensity_volume(vol.data, config.intensity)
  views, (height, width) = from_config.make_views(config.geometry, vol)
  logging.info("volume %s from %s, spacing %.3f mm; %d views of %dx%d on %s", vol.shape,
               vol.source, vol.spacing[0], views.source.shape[0], height, width,
               jax.devices()[0].platform)
  t0 = time.perf_counter()
  images = drr.project_jit(jnp.asarray(mu, dtype), vol.origin, vol.spacing, views,
                           height=height, width=width, batch_size=projector.ray_batch,
                           method=projector.method)
  images = np.asarray(jax.block_until_ready(images))
  logging.info("rendered in %.2f s (compilation included)", time.perf_counter() - t0)
  if not np.all(np.isfinite(images)):
    raise FloatingPointError("render produced non-finite pixels; check the CT and geometry")
  files.atomic_save_npy(os.path.join(workdir, "drr.npy"), images.astype(np.float32))
  files.write_json(os.path.join(workdir, "geometry.json"), _geometry_record(config, views))
  if config.png:
    for n, image in enumerate(images):
      source, origin, u, v = (np.asarray(x[n]) for x in views)
      viz.save_radiograph(os.path.join(workdir, f"drr_{n}.png"), image,
                          _caption(config.geometry, n, vol.source), det_u=u, det_v=v,
                          mm_per_px=viz.isocentre_mm_per_px(source, origin, u, v))
  if config.labels.enabled:
    _write_labels(config, workdir, vol, views, images)
  logging.info("wrote %s", workdir)


def _write_labels(config, workdir, vol, views, images) -> None:
  lab = config.labels
  weights = from_config.intensity_volume(vol.data, lab.intensity)
  height, width = images.shape[1:]
  corr = labels.correspondence_from_volume(
      weights, vol.origin, vol.spacing, views, height=height, width=width, k=lab.patch,
      pooling=lab.pooling, threshold=lab.threshold, method=lab.method)
  corr = np.asarray(corr)
  files.atomic_save_npy(os.path.join(workdir, "corr.npy"), corr.astype(np.float32))
  if config.png:
    for p, (i, j) in enumerate(labels.pair_indices(len(images))):
      fig = viz.correspondence_figure(
          images[i], images[j], corr[p], lab.patch,
          caption=f"Views {i} (i) and {j} (j): each row a query patch of view {i}, outlined, and "
                  f"its correspondence C in view {j} ({lab.patch} px patches).")
      style.save(os.path.join(workdir, f"corr_{i}_{j}.png"), fig)


def _caption(g, n: int, source: str) -> str:
  if g.matrices:
    return f"view {n}: matrix {n} of {os.path.basename(g.matrices)}\n{os.path.basename(source)}"
  return (f"view {n}: gantry {g.angles[n]:g} deg, out-of-plane {g.out_of_plane:g}, "
          f"in-plane {g.in_plane:g}\nSID {g.sid:g} mm, SDD {g.sdd:g} mm  "
          f"{os.path.basename(source) or 'phantom'}")


def _geometry_record(config, views) -> dict:
  mats = np.asarray(geometry.views_to_matrices(views))
  return {"parameters": config.geometry.to_dict(),
          "pixel_index_matrices": mats.tolist(),
          "source": np.asarray(views.source).tolist()}
