"""Correspondence labels: jaxcorr's fast path against per-voxel loops, in one run.

  python -m jaxcorr.benchmarks.correspondence [--ct=PATH] [--views=2,4] [--size=256]

Loads a real CT (default: the Visible Human pelvis from ../shared/data, else a phantom), resamples
it to size^3 (`to_cube`), maps HU to the label intensity bone_sigmoid(hu, x0=850), pools it to a
(size / k)^3 grid once, and prints a markdown table of seconds per sample (one sample = the
[P, L, L] labels of N views of the CT on a detector^2 detector, k = 16) for:
  fast        `labels.correspondence_jit` (method 'sparse'), median after compilation;
  fast, batch the same vmapped over --batch samples (views turned by random angles), per sample;
  reference   `labels.correspondence_reference` (one `drr.project` per voxel above the threshold);
  RTK loop    the authors' loop: one ITK-RTK Joseph projection per coarse voxel (all of them) of
              a one-voxel coarse image onto the patch grid, then jaxcorr's normalisation and max of
              outer products in NumPy for the voxels above the threshold.
Loops slower than --budget seconds are timed on an evenly spread subset of voxels and
extrapolated linearly (the table says so). Each loop's labels on the voxels it ran are compared
with the fast path restricted to the same voxels (max |difference|).
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
from jaxcorr.projection import geometry, labels, rtk

_DEFAULT_CT = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "ct",
                           "visible_human_male_pelvis_hands.nii.gz")
_CT = flags.DEFINE_string("ct", _DEFAULT_CT, "CT file or DICOM folder; a phantom if missing.")
_SIZE = flags.DEFINE_integer("size", 256, "Volume edge after resampling, voxels.")
_DET = flags.DEFINE_integer("detector", 256, "Detector edge, pixels.")
_K = flags.DEFINE_integer("k", 16, "Patch size, pixels (and pooling factor).")
_VIEWS = flags.DEFINE_list("views", ["2", "4"], "Numbers of views per sample.")
_BATCH = flags.DEFINE_integer("batch", 8, "Samples per vmapped call of the batched fast path.")
_REPEATS = flags.DEFINE_integer("repeats", 20, "Timed repetitions of the fast path (median).")
_BUDGET = flags.DEFINE_float("budget", 30.0, "Seconds above which a loop runs on a subset.")

_SID, _SDD = 1000.0, 1500.0



def _subset(voxels, count):
  """`count` voxels spread evenly over the list (all of them when count >= len)."""
  if count >= len(voxels):
    return voxels
  return [voxels[i] for i in np.linspace(0, len(voxels) - 1, count).round().astype(int)]


def _timed_loop(run, voxels, budget):
  """Runs `run(subset)` on a probe, then on as many voxels as the budget allows.

  Returns:
    (seconds extrapolated to all voxels, voxels run, labels of the last run).
  """
  probe = _subset(voxels, min(32, len(voxels)))
  t0 = time.perf_counter()
  run(probe)
  per_voxel = (time.perf_counter() - t0) / max(len(probe), 1)
  chosen = _subset(voxels, max(len(probe), int(budget / max(per_voxel, 1e-9))))
  t0 = time.perf_counter()
  out = run(chosen)
  seconds = time.perf_counter() - t0
  return seconds * len(voxels) / max(len(chosen), 1), chosen, out


def _masked(weights, voxels):
  """The weights kept on `voxels` only (and 0 elsewhere)."""
  out = np.zeros_like(weights)
  for v in voxels:
    out[v] = weights[v]
  return out


def _rtk_loop(weights, c_origin, c_spacing, n_views, pixel_spacing, threshold):
  """The per-voxel ITK-RTK loop (`rtk.correspondence_loop`) as a function of its voxels."""
  k = _K.value
  h = _DET.value // k
  angles = np.linspace(0.0, 180.0, n_views, endpoint=False)
  geo = rtk.circular_geometry(sid=_SID, sdd=_SDD, gantry_angles=angles)
  return lambda voxels: rtk.correspondence_loop(
      weights, c_origin, c_spacing, geo, patch_grid=(h, h), patch_spacing=k * pixel_spacing,
      threshold=threshold, voxels=voxels)


def _load():
  if os.path.exists(_CT.value):
    vol, name = io.load_ct(_CT.value), os.path.basename(_CT.value)
  else:
    vol, name = phantoms.make_phantom("knee", seed=0, size=_SIZE.value), "knee phantom (no CT)"
  vol = preprocess.to_cube(vol, size=_SIZE.value)
  return vol, preprocess.bone_sigmoid(vol.data, x0=850.0), name


def main(argv):
  del argv
  vol, intensity, name = _load()
  det, k, threshold = _DET.value, _K.value, labels.DEFAULT_THRESHOLD
  pool = jax.jit(labels.pool_weights, static_argnums=(1, 2))
  dev = jnp.asarray(intensity)
  t_pool = timing.median_seconds(lambda: jax.block_until_ready(pool(dev, k, "mean")), 5)
  weights = pool(dev, k, "mean")
  c_origin, c_spacing = labels.coarse_grid(vol.origin, vol.spacing, k)
  w_np = np.asarray(weights)
  active = [tuple(int(i) for i in v) for v in zip(*np.nonzero(w_np > threshold))]
  every = [tuple(int(i) for i in v) for v in np.ndindex(*w_np.shape)]
  pixel_spacing = geometry.fit_pixel_spacing(float(vol.extent.max()), sid=_SID, sdd=_SDD,
                                             detector_size=(det, det))
  shape = dict(height=det, width=det, k=k)
  rows = []
  for n in (int(v) for v in _VIEWS.value):
    angles = np.linspace(0.0, 180.0, n, endpoint=False)
    views = geometry.circular_views(sid=_SID, sdd=_SDD, gantry_angles=angles,
                                    detector_size=(det, det), pixel_spacing=pixel_spacing)
    span = labels.footprint_span(w_np.shape, c_origin, c_spacing, views, **shape)
    fast = lambda wts, v=views: jax.block_until_ready(
        labels.correspondence_jit(wts, c_origin, c_spacing, v, **shape))
    t_fast = timing.median_seconds(lambda: fast(weights), _REPEATS.value)
    t_batch = _batched_seconds(weights, c_origin, c_spacing, angles, pixel_spacing, shape)

    t_ref, ref_vox, ref_c = _timed_loop(
        lambda vox, v=views: labels.correspondence_reference(
            _masked(w_np, vox), c_origin, c_spacing, v, threshold=threshold, **shape),
        active, _BUDGET.value)
    err_ref = np.abs(ref_c - np.asarray(fast(jnp.asarray(_masked(w_np, ref_vox))))).max()
    t_rtk = err_rtk = float("nan")
    rtk_vox = []
    if rtk.available():
      t_rtk, rtk_vox, rtk_c = _timed_loop(
          _rtk_loop(w_np, np.asarray(c_origin), np.asarray(c_spacing), n, pixel_spacing,
                    threshold), every, _BUDGET.value)
      active_run = [v for v in rtk_vox if w_np[v] > threshold]
      err_rtk = np.abs(rtk_c - np.asarray(fast(jnp.asarray(_masked(w_np, active_run))))).max()
    rows.append((n, span, t_fast, t_batch, t_ref, len(ref_vox), err_ref, t_rtk, len(rtk_vox),
                 err_rtk))
  _print(name, vol, w_np, active, t_pool, rows)


def _batched_seconds(weights, c_origin, c_spacing, angles, pixel_spacing, shape):
  """Per-sample seconds of the fast path vmapped over a batch of turned views of one CT."""
  b = _BATCH.value
  turn = np.random.default_rng(0).uniform(0.0, 360.0, (b, 1))
  views = geometry.circular_views(sid=_SID, sdd=_SDD, gantry_angles=angles[None] + turn,
                                  detector_size=(shape["height"], shape["width"]),
                                  pixel_spacing=pixel_spacing)
  tile = lambda x: jnp.broadcast_to(x, (b,) + jnp.shape(x))
  run = jax.jit(lambda w, o, s, v: labels.correspondence_batch(w, o, s, v, **shape))
  args = (tile(weights), tile(c_origin), tile(c_spacing), views)
  return timing.median_seconds(lambda: jax.block_until_ready(run(*args)), 5) / b


def _print(name, vol, w_np, active, t_pool, rows):
  device = jax.devices()[0]
  k = _K.value
  h = _DET.value // k
  print(f"Correspondence labels: {name} -> {_SIZE.value}^3 -> {w_np.shape[0]}^3 coarse voxels "
        f"(k = {k}, {len(active)} of {w_np.size} above the threshold "
        f"{labels.DEFAULT_THRESHOLD}), {_DET.value}^2 detector = {h}x{h} patches; "
        f"{device.platform} ({device.device_kind}), {os.cpu_count()} CPUs, "
        f"{platform.processor() or platform.machine()}")
  print(f"Pooling the intensity volume (once per CT): {t_pool * 1e3:.1f} ms.")
  print("| views | footprint span | fast s/sample | fast batched s/sample | reference s/sample "
        "| RTK loop s/sample | reference / fast | RTK / fast |")
  print("|---|---|---|---|---|---|---|---|")
  for n, span, tf, tb, tr, nr, er, tk, nk, ek in rows:
    ref = f"{tr:.3f}" + ("" if nr == len(active) else f" (extrapolated from {nr} voxels)")
    rtk_cell = "n/a"
    if not np.isnan(tk):
      rtk_cell = f"{tk:.3f}" + ("" if nk == w_np.size else f" (extrapolated from {nk} voxels)")
    print(f"| {n} | {span} | {tf:.5f} | {tb:.5f} (batch {_BATCH.value}) | {ref} | {rtk_cell} "
          f"| {tr / tf:.0f} | {tk / tf:.0f} |")
  print("Max |C - C_fast| on the voxels each loop ran: "
        + "; ".join(f"{n} views: reference {er:.1e}, RTK {ek:.1e}"
                    for n, _, _, _, _, _, er, _, _, ek in rows) + ".")
  print(f"The reference loops over the {len(active)} voxels above the threshold; the RTK loop, "
        f"like the authors', projects all {w_np.size} voxels.")
  if not rtk.available():
    print("ITK-RTK not installed (pip install itk-rtk): its column is empty.")


if __name__ == "__main__":
  app.run(main)
