"""Input pipeline throughput against the training step's consumption, in one run.

  python -m jaxcorr.benchmarks.input_pipeline [--preset=default] [--ct=PATH] [--batches=5]

Prints samples/s of: drawing recipes on the host (Grain, threads), rendering them (DRRs +
labels, jitted on the default device), the whole on-the-fly path, reading + decoding offline
ArrayRecord shards (2 worker processes), and the train step of the preset's model; the last
column says whether training would wait for data. Also projects the hours to generate the
paper's 207,600 samples at the measured rendering rate.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import jax
from absl import app, flags

from jaxcorr import jobs
from jaxcorr.core import sharding
from jaxcorr.data import from_config, pipeline, records, samples, splits as splits_lib
from jaxcorr.tasks import correspondence
from jaxcorr.train import loop, state as state_lib

_PRESET = flags.DEFINE_string("preset", "default", "configs/pretrain.py preset.")
_CT = flags.DEFINE_string("ct", "", "CT folder (default: the preset's phantoms).")
_BATCHES = flags.DEFINE_integer("batches", 5, "Timed batches per measurement.")
_VOLUMES = flags.DEFINE_integer("volumes", 2, "Volumes in the bank (phantoms or CTs).")

PAPER_SAMPLES = 207_600


def _rate(fn, n_batches, batch_size):
  fn()  # warm-up / compile
  t0 = time.perf_counter()
  for _ in range(n_batches):
    fn()
  return n_batches * batch_size / (time.perf_counter() - t0)


def main(argv):
  del argv
  sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
  from configs import pretrain  # pylint: disable=import-outside-toplevel
  config = pretrain.get_config(_PRESET.value)
  config.ct.path = _CT.value
  config.data.phantoms = _VOLUMES.value
  bsz, nb = config.batch_size, _BATCHES.value
  names = splits_lib.list_volumes(config)[:_VOLUMES.value]
  bank = from_config.build_bank(names, config)
  maker = from_config.recipe_maker(config, bank)
  dev_bank = samples.bank_arrays(bank, from_config.volume_dtype(config))
  framing = from_config.framing(config)
  projector = from_config.projector(config)
  rows = []

  ds = pipeline.make_dataset(mode="on_the_fly", seed=0, batch_size=bsz, recipe_maker=maker,
                             n_volumes=len(bank), threads=config.data.threads)
  host_iter = iter(ds)
  rows.append(("recipes (host, Grain threads)", _rate(lambda: next(host_iter), nb, bsz)))
  recipes = next(host_iter)
  render = lambda: jax.block_until_ready(samples.render_batch(
      dev_bank, {k: recipes[k] for k in samples.RECIPE_KEYS}, framing=framing,
      threshold=config.labels.threshold, projector=projector))
  render_rate = _rate(render, nb, bsz)
  rows.append((f"rendering DRRs + labels ({jax.devices()[0].platform}, {projector.method} "
               f"kernel)", render_rate))
  full = pipeline.DeviceBatches(ds, bank=dev_bank, framing=framing,
                                threshold=config.labels.threshold,
                                augmentation=from_config.augmentation(config, True), render=True,
                                projector=projector)
  rows.append(("on the fly, end to end (+ augmentation)",
               _rate(lambda: jax.block_until_ready(next(full)), nb, bsz)))

  with tempfile.TemporaryDirectory() as tmp:
    gen = pretrain.get_config(_PRESET.value)
    gen.job = "generate"
    gen.data.phantoms = _VOLUMES.value
    if _CT.value:  # the same volumes as the bank above, as a list file
      gen.ct.path = os.path.join(tmp, "volumes.txt")
      with open(gen.ct.path, "w") as f:
        f.write("\n".join(names) + "\n")
    gen.data.splits = (1.0, 0.0, 0.0)
    gen.generate = dict(samples_per_volume=bsz * 2, render_batch=min(bsz, 8),
                        views_dtype="float16")
    jobs.run(gen, os.path.join(tmp, "ds"))
    shards = records.shard_paths(os.path.join(tmp, "ds"), "train")
    off = iter(pipeline.make_dataset(mode="offline", seed=0, batch_size=bsz, shards=shards,
                                     workers=2))
    rows.append(("offline shards, read + decode (2 workers)", _rate(lambda: next(off), nb, bsz)))

  mesh = sharding.make_mesh()
  task = correspondence.CorrespondenceTask.__new__(correspondence.CorrespondenceTask)
  task.config, task.mesh, task.model = config, mesh, correspondence.build_model(config.model)
  tx = state_lib.make_optimizer(config.optim, 1000)
  state, shards_ = loop.init_state(task, tx, mesh, seed=0)
  step = jax.jit(lambda s, b, k: loop._train_step(task, tx, s, b, k),  # pylint: disable=protected-access
                 donate_argnums=(0,))
  batch = {k: v for k, v in next(full).items() if k in ("views", "corr")}
  holder = {"s": state}

  def train_step():
    holder["s"], m = step(holder["s"], batch, jax.random.key(0))
    jax.block_until_ready(m["loss"])

  step_rate = _rate(train_step, max(1, nb // 2), bsz)
  device = jax.devices()[0]
  print(f"Input pipeline: pretrain:{_PRESET.value}, {len(bank)} volumes of "
        f"{bank.images.shape[1]}^3, {config.views.n_views} views of "
        f"{config.views.detector_size[0]}^2, batch {bsz}, {device.platform} "
        f"({device.device_kind}), {os.cpu_count()} CPUs")
  print("| stage | samples/s | x train step |")
  print("|---|---|---|")
  for name, rate in rows:
    print(f"| {name} | {rate:.1f} | {rate / step_rate:.2f} |")
  print(f"| train step ({config.model.backbone}, {config.model.attention}) | {step_rate:.2f} | 1 |")
  print(f"Generating the paper's {PAPER_SAMPLES:,} samples at {render_rate:.1f} samples/s: "
        f"{PAPER_SAMPLES / render_rate / 3600:.1f} h on this device.")
  print("Input-bound" if rows[2][1] < step_rate else "Not input-bound",
        "on the fly for this preset on this machine.")


if __name__ == "__main__":
  app.run(main)
