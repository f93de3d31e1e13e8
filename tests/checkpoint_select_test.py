"""Which checkpoint a workdir means (jaxcorr.core.checkpoints: best | latest | STEP), the line a
job logs about what it loaded, and no orbax metadata warning when reading a run."""

import json
import logging

import pytest

from jaxcorr.core import checkpoints
from jaxcorr.inference.predictor import Predictor
from jaxcorr.models import transfer


def _run(tmp_path, best=(), latest=()):
  """A workdir with finished step folders; best ones carry their saved metric {'ap': value}."""
  for step, ap in best:
    (tmp_path / "best" / str(step) / "metrics").mkdir(parents=True)
    (tmp_path / "best" / str(step) / "metrics" / "metrics").write_text(json.dumps({"ap": ap}))
  for step in latest:
    (tmp_path / "checkpoints" / str(step)).mkdir(parents=True)
  (tmp_path / "checkpoints").mkdir(exist_ok=True)
  (tmp_path / "checkpoints" / "300.orbax-checkpoint-tmp-1").mkdir()   # unfinished: ignored
  return tmp_path


def test_best_latest_and_step(tmp_path):
  run = _run(tmp_path, best=[(50, 0.5), (100, 0.25)], latest=[150, 200])
  best = checkpoints.resolve(str(run), "best")
  assert (best.directory, best.step, best.workdir) == (str(run / "best" / "50"), 50, str(run))
  assert best.describe() == f"checkpoint {run / 'best' / '50'} (step 50, best by ap = 0.5)"
  latest = checkpoints.resolve(str(run), "latest")
  assert (latest.directory, latest.how) == (str(run / "checkpoints" / "200"), "latest")
  assert checkpoints.resolve(str(run), "150").directory == str(run / "checkpoints" / "150")
  assert checkpoints.resolve(str(run), 100).directory == str(run / "best" / "100")
  with pytest.raises(FileNotFoundError, match=r"no checkpoint of step 7; it has \[50, 100, 150, 200\]"):
    checkpoints.resolve(str(run), "7")
  with pytest.raises(ValueError, match="config.which_checkpoint='newest': expected 'best', "
                                       "'latest' or a step number"):
    checkpoints.resolve(str(run), "newest", field="which_checkpoint")
  step_dir = checkpoints.resolve(str(run / "checkpoints" / "150"))
  assert (step_dir.step, step_dir.workdir, step_dir.how) == (150, str(run), "the step folder given")
  with pytest.raises(ValueError, match="give the run's workdir"):
    checkpoints.resolve(str(run / "checkpoints" / "150"), "latest")


def test_best_falls_back_to_latest_and_empty_runs_are_refused(tmp_path):
  run = _run(tmp_path / "a", latest=[10, 20])
  loaded = checkpoints.resolve(str(run), "best")
  assert loaded.step == 20 and "best/ is empty" in loaded.describe()
  (tmp_path / "b" / "checkpoints").mkdir(parents=True)
  with pytest.raises(FileNotFoundError, match="no finished checkpoint"):
    checkpoints.resolve(str(tmp_path / "b"))
  with pytest.raises(FileNotFoundError, match="does not exist"):
    checkpoints.resolve(str(tmp_path / "nothing"))


def test_loading_a_run_says_what_it_loaded_without_warnings(tiny_pretrain_run, caplog):
  """The fixture saved steps 6 and 12 to checkpoints/, and 12 to best/ (ap of its one
  evaluation)."""
  with caplog.at_level(logging.INFO):
    transfer.read_checkpoint_params(tiny_pretrain_run, "latest")
    predictor = Predictor.from_checkpoint(str(tiny_pretrain_run))
  loaded = [r.getMessage() for r in caplog.records if r.getMessage().startswith("loaded ")]
  assert loaded[0] == (f"loaded checkpoint {tiny_pretrain_run / 'checkpoints' / '12'} "
                       "(step 12, latest)")
  assert loaded[1].startswith(f"loaded checkpoint {tiny_pretrain_run / 'best' / '12'} "
                              "(step 12, best by ap = ")
  assert predictor.source == str(tiny_pretrain_run / "best" / "12")
  assert not [r for r in caplog.records if r.levelno >= logging.WARNING], \
      [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
  with pytest.raises(FileNotFoundError, match=r"has no checkpoint of step 5; it has \[6, 12\]"):
    Predictor.from_checkpoint(str(tiny_pretrain_run), select="5")
