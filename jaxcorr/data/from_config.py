"""Config -> data objects: the CT cube, its intensities, the views, the bank, the sampler, the
framing and the augmentations a config describes.

This is where config blocks (`config.ct`, `config.intensity`, `config.geometry`, `config.views`,
`config.labels`, `config.augment`) become the objects of `jaxcorr.data`, `jaxcorr.ct` and
`jaxcorr.projection`; every switch is checked against its closed set here (`CHOICES`).
"""

from __future__ import annotations

import functools

import jax
import numpy as np
from absl import logging

from jaxcorr.core import choices
from jaxcorr.ct import io, phantoms, preprocess, Volume
from jaxcorr.data import (anatomy_framing, appearance, device_recipes, pipeline, radiometric,
                          sampler, samples, volumes)
from jaxcorr.projection import drr, geometry, labels

# The closed sets of the config fields checked here (the key is the field under `config.`).
CHOICES = {
    "intensity.model": preprocess.INTENSITY_MODELS,
    "drr.dtype": tuple(choices.DTYPES),
    "drr.method": ("auto",) + drr.METHODS,
    "geometry.orbit": geometry.ORBITS,
    "views.orbit": geometry.ORBITS,
    "views.preset": tuple(sampler.PRESETS),
    "views.framing": anatomy_framing.FRAMINGS,
    "ct.phantom": phantoms.KINDS + ("random",),
    "ct.on_error": io.ON_ERROR,
    "labels.pooling": labels.POOLINGS,
    "labels.method": labels.METHODS,
    "data.recipes": device_recipes.RECIPES,
}


def check_choice(field: str, value):
  """Returns `value` if it is allowed for `config.<field>` (`CHOICES`), else a ValueError
  naming the field and its allowed values."""
  return choices.check_choice(f"config.{field}", value, CHOICES[field])


def projector(config) -> samples.Projector:
  """The kernels of `config.drr` and `config.labels`, with `drr.method='auto'` resolved for this
  platform (`drr.resolve_method`; logged once)."""
  method = drr.resolve_method(check_choice("drr.method", config.drr.method))
  _log_kernel(config.drr.method, method, jax.default_backend())
  return samples.Projector(method=method, ray_batch=int(config.drr.batch_size) or None,
                           label_method=check_choice("labels.method", config.labels.method))


@functools.lru_cache(maxsize=None)
def _log_kernel(asked: str, method: str, platform: str) -> None:
  logging.info("DRR kernel: %s (config.drr.method=%r on %s)", method, asked, platform)


def volume_dtype(config) -> str:
  """The dtype of CT volumes on the device (`config.drr.dtype`), checked."""
  return check_choice("drr.dtype", config.drr.dtype)


def _phantom(kind: str, seed: int, size: int) -> Volume:
  if kind == "random":
    return phantoms.random_phantom(seed, size=size)
  return phantoms.make_phantom(kind, seed=seed, size=size)


def hu_volume(name: str, ct_config) -> Volume:
  """The HU volume of one entry of a volume list: a CT path, or 'phantom:<seed>' for the
  built-in phantom `ct.phantom` of that seed (named as in splits.json, so records and logs
  point back to the list)."""
  if name.startswith("phantom:"):
    kind = check_choice("ct.phantom", ct_config.phantom)
    vol = _phantom(kind, int(name.split(":")[1]), ct_config.size)
    return vol.replace(data=io.clean_hu(vol.data, window=tuple(ct_config.hu_window)), source=name)
  return io.load_ct(name, max_voxels=ct_config.max_voxels, hu_window=tuple(ct_config.hu_window))


def load_volume(ct_config) -> Volume:
  """The HU cube a config asks for: a CT file/folder or a built-in phantom, as the authors do.

  Returns a Volume resampled to `ct.size`^3, isotropic, the whole CT kept (air-padded to the
  cube of its largest extent) and centred on `ct.isocenter`.
  """
  if ct_config.path:
    if not isinstance(ct_config.path, str):
      raise ValueError(f"config.ct.path={ct_config.path!r}: this job renders one CT; give one "
                       "NIfTI file or DICOM series folder")
    vol = hu_volume(ct_config.path, ct_config)
  else:
    kind = check_choice("ct.phantom", ct_config.phantom)
    logging.info("no ct.path: using the synthetic %s phantom (seed %d)", kind,
                 ct_config.phantom_seed)
    vol = _phantom(kind, ct_config.phantom_seed, ct_config.size)
    vol = vol.replace(data=io.clean_hu(vol.data, window=tuple(ct_config.hu_window)))
  return preprocess.to_cube(vol, size=ct_config.size, isocenter=tuple(ct_config.isocenter))


def intensity_volume(hu: np.ndarray, intensity_config) -> np.ndarray:
  """HU -> the quantity that is projected, per `config.intensity`."""
  model = check_choice("intensity.model", intensity_config.model)
  if model == "bone_sigmoid":
    return preprocess.bone_sigmoid(hu, x0=intensity_config.x0, k=intensity_config.k)
  return preprocess.attenuation(hu, mu_water=intensity_config.mu_water)


def make_views(geometry_config, volume: Volume) -> tuple[geometry.Views, tuple[int, int]]:
  """The views of `config.geometry` for `volume`; returns (views, (H, W))."""
  g = geometry_config
  height, width = (int(s) for s in g.detector_size)
  if g.matrices:
    mats = np.load(g.matrices)
    if mats.ndim != 3 or mats.shape[1:] != (3, 4):
      raise ValueError(f"config.geometry.matrices={g.matrices!r}: expected [N, 3, 4] projection "
                       f"matrices, got shape {mats.shape}")
    return geometry.views_from_matrices(mats), (height, width)
  spacing = tuple(float(s) for s in g.pixel_spacing)
  if any(s < 0 for s in spacing):
    raise ValueError(f"config.geometry.pixel_spacing={spacing}: must be positive, or 0 for auto")
  if any(s == 0 for s in spacing):
    auto = geometry.fit_pixel_spacing(float(np.max(volume.extent)), sid=g.sid, sdd=g.sdd,
                                      detector_size=(height, width))
    spacing = tuple(a if s == 0 else s for s, a in zip(spacing, np.broadcast_to(auto, 2)))
  if not g.sdd > g.sid > 0:
    raise ValueError(f"config.geometry: need sdd > sid > 0, got sid={g.sid}, sdd={g.sdd}")
  views = geometry.circular_views(
      sid=g.sid, sdd=g.sdd, gantry_angles=np.asarray(g.angles, np.float32),
      out_of_plane_angles=g.out_of_plane, in_plane_angles=g.in_plane,
      source_offset=tuple(g.source_offset), projection_offset=tuple(g.projection_offset),
      detector_size=(height, width), pixel_spacing=spacing)
  # Orbit rotation first, then the volume translation, which is in world coordinates.
  rotation = geometry.LPS_FROM_IEC if check_choice("geometry.orbit", g.orbit) == "patient" else None
  views = geometry.transform_views(views, rotation, -np.asarray(g.translation, np.float32))
  return views, (height, width)


def bank_entries(name: str, config) -> list[dict]:
  """The bank entries (one per z chunk) of one volume."""
  vol = hu_volume(name, config.ct)
  image = functools.partial(intensity_volume, intensity_config=config.intensity)
  label = functools.partial(intensity_volume, intensity_config=config.labels.intensity)
  return [volumes.make_entry(cube, image_intensity=image, label_intensity=label,
                             patch=config.labels.patch, pooling=config.labels.pooling,
                             threshold=config.labels.threshold,
                             anatomy_hu=config.views.get("framing_hu", volumes.ANATOMY_HU))
          for cube in volumes.cube_chunks(vol, size=config.ct.size, split_mm=config.data.split_mm)]


def load_entries(names: list[str], config, skipped: list | None = None) -> list[dict]:
  """The bank entries of `names`. A bad CT raises its CTError (ct.on_error='raise'), or is
  logged and its (name, reason) appended to `skipped` (ct.on_error='skip')."""
  check_choice("ct.on_error", config.ct.on_error)
  entries = []
  for name in names:
    try:
      entries.extend(bank_entries(name, config))
    except io.CTError as e:
      if config.ct.on_error == "raise":
        raise
      logging.warning("skipping %s (ct.on_error='skip'): %s", name, e)
      if skipped is not None:
        skipped.append((name, str(e)))
  return entries


def build_bank(names: list[str], config, skipped: list | None = None,
               label: str = "the bank") -> volumes.VolumeBank:
  """Loads and preprocesses every volume of `names` (skipping bad CTs when ct.on_error='skip',
  see `load_entries`).

  Raises:
    CTError: a bad CT, with ct.on_error='raise'.
    ValueError: every CT was skipped, each named with the reason (`label` says whose bank).
  """
  mine = []
  entries = load_entries(names, config, mine)
  if skipped is not None:
    skipped.extend(mine)
  if not entries and mine:
    raise ValueError(f"no volumes left for {label}: all {len(mine)} of its CTs were skipped "
                     "(ct.on_error='skip'): " + "; ".join(f"{n}: {r}" for n, r in mine)
                     + ". Fix or replace those files, or add CTs.")
  return volumes.stack(entries)


def view_sampler(config) -> sampler.ViewSampler | sampler.AuthorsSampler:
  """The sampler of `views.preset` ('jaxcorr': the fields of `config.views`; 'authors': their
  distribution, which has no fields but `n_views`)."""
  v = config.views
  if check_choice("views.preset", v.get("preset", "jaxcorr")) == "authors":
    return sampler.AuthorsSampler(n_views=v.n_views)
  return sampler.ViewSampler(
      n_views=v.n_views, gantry_modes=tuple(v.gantry_modes), gantry_probs=tuple(v.gantry_probs),
      gantry_spread=v.gantry_spread, out_of_plane_nominal=v.out_of_plane_nominal,
      out_of_plane_spread=v.out_of_plane_spread, sid_range=tuple(v.sid_range),
      idd_range=tuple(v.idd_range), max_translation=v.max_translation)


def framing(config) -> samples.Framing:
  """How `config.views` frames the views: the whole cube, or the anatomy (`views.framing`,
  with `framing_margin`, `framing_zoom` and `framing_shift`; `anatomy_framing`)."""
  v = config.views
  check_choice("views.orbit", v.orbit)
  fit = None
  if check_choice("views.framing", v.get("framing", "cube")) == "anatomy":
    fit = anatomy_framing.AnatomyFit(margin=float(v.framing_margin),
                                     zoom=tuple(float(z) for z in v.framing_zoom),
                                     shift=float(v.framing_shift),
                                     max_zoom=float(v.get("framing_max_zoom", 2.0)))
  return samples.Framing(detector_size=tuple(int(s) for s in v.detector_size),
                         patch=config.labels.patch, fov_scale=v.fov_scale, orbit=v.orbit,
                         anatomy=fit)


def device_recipe_spec(config) -> device_recipes.Spec | None:
  """What the device needs to draw the views (`config.data.recipes` resolved for this platform,
  logged once), or None when the host draws them (`recipe_maker`)."""
  asked = check_choice("data.recipes", config.data.get("recipes", "host"))
  where = device_recipes.resolve(asked)
  _log_recipes(asked, where, jax.default_backend())
  if where == "host":
    return None
  return device_recipes.Spec(view_sampler(config), min_coverage=config.views.min_coverage,
                             max_tries=max(1, int(config.views.max_tries)))


@functools.lru_cache(maxsize=None)
def _log_recipes(asked: str, where: str, platform: str) -> None:
  logging.info("view recipes drawn on the %s (config.data.recipes=%r on %s)", where, asked,
               platform)


def recipe_maker(config, bank: volumes.VolumeBank) -> samples.RecipeMaker:
  return samples.RecipeMaker(view_sampler(config), bank.anatomy, bank.extent, framing(config),
                             min_coverage=config.views.min_coverage,
                             max_tries=config.views.max_tries, anatomy_box=bank.anatomy_box)


def augmentation(config, train: bool) -> pipeline.Augment:
  """The augmentations of `config.augment` (none for evaluation)."""
  a = config.augment
  if not train:
    return pipeline.Augment(radiometric=None, geometric=())
  rad = a.radiometric
  radio = (radiometric.Radiometric(p_invert=rad.p_invert, brightness=rad.brightness,
                                   contrast=rad.contrast, max_gamma=rad.max_gamma,
                                   max_noise=rad.max_noise) if rad.enabled else None)
  geo = a.geometric
  geometric = (tuple((k, geo[k]) for k in sorted(geo.keys()) if k != "enabled")
               if geo.enabled else ())
  look = (appearance.Appearance.from_config(a.appearance)
          if "appearance" in a and a.appearance.enabled else None)
  return pipeline.Augment(radiometric=radio, geometric=geometric, appearance=look)
