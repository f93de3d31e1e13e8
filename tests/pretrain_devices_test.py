"""Rendering on 4 (simulated CPU) devices, each its own shard of the batch (its own file, so
pytest-xdist can run it beside the other pretraining tests). That pretraining with views drawn
on the device gives the same losses on 1 device and on 2 processes: multiprocess_pretrain_test."""

import textwrap

from conftest import REPO, run_on_cpu_devices


def test_each_device_renders_its_own_shard_of_the_batch(tmp_path):
  """`pipeline.render_sharded` on a mesh of 4 devices: the views and labels of the batch
  rendered in one call, for both kernels, laid out over the data axis."""
  script = textwrap.dedent(f"""
      import json, sys
      sys.path.insert(0, {str(REPO / 'tests')!r}); sys.path.insert(0, {str(REPO)!r})
      import jax, numpy as np
      from pipeline_test import _config
      from jaxcorr.core import sharding
      from jaxcorr.data import from_config, pipeline, samples, splits
      config = _config(**{{"data.phantoms": 2, "ct.size": 32, "views.detector_size": (32, 32)}})
      bank = from_config.build_bank(splits.list_volumes(config), config)
      maker = from_config.recipe_maker(config, bank)
      rng = np.random.default_rng(0)
      recipes = [maker({{"volume": i % 2}}, rng) for i in range(8)]
      recipes = {{k: np.stack([r[k] for r in recipes]) for k in samples.RECIPE_KEYS}}
      mesh = sharding.make_mesh(4)
      dev = jax.device_put(samples.bank_arrays(bank), sharding.replicated(mesh))
      out = {{}}
      for method in ("clipped", "dense"):
        kw = dict(framing=from_config.framing(config), threshold=config.labels.threshold,
                  projector=samples.Projector(method=method))
        views, corr = samples.render_batch(samples.bank_arrays(bank), recipes, **kw)
        put = jax.device_put(recipes, sharding.batch_sharding(mesh))
        s_views, s_corr = jax.jit(lambda b, r: pipeline.render_sharded(b, r, mesh=mesh, **kw))(
            dev, put)
        out[method] = {{"views": float(np.abs(np.asarray(s_views) - np.asarray(views)).max()
                                      / np.abs(np.asarray(views)).max()),
                       "corr": float(np.abs(np.asarray(s_corr) - np.asarray(corr)).max()),
                       "spec": str(s_views.sharding.spec)}}
      print(json.dumps(out))
  """)
  out = run_on_cpu_devices(script, tmp_path, devices=4, timeout=600)
  for method in ("clipped", "dense"):
    assert out[method]["views"] < 1e-5 and out[method]["corr"] < 1e-6, out
    assert out[method]["spec"] in ("P('data',)", "PartitionSpec('data',)"), out
