"""A real-like sparse benchmark from CTs: radiograph files + sparse annotations with known truth.

Commands and what to expect:
  python -m jaxcorr.main --config=configs/make_sparse.py:tiny --workdir=/tmp/sparse
      2-core CPU, ~30 s: 6 synthetic phantoms x 4 studies of 2 views at 64 px (files at
      128 px), 3 positive and 20 negative clicks per pair; /tmp/sparse/annotations.jsonl.
  python -m jaxcorr.main --config=configs/make_sparse.py --workdir=/data/sparse \
      --config.ct.path=../shared/data/ct
      the benchmark of docs/benchmarks.md: every CT x 20 studies at 256 px (512 px files),
      3 positive and 100 negative clicks per pair (the paper's), split by CT when fine-tuning.
Check the result with `python -m jaxcorr.tools.check_annotations /data/sparse/annotations.jsonl`
and fine-tune with configs/finetune.py --config.annotations=/data/sparse/annotations.jsonl.
"""

import ml_collections

from configs import common

# One row per preset: what differs from the default.
PRESETS = {
    "default": {},
    "tiny": {**common.sized(64), "data.phantoms": 6, "sparse.studies_per_volume": 4,
             "sparse.negatives": 20},
}


def get_config(arg=None):
  config = ml_collections.ConfigDict()
  config.job = "make_sparse"
  config.seed = 0
  common.add_sample_sources(config, size=256, phantoms=16)
  # Not training's image model: physical attenuation, then a radiograph-like appearance.
  config.intensity.model = "attenuation"
  config.sparse = ml_collections.ConfigDict(dict(
      studies_per_volume=20,
      positives=3,             # per view pair (paper: 3)
      negatives=100,           # per view pair (paper: 100)
      positive_min=0.2,        # a positive click lands on patches with exact C > this
      negative_max=0.0,        # a negative click lands on patches with exact C <= this
      upsample=2,              # files are this many times the model's input size
      body_part="synthetic",
  ))
  return common.apply_preset(config, PRESETS, arg)
