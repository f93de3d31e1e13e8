"""Every config file and preset loads, names a known job, and its choices are valid."""

import importlib.util
import pathlib

import pytest

from jaxcorr import jobs
from jaxcorr.data import from_config


CONFIGS = sorted(p for p in (pathlib.Path(__file__).parents[1] / "configs").glob("*.py")
                 if p.name != "common.py" and not p.name.startswith("_"))


def _load(path):
  spec = importlib.util.spec_from_file_location(path.stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_preset_loads_and_names_a_job(path):
  module = _load(path)
  assert module.__doc__ and "python -m jaxcorr.main" in module.__doc__
  for preset in module.PRESETS:
    config = module.get_config(preset)
    assert config.job in jobs.JOBS
    for field in from_config.CHOICES:
      section, key = field.split(".")
      if section in config and key in config[section]:
        from_config.check_choice(field, config[section][key])


def test_unknown_preset_lists_the_allowed_ones():
  module = _load(next(p for p in CONFIGS if p.name == "render.py"))
  with pytest.raises(ValueError, match="allowed presets: default, tiny"):
    module.get_config("huge")


@pytest.mark.parametrize("preset", ["default", "tiny", "small", "tiny_vit", "vit"])
def test_pretrain_presets_build_their_model_on_abstract_shapes(preset):
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from jaxcorr.models import build  # pylint: disable=import-outside-toplevel
  config = _load(next(p for p in CONFIGS if p.name == "pretrain.py")).get_config(preset)
  model = build.build_model(config.model)
  n, (h, w) = config.views.n_views, config.views.detector_size
  views = jax.ShapeDtypeStruct((1, n, h, w, 1), jnp.float32)
  variables = jax.eval_shape(lambda v: model.init(jax.random.key(0), v, train=False), views)
  (corr, _) = jax.eval_shape(lambda var, v: model.apply(var, v, train=False), variables, views)
  patches = (h // config.labels.patch) * (w // config.labels.patch)
  assert corr.shape == (1, n * (n - 1) // 2, patches, patches)
  params = sum(x.size for x in jax.tree.leaves(variables["params"]))
  assert params > (2e7 if preset == "default" else 1e4)
