"""Pretraining from a torchvision ResNet file (`model.init_torchvision`): the correspondence task's
`restore_init` loads the backbone and writes the transfer report into the workdir."""

from __future__ import annotations

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np

from conftest import REPO
from jaxcorr.core import sharding
from jaxcorr.models import convert
from jaxcorr.tasks import correspondence as task_lib
from models_convert_test import torchvision_resnet_state

sys.path.insert(0, str(REPO))
from configs import pretrain  # pylint: disable=wrong-import-position


def _random(abstract, seed=0):
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda x: rng.standard_normal(x.shape).astype(np.float32) * 0.2, abstract)


def test_pretraining_starts_from_init_torchvision(tmp_path):
  sd = torchvision_resnet_state(layers=(1, 1, 1), width=8, classes=10)      # resnet_tiny's
  path = tmp_path / "resnet_tiny.safetensors"
  convert.write_safetensors(path, sd)
  config = pretrain.get_config("tiny")
  config.model.init_torchvision = str(path)
  workdir = tmp_path / "run"
  workdir.mkdir()
  task = task_lib.CorrespondenceTask(config, str(workdir), sharding.make_mesh(1))
  abstract = jax.eval_shape(lambda: task.init_variables(jax.random.key(0),
                                                        jax.tree.map(jnp.zeros_like,
                                                                     task.batch_spec())))
  variables = _random(abstract)
  params, state = task.restore_init(variables["params"], {"batch_stats": variables["batch_stats"]})
  np.testing.assert_array_equal(params["backbone"]["layer2_0"]["conv2"]["kernel"],
                                sd["layer2.0.conv2.weight"].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(state["batch_stats"]["backbone"]["bn1"]["mean"],
                                sd["bn1.running_mean"])
  report = json.loads((workdir / "init_report.json").read_text())
  assert report["source"] == str(path) and len(report["loaded"]) == 13 * 5   # 13 convs, norms
  assert report["details"]["params/backbone/layer1_0/conv3/kernel"] == (
      "layer1.0.conv3.weight (32, 8, 1, 1) -> (1, 1, 8, 32)")
  assert "params/proj/kernel" in report["reinitialised"]
  # Without the field the random initialisation is kept as is.
  config.model.init_torchvision = ""
  same = task_lib.CorrespondenceTask(config, str(workdir), sharding.make_mesh(1))
  out = same.restore_init(variables["params"], {"batch_stats": variables["batch_stats"]})
  assert out[0] is variables["params"]
