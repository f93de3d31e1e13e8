"""Pretraining on 1 and 8 (simulated CPU) devices gives the same losses (its own file, so
pytest-xdist can run it beside the other pretraining tests)."""

import textwrap

import numpy as np

from conftest import REPO, run_on_cpu_devices


def test_one_and_eight_devices_give_the_same_loss(tmp_path):
  script = textwrap.dedent(f"""
      import json, sys
      sys.path.insert(0, {str(REPO / 'tests')!r}); sys.path.insert(0, {str(REPO)!r})
      from pretrain_job_test import _tiny
      from jaxcorr import jobs
      out = {{}}
      for n in (1, 8):
        # Stopped at step 2 of 3: the losses without compiling the evaluation; the dense
        # kernel compiles faster than the marcher (this test is about devices, not kernels).
        jobs.run(_tiny(**{{"mesh.num_devices": n, "batch_size": 8, "eval.batch_size": 8,
                          "steps": 3, "stop_after_step": 2, "log_every": 1,
                          "eval_every": 100, "augment.geometric.enabled": False,
                          "drr.method": "dense"}}),
                 sys.argv[1] + f"/{{n}}")
        out[n] = [json.loads(l)["train/loss"] for l in open(sys.argv[1] + f"/{{n}}/metrics.jsonl")
                  if "train/loss" in l]
      print(json.dumps(out))
  """)
  out = run_on_cpu_devices(script, tmp_path, timeout=600)
  assert len(out["1"]) == 2
  np.testing.assert_allclose(out["1"], out["8"], rtol=2e-4)
