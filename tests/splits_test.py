"""Which CTs a run uses and how they are split: `ct.path` as one entry or a tuple of folders,
files and .txt lists (also from the command line), and `data.test_path` / `data.validation_path`
naming the held-out CTs instead of the automatic split (never trained on)."""

import json
import sys

import pytest
from absl import flags
from ml_collections import config_flags

from conftest import REPO
from jaxcorr.data import splits, validation

sys.path.insert(0, str(REPO))
from configs import pretrain  # pylint: disable=wrong-import-position


def _cts(folder, names):
  """Empty files with CT names (listing never reads them)."""
  folder.mkdir(parents=True, exist_ok=True)
  for n in names:
    (folder / n).write_bytes(b"")
  return [str(folder / n) for n in names]


def _config(**overrides):
  config = pretrain.get_config("tiny")
  config.update_from_flattened_dict(overrides)
  return config


def test_list_paths_string_tuple_and_list_file(tmp_path):
  a = _cts(tmp_path / "ct", ["a.nii.gz", "b.nii"])
  c = _cts(tmp_path / "ct_limbs", ["c.nii.gz", "d.nii.gz"])
  (tmp_path / "ct" / "notes.md").write_text("not a CT")       # logged and ignored
  series = tmp_path / "series"                                # a DICOM series folder
  _cts(series, ["IM0001", "IM0002"])
  listing = tmp_path / "more.txt"
  listing.write_text(f"# extra CTs\n{c[1]}\n\n{series}\n{a[0]}\n")
  assert splits.list_paths(str(tmp_path / "ct")) == a
  assert splits.list_paths((str(tmp_path / "ct"), str(tmp_path / "ct_limbs"))) == a + c
  # A file, a list file (its duplicate of a.nii.gz kept once) and a DICOM series, in order.
  assert splits.list_paths([c[0], str(listing)]) == [c[0], c[1], str(series), a[0]]
  assert splits.list_paths("") == [] and splits.list_paths(()) == []
  config = _config(**{"ct.path": (str(tmp_path / "ct"), str(listing))})
  assert splits.list_volumes(config) == a + [c[1], str(series)]
  with pytest.raises(ValueError, match=r"config.data.test_path=\('x', ''\): every entry"):
    splits.list_paths(("x", ""), "data.test_path")


def test_relative_entries_become_absolute(tmp_path, monkeypatch):
  _cts(tmp_path / "ct", ["a.nii.gz"])
  monkeypatch.chdir(tmp_path)
  assert splits.list_paths(("ct",)) == [str(tmp_path / "ct" / "a.nii.gz")]


@pytest.mark.parametrize("value, expected", [
    ("/data/ct", "/data/ct"),
    ("../shared/data/ct", "../shared/data/ct"),
    ("ct/ibsi_sts_STS_049_ct.nii.gz", "ct/ibsi_sts_STS_049_ct.nii.gz"),
    ("('../shared/data/ct','../shared/data/ct_limbs')",
     ("../shared/data/ct", "../shared/data/ct_limbs")),
    ("['a.txt', 'b']", ["a.txt", "b"]),
])
def test_ct_path_from_the_command_line(value, expected):
  # The same flag machinery as jaxcorr.main (config_flags.DEFINE_config_file, locked config).
  argv = ["prog", f"--config={REPO}/configs/pretrain.py:tiny", f"--config.ct.path={value}",
          f"--config.data.test_path={value}"]
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "", flag_values=flag_values, lock_config=True,
                                  sys_argv=argv)
  flag_values(argv)
  config = flag_values.config
  assert config.ct.path == expected and config.data.test_path == expected
  assert validation.problems(config) == []


@pytest.mark.parametrize("field, value", [
    ("ct.path", 3), ("ct.path", ()), ("ct.path", ("a", "")), ("data.test_path", (1,)),
])
def test_bad_paths_are_named(field, value):
  found = validation.problems(_config(**{field: value}))
  assert len(found) == 1 and found[0].startswith(f"config.{field}={value!r}: expected a path")


def test_test_path_replaces_the_split_and_is_never_trained_on(tmp_path):
  cts = _cts(tmp_path / "ct", [f"{k}.nii.gz" for k in "abcdef"]) + _cts(
      tmp_path / "ct_limbs", [f"{k}.nii.gz" for k in "ghij"])
  held = cts[4]                                     # ct/e.nii.gz, named by its own path
  config = _config(**{"ct.path": (str(tmp_path / "ct"), str(tmp_path / "ct_limbs")),
                      "data.test_path": held, "data.splits": (0.8, 0.2, 0.1)})
  work = tmp_path / "run"
  work.mkdir()
  got = splits.load_or_assign(config, str(work))
  assert got["test"] == [held]
  # The other nine go to train and validation by their fractions 0.8 : 0.2 (the test fraction
  # is unused): floor(0.8 * 9) = 7 and floor(0.2 * 9) = 1, the remainder to train.
  assert (len(got["train"]), len(got["validation"])) == (8, 1)
  assert sorted(got["train"] + got["validation"]) == sorted(c for c in cts if c != held)
  assert json.loads((work / "splits.json").read_text()) == got
  # Both named: every other CT trains. A validation CT named by a list file.
  listing = tmp_path / "val.txt"
  listing.write_text(f"{cts[0]}\n{cts[9]}\n")
  config.data.validation_path = str(listing)
  (tmp_path / "fresh").mkdir()
  both = splits.load_or_assign(config, str(tmp_path / "fresh"))
  assert sorted(both["train"]) == [c for c in cts if c not in (held, cts[0], cts[9])]
  assert both["validation"] == [cts[0], cts[9]] and both["test"] == [held]


def test_named_ct_leaves_an_earlier_training_split(tmp_path):
  cts = _cts(tmp_path / "ct", [f"{k}.nii.gz" for k in "abcd"])
  work = tmp_path / "run"
  work.mkdir()
  (work / "splits.json").write_text(json.dumps(
      {"train": cts[:3], "validation": [cts[3]], "test": []}))
  config = _config(**{"ct.path": str(tmp_path / "ct"), "data.test_path": cts[1]})
  got = splits.load_or_assign(config, str(work))
  assert got == {"train": [cts[0], cts[2]], "validation": [cts[3]], "test": [cts[1]]}
  # A CT named for test that is not in ct.path is still the test split, and trains nowhere.
  other = _cts(tmp_path / "elsewhere", ["z.nii.gz"])[0]
  config.data.test_path = (other,)
  got = splits.load_or_assign(config, str(work))
  assert got["test"] == [other] and cts[1] in got["train"]
  assert other not in got["train"] + got["validation"]
