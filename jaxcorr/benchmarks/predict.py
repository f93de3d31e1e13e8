"""Prediction latency: `Predictor` (with and without test-time augmentation) and the exported
artifact, after compilation, on whatever device JAX gives.

  python -m jaxcorr.benchmarks.predict [--model=tiny] [--size=64] [--batches=1,32] [--repeats=10]
  python -m jaxcorr.benchmarks.predict --model=paper --size=256 --repeats=3
  python -m jaxcorr.benchmarks.predict --checkpoint=/runs/pretrain      # a trained model

Without --checkpoint the model is a freshly initialised preset of
`jaxcorr.models.build.SIZES` at --size^2 px, patch 16 (weights do not change the
cost), so no training run is needed; with it, `Predictor.from_checkpoint` (its own image size).
Inputs are seeded random studies of --views views, `images[B, N, S, S]` in [0, 1].

For each batch size B and TTA off/on, one `Predictor(model, variables, image_size=(S, S),
patch=16, tta=..., batch_size=B)` is timed on `predictor.predict_images(images)`: the first call
(compilation + one call; with TTA it also runs the 8 passes), then up to --repeats timed calls
(fewer if they exceed --budget seconds, at least one); median and min ms per call and the median
ms per pair (a call holds B studies of P = N (N - 1) / 2 pairs; a 2-view study is one pair).
Then `jaxcorr.inference.export.export` + `load`, called on the same input ([B, N, S, S, 1]),
timed the same way, with max |C_exported - C_jitted| (no TTA).

No peer figure for inference latency exists in ../shared/ANCHORS.md (its PyTorch anchor is a
training throughput), so the table has no ratio column.
"""

from __future__ import annotations

import os
import platform
import sys
import statistics
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from jaxcorr.inference import export as export_lib
from jaxcorr.inference.predictor import Predictor
from jaxcorr.models import build

_CHECKPOINT = flags.DEFINE_string("checkpoint", "", "Run workdir or checkpoint directory; "
                                  "default: a freshly initialised --model.")
_MODEL = flags.DEFINE_enum("model", "tiny", list(build.SIZES), "Model preset.")
_SIZE = flags.DEFINE_integer("size", 64, "Image edge, px (without --checkpoint).")
_PATCH = flags.DEFINE_integer("patch", 16, "Patch size, px (without --checkpoint).")
_VIEWS = flags.DEFINE_integer("views", 2, "Views per study.")
_BATCHES = flags.DEFINE_list("batches", ["1", "32"], "Batch sizes (studies per call).")
_TTA = flags.DEFINE_list("tta", ["off", "on"], "Test-time augmentation settings to time.")
_EXPORT = flags.DEFINE_bool("export", True, "Also time the exported artifact.")
_REPEATS = flags.DEFINE_integer("repeats", 10, "Timed calls per configuration (after the first).")
_BUDGET = flags.DEFINE_float("budget", 120.0, "Seconds of timed calls per configuration, "
                             "after which fewer than --repeats are taken (at least one).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the inputs and the initialisation.")


def _time_calls(fn, repeats: int, budget: float):
  """(first call s, [timed call s]) of `fn()`: one first (compiling) call, then timed calls."""
  t0 = time.perf_counter()
  out = fn()
  first = time.perf_counter() - t0
  times = []
  start = time.perf_counter()
  while len(times) < max(repeats, 1):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
    if time.perf_counter() - start > budget:
      break
  return first, times, out


def _cpu_name() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def _predictor_factory():
  """(describe, make(tta, batch) -> Predictor) for --checkpoint or a fresh --model."""
  if _CHECKPOINT.value:
    base = Predictor.from_checkpoint(_CHECKPOINT.value)
    make = lambda tta, b: Predictor(base.model, base.variables, image_size=base.image_size,
                                    patch=base.patch, tta=tta, batch_size=b,
                                    source=base.source)
    return f"checkpoint {_CHECKPOINT.value}", base.image_size, base.patch, make
  size, patch = _SIZE.value, _PATCH.value
  model = build.from_size(_MODEL.value)
  dummy = jnp.zeros((1, _VIEWS.value, size, size, 1), jnp.float32)
  variables = jax.jit(lambda key, x: model.init(key, x, train=False))(
      jax.random.key(_SEED.value), dummy)
  n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(variables["params"]))
  make = lambda tta, b: Predictor(model, variables, image_size=(size, size), patch=patch,
                                  tta=tta, batch_size=b, source=f"preset {_MODEL.value}")
  return (f"'{_MODEL.value}' preset, freshly initialised ({n_params / 1e6:.1f}M params)",
          (size, size), patch, make)


def main(argv):
  del argv
  load_start = os.getloadavg()
  describe, image_size, patch, make = _predictor_factory()
  n = _VIEWS.value
  pairs = n * (n - 1) // 2
  rng = np.random.default_rng(_SEED.value)
  rows = []
  for b in (int(v) for v in _BATCHES.value):
    images = rng.uniform(0.0, 1.0, (b, n, *image_size)).astype(np.float32)
    jitted = None
    for tta in (v == "on" for v in _TTA.value):
      predictor = make(tta, b)
      first, times, out = _time_calls(lambda p=predictor: p.predict_images(images),
                                      _REPEATS.value, _BUDGET.value)
      if not tta:
        jitted = out
      rows.append(("Predictor, TTA (8 passes)" if tta else "Predictor (jitted forward)",
                   b, first, times, ""))
      print(f"  done: batch {b}, TTA {'on' if tta else 'off'}: first {first:.2f} s, "
            f"median {statistics.median(times) * 1e3:.1f} ms/call", file=sys.stderr, flush=True)
    if _EXPORT.value:
      with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        export_lib.export(make(False, b), tmp, n_views=n)
        t_export = time.perf_counter() - t0
        forward = export_lib.load(tmp)
        views = images[..., None]
        first, times, out = _time_calls(lambda: forward(views), _REPEATS.value, _BUDGET.value)
      if jitted is None:
        jitted = make(False, b).predict_images(images)
      err = float(np.abs(out - jitted).max())
      rows.append(("exported artifact (export + load)", b, first, times,
                   f"export {t_export:.1f} s; max abs diff vs jitted {err:.1e}"))
      print(f"  done: batch {b}, exported: first {first:.2f} s, "
            f"median {statistics.median(times) * 1e3:.1f} ms/call", file=sys.stderr, flush=True)
  _print(describe, image_size, patch, n, pairs, rows, load_start)


def _print(describe, image_size, patch, n, pairs, rows, load_start):
  device = jax.devices()[0]
  load_end = os.getloadavg()
  print(f"Prediction latency: {describe}, {image_size[0]}x{image_size[1]} px, patch {patch} "
        f"({image_size[0] // patch}x{image_size[1] // patch} grid), {n} views = {pairs} pair(s) "
        f"per study; {device.platform} ({device.device_kind}), {len(jax.devices())} device(s), "
        f"{os.cpu_count()} CPUs, {_cpu_name()}; jax {jax.__version__}; load average "
        f"{load_start[0]:.1f} at start, {load_end[0]:.1f} at end")
  print("| what | batch | first call s (compile + 1 call) | median ms/call | min ms/call "
        "| median ms/pair | pairs/s | timed calls | notes |")
  print("|---|---|---|---|---|---|---|---|---|")
  for what, b, first, times, notes in rows:
    med, low = statistics.median(times), min(times)
    per_pair = med / (b * pairs)
    print(f"| {what} | {b} | {first:.2f} | {med * 1e3:.1f} | {low * 1e3:.1f} "
          f"| {per_pair * 1e3:.2f} | {1.0 / per_pair:.1f} | {len(times)} | {notes} |")
  print("Peer: no inference-latency figure exists in ../shared/ANCHORS.md (the official PyTorch "
        "model is anchored for training throughput only), so there is no ratio column.")


if __name__ == "__main__":
  app.run(main)
