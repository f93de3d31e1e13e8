"""Pieces every job uses: the workdir, the CT volume and the views a config describes."""

from __future__ import annotations

import json
import os

import numpy as np
from absl import logging

from jaxcorr import geometry
from jaxcorr.ct import Volume, io, phantoms, preprocess

CHOICES = {
    "intensity.model": ("bone_sigmoid", "attenuation"),
    "drr.dtype": ("float32", "bfloat16"),
    "drr.method": ("clipped", "dense"),
    "geometry.orbit": ("rtk", "patient"),
    "ct.phantom": phantoms.KINDS + ("random",),
}


def check_choice(field: str, value: str) -> str:
  """Raises a ValueError naming `field` and its allowed values when `value` is not one of them."""
  allowed = CHOICES[field]
  if value not in allowed:
    raise ValueError(f"config.{field}={value!r} is not allowed; choose one of: {', '.join(allowed)}")
  return value


def prepare_workdir(config, workdir: str) -> None:
  """Creates the workdir and writes the resolved config as `config.json`."""
  os.makedirs(workdir, exist_ok=True)
  atomic_write_text(os.path.join(workdir, "config.json"), config.to_json_best_effort(indent=2))


def atomic_write_text(path: str, text: str) -> None:
  """Writes a file so that a reader never sees it half-written (temp file + rename)."""
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


def atomic_save_npy(path: str, array: np.ndarray) -> None:
  """`np.save` through a temp file + rename, so an interrupted run leaves no partial `.npy`."""
  tmp = f"{path}.tmp{os.getpid()}.npy"
  np.save(tmp, np.asarray(array))
  os.replace(tmp, path)


def load_volume(ct_config) -> Volume:
  """The HU cube a config asks for: a CT file/folder or a built-in phantom, as the authors do.

  Returns a Volume resampled to `ct.size`^3, isotropic, the whole CT kept (air-padded to the
  cube of its largest extent) and centred on `ct.isocenter`.
  """
  window = tuple(ct_config.hu_window)
  if ct_config.path:
    vol = io.load_ct(ct_config.path, max_voxels=ct_config.max_voxels, hu_window=window)
  else:
    kind = check_choice("ct.phantom", ct_config.phantom)
    if kind == "random":
      vol = phantoms.random_phantom(ct_config.phantom_seed, size=ct_config.size)
    else:
      vol = phantoms.make_phantom(kind, seed=ct_config.phantom_seed, size=ct_config.size)
    logging.info("no ct.path: using the synthetic %s phantom (seed %d)", kind,
                 ct_config.phantom_seed)
    vol = vol.replace(data=io.clean_hu(vol.data, window=window))
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


def write_json(path: str, obj) -> None:
  atomic_write_text(path, json.dumps(obj, indent=2))


def read_json(path: str):
  """The JSON object in `path`; a clear error when it is unreadable or truncated."""
  try:
    with open(path) as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}: not valid JSON ({e}); delete it to have it made again") from e


def run_workdir(path: str) -> str:
  """The training workdir of `path`: the workdir itself, or the one holding a checkpoint
  directory `<workdir>/{checkpoints,best}/<step>`."""
  path = os.path.abspath(path)
  parent = os.path.dirname(path)
  if os.path.basename(path).isdigit() and os.path.basename(parent) in ("checkpoints", "best"):
    return os.path.dirname(parent)
  return path


def run_config(path: str):
  """The resolved config (`config.json`) of the training run at `path` (a workdir or one of
  its checkpoint directories), as a ConfigDict."""
  import ml_collections  # pylint: disable=import-outside-toplevel
  workdir = run_workdir(path)
  if not os.path.isdir(workdir):
    raise FileNotFoundError(f"{path}: no such run directory; give the workdir of a "
                            "pretraining or fine-tuning run, or one of its checkpoints")
  config_path = os.path.join(workdir, "config.json")
  if not os.path.exists(config_path):
    raise FileNotFoundError(f"{path}: no config.json in {workdir}; give the workdir of a "
                            "training run made by jaxcorr.main")
  return ml_collections.ConfigDict(read_json(config_path))
