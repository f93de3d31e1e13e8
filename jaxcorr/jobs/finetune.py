"""The `finetune` job: sparse-label fine-tuning on real radiographs with the one training loop.

The pretraining run named by `config.init_from` supplies the model and the input size: its
`model` block (or, for `config.head='pair_mlp'`, its backbone under a new pair MLP) and its
view size are written into this run's `config.json`, so prediction and evaluation rebuild the
same model from either workdir.
"""

from __future__ import annotations

import ml_collections
from absl import logging


from jaxcorr.core import files, sharding
from jaxcorr.core.choices import check_choice
from jaxcorr.tasks import finetune
from jaxcorr.train import loop

_HEADS = ("correspondence", "pair_mlp")


def _resolve(config) -> None:
  """Fills `config.model` and `config.image_size` from the run of `config.init_from`."""
  if not config.init_from:
    raise ValueError("config.init_from is empty: give a pretraining workdir, e.g. "
                     "--config.init_from=/tmp/jaxcorr_pretrain")
  if not config.annotations:
    raise ValueError("config.annotations is empty: give a sparse-annotation JSON-lines file "
                     "(docs/annotations.md), e.g. one made by configs/make_sparse.py")
  check_choice("config.head", config.head, _HEADS)
  source = files.run_config(config.init_from)
  model = dict(source.model)
  if model.get("kind", "correspondence") != "correspondence":
    raise ValueError(f"config.init_from={config.init_from!r} is a {model['kind']!r} run; "
                     "start from a correspondence pretraining run")
  if config.head == "pair_mlp":
    model = dict(kind="pair_mlp", backbone=model["backbone"], hidden=config.mlp_hidden,
                 in_channels=model["in_channels"], dtype=model["dtype"])
  else:
    model["kind"] = "correspondence"
  size = tuple(config.image_size)
  if not all(size):
    size = tuple(source.views.detector_size)
  with config.unlocked():
    config.model = ml_collections.ConfigDict(model)
    config.image_size = tuple(int(s) for s in size)
    config.patch = int(source.labels.patch)


def run(config, workdir: str) -> None:
  _resolve(config)
  files.prepare_workdir(config, workdir)
  mesh = sharding.make_mesh(config.mesh.num_devices)
  task = finetune.FinetuneTask(config, workdir, mesh)
  result = loop.train_and_evaluate(config, workdir, task, mesh)
  logging.info("final validation: %s", result)
