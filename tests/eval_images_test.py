"""TensorBoard images at each evaluation (Task.eval_images through the loop's writer) and the
precision-recall curve they draw."""

import io

import numpy as np
import pytest
from PIL import Image

from jaxcorr.metrics import correspondence as metrics
from jaxcorr.pictures import curves
from writers_test import _fields, _read_records


def tb_images(workdir) -> dict:
  """{(step, tag): decoded RGB array} of every image summary in <workdir>/tb."""
  out = {}
  for events in sorted((workdir / "tb").iterdir()):
    for record in _read_records(events):
      event = dict(_fields(record))
      for number, value in _fields(event.get(5, b"")):
        value = dict(_fields(value))
        if number == 1 and 4 in value:
          image = dict(_fields(value[4]))
          pixels = np.asarray(Image.open(io.BytesIO(image[4])))
          assert pixels.shape == (image[1], image[2], 3)
          out[(event[2], value[1].decode())] = pixels
  return out


def test_pretraining_writes_views_and_pr_curve_at_each_evaluation(tiny_pretrain_run):
  images = tb_images(tiny_pretrain_run)
  # The fixture evaluates once, at step 12, on one batch of 4: two samples and the curve.
  assert sorted(images) == [(12, "eval/pr_curve"), (12, "eval/sample_0"), (12, "eval/sample_1")]
  for pixels in images.values():
    assert min(pixels.shape[:2]) >= 300 and pixels.std() > 10


def test_pr_curve_steps_and_their_area_is_the_ap():
  scores = np.array([0.9, 0.8, 0.8, 0.5, 0.3, 0.3, 0.1])
  targets = np.array([1, 0, 1, 0, 1, 0, 0], bool)
  recall, precision = curves.pr_curve(scores, targets)
  # Runs: {0.9} tp 1/1; {0.8, 0.8} tp 2/3; {0.5} 2/4; {0.3, 0.3} 3/6; {0.1} 3/7.
  np.testing.assert_allclose(recall, [1 / 3, 2 / 3, 2 / 3, 1, 1])
  np.testing.assert_allclose(precision, [1, 2 / 3, 1 / 2, 1 / 2, 3 / 7])
  area = np.sum(np.diff(np.r_[0, recall]) * precision)
  assert area == pytest.approx(metrics.average_precision(scores, targets), abs=1e-15)
  fig = curves.pr_curve_figure(scores, targets)
  assert fig.width >= 360 and fig.height >= 360
  assert curves.pr_curve(scores, np.zeros(7, bool))[0].size == 0


def test_line_figure_draws_each_series_and_refuses_ragged_ones():
  fig = curves.line_figure({"a": ([0, 10], [1.0, 30.0]), "b": ([5], [12.0])},
                           xlabel="samples", ylabel="AP (%)", references={"untrained": 1.0})
  assert fig.width >= 480 and fig.height >= 300
  pixels = np.asarray(fig)
  # The two series' colours are drawn.
  for colour in curves.SERIES_COLOURS[:2]:
    assert np.all(pixels == colour, axis=-1).sum() > 20
  with pytest.raises(ValueError, match="series 'b': x and y must be equal-length"):
    curves.line_figure({"b": ([0, 1], [1.0])}, xlabel="x", ylabel="y")
