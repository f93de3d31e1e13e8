"""The Grain input pipeline: recipes or offline records -> augmented, sharded global batches.

Chain (per process; `make_dataset`):

  source      on_the_fly: the bank's volume indices        offline: ArrayRecord shards
  .seed(seed).shuffle().repeat()                          (an endless, epoch-reshuffled stream)
  .random_map  on_the_fly: `RecipeMaker` draws the views   offline: decode + draw an aug seed
  [process_index::process_count]                           (each host reads its own slice)
  .batch(per-process batch, drop_remainder=True)
  .to_iter_dataset(ReadOptions(threads, prefetch))

Randomness comes only from the rng Grain hands to `random_map` (a function of the seed and the
record's position), so the same seed gives the same batches whatever the number of threads.
The host part yields NumPy dicts; `DeviceBatches` finishes them on the accelerator in one
jitted function: rendering (on_the_fly; each device renders its own shard of the batch,
`render_sharded`), per-view normalisation (or the radiograph appearance
model, `appearance.py`), radiometric and geometric
augmentation, then assembles global arrays over the mesh's data axis
(`jax.make_array_from_process_local_data`).

Batch (global, B = config.batch_size):
  views   float32 [B, N, H, W, 1] in [0, 1]
  corr    float32 [B, P, L, L]    labels in [0, 1]
  pairs   int32   [P, 2]          (i, j) of each pair, i < j
  volume  int32   [B]             bank index (on_the_fly) or -1 (offline)
and `DeviceBatches.rejected`, the running count of redrawn samples.
"""

from __future__ import annotations

import dataclasses
import functools

import grain
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from jaxcorr.core.choices import check_choice
from jaxcorr.data import (appearance as appearance_lib, augment, device_recipes, radiometric,
                          records, samples)
from jaxcorr.projection import labels

MODES = ("on_the_fly", "offline")


@dataclasses.dataclass(frozen=True)
class Augment:
  """Augmentation switches and ranges (`config.augment`)."""

  radiometric: radiometric.Radiometric | None = radiometric.Radiometric()
  geometric: tuple = ()   # keyword arguments of augment.random_geometric as (name, value) pairs
  appearance: appearance_lib.Appearance | None = None   # replaces normalize when set

  @property
  def geometric_kwargs(self) -> dict:
    return dict(self.geometric)


def _offline_record(record: bytes, rng: np.random.Generator) -> dict:
  sample = records.decode(record)
  return {"views": sample["views"], "corr": sample["corr"], "volume": np.int32(-1),
          "seed": np.uint32(rng.integers(0, 2 ** 32, dtype=np.uint64)), "rejected": np.int32(0)}


def _worker_init(worker_index: int, worker_count: int) -> None:
  """Grain worker processes only draw recipes: keep their JAX on the CPU, off the accelerator."""
  del worker_index, worker_count
  jax.config.update("jax_platforms", "cpu")


def make_dataset(*, mode: str, seed: int, batch_size: int, recipe_maker=None,
                 n_volumes: int = 0, shards=(), threads: int = 2, prefetch: int = 4,
                 workers: int = 0, process_index: int = 0,
                 process_count: int = 1) -> grain.IterDataset:
  """The host part of the pipeline (see the module docstring); yields NumPy batches.

  `workers` > 0 adds Grain's multiprocess prefetch (spawned processes) after batching; the
  batches are the same as with threads only, since every record's rng depends on the seed and
  its position alone.
  """
  check_choice("config.data.mode", mode, MODES)
  if batch_size % process_count:
    raise ValueError(f"batch_size={batch_size} is not divisible by {process_count} processes")
  if mode == "on_the_fly":
    ds = grain.MapDataset.range(n_volumes).map(lambda i: {"volume": i})
    transform = recipe_maker
  else:
    ds = grain.MapDataset.source(grain.sources.ArrayRecordDataSource(list(shards)))
    transform = _offline_record
  ds = ds.seed(seed).shuffle().repeat().random_map(transform)
  ds = ds[process_index::process_count]
  ds = ds.batch(batch_size // process_count, drop_remainder=True)
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=threads, prefetch_buffer_size=prefetch))
  if workers > 0:
    if not flags.FLAGS.is_parsed():  # Grain reads absl flags; in a notebook nobody parsed them
      flags.FLAGS.mark_as_parsed()
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers),
                        worker_init_fn=_worker_init)
  return it


def render_sharded(bank, recipes, *, framing, threshold, projector, mesh=None):
  """`samples.render_batch` with each device of `mesh` rendering its own shard of the batch
  (split over the 'data' axis; the bank is replicated), so no device renders another's samples
  and no batch-wide loop is partitioned by the compiler. Without a mesh (or one device), the
  plain batch call."""
  render = functools.partial(samples.render_batch, framing=framing, threshold=threshold,
                             projector=projector)
  if mesh is None or mesh.size == 1:
    return render(bank, recipes)
  data = jax.sharding.PartitionSpec("data")
  # check_vma=False: the kernels' loops carry values the replication checker cannot type (the
  # bank is replicated, the recipes are not); every output is per-sample, hence sharded.
  return jax.shard_map(render, mesh=mesh, in_specs=(jax.sharding.PartitionSpec(), data),
                       out_specs=(data, data), check_vma=False)(bank, recipes)


@functools.partial(jax.jit, static_argnames=("framing", "threshold", "augmentation", "render",
                                             "projector", "mesh", "recipes"))
def finish_batch(bank, batch, *, framing, threshold, augmentation: Augment, render: bool,
                 projector: samples.Projector = samples.Projector(), mesh=None,
                 recipes: device_recipes.Spec | None = None):
  """Device part: draw the recipes (when `recipes` is given; the host sent volume indices and
  seeds only, `device_recipes`), render (on_the_fly, with `projector`'s kernels, each device its
  shard of the batch over `mesh`: `render_sharded`), normalise, augment. Returns the batch dict
  (with `rejected` [B], the candidates each drawn recipe rejected, when drawn here)."""
  extra = {}
  if render:
    if recipes is not None:
      batch = device_recipes.for_batch(bank, batch["volume"], batch["seed"], spec=recipes,
                                       framing=framing)
      extra["rejected"] = batch["rejected"]
    views, corr = render_sharded(bank, {k: batch[k] for k in samples.RECIPE_KEYS},
                                 framing=framing, threshold=threshold, projector=projector,
                                 mesh=mesh)
  else:
    views, corr = batch["views"], batch["corr"]
  keys = jax.vmap(jax.random.key)(batch["seed"])
  if augmentation.appearance is not None:   # its own key: k_rad and k_geo stay as they were
    views = jax.vmap(augmentation.appearance)(
        views, jax.vmap(lambda k: jax.random.fold_in(k, 2))(keys))
  else:
    views = radiometric.normalize(views)
  k_rad, k_geo = jnp.moveaxis(jax.vmap(jax.random.split)(keys), 1, 0)
  if augmentation.radiometric is not None:
    views = jax.vmap(augmentation.radiometric)(views, k_rad)
  if augmentation.geometric:
    fn = functools.partial(augment.random_geometric, k=framing.patch,
                           **augmentation.geometric_kwargs)
    views, corr = jax.vmap(fn)(views, corr, k_geo)
  n = views.shape[1]
  return {"views": views[..., None], "corr": corr,
          "pairs": jnp.asarray(labels.pair_indices(n), jnp.int32), "volume": batch["volume"],
          **extra}


class Batches:
  """Iterator of finished global batches: each host batch of `dataset` is assembled into global
  arrays over `sharding` (when given) and passed to `finish` (a jitted device function).

  Its state is the Grain iterator's, so a checkpoint resumes the stream exactly. Every task's
  training batches go through this one class; only `finish` differs.
  """

  def __init__(self, dataset: grain.IterDataset, finish, *, sharding=None, keys=None):
    self._iter = iter(dataset)
    self._finish = finish
    self._sharding = sharding
    self._keys = keys

  def __iter__(self):
    return self

  def _host(self) -> dict:
    host = next(self._iter)
    return host if self._keys is None else {k: host[k] for k in self._keys}

  def __next__(self) -> dict:
    host = self._host()
    if self._sharding is not None:
      host = {k: jax.make_array_from_process_local_data(self._sharding, np.asarray(v))
              for k, v in host.items()}
    return self._finish(host)

  def get_state(self):
    return self._iter.get_state()

  def set_state(self, state) -> None:
    self._iter.set_state(state)


class DeviceBatches(Batches):
  """Correspondence batches (`finish_batch`), counting the redrawn samples in `rejected`."""

  def __init__(self, dataset: grain.IterDataset, *, bank=None, framing, threshold: float,
               augmentation: Augment, render: bool, sharding=None,
               projector: samples.Projector = samples.Projector(),
               recipes: device_recipes.Spec | None = None):
    super().__init__(dataset, functools.partial(
        finish_batch, bank, framing=framing, threshold=threshold, augmentation=augmentation,
        render=render, projector=projector, recipes=recipes,
        mesh=None if sharding is None else sharding.mesh), sharding=sharding)
    self._rejected_host = 0
    self._rejected_device = []   # device scalars, summed when read (no wait per batch)

  @property
  def rejected(self) -> int:
    """The view draws rejected so far by the coverage check (host or device recipes)."""
    if len(self._rejected_device) > 1:
      self._rejected_device = [sum(self._rejected_device)]
    return self._rejected_host + sum(int(r) for r in self._rejected_device)

  def _host(self) -> dict:
    host = super()._host()
    if "rejected" in host:
      self._rejected_host += int(np.sum(host["rejected"]))
    return host

  def __next__(self) -> dict:
    batch = super().__next__()
    if "rejected" in batch:
      self._rejected_device.append(jnp.sum(batch.pop("rejected")))
      if len(self._rejected_device) >= 64:    # summed on the device, still without a wait
        self._rejected_device = [sum(self._rejected_device)]
    return batch
