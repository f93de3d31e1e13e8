"""Exact metric values on hand-made inputs."""

import numpy as np
import pytest

from jaxcorr.metrics import correspondence as metrics


def test_average_precision_hand_computed():
  # Ranked: 0.9 (pos), 0.8 (neg), 0.7 (pos), 0.1 (neg) -> AP = (1/1 + 2/3) / 2.
  scores = np.array([0.1, 0.9, 0.7, 0.8])
  targets = np.array([False, True, True, False])
  assert metrics.average_precision(scores, targets) == pytest.approx((1 + 2 / 3) / 2)
  assert metrics.average_precision(np.array([0.3, 0.2]), np.array([True, True])) == 1.0
  assert np.isnan(metrics.average_precision(np.array([0.3]), np.array([False])))


def test_precision_recall_mse_over_two_batches():
  m = metrics.CorrespondenceMetrics()
  true1 = np.array([[0.0, 0.5], [0.9, 0.1]])
  pred1 = np.array([[0.3, 0.6], [0.1, 0.0]])   # TP 1 (0.5/0.6), FP 1 (0.3), FN 1 (0.9)
  true2 = np.array([[1.0]])
  pred2 = np.array([[1.0]])                    # TP 1
  m.update(pred1, true1)
  m.update(pred2, true2)
  r = m.result()
  assert r["precision"] == pytest.approx(2 / 3) and r["recall"] == pytest.approx(2 / 3)
  sq = (0.3 ** 2 + 0.1 ** 2 + 0.8 ** 2 + 0.1 ** 2 + 0.0) / 5
  assert r["mse"] == pytest.approx(sq)
  # Ranking 1.0 (pos), 0.6 (pos), 0.3, 0.1 (pos), 0.0: AP = (1 + 1 + 3/4) / 3.
  assert r["ap"] == pytest.approx((1 + 1 + 3 / 4) / 3)
