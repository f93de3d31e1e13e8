"""The entry point from any directory: configs by name (or a repository path that is not
there), --help listing the configs and presets, a clear error for an unknown config."""

import subprocess
import sys

import numpy as np

from conftest import subprocess_env
from jaxcorr.core import config_files


def _main(*args, cwd):
  return subprocess.run([sys.executable, "-m", "jaxcorr.main", *args], cwd=cwd,
                        capture_output=True, text=True, timeout=300, env=subprocess_env())


def test_a_job_by_name_and_by_a_missing_relative_path_from_another_directory(tmp_path):
  for n, spec in enumerate(("render:tiny", "configs/render.py:tiny")):
    work = tmp_path / f"w{n}"
    done = _main(f"--config={spec}", f"--workdir={work}", "--config.png=False",
                 "--config.labels.enabled=False", "--config.geometry.detector_size=(32,32)",
                 cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert np.load(work / "drr.npy").shape == (2, 32, 32)


def test_unknown_config_and_help(tmp_path):
  bad = _main("--config=pretrian:tiny", f"--workdir={tmp_path}", cwd=tmp_path)
  assert bad.returncode == 2
  assert "no installed config named 'pretrian'; configs: classify, evaluate," in bad.stderr
  shown = _main("--help", cwd=tmp_path)
  assert shown.returncode in (0, 1)   # absl exits 1 after printing the help
  assert "  pretrain         job pretrain: Correspondence pretraining" in shown.stdout
  assert "presets: default, tiny, small, tiny_vit, vit" in shown.stdout
  assert "--workdir" in shown.stdout


def test_resolve_spec(tmp_path):
  folder = config_files.config_dir()
  assert config_files.resolve_spec("pretrain:tiny") == f"{folder}/pretrain.py:tiny"
  assert config_files.resolve_spec("elsewhere/predict.py") == f"{folder}/predict.py"
  mine = tmp_path / "mine.py"
  mine.write_text("")
  assert config_files.resolve_spec(f"{mine}:x") == f"{mine}:x"
  assert "common" not in config_files.names() and "pretrain" in config_files.names()


def test_fields_of_a_config_with_its_preset():
  text = config_files.fields("render:tiny")
  assert text.startswith("Fields of render:tiny (override with --config.FIELD=VALUE):")
  assert "\n  ct.size = 64\n" in text and "\n  geometry.sid = 1000.0\n" in text
  assert "\n  ct.size = 256\n" in config_files.fields("render")
