"""jaxcorr.core: the closed-set checker, dtype names, atomic outputs and a run's config."""

import os
import stat

import jax.numpy as jnp
import pytest

from jaxcorr.core import choices, files


def test_check_choice_names_the_field_the_value_and_the_set():
  assert choices.check_choice("config.drr.method", "dense", ("clipped", "dense")) == "dense"
  with pytest.raises(ValueError, match=r"config.drr.method='fused' is not allowed; allowed: "
                                       r"clipped, dense$"):
    choices.check_choice("config.drr.method", "fused", ("clipped", "dense"))

  class MyError(ValueError):
    pass

  with pytest.raises(MyError, match="in_channels=2 is not allowed; allowed: 1, 3"):
    choices.check_choice("in_channels", 2, (1, 3), MyError)


def test_dtype_names():
  assert choices.dtype("config.model.dtype", "bfloat16") == jnp.bfloat16
  with pytest.raises(ValueError, match="config.model.dtype='float16' is not allowed"):
    choices.dtype("config.model.dtype", "float16")


def test_atomic_output_is_readable_by_others_and_all_or_nothing(tmp_path):
  path = tmp_path / "picture.png"
  old = os.umask(0o022)
  try:
    with files.atomic_output(str(path), suffix=".png") as tmp:
      assert os.path.dirname(tmp) == str(tmp_path) and tmp.endswith(".png")
      with open(tmp, "wb") as f:
        f.write(b"whole")
  finally:
    os.umask(old)
  assert path.read_bytes() == b"whole"
  assert stat.S_IMODE(path.stat().st_mode) == 0o644
  with pytest.raises(RuntimeError):
    with files.atomic_output(str(path)) as tmp:
      with open(tmp, "wb") as f:
        f.write(b"half")
      raise RuntimeError("killed while writing")
  assert path.read_bytes() == b"whole" and os.listdir(tmp_path) == ["picture.png"]


def test_run_config_of_a_workdir_or_its_checkpoint(tmp_path):
  files.write_json(str(tmp_path / "config.json"), {"job": "pretrain", "seed": 3})
  (tmp_path / "best" / "50").mkdir(parents=True)
  assert files.run_workdir(str(tmp_path / "best" / "50")) == str(tmp_path)
  assert files.run_config(str(tmp_path / "best" / "50")).seed == 3
  with pytest.raises(FileNotFoundError, match="no config.json"):
    files.run_config(str(tmp_path / "best"))
