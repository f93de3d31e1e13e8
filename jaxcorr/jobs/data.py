"""Config -> data objects: the volumes of each split, the bank, the sampler, the batches.

Splits are by CT volume, never by sample, so no patient is in two splits. The assignment is
written to `<workdir>/splits.json` the first time and reused afterwards (also when the folder
gains files: new volumes go to 'train' and are logged).
"""

from __future__ import annotations

import functools
import json
import os

import numpy as np
from absl import logging

from jaxcorr.ct import io, phantoms
from jaxcorr.data import appearance, pipeline, radiometric, samples, sampler, volumes
from jaxcorr.jobs import common

SPLITS = ("train", "validation", "test")


def list_volumes(config) -> list[str]:
  """Names of the configured volumes: CT paths, or 'phantom:<seed>' for the built-in ones."""
  path = config.ct.path
  if not path:
    return [f"phantom:{s}" for s in range(config.data.phantoms)]
  # Absolute paths, so a run's splits.json means the same from any working directory.
  if os.path.isfile(path) and path.endswith(".txt"):
    with open(path) as f:
      entries = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    return [os.path.abspath(p) for p in io.list_cts(entries)]
  if os.path.isfile(path) or path.endswith(io.NIFTI_SUFFIXES):
    return [os.path.abspath(path)]
  return [os.path.abspath(p) for p in io.list_cts(path)]


def assign_splits(names: list[str], fractions, seed: int) -> dict[str, list[str]]:
  """A seeded partition of the volume names into train/validation/test by `fractions`.

  Every split with a positive fraction gets at least one volume when there are enough.
  """
  fractions = np.asarray(fractions, np.float64)
  if fractions.shape != (3,) or np.any(fractions < 0) or fractions.sum() <= 0:
    raise ValueError(f"data.splits={tuple(fractions)}: need three fractions >= 0, not all 0")
  order = np.random.default_rng(seed).permutation(len(names))
  counts = np.floor(fractions / fractions.sum() * len(names)).astype(int)
  if len(names) >= np.count_nonzero(fractions):
    counts = np.where((fractions > 0) & (counts == 0), 1, counts)
  # The remainder goes to the largest split, which keeps at least one volume.
  big = int(np.argmax(fractions))
  counts[big] += len(names) - counts.sum()
  while counts[big] < 1:
    donor = int(np.argmax(np.where(np.arange(3) == big, -1, counts)))
    counts[donor] -= 1
    counts[big] += 1
  bounds = np.cumsum(counts)[:-1]
  return {s: [names[j] for j in part] for s, part in zip(SPLITS, np.split(order, bounds))}


def splits(config, workdir: str) -> dict[str, list[str]]:
  """The split assignment of the workdir, created from the config on first use."""
  path = os.path.join(workdir, "splits.json")
  names = list_volumes(config)
  if os.path.exists(path):
    with open(path) as f:
      saved = json.load(f)
    known = {n for part in saved.values() for n in part}
    new = [n for n in names if n not in known]
    if new:
      logging.warning("%d volumes not in %s go to 'train': %s", len(new), path, new[:5])
      saved["train"] = saved["train"] + new
    return saved
  result = assign_splits(names, config.data.splits, config.seed)
  common.write_json(path, result)
  return result


def _hu_volume(name: str, config):
  if name.startswith("phantom:"):
    seed = int(name.split(":")[1])
    kind = common.check_choice("ct.phantom", config.ct.phantom)
    vol = (phantoms.random_phantom(seed, size=config.ct.size) if kind == "random"
           else phantoms.make_phantom(kind, seed=seed, size=config.ct.size))
    # Named as in splits.json, so records and logs point back to the volume list.
    return vol.replace(data=io.clean_hu(vol.data, window=tuple(config.ct.hu_window)), source=name)
  return io.load_ct(name, max_voxels=config.ct.max_voxels, hu_window=tuple(config.ct.hu_window))


def bank_entries(name: str, config) -> list[dict]:
  """The bank entries (one per z chunk) of one volume."""
  vol = _hu_volume(name, config)
  image = functools.partial(common.intensity_volume, intensity_config=config.intensity)
  label = functools.partial(common.intensity_volume, intensity_config=config.labels.intensity)
  return [volumes.make_entry(cube, image_intensity=image, label_intensity=label,
                             patch=config.labels.patch, pooling=config.labels.pooling,
                             threshold=config.labels.threshold)
          for cube in volumes.cube_chunks(vol, size=config.ct.size, split_mm=config.data.split_mm)]


def build_bank(names: list[str], config) -> volumes.VolumeBank:
  """Loads and preprocesses every volume (skipping bad CTs when ct.on_error='skip')."""
  if config.ct.on_error not in io.ON_ERROR:
    raise ValueError(f"config.ct.on_error={config.ct.on_error!r}; allowed: {', '.join(io.ON_ERROR)}")
  entries = []
  for name in names:
    try:
      entries.extend(bank_entries(name, config))
    except io.CTError as e:
      if config.ct.on_error == "raise":
        raise
      logging.warning("skipping %s: %s", name, e)
  return volumes.stack(entries)


def view_sampler(config) -> sampler.ViewSampler:
  v = config.views
  return sampler.ViewSampler(
      n_views=v.n_views, gantry_modes=tuple(v.gantry_modes), gantry_probs=tuple(v.gantry_probs),
      gantry_spread=v.gantry_spread, out_of_plane_nominal=v.out_of_plane_nominal,
      out_of_plane_spread=v.out_of_plane_spread, sid_range=tuple(v.sid_range),
      idd_range=tuple(v.idd_range), max_translation=v.max_translation)


def framing(config) -> samples.Framing:
  common.check_choice("geometry.orbit", config.views.orbit)
  return samples.Framing(detector_size=tuple(int(s) for s in config.views.detector_size),
                         patch=config.labels.patch, fov_scale=config.views.fov_scale,
                         orbit=config.views.orbit)


def recipe_maker(config, bank: volumes.VolumeBank) -> samples.RecipeMaker:
  return samples.RecipeMaker(view_sampler(config), bank.anatomy, bank.extent, framing(config),
                             min_coverage=config.views.min_coverage,
                             max_tries=config.views.max_tries)


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
  geometric = tuple((k, geo[k]) for k in sorted(geo.keys()) if k != "enabled") if geo.enabled else ()
  look = (appearance.Appearance.from_config(a.appearance)
          if "appearance" in a and a.appearance.enabled else None)
  return pipeline.Augment(radiometric=radio, geometric=geometric, appearance=look)
