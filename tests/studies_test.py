"""jaxcorr.data.studies on a tiny hand-made MURA tree and a tiny study CSV."""

import os

import numpy as np
import pytest
from PIL import Image

from jaxcorr.data import studies

# (split, body part, patient, study, label, number of images)
MURA = [
    ("train", "XR_WRIST", "patient00001", "study1_positive", 1, 3),
    ("train", "XR_WRIST", "patient00002", "study1_negative", 0, 2),
    ("train", "XR_ELBOW", "patient00003", "study1_negative", 0, 1),
    ("train", "XR_HAND", "patient00004", "study1_positive", 1, 12),
    ("train", "XR_HAND", "patient00004", "study2_negative", 0, 2),
    ("train", "XR_SHOULDER", "patient00005", "study1_positive", 1, 2),
    ("valid", "XR_FOREARM", "patient11185", "study1_positive", 1, 2),
]


def _png(path, value=128):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(np.full((8, 6), value, np.uint8)).save(path)


def _mura(tmp_path):
  """Writes the MURA-v1.1 layout of `MURA` under tmp_path; returns tmp_path."""
  rows = {"train": ([], []), "valid": ([], [])}
  for split, part, patient, study, label, n in MURA:
    rel = f"MURA-v1.1/{split}/{part}/{patient}/{study}/"
    rows[split][0].append(f"{rel},{label}")
    for i in range(n, 0, -1):  # listed out of order on purpose
      rows[split][1].append(f"{rel}image{i}.png")
      _png(tmp_path / rel / f"image{i}.png", 10 * i)
  for split, (labelled, images) in rows.items():
    (tmp_path / "MURA-v1.1" / f"{split}_labeled_studies.csv").write_text("\n".join(labelled) + "\n")
    (tmp_path / "MURA-v1.1" / f"{split}_image_paths.csv").write_text("\n".join(images) + "\n")
  return tmp_path


def _names(study):
  return [os.path.basename(p) for p in study.paths]


def test_mura_labels_body_parts_and_first_views(tmp_path):
  root = _mura(tmp_path)
  train = studies.read_mura(root, "train")
  ids = [s.study_id for s in train]
  assert ids == ["train/XR_ELBOW/patient00003/study1_negative",
                 "train/XR_HAND/patient00004/study1_positive",
                 "train/XR_HAND/patient00004/study2_negative",
                 "train/XR_WRIST/patient00001/study1_positive",
                 "train/XR_WRIST/patient00002/study1_negative"]  # no shoulder by default
  by_id = {s.study_id: s for s in train}
  assert [s.label for s in train] == [0, 1, 0, 1, 0]
  assert by_id[ids[0]].body_part == "XR_ELBOW" and by_id[ids[1]].patient == "patient00004"
  assert _names(by_id[ids[0]]) == ["image1.png", "image1.png"]  # one view: duplicated
  assert _names(by_id[ids[1]]) == ["image1.png", "image2.png"]  # 12 views: first two
  assert _names(by_id[ids[3]]) == ["image1.png", "image2.png"]
  assert all(os.path.isabs(p) and os.path.isfile(p) for s in train for p in s.paths)
  # Root may also be MURA-v1.1 itself; valid is read the same way.
  (valid,) = studies.read_mura(root / "MURA-v1.1", "valid")
  assert valid.study_id == "valid/XR_FOREARM/patient11185/study1_positive" and valid.label == 1


def test_mura_view_rules_and_dropping_single_views(tmp_path):
  root = _mura(tmp_path)
  every = {s.study_id: s for s in studies.read_mura(root, n_views=None)}
  hand = every["train/XR_HAND/patient00004/study1_positive"]
  assert _names(hand) == [f"image{i}.png" for i in range(1, 13)]  # image10 after image9
  assert _names(studies.read_mura(root, n_views=2, pick="spread", body_parts=("XR_HAND",))[0]) == [
      "image1.png", "image12.png"]
  wrist = every["train/XR_WRIST/patient00001/study1_positive"]
  assert studies.pick_views(wrist.paths, 3, "spread") == wrist.paths
  picks = {studies.pick_views(hand.paths, 2, "random", np.random.default_rng(s)) for s in range(5)}
  assert len(picks) > 1 and all(len(set(p)) == 2 for p in picks)
  assert studies.pick_views(("a", "b"), 3) == ("a", "b", "a")
  kept = studies.read_mura(root, few_views="drop")
  assert "train/XR_ELBOW/patient00003/study1_negative" not in {s.study_id for s in kept}
  assert len(kept) == 4
  only = studies.read_mura(root, body_parts=("XR_SHOULDER",), n_views=3)
  assert [s.label for s in only] == [1] and len(only[0].paths) == 3


def test_mura_errors_name_the_file(tmp_path):
  root = _mura(tmp_path)
  with pytest.raises(ValueError, match="allowed: train, valid"):
    studies.read_mura(root, "test")
  with pytest.raises(ValueError, match=r"unknown MURA body parts \['XR_KNEE'\]"):
    studies.read_mura(root, body_parts=("XR_KNEE",))
  with pytest.raises(ValueError, match="pick rule='best' is not allowed"):
    studies.read_mura(root, pick="best")
  with pytest.raises(FileNotFoundError, match="no MURA-v1.1 folder"):
    studies.read_mura(tmp_path / "MURA-v1.1" / "train")
  missing = root / "MURA-v1.1/train/XR_WRIST/patient00002/study1_negative/image2.png"
  os.remove(missing)
  with pytest.raises(FileNotFoundError, match=f"{missing}: listed in .*train_image_paths.csv"):
    studies.read_mura(root)
  assert len(studies.read_mura(root, check_files=False)) == 5
  os.remove(root / "MURA-v1.1" / "valid_labeled_studies.csv")
  with pytest.raises(FileNotFoundError, match="valid_labeled_studies.csv: missing"):
    studies.read_mura(root, "valid")


def _csv(tmp_path, text):
  for name in ("a1.png", "a2.png", "b1.png", "c1.png", "c2.png", "c3.png"):
    _png(tmp_path / "img" / name)
  path = tmp_path / "studies.csv"
  path.write_text(text)
  return path


def test_study_csv_reads_rows_relative_to_its_folder(tmp_path):
  path = _csv(tmp_path, "study_id,label,view_1,view_2,view_3,body_part\n"
                        "a,1,img/a1.png,img/a2.png,,wrist\n"
                        "b,0,img/b1.png,,,hand\n"
                        "c,0,img/c1.png,img/c2.png,img/c3.png,\n")
  rows = studies.read_study_csv(str(path))
  assert [(s.study_id, s.label, s.body_part, len(s.paths)) for s in rows] == [
      ("a", 1, "wrist", 2), ("b", 0, "hand", 1), ("c", 0, "", 3)]
  assert rows[0].paths[0] == str(tmp_path / "img" / "a1.png") and rows[1].patient == "b"
  two = studies.read_study_csv(str(path), n_views=2)
  assert [len(s.paths) for s in two] == [2, 2, 2] and two[1].paths == (rows[1].paths[0],) * 2


@pytest.mark.parametrize("text, error, match", [
    ("id,label,view_1\nx,1,img/a1.png\n", ValueError, "header must be study_id,label,view_1"),
    ("study_id,label,view_1,age\nx,1,img/a1.png,3\n", ValueError, r"unknown columns \['age'\]"),
    ("study_id,label,view_1\nx,2,img/a1.png\n", ValueError, "line 2 .*label '2' must be 0 or 1"),
    ("study_id,label,view_1\nx,1,img/a1.png\nx,0,img/b1.png\n", ValueError, "line 3 .*repeated"),
    ("study_id,label,view_1\nx,1,\n", ValueError, "line 2 .*no view paths"),
    ("study_id,label,view_1\nx,1,img/zz.png\n", FileNotFoundError, r"line 2 .*zz\.png is missing"),
])
def test_study_csv_errors_name_the_row(tmp_path, text, error, match):
  with pytest.raises(error, match=match):
    studies.read_study_csv(str(_csv(tmp_path, text)))


def test_split_by_patient_keeps_patients_whole_and_is_seeded(tmp_path):
  rows = [studies.Study(f"s{i}", ("x",), i % 2, "XR_HAND", f"p{i // 3}") for i in range(30)]
  train, val = studies.split_by_patient(rows, 0.2, seed=0)
  assert len(train) + len(val) == 30 and 6 <= len(val) <= 8
  assert not {s.patient for s in train} & {s.patient for s in val}
  assert studies.split_by_patient(rows, 0.2, seed=0) == (train, val)
  assert studies.split_by_patient(rows, 0.2, seed=1)[1] != val
  assert studies.split_by_patient(rows, 0.0) == (rows, [])
  mura = studies.read_mura(_mura(tmp_path))
  train, val = studies.split_by_patient(mura, 0.3, seed=0)
  assert val and not {s.patient for s in train} & {s.patient for s in val}
