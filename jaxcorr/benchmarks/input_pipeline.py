"""Input pipeline throughput against the training step's consumption, in one run.

  python -m jaxcorr.benchmarks.input_pipeline [--preset=default] [--ct=PATH] [--batches=5]
      [--settings=16:float32,64:bfloat16] [--drr_methods=auto] [--recipes=auto]
      [--offline=true]

For each setting (batch size : the model's compute dtype) prints samples/s of: drawing
recipes on the host (Grain, threads), rendering them (DRRs + labels, jitted on the default
device) and the whole on-the-fly path as training runs it (views drawn where `data.recipes`
says: on the device on GPUs and TPUs) with each DRR kernel of `--drr_methods`, reading +
decoding offline ArrayRecord shards (2 worker processes), and the train step of the preset's
model in that dtype; the last column is each rate as a multiple of the train step's, and a
verdict per setting and kernel says whether on-the-fly training would wait for data. Also
projects the hours to generate the paper's 207,600 samples at the first setting's rendering
rate. The peer (`../shared/ANCHORS.md`) is the official PyTorch model's train step, measured
separately: 0.49 samples/s at batch 16 on the 2-core CPU; 233 (fp32) and 206 (bf16 autocast)
samples/s on one H200.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback

import jax
import jax.numpy as jnp
from absl import app, flags

from jaxcorr import jobs
from jaxcorr.benchmarks import timing
from jaxcorr.core import sharding
from jaxcorr.core.choices import check_choice
from jaxcorr.data import (device_recipes, from_config, pipeline, records, samples,
                          splits as splits_lib)
from jaxcorr.models import build
from jaxcorr.projection import drr
from jaxcorr.tasks import correspondence
from jaxcorr.train import loop, state as state_lib

_PRESET = flags.DEFINE_string("preset", "default", "configs/pretrain.py preset.")
_CT = flags.DEFINE_string("ct", "", "CT folder (default: the preset's phantoms).")
_BATCHES = flags.DEFINE_integer("batches", 5, "Timed batches per measurement.")
_VOLUMES = flags.DEFINE_integer("volumes", 2, "Volumes in the bank (phantoms or CTs).")
_SETTINGS = flags.DEFINE_list(
    "settings", ["16:float32", "64:bfloat16"],
    "batch:compute dtype pairs, one table section each (dtype: float32 | bfloat16).")
_DRR_METHODS = flags.DEFINE_list("drr_methods", ["auto"],
                                 "DRR kernels for the rendering rows (drr.method values).")
_RECIPES = flags.DEFINE_string("recipes", "", "data.recipes for the end-to-end rows (auto | "
                               "host | device); empty: the preset's.")
_OFFLINE = flags.DEFINE_bool("offline", True, "Also generate and read offline shards.")

PAPER_SAMPLES = 207_600


def _rate(fn, n_batches, batch_size):
  fn()  # warm-up / compile
  t0 = time.perf_counter()
  for _ in range(n_batches):
    fn()
  return n_batches * batch_size / (time.perf_counter() - t0)


def parse_settings(values) -> list[tuple[int, str]]:
  """'16:float32' -> (16, 'float32'), checked."""
  out = []
  for v in values:
    batch, sep, dtype = v.partition(":")
    if not sep or not batch.isdigit() or int(batch) < 1:
      raise ValueError(f"--settings entry {v!r} is not batch:dtype (e.g. 64:bfloat16).")
    out.append((int(batch), check_choice("--settings dtype", dtype, ("float32", "bfloat16"))))
  return out


def _config(batch_size=None, dtype=None, method=None):
  from configs import pretrain  # pylint: disable=import-outside-toplevel
  config = pretrain.get_config(_PRESET.value)
  config.ct.path = _CT.value
  config.data.phantoms = _VOLUMES.value
  if batch_size is not None:
    config.batch_size = batch_size
  if dtype is not None:
    config.model.dtype = dtype
  if method is not None:
    config.drr.method = method
  if _RECIPES.value:
    config.data.recipes = _RECIPES.value
  return config


def _offline_shards(tmp, names, batch_size):
  """A generate job's train shards of the bank's volumes, `2 x batch_size` samples each."""
  gen = _config()
  gen.job = "generate"
  if _CT.value:  # the same volumes as the bank, as a list file
    gen.ct.path = os.path.join(tmp, "volumes.txt")
    with open(gen.ct.path, "w") as f:
      f.write("\n".join(names) + "\n")
  gen.data.splits = (1.0, 0.0, 0.0)
  gen.generate = dict(samples_per_volume=batch_size * 2, render_batch=min(batch_size, 8),
                      views_dtype="float16")
  jobs.run(gen, os.path.join(tmp, "ds"))
  return records.shard_paths(os.path.join(tmp, "ds"), "train")


def _train_step_rate(config, n_batches):
  """samples/s of the preset's train step in config.model.dtype (on a batch of zeros of the
  task's shapes: the step's cost does not depend on the values)."""
  mesh = sharding.make_mesh()
  task = correspondence.CorrespondenceTask.__new__(correspondence.CorrespondenceTask)
  task.config, task.mesh, task.model = config, mesh, build.build_model(config.model)
  tx = state_lib.make_optimizer(config.optim, 1000)
  state, _ = loop.init_state(task, tx, mesh, seed=0)
  step = jax.jit(lambda s, b, k: loop._train_step(task, tx, s, b, k),  # pylint: disable=protected-access
                 donate_argnums=(0,))
  batch = {k: jnp.zeros(v.shape, v.dtype) for k, v in task.batch_spec().items()}
  holder = {"s": state}

  def train_step():
    holder["s"], m = step(holder["s"], batch, jax.random.key(0))
    jax.block_until_ready(m["loss"])

  return _rate(train_step, max(1, n_batches // 2), config.batch_size)


def _measure(bsz, dtype, bank, dev_bank, shards, nb):
  """Rows (batch, dtype, kernel, stage, samples/s) of one setting, its train step rate, and
  its first kernel's rendering rate."""
  config = _config(bsz, dtype)
  maker = from_config.recipe_maker(config, bank)
  framing = from_config.framing(config)
  ds = pipeline.make_dataset(mode="on_the_fly", seed=0, batch_size=bsz, recipe_maker=maker,
                             n_volumes=len(bank), threads=config.data.threads)
  host_iter = iter(ds)
  rows = [("-", "recipes (host, Grain threads)", _rate(lambda: next(host_iter), nb, bsz))]
  recipes = {k: v for k, v in next(host_iter).items() if k in samples.RECIPE_KEYS}
  # End to end as training runs it: the views drawn where config.data.recipes says (on the
  # device, the host sends volume indices and seeds only).
  spec = from_config.device_recipe_spec(config)
  e2e_ds = ds if spec is None else pipeline.make_dataset(
      mode="on_the_fly", seed=0, batch_size=bsz, recipe_maker=device_recipes.seeds_only,
      n_volumes=len(bank), threads=config.data.threads)
  where = "host" if spec is None else "device"
  e2e = f"on the fly, end to end (+ augmentation, recipes on the {where})"
  render_rate = None
  for method in _DRR_METHODS.value:
    projector = from_config.projector(_config(bsz, dtype, method))
    try:
      render = lambda: jax.block_until_ready(samples.render_batch(
          dev_bank, recipes, framing=framing, threshold=config.labels.threshold,
          projector=projector))
      rate = _rate(render, nb, bsz)
      render_rate = render_rate or rate
      rows.append((projector.method, f"rendering DRRs + labels ({jax.default_backend()})",
                   rate))
      full = pipeline.DeviceBatches(e2e_ds, bank=dev_bank, framing=framing,
                                    threshold=config.labels.threshold,
                                    augmentation=from_config.augmentation(config, True),
                                    render=True, projector=projector, recipes=spec)
      rows.append((projector.method, e2e,
                   _rate(lambda: jax.block_until_ready(next(full)), nb, bsz)))
    except Exception as e:  # pylint: disable=broad-except
      # A kernel that fails on this platform is reported in the table; the rest is measured.
      traceback.print_exc()
      rows.append((projector.method, f"failed: {type(e).__name__}: "
                   f"{str(e).splitlines()[0][:160] if str(e) else ''}", float("nan")))
  if shards:
    off = iter(pipeline.make_dataset(mode="offline", seed=0, batch_size=bsz, shards=shards,
                                     workers=2))
    rows.append(("-", "offline shards, read + decode (2 workers)",
                 _rate(lambda: next(off), nb, bsz)))
  step_rate = _train_step_rate(config, nb)
  rows.append(("-", f"train step ({config.model.backbone}, {config.model.attention}, {dtype})",
               step_rate))
  return [(bsz, dtype) + r for r in rows], step_rate, render_rate


def main(argv):
  del argv
  sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
  settings = parse_settings(_SETTINGS.value)
  for method in _DRR_METHODS.value:
    check_choice("--drr_methods", method, ("auto",) + drr.METHODS)
  config = _config()
  names = splits_lib.list_volumes(config)[:_VOLUMES.value]
  bank = from_config.build_bank(names, config)
  dev_bank = samples.bank_arrays(bank, from_config.volume_dtype(config))
  nb = _BATCHES.value
  rows, verdicts, render_rate = [], [], None
  with tempfile.TemporaryDirectory() as tmp:
    shards = (_offline_shards(tmp, names, max(b for b, _ in settings)) if _OFFLINE.value
              else ())
    for bsz, dtype in settings:
      got, step_rate, rate = _measure(bsz, dtype, bank, dev_bank, shards, nb)
      render_rate = render_rate or rate
      rows += [r + (step_rate,) for r in got]
      verdicts += [f"Batch {bsz}, {dtype}, {kernel} kernel: "
                   f"{'input-bound' if end_to_end < step_rate else 'not input-bound'} on the "
                   f"fly (end to end {end_to_end / step_rate:.2f}x the train step)."
                   for _, _, kernel, stage, end_to_end in got if stage.startswith("on the fly")]
  device = jax.devices()[0]
  print(f"Input pipeline: pretrain:{_PRESET.value}, {len(bank)} volumes of "
        f"{bank.images.shape[1]}^3, {config.views.n_views} views of "
        f"{config.views.detector_size[0]}^2, {device.platform} ({device.device_kind}), "
        f"{os.cpu_count()} CPUs, jax {jax.__version__}")
  print("| batch | compute | kernel | stage | samples/s | x train step |")
  print("|---|---|---|---|---|---|")
  for bsz, dtype, kernel, stage, rate, step_rate in rows:
    print(f"| {bsz} | {dtype} | {kernel} | {stage} | {timing.sig(rate)} "
          f"| {timing.sig(rate / step_rate)} |")
  if render_rate:
    print(f"Generating the paper's {PAPER_SAMPLES:,} samples at {timing.sig(render_rate)} "
          f"samples/s: {PAPER_SAMPLES / render_rate / 3600:.1f} h on this device.")
  for line in verdicts:
    print(line)


if __name__ == "__main__":
  app.run(main)
