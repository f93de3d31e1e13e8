"""Device mesh and shardings: data parallel over every device of every host, optional FSDP.

The mesh has one axis, 'data'. Batches are split along their leading axis over it. Parameters
are replicated, or with `fsdp=True` each array at least `fsdp_min_size` elements large is split
along its largest dimension divisible by the number of devices (ZeRO-3 style; XLA inserts the
all-gathers). On several hosts call `initialize_distributed()` first (main does, when asked).
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def initialize_distributed() -> None:
  """`jax.distributed.initialize()` for one process per host, then, on CPUs, the collectives
  connected while every process is still in step.

  TPU pods and SLURM are detected by JAX; elsewhere JAX_COORDINATOR_ADDRESS plus
  JAX_NUM_PROCESSES and JAX_PROCESS_ID (launch/gpu_multi_host.sh) say who is who.
  Collectives between CPU processes (tests, CPU clusters) go through gloo, which connects a
  group of devices at its first collective and gives up when the processes arrive there more
  than 30 s apart (one still compiling a large step, or making the data), leaving the other
  hung until the shutdown barrier kills both. `initialize` is a barrier, so right after it the
  groups the jobs use (every device: the train step's reductions and reshards; one device per
  process: `process_allgather`) are connected here, and later collectives wait for a late
  process as long as XLA's collective timeout allows. GPUs and TPUs use their own interconnect.
  """
  env = {"num_processes": "JAX_NUM_PROCESSES", "process_id": "JAX_PROCESS_ID"}
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(**{k: int(os.environ[v]) for k, v in env.items() if v in os.environ})
  if jax.process_count() > 1 and jax.default_backend() == "cpu":
    _connect_collectives()


def _connect_collectives() -> None:
  """Runs one collective over every device and one over a device of each process."""
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  mesh = make_mesh()
  ones = jax.make_array_from_process_local_data(batch_sharding(mesh),
                                                np.ones(jax.local_device_count(), np.int32))
  total = jax.jit(lambda x: x.sum(), out_shardings=replicated(mesh))(ones)
  if int(total.addressable_data(0)) != mesh.size:
    raise RuntimeError(f"a sum over the {mesh.size} devices of {jax.process_count()} processes "
                       f"gave {int(total.addressable_data(0))}")
  multihost_utils.process_allgather(np.int32(jax.process_index()))


def make_mesh(num_devices: int = 0) -> Mesh:
  """A 1-D 'data' mesh over the first `num_devices` devices (0 = all)."""
  devices = jax.devices()
  n = num_devices or len(devices)
  if n > len(devices):
    raise ValueError(f"mesh.num_devices={n} but only {len(devices)} devices are visible")
  return Mesh(np.asarray(devices[:n]), ("data",))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P("data"))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def param_shardings(abstract_tree, mesh: Mesh, *, fsdp: bool = False, fsdp_min_size: int = 2 ** 18):
  """NamedShardings for a pytree of ShapeDtypeStructs (replicated, or FSDP as above)."""
  n = mesh.shape["data"]

  def rule(x):
    if not fsdp or n == 1 or np.prod(x.shape) < fsdp_min_size:
      return replicated(mesh)
    dims = [d for d in np.argsort(x.shape)[::-1] if x.shape[d] % n == 0]
    if not dims:
      return replicated(mesh)
    spec = [None] * len(x.shape)
    spec[dims[0]] = "data"
    return NamedSharding(mesh, P(*spec))

  return jax.tree.map(rule, abstract_tree)


def to_host(x) -> np.ndarray:
  """A (global) array as one NumPy array on every process.

  On one process this is `np.asarray`; an array sharded over several processes' devices is
  gathered first (`process_allgather`, tiled: the global shape), a collective that every
  process must call.
  """
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(x)


def gather_json(obj) -> list:
  """`obj` (anything JSON can hold) of every process, in process order.

  A collective: every process must call it, so it is also a barrier (nothing after it starts
  before every process has reached it). On one process, `[obj]`.
  """
  if jax.process_count() == 1:
    return [obj]
  import json  # pylint: disable=g-import-not-at-top
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  data = np.frombuffer(json.dumps(obj).encode(), np.uint8)
  sizes = np.asarray(multihost_utils.process_allgather(np.int32(len(data))))
  padded = np.zeros(int(sizes.max()), np.uint8)
  padded[:len(data)] = data
  rows = np.asarray(multihost_utils.process_allgather(padded))
  return [json.loads(bytes(row[:n])) for row, n in zip(rows, sizes)]


def replicate(tree, mesh: Mesh):
  """A host pytree that every process holds whole (an evaluation batch each process reads in
  full) as arrays replicated over every device of `mesh`, so it can meet the mesh's parameters
  in one jitted function on any number of processes."""
  return jax.device_put(tree, replicated(mesh))


def agree(values) -> np.ndarray:
  """The elementwise maximum of small integer `values` over every process (a collective), so
  that decisions taken from a process's own signals or clock (stop now, checkpoint now) are the
  same on all of them; on one process, `values` unchanged."""
  values = np.asarray(values, np.int32)
  if jax.process_count() == 1:
    return values
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return np.asarray(multihost_utils.process_allgather(values)).max(axis=0)
