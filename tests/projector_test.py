"""One projector choice honoured everywhere: `drr.method='auto'` per platform, and every job's
`drr` / `labels` fields reaching the kernels (a job that drops them fails here)."""

import json
import sys

import jax
import numpy as np
import pytest

from conftest import REPO
from jaxcorr import jobs
from jaxcorr.data import from_config, samples, splits as splits_lib
from jaxcorr.projection import drr

sys.path.insert(0, str(REPO))
from configs import (evaluate, generate, make_fractures, make_sparse, pretrain,  # pylint: disable=wrong-import-position
                     render)

# Not the defaults anywhere: a job that ignores the config renders with something else.
FIELDS = {"drr.method": "dense", "drr.batch_size": 1234, "labels.method": "dense"}
EXPECTED = samples.Projector(method="dense", ray_batch=1234, label_method="dense")


def test_auto_picks_the_measured_kernel_per_platform():
  assert drr.resolve_method("auto", "cpu") == "clipped"
  assert drr.resolve_method("auto", "gpu") == "dense"
  assert drr.resolve_method("auto", "tpu") == "dense"
  assert drr.resolve_method("auto") == drr.resolve_method("auto", jax.default_backend())
  assert drr.resolve_method("dense", "cpu") == "dense"
  # The fused Pallas kernel is chosen by name only until a GPU measurement backs it.
  assert drr.resolve_method("fused", "gpu") == "fused"
  with pytest.raises(ValueError, match="drr method='siddon' is not allowed"):
    drr.resolve_method("siddon")


def test_projector_from_config_and_errors_that_name_the_field():
  config = pretrain.get_config("tiny")
  assert from_config.projector(config) == samples.Projector(drr.resolve_method("auto"), None,
                                                            "sparse")
  config.update_from_flattened_dict(FIELDS)
  assert from_config.projector(config) == EXPECTED
  config.drr.method = "fast"
  with pytest.raises(ValueError, match=r"config.drr.method='fast' is not allowed; allowed: "
                                       r"auto, clipped, dense"):
    from_config.projector(config)
  config.drr.method, config.labels.method = "auto", "exact"
  with pytest.raises(ValueError, match="config.labels.method='exact'"):
    from_config.projector(config)
  config.labels.method, config.drr.dtype = "sparse", "float16"
  with pytest.raises(ValueError, match="config.drr.dtype='float16'"):
    from_config.volume_dtype(config)


class _Reached(Exception):
  """Raised by the spies at the first render: the job got that far with these kernels."""


@pytest.fixture
def spy(monkeypatch):
  """Records the Projector of the first `samples.render_batch` call, then stops the job."""
  seen = []

  def render_batch(bank, recipes, *, framing, threshold, projector=samples.Projector()):
    del bank, recipes, framing, threshold
    seen.append(projector)
    raise _Reached

  monkeypatch.setattr(samples, "render_batch", render_batch)
  return seen


@pytest.mark.parametrize("module", [pretrain, generate, make_sparse, make_fractures],
                         ids=lambda m: m.__name__.split(".")[-1])
def test_every_rendering_job_passes_its_kernels_down(module, spy, tmp_path):
  config = module.get_config("tiny")
  config.update_from_flattened_dict({**FIELDS, "data.phantoms": 3})
  with pytest.raises(_Reached):
    jobs.run(config, str(tmp_path))
  assert spy == [EXPECTED]


def test_render_job_passes_its_kernels_down(monkeypatch, tmp_path):
  seen = []

  def project_jit(*args, **kwargs):
    del args
    seen.append((kwargs["method"], kwargs["batch_size"]))
    raise _Reached

  monkeypatch.setattr(drr, "project_jit", project_jit)
  config = render.get_config("tiny")
  config.update_from_flattened_dict(FIELDS)
  with pytest.raises(_Reached):
    jobs.run(config, str(tmp_path))
  assert seen == [("dense", 1234)]


def test_evaluate_renders_with_its_own_kernels_on_any_run(tmp_path):
  """The kernels are the evaluating machine's: evaluate's drr/labels.method replace the run's,
  also for runs written before the drr block existed."""
  from jaxcorr.jobs import evaluate as evaluate_job  # pylint: disable=import-outside-toplevel
  run = pretrain.get_config("tiny").to_dict()
  del run["drr"]
  (tmp_path / "config.json").write_text(json.dumps(run))
  config = evaluate.get_config("tiny")
  config.update_from_flattened_dict(FIELDS)
  merged = evaluate_job._run_config(str(tmp_path), config)  # pylint: disable=protected-access
  assert from_config.projector(merged) == EXPECTED


def test_dense_and_clipped_batches_render_the_same_sample():
  config = generate.get_config("tiny")
  config.data.phantoms = 1
  bank = from_config.build_bank(splits_lib.list_volumes(config), config)
  recipe = from_config.recipe_maker(config, bank)({"volume": 0}, np.random.default_rng(0))
  recipes = {k: np.stack([np.asarray(recipe[k])] * 2) for k in samples.RECIPE_KEYS}
  dev, frame = samples.bank_arrays(bank), from_config.framing(config)
  out = {m: samples.render_batch(dev, recipes, framing=frame, threshold=0.1,
                                 projector=samples.Projector(method=m, label_method=lm))
         for m, lm in (("clipped", "sparse"), ("dense", "dense"))}
  views, corr = (np.asarray(x) for x in out["clipped"])
  np.testing.assert_allclose(np.asarray(out["dense"][0]), views, atol=1e-5 * views.max())
  np.testing.assert_allclose(np.asarray(out["dense"][1]), corr, atol=1e-5)
  np.testing.assert_array_equal(views[0], views[1])
