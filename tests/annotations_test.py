"""Tests for jaxcorr.xray.annotations and the check_annotations tool."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from jaxcorr.tools import check_annotations
from jaxcorr.xray import annotations, io
from jaxcorr.xray.letterbox import Letterbox


@pytest.fixture
def views(tmp_path):
  """Two studies' images: s1/ap.png 40 high x 60 wide, s1/lat.dcm 50 x 30, s2/a.png 20 x 20."""
  (tmp_path / "s1").mkdir()
  (tmp_path / "s2").mkdir()
  io.write_png(tmp_path / "s1" / "ap.png", np.zeros((40, 60)))
  io.write_dicom(tmp_path / "s1" / "lat.dcm", np.zeros((50, 30)))
  io.write_png(tmp_path / "s2" / "a.png", np.zeros((20, 20)))
  return tmp_path


def _pair(a, b, label):
  return {"a": list(a), "b": list(b), "label": label}


GOOD = {"study": "s1", "body_part": "ankle", "views": ["s1/ap.png", "s1/lat.dcm"],
        "pairs": [_pair([0, 10, 20], [1, 5.5, 49.4], 1), _pair([1, 0, 0], [0, 59.4, 39.4], 0)]}


def _write(folder, lines, name="ann.jsonl"):
  path = folder / name
  path.write_text("\n".join(l if isinstance(l, str) else json.dumps(l) for l in lines) + "\n")
  return path


def test_load_valid_file(views):
  absolute = str(views / "s2" / "a.png")
  path = _write(views, [GOOD, "", {"views": [absolute, "s1/ap.png"], "pairs": []}])
  s1, s2 = annotations.load_annotations(path)
  assert s1.study == "s1" and s1.body_part == "ankle" and s1.line == 1 and s1.n_pairs == 2
  assert s1.views == (str(views / "s1" / "ap.png"), str(views / "s1" / "lat.dcm"))
  np.testing.assert_array_equal(s1.a_view, [0, 1])
  np.testing.assert_array_equal(s1.b_xy, [[5.5, 49.4], [59.4, 39.4]])
  np.testing.assert_array_equal(s1.label, [1, 0])
  assert s2.study == "line 3" and s2.views[0] == absolute and s2.body_part is None
  report = annotations.validate(path)
  assert report.ok and report.counts == {"s1": (1, 1), "line 3": (0, 0)}
  assert [(p.line, p.kind) for p in report.problems] == [(3, "no_pairs")]  # a warning
  text = report.format()
  assert "2 studies, 2 pairs (1 positive, 1 negative); 0 errors, 1 warnings" in text
  assert text.endswith("OK")


def _bad_lines():
  same = _pair([0, 1, 1], [0, 2, 2], 1)
  return [
      (GOOD, None),
      ('{"views": ["s1/ap.png", ', "format"),  # 2: not JSON
      ({"pairs": []}, "format"),  # 3: no views
      ({**GOOD, "study": "x4", "pairs": [_pair([2, 1, 1], [0, 1, 1], 1)]}, "format"),  # 4
      ({"study": "x5", "views": ["s1/ap.png"], "pairs": []}, "format"),  # 5: one view
      ({"study": "x6", "views": ["s1/ap.png", "s1/nope.png"],
        "pairs": [_pair([0, 1, 1], [1, 1, 1], 1)]}, "missing_file"),  # 6
      ({**GOOD, "study": "x7", "pairs": [_pair([0, 60, 1], [1, 1, 1], 1)]}, "out_of_image"),
      ({**GOOD, "study": "x8", "pairs": [same, same]}, "same_view,same_view,duplicate"),
      ({**GOOD, "study": "x9", "pairs": [_pair([0, 3, 4], [1, 5, 6], 1),
                                         _pair([1, 5, 6], [0, 3, 4], 0)]}, "contradiction"),
      (GOOD, "duplicate_study"),  # 10
      ({**GOOD, "study": "x11", "pairs": [{**_pair([0, 1, 1], [1, 1, 1], 2)}]}, "format"),
      ({**GOOD, "study": "x12", "extra": 1}, "format"),
      ({**GOOD, "study": "x13", "pairs": []}, "no_pairs"),
      ({**GOOD, "study": "x14", "pairs": [_pair([0, 1, 1], [1, 1, 1], 1.0)]}, "format"),
  ]


def test_each_problem_reported_with_its_line(views):
  lines = _bad_lines()
  path = _write(views, [l for l, _ in lines])
  report = annotations.validate(path)
  expected = [(n, kind) for n, (_, kinds) in enumerate(lines, 1) if kinds
              for kind in kinds.split(",")]
  assert [(p.line, p.kind) for p in report.problems] == expected
  assert not report.ok and len(report.errors) == len(expected) - 2  # duplicate, no_pairs warn
  by_line = {p.line: p.message for p in report.problems}
  assert "not valid JSON" in by_line[2] and "missing key(s) views" in by_line[3]
  assert "view index 2 is not an integer in [0, 2)" in by_line[4]
  assert "1 view(s)" in by_line[5] and "nope.png: no such file" in by_line[6]
  assert "point a [0, 60, 1] lies outside view 0" in by_line[7] and "60 wide" in by_line[7]
  assert "pair 1 has label 0 but pair 0" in by_line[9] and "line 1" in by_line[10]
  assert "label must be 0 or 1" in by_line[11] and "unknown key(s) extra" in by_line[12]
  text = report.format()
  assert f"{path}:7: error [out_of_image]" in text and text.endswith("fix the errors above")
  assert report.counts["x8"] == (2, 0) and report.counts["x9"] == (1, 1)
  # Without images, only the file itself is checked.
  kinds = {p.kind for p in annotations.validate(path, check_images=False).problems}
  assert not kinds & {"missing_file", "out_of_image"}


def test_load_raises_at_first_bad_line(views):
  path = _write(views, [l for l, _ in _bad_lines()])
  with pytest.raises(annotations.AnnotationError, match=f"{path}:2: not valid JSON"):
    annotations.load_annotations(path)
  path = _write(views, [GOOD, GOOD], "dup.jsonl")
  with pytest.raises(annotations.AnnotationError, match=r"dup.jsonl:2: study 's1' already used"):
    annotations.load_annotations(path)
  path.write_bytes(json.dumps(GOOD).encode() + b"\n\n{\"study\": \"\xff\"}\n")
  with pytest.raises(annotations.AnnotationError, match=r"dup.jsonl:3: not UTF-8 text"):
    annotations.load_annotations(path)
  with pytest.raises(annotations.AnnotationError, match="no such annotation file"):
    annotations.load_annotations(views / "missing.jsonl")


def test_cli_exit_codes(views, capsys):
  good = _write(views, [GOOD], "good.jsonl")
  assert check_annotations.main([str(good)]) == 0
  assert "OK" in capsys.readouterr().out
  missing = _write(views, [{**GOOD, "views": ["s1/ap.png", "gone.png"]}], "missing.jsonl")
  assert check_annotations.main([str(missing)]) == 1
  assert "[missing_file]" in capsys.readouterr().out
  assert check_annotations.main([str(missing), "--no-images"]) == 0
  assert check_annotations.main([str(views / "absent.jsonl")]) == 1
  res = subprocess.run([sys.executable, "-m", "jaxcorr.tools.check_annotations", str(missing)],
                       capture_output=True, text=True, check=False,
                       cwd=pathlib.Path(__file__).resolve().parents[1])
  assert res.returncode == 1 and f"{missing}:1: error [missing_file]" in res.stdout


def _study(pairs, n_views=2):
  obj = {"study": "hand", "views": [f"v{k}.png" for k in range(n_views)], "pairs": pairs}
  return annotations.parse_study(obj, 1, pathlib.Path("/data"))


# View 0 is 100 x 200 (landscape), view 1 200 x 100 (portrait), both into 64 x 64 with 16-pixel
# patches: s = 0.32, a 4 x 4 grid; view 0 has 16 padding rows above, view 1 16 columns left.
BOXES = [Letterbox((100, 200), (64, 64)), Letterbox((200, 100), (64, 64))]


def test_patch_pairs_hand_made():
  study = _study([
      # view 0 (100, 50) -> model edge (32.16, 32.16): patch (2, 2) = 10; view 1 (10, 10) ->
      # (19.36, 3.36): patch (0, 1) = 1.
      _pair([0, 100, 50], [1, 10, 10], 1),
      # a in view 1 (90, 190) -> (44.96, 60.96): patch 14; b in view 0 (5, 5) -> (1.76,
      # 17.76): patch 4. Swapped so that rows are view 0's patches.
      _pair([1, 90, 190], [0, 5, 5], 0),
      _pair([0, 101, 51], [1, 11, 11], 0),  # the first patch pair again, negative: positive wins
      _pair([0, -1, 5], [1, 10, 10], 1),  # off view 0: dropped as padding
      _pair([0, 3, 3], [0, 9, 9], 1),  # within one view: dropped
  ])
  out = annotations.patch_pairs(study, BOXES, 16, 2)
  np.testing.assert_array_equal(np.stack([out.pair, out.row, out.col, out.label], 1),
                                [[0, 4, 14, 0], [0, 10, 1, 1]])
  assert out.counts == {"points": 5, "kept": 2, "unselected": 0, "same_view": 1, "padding": 1,
                        "merged": 1, "conflicts": 1}
  pair, row, col, label = annotations.patch_pairs(study, BOXES, patch=16)  # n_views = 2 boxes
  np.testing.assert_array_equal(np.stack([pair, row, col, label], 1),
                                [[0, 4, 14, 0], [0, 10, 1, 1]])
  target, mask = out.dense()
  assert target.shape == mask.shape == (1, 16, 16) and mask.sum() == 2
  assert target[0, 10, 1] == 1 and target[0, 4, 14] == 0 and mask[0, 4, 14]


def test_patch_pairs_three_views_and_selection():
  boxes = BOXES + [Letterbox((64, 64), (64, 64))]  # view 2: identity, patch = (y // 16, x // 16)
  study = _study([_pair([2, 40, 5], [1, 10, 10], 1),  # pair (1, 2): row view 1's patch 1
                  _pair([2, 40, 5], [0, 100, 50], 0)], n_views=3)  # pair (0, 2), swapped
  out = annotations.patch_pairs(study, boxes, 16, 3)
  np.testing.assert_array_equal(annotations.pair_indices(3), [[0, 1], [0, 2], [1, 2]])
  np.testing.assert_array_equal(np.stack([out.pair, out.row, out.col, out.label], 1),
                                [[1, 10, 2, 0], [2, 1, 2, 1]])
  # Slots (study view 2, study view 0): the pair touching view 1 is not shown.
  out = annotations.patch_pairs(study, [boxes[2], boxes[0]], 16, 2, views=[2, 0])
  np.testing.assert_array_equal(np.stack([out.pair, out.row, out.col, out.label], 1),
                                [[0, 2, 10, 0]])
  assert out.counts["unselected"] == 1 and out.counts["kept"] == 1
  with pytest.raises(ValueError, match="need n_views=2 distinct view indices"):
    annotations.patch_pairs(study, boxes, 16, 2)
  with pytest.raises(ValueError, match="different patch grids"):
    annotations.patch_pairs(study, [boxes[0], Letterbox((64, 64), (32, 64))], 16, 2)
