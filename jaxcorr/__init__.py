"""jaxcorr: multi-view X-ray correspondence learning in JAX.

Layers, each importing only from the layers below it (tests/layering_test.py keeps it so):
  core                               choices, files, sharding (no jaxcorr imports)
  ct, projection, xray               CT volumes; geometry, DRR, labels; radiograph files
  data, models, metrics, pictures    batches from CTs; Flax models; scores; PNGs and the viewer
  inference                          the Predictor on a user's radiographs
  tasks                              what the one loop trains (a `tasks.base.Task` each)
  train                              the one training loop, state, checkpoints, writers
  jobs                               one `run(config, workdir)` module per `config.job`
  main, benchmarks, tools            entry points
Nothing heavy happens at import time.
"""

__version__ = "0.1.0"
