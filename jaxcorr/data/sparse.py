"""Samples with sparse labels: real radiograph studies annotated with a few patch pairs.

A study of the annotation file (`jaxcorr.xray.annotations`, docs/annotations.md) becomes one
sample, loaded once and kept in host memory (a few hundred studies at 256^2 are megabytes):

  views   float32 [N, H, W]   each view read (`xray.io`) and letterboxed to the model's input
  pair    int32   [K]         index p into labels.pair_indices(N) of each annotated entry
  row     int32   [K]         patch of view i (row of C_p)
  col     int32   [K]         patch of view j (column of C_p)
  label   float32 [K]         1 corresponding, 0 not
  mask    bool    [K]         True on the annotated entries; K = max_pairs, the rest is padding

Only the masked entries enter the loss and the metrics (`gather`, `masked_mse`): an
unannotated patch pair says nothing, it is not a negative.

The Grain chain (`make_dataset`) shuffles sample indices, draws an augmentation seed per
record, and batches; `finish` completes a batch on the device (radiometric augmentation
during training), through `pipeline.Batches` like every task's batches. Evaluation walks a
split once in order (`eval_batches`), padding the last batch with masked-out copies.
"""

from __future__ import annotations

import functools

import grain
import jax
import jax.numpy as jnp
import numpy as np

from jaxcorr.xray import annotations as ann_lib, io as xray_io, letterbox as lb_lib

KEYS = ("views", "pair", "row", "col", "label", "mask")


def load_sample(study, *, image_size, patch: int, max_pairs: int) -> dict:
  """The sample of one annotated study (see the module docstring); errors name the study."""
  height, width = (int(s) for s in image_size)
  images, boxes = [], []
  for path in study.views:
    xr = xray_io.read_radiograph(path)
    box = lb_lib.Letterbox(xr.image.shape, (height, width))
    images.append(box.model_input(xr.image))
    boxes.append(box)
  pair, row, col, label = ann_lib.patch_pairs(study, boxes, patch=patch)
  if len(pair) > max_pairs:
    raise ValueError(f"study {study.study!r}: {len(pair)} annotated patch pairs exceed "
                     f"max_pairs={max_pairs}; raise config.max_pairs")
  k = len(pair)
  pad = lambda a, dtype: np.concatenate([np.asarray(a, dtype), np.zeros(max_pairs - k, dtype)])
  return {"views": np.stack(images).astype(np.float32), "pair": pad(pair, np.int32),
          "row": pad(row, np.int32), "col": pad(col, np.int32),
          "label": pad(label, np.float32), "mask": pad(np.ones(k), bool)}


def load_samples(studies, **kwargs) -> list[dict]:
  """`load_sample` for each study, in order."""
  return [load_sample(s, **kwargs) for s in studies]


def gather(pred: jnp.ndarray, batch: dict) -> jnp.ndarray:
  """Scores at the annotated entries: [B, P, L, L] -> [B, K], s[b, k] = pred[b, pair, row, col]."""
  return jax.vmap(lambda c, p, r, q: c[p, r, q])(pred, batch["pair"], batch["row"], batch["col"])


def masked_mse(scores: jnp.ndarray, batch: dict, pos_weight: float = 1.0) -> jnp.ndarray:
  """sum_k mask w (s - y)^2 / sum_k mask, w = pos_weight on positives (1 otherwise)."""
  mask = batch["mask"].astype(jnp.float32)
  w = mask * jnp.where(batch["label"] > 0.5, pos_weight, 1.0)
  err = jnp.square(scores.astype(jnp.float32) - batch["label"])
  return jnp.sum(w * err) / jnp.maximum(jnp.sum(mask), 1.0)


def _with_seed(sample: dict, rng: np.random.Generator) -> dict:
  return {**sample, "seed": np.uint32(rng.integers(0, 2 ** 32, dtype=np.uint64))}


def make_dataset(samples: list[dict], *, seed: int, batch_size: int, threads: int = 1,
                 prefetch: int = 2, process_index: int = 0,
                 process_count: int = 1) -> grain.IterDataset:
  """An endless, epoch-reshuffled stream of per-process batches of `samples`."""
  if not samples:
    raise ValueError("no training samples: the annotation file's 'train' split is empty")
  ds = grain.MapDataset.source(samples).seed(seed).shuffle().repeat().random_map(_with_seed)
  ds = ds[process_index::process_count]
  ds = ds.batch(batch_size // process_count, drop_remainder=True)
  return ds.to_iter_dataset(grain.ReadOptions(num_threads=threads, prefetch_buffer_size=prefetch))


@functools.partial(jax.jit, static_argnames=("augmentation",))
def finish(batch: dict, augmentation=None) -> dict:
  """Device part: radiometric augmentation (training) and the channel axis."""
  views = batch["views"]
  if augmentation is not None:
    keys = jax.vmap(jax.random.key)(batch["seed"])
    views = jax.vmap(augmentation)(views, keys)
  return {**{k: batch[k] for k in KEYS if k != "views"}, "views": views[..., None]}


def eval_batches(samples: list[dict], batch_size: int):
  """Every sample once, in order, as host batches of `batch_size` (the last one padded with
  copies of the first sample whose mask is all False)."""
  for start in range(0, len(samples), batch_size):
    chunk = list(samples[start:start + batch_size])
    while len(chunk) < batch_size:
      chunk.append({**samples[0], "mask": np.zeros_like(samples[0]["mask"])})
    batch = {k: np.stack([s[k] for s in chunk]) for k in KEYS}
    batch["views"] = batch["views"][..., None]
    yield batch
