"""The `pretrain` job: correspondence pretraining with the one training loop."""

from __future__ import annotations

from absl import logging


from jaxcorr.core import files, sharding
from jaxcorr.data import splits
from jaxcorr.tasks import correspondence
from jaxcorr.train import loop


def run(config, workdir: str) -> None:
  files.prepare_workdir(config, workdir)
  mesh = sharding.make_mesh(config.mesh.num_devices)
  task = correspondence.CorrespondenceTask(config, workdir, mesh)
  try:
    result = loop.train_and_evaluate(config, workdir, task, mesh)
  finally:   # also on a stop or an error: the CTs skipped (ct.on_error='skip') and why
    splits.write_skipped(workdir, task.skipped)
  logging.info("final evaluation: %s", result)
