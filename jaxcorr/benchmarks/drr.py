"""DRR throughput: jaxcorr's Joseph kernels side by side with ITK-RTK's and nanodrr's, in one run.

  python -m jaxcorr.benchmarks.drr [--ct=PATH] [--size=256] [--detector=256] [--views=2,32]
      [--methods=clipped,dense,fused] [--fused_blocks=64,256] [--rtk=true]

Renders a real CT (default: the Visible Human pelvis from ../shared/data, else a phantom),
resampled to size^3 as the render job does, onto a detector^2 detector, with each kernel of
`--methods` ('clipped', the CPU default; 'dense', the GPU default; 'fused', the Pallas kernel,
in interpret mode on a CPU; with `--fused_blocks`, once per number of rays per program) for each
batch of views. One row per kernel and batch: the median
seconds per view and views/s (3 significant figures), the first call (compilation + one
call), the largest difference from the dense kernel's image relative to its maximum, and the
peers: ITK-RTK's Joseph projector measured in the same run on the same volume and geometry
(its ratio: RTK time / jaxcorr time, above 1 means jaxcorr is faster) and nanodrr's fused
Triton kernel's published best, ~9,500 views/s at 256^2 (`../shared/ANCHORS.md`; its ratio:
jaxcorr views/s / 9,500). Results go to docs/benchmarks.md.
"""

from __future__ import annotations

import os
import platform
import time
import traceback

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from jaxcorr.benchmarks import timing
from jaxcorr.core.choices import check_choice
from jaxcorr.ct import io, phantoms, preprocess
from jaxcorr.projection import drr, geometry, rtk

_DEFAULT_CT = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "ct",
                           "visible_human_male_pelvis_hands.nii.gz")
_CT = flags.DEFINE_string("ct", _DEFAULT_CT, "CT file or DICOM folder; a phantom if missing.")
_SIZE = flags.DEFINE_integer("size", 256, "Volume edge after resampling, voxels.")
_DET = flags.DEFINE_integer("detector", 256, "Detector edge, pixels.")
_VIEWS = flags.DEFINE_list("views", ["2", "32"], "Numbers of views rendered per call.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed repetitions (median reported).")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Volume dtype.")
_INTENSITY = flags.DEFINE_enum("intensity", "attenuation", ["attenuation", "bone_sigmoid"],
                               "What is projected: mu (air = 0) or the paper's bone sigmoid.")
_CPU_DEVICES = flags.DEFINE_integer(
    "cpu_devices", 0, "On a CPU host: split views over this many JAX CPU devices (one per "
    "core; 0 = one device). Must be set before JAX starts, which this script does.")
_METHODS = flags.DEFINE_list("methods", list(drr.METHODS), "Kernels to time (drr.METHODS).")
_FUSED_BLOCKS = flags.DEFINE_list(
    "fused_blocks", [], "Rays per program of the fused kernel, one row each (powers of two); "
    "empty: its default (256).")
_RTK = flags.DEFINE_bool("rtk", True, "Time ITK-RTK's Joseph projector too, when installed.")
_MIN_SAMPLE_S = flags.DEFINE_float(
    "min_sample_s", 0.2, "Each timed sample repeats the call until it lasts this long, so "
    "sub-millisecond GPU calls are resolved.")

# nanodrr's fused Triton kernel: 64-84 us per 200^2 DRR (RTX 6000 Ada, its benchmark CSV),
# ~7,000-9,500 views/s scaled to 256^2; the best figure is the one to beat.
NANODRR_VIEWS_PER_S = 9500.0


def x_nanodrr(seconds_per_view):
  """jaxcorr's views/s as a multiple of nanodrr's best (256^2 detectors only)."""
  return timing.sig(1 / seconds_per_view / NANODRR_VIEWS_PER_S)


def _time_kernel(method, batch_size, dev_vol, vol, views, det, *, timed):
  """{'image', 'first' (s), 'per_view' (s, if `timed`)} of one kernel on `views`, or
  {'error'}: a kernel that fails on this platform is reported in its row, and the others
  are still measured (a one-shot GPU run keeps what worked)."""
  n = views.source.shape[0]
  if _CPU_DEVICES.value > 1:
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()), ("data",))
    run = lambda: jax.block_until_ready(drr.project_sharded(
        dev_vol, vol.origin, vol.spacing, views, mesh, height=det, width=det, padded=True,
        method=method, batch_size=batch_size))
  else:
    run = lambda: jax.block_until_ready(drr.project_jit(
        dev_vol, vol.origin, vol.spacing, views, height=det, width=det, padded=True,
        method=method, batch_size=batch_size))
  try:
    t0 = time.perf_counter()
    out = {"image": np.asarray(run())}
    out["first"] = time.perf_counter() - t0                  # compilation + one call
    if timed:
      out["per_view"] = timing.median_seconds(run, _REPEATS.value,
                                              min_sample_s=_MIN_SAMPLE_S.value) / n
    return out
  except Exception as e:  # pylint: disable=broad-except
    traceback.print_exc()
    return {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"}


def _scene(name_or_path, size, intensity):
  """(volume, name, mu): the CT (or the knee phantom) at size^3 and its projected intensity."""
  if os.path.exists(name_or_path):
    vol = io.load_ct(name_or_path)
    name = os.path.basename(name_or_path)
  else:
    vol = phantoms.make_phantom("knee", seed=0, size=size)
    name = "knee phantom (no CT found)"
  vol = vol.replace(data=io.clean_hu(vol.data))
  vol = preprocess.to_cube(vol, size=size)
  mu = (preprocess.attenuation(vol.data) if intensity == "attenuation"
        else preprocess.bone_sigmoid(vol.data))
  return vol, name, mu


def main(argv):
  del argv
  if _CPU_DEVICES.value:
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_force_host_platform_device_count={_CPU_DEVICES.value}")
  methods = [check_choice("--methods", m, drr.METHODS) for m in _METHODS.value]
  kernels = []   # (method, batch_size)
  for m in methods:
    blocks = _FUSED_BLOCKS.value if m == "fused" else []
    kernels += [(m, int(b)) for b in blocks] or [(m, None)]
  vol, name, mu = _scene(_CT.value, _SIZE.value, _INTENSITY.value)
  det = _DET.value
  sid, sdd = 1000.0, 1500.0
  spacing = geometry.fit_pixel_spacing(float(vol.extent.max()), sid=sid, sdd=sdd,
                                       detector_size=(det, det))
  # Padded once, as a bank or a multi-call user holds it; a one-off call pads inside.
  dev_vol = jax.block_until_ready(drr.pad(jnp.asarray(mu, _DTYPE.value)))
  on_cpu = jax.default_backend() == "cpu"
  rows = []
  for n in (int(v) for v in _VIEWS.value):
    angles = np.linspace(0.0, 180.0, n, endpoint=False)
    views = geometry.circular_views(sid=sid, sdd=sdd, gantry_angles=angles,
                                    detector_size=(det, det), pixel_spacing=spacing)
    t_rtk = float("nan")
    if _RTK.value and rtk.available():
      img = rtk.volume_image(mu, vol.origin, vol.spacing)
      geo = rtk.circular_geometry(sid=sid, sdd=sdd, gantry_angles=angles)
      t_rtk = timing.median_seconds(lambda: rtk.joseph_project(
          img, geo, detector_size=(det, det), pixel_spacing=spacing), _REPEATS.value) / n
    results = {k: _time_kernel(*k, dev_vol, vol, views, det, timed=k in kernels)
               for k in dict.fromkeys([("dense", None)] + kernels)}  # dense: the reference
    reference = results["dense", None].get("image")
    for method, batch_size in kernels:
      r = results[method, batch_size]
      if "image" in r and reference is not None:
        r["diff"] = np.abs(r["image"] - reference).max() / max(np.abs(reference).max(), 1e-30)
      rows.append(dict(r, views=n, method=method, batch_size=batch_size, rtk=t_rtk))
  device = jax.devices()[0]
  print(f"DRR benchmark: {name} -> {_SIZE.value}^3 ({_DTYPE.value}, {_INTENSITY.value}), "
        f"{det}^2 detector, "
        f"{len(jax.devices())} x {device.platform} ({device.device_kind}), {os.cpu_count()} CPUs, "
        f"{platform.processor() or platform.machine()}, jax {jax.__version__}")
  print("| views/call | kernel | s/view | views/s | first call s | max abs diff / max vs dense "
        "| RTK Joseph s/view | RTK views/s | ratio RTK/jaxcorr "
        f"| x nanodrr ({NANODRR_VIEWS_PER_S:.0f} views/s at 256^2, GPU) |")
  print("|---|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    kernel = r["method"] + (f", {r['batch_size']} rays/program" if r["batch_size"] else "")
    kernel += " (interpret)" if r["method"] == "fused" and on_cpu else ""
    if "error" in r:
      print(f"| {r['views']} | {kernel} | failed: {r['error']} |  |  |  |  |  |  |  |")
      continue
    t, t_rtk = r["per_view"], r["rtk"]
    print(f"| {r['views']} | {kernel} | {timing.sig(t)} | {timing.sig(1 / t)} | "
          f"{r['first']:.2f} | {r.get('diff', float('nan')):.1e} | {timing.sig(t_rtk)} "
          f"| {timing.sig(1 / t_rtk)} | {timing.sig(t_rtk / t)} "
          f"| {x_nanodrr(t) if det == 256 else '-'} |")
  if _RTK.value and not rtk.available():
    print("ITK-RTK not installed (pip install itk-rtk): its columns are empty.")
  if "fused" in methods and on_cpu:
    print("On a CPU the fused kernel runs in Pallas' interpret mode (a correctness check, "
          "not its speed); it is a GPU kernel.")


if __name__ == "__main__":
  app.run(main)
