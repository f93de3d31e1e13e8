"""The collectives between 2 real CPU processes survive one process arriving late.

gloo connects a group of devices at its first collective and gives up when the processes
arrive there more than 30 s apart; `sharding.initialize_distributed` connects the groups the
jobs use while the processes are still in step (CI once lost a 2-process run to a first train
step reached 30 s apart under load: both hung until the shutdown barrier killed them)."""

import json
import sys

import multiprocess_helpers as mp

# Process 1 sleeps past gloo's 30 s before the first run of a train-step-like program (a
# gradient averaged over the data axis) and of gather_json; each process writes what it got.
_SCRIPT = """
import json, os, sys, time
import jax, jax.numpy as jnp, numpy as np
from jaxcorr.core import sharding
sharding.initialize_distributed()
mesh = sharding.make_mesh()
if jax.process_index() == 1:
  time.sleep(float(sys.argv[1]))
x = jax.make_array_from_process_local_data(
    sharding.batch_sharding(mesh), np.full((jax.local_device_count(), 3), jax.process_index() + 1.0,
                                           np.float32))
w = jax.device_put(np.ones(3, np.float32), sharding.replicated(mesh))
grad = jax.jit(jax.grad(lambda w, x: jnp.mean(x @ w)), out_shardings=sharding.replicated(mesh))
g = np.asarray(grad(w, x).addressable_data(0))
result = {"grad": g.tolist(), "gathered": sharding.gather_json(jax.process_index())}
with open(os.path.join(sys.argv[2], f"result_{jax.process_index()}.json"), "w") as f:
  json.dump(result, f)
"""


def test_a_process_30_s_late_to_the_first_collectives_is_waited_for(tmp_path):
  mp.wait(mp.spawn([sys.executable, "-c", _SCRIPT, "35", str(tmp_path)], processes=2, devices=2))
  for i in range(2):
    result = json.loads((tmp_path / f"result_{i}.json").read_text())
    # 2 devices of x = 1 and 2 of x = 2: the mean over the batch of x @ w has gradient 1.5.
    assert result == {"grad": [1.5, 1.5, 1.5], "gathered": [0, 1]}
