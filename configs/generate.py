"""Offline dataset generation: CTs -> ArrayRecord shards of views and correspondence labels.

  python -m jaxcorr.main --config=configs/generate.py --workdir=/data/jaxcorr_ds \
      --config.ct.path=/data/cts --config.generate.samples_per_volume=1200
      The paper's scale (175 CTs, 207,600 samples); see docs/benchmarks.md for the projected
      hours. Resumable: run the same command again after a kill.
  python -m jaxcorr.main --config=configs/generate.py:tiny --workdir=/tmp/ds
      8 synthetic phantoms at 64^3, 64^2 views, 4 samples each: ~30 s on a 2-core CPU.
Train on the result with configs/pretrain.py --config.data.mode=offline --config.data.shards=DIR.
"""

import ml_collections

from configs import common

# One row per preset: what differs from the default (the paper's scale).
PRESETS = {
    "default": {},
    "tiny": {**common.sized(64), "data.phantoms": 8, "generate.samples_per_volume": 4,
             "generate.render_batch": 4},
}


def get_config(arg=None):
  config = ml_collections.ConfigDict()
  config.job = "generate"
  config.seed = 0
  common.add_sample_sources(config, size=256, phantoms=64)
  config.generate = ml_collections.ConfigDict(dict(
      samples_per_volume=64,
      render_batch=8,                    # samples rendered per device call
      views_dtype="float16",             # float16 | uint16
  ))
  return common.apply_preset(config, PRESETS, arg)
