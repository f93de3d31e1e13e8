"""DRR throughput: jaxcorr's Joseph kernel side by side with ITK-RTK's, in one run.

  python -m jaxcorr.benchmarks.drr [--ct=PATH] [--size=256] [--detector=256] [--views=2,32]

Renders a real CT (default: the Visible Human pelvis from ../shared/data, else a phantom),
resampled to size^3 as the render job does, onto a detector^2 detector, and prints the median
seconds per view and views/s of each projector for each batch of views, and the ratio
(RTK time / jaxcorr time: above 1 means jaxcorr is faster). jaxcorr runs its default
'clipped' marcher (the content box found inside each call) and, for reference, the 'dense'
one that walks every ray through all planes, each with its first-call (compilation) time,
and the largest difference between their images relative to the image maximum. Results go
to docs/benchmarks.md.
"""

from __future__ import annotations

import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from jaxcorr.benchmarks import timing
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

def main(argv):
  del argv
  if _CPU_DEVICES.value:
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_force_host_platform_device_count={_CPU_DEVICES.value}")
  if os.path.exists(_CT.value):
    vol = io.load_ct(_CT.value)
    name = os.path.basename(_CT.value)
  else:
    vol = phantoms.make_phantom("knee", seed=0, size=_SIZE.value)
    name = "knee phantom (no CT found)"
  vol = vol.replace(data=io.clean_hu(vol.data))
  vol = preprocess.to_cube(vol, size=_SIZE.value)
  mu = (preprocess.attenuation(vol.data) if _INTENSITY.value == "attenuation"
        else preprocess.bone_sigmoid(vol.data))
  det = _DET.value
  sid, sdd = 1000.0, 1500.0
  spacing = geometry.fit_pixel_spacing(float(vol.extent.max()), sid=sid, sdd=sdd,
                                       detector_size=(det, det))
  # Padded once, as a bank or a multi-call user holds it; a one-off call pads inside.
  dev_vol = jax.block_until_ready(drr.pad(jnp.asarray(mu, _DTYPE.value)))
  rows = []
  for n in (int(v) for v in _VIEWS.value):
    angles = np.linspace(0.0, 180.0, n, endpoint=False)
    views = geometry.circular_views(sid=sid, sdd=sdd, gantry_angles=angles,
                                    detector_size=(det, det), pixel_spacing=spacing)
    times, first, images = {}, {}, {}
    for method in ("clipped", "dense"):
      if _CPU_DEVICES.value > 1:
        mesh = jax.sharding.Mesh(np.asarray(jax.devices()), ("data",))
        run = lambda: jax.block_until_ready(drr.project_sharded(
            dev_vol, vol.origin, vol.spacing, views, mesh, height=det, width=det, padded=True,
            method=method))
      else:
        run = lambda: jax.block_until_ready(drr.project_jit(
            dev_vol, vol.origin, vol.spacing, views, height=det, width=det, padded=True,
            method=method))
      t0 = time.perf_counter()
      images[method] = np.asarray(run())
      first[method] = time.perf_counter() - t0          # compilation + one call
      times[method] = timing.median_seconds(run, _REPEATS.value) / n
    diff = (np.abs(images["clipped"] - images["dense"]).max()
            / max(np.abs(images["dense"]).max(), 1e-30))
    t_rtk = float("nan")
    if rtk.available():
      img = rtk.volume_image(mu, vol.origin, vol.spacing)
      geo = rtk.circular_geometry(sid=sid, sdd=sdd, gantry_angles=angles)
      t_rtk = timing.median_seconds(lambda: rtk.joseph_project(
          img, geo, detector_size=(det, det), pixel_spacing=spacing), _REPEATS.value) / n
    rows.append((n, times["clipped"], first["clipped"], times["dense"], first["dense"], diff,
                 t_rtk))
  device = jax.devices()[0]
  print(f"DRR benchmark: {name} -> {_SIZE.value}^3 ({_DTYPE.value}, {_INTENSITY.value}), "
        f"{det}^2 detector, "
        f"{len(jax.devices())} x {device.platform} ({device.device_kind}), {os.cpu_count()} CPUs, "
        f"{platform.processor() or platform.machine()}")
  print("| views/call | jaxcorr s/view | jaxcorr views/s | first call s | dense s/view "
        "| dense first call s | max abs diff / max | RTK Joseph s/view | RTK views/s "
        "| ratio RTK/jaxcorr |")
  print("|---|---|---|---|---|---|---|---|---|---|")
  for n, tj, fj, td, fd, diff, tr in rows:
    print(f"| {n} | {tj:.4f} | {1 / tj:.1f} | {fj:.2f} | {td:.4f} | {fd:.2f} | {diff:.1e} "
          f"| {tr:.4f} | {1 / tr:.1f} | {tr / tj:.2f} |")
  if not rtk.available():
    print("ITK-RTK not installed (pip install itk-rtk): its columns are empty.")


if __name__ == "__main__":
  app.run(main)
