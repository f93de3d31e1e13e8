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
  # F1 of "score >= t" down the ranking: 1/2, 4/5, 2/3, 6/7 (t = 0.1: P 3/4, R 1), 3/4; the
  # threshold lies midway between 0.1 and the next score, 0.0.
  assert r["best_f1"] == pytest.approx(6 / 7) and r["f1_threshold"] == pytest.approx(0.05)
  # Leading axes 2 + 1 samples; true C > 0.2 on 0.5, 0.9 and 1.0 of the 5 pairs.
  assert r["samples"] == 3 and r["positive_fraction"] == pytest.approx(3 / 5)


def _ap_from_definition(scores, targets):
  """scikit-learn's average_precision_score written from its definition, one threshold at a
  time: AP = sum over the distinct scores t (descending) of (R(t) - R(previous t)) P(t), with
  P(t), R(t) the precision and recall of the prediction `score >= t`."""
  scores, targets = np.asarray(scores, float).ravel(), np.asarray(targets, bool).ravel()
  ap, previous_recall = 0.0, 0.0
  for t in sorted(set(scores.tolist()), reverse=True):
    predicted = scores >= t
    tp = np.sum(predicted & targets)
    recall = tp / targets.sum()
    ap += (recall - previous_recall) * tp / predicted.sum()
    previous_recall = recall
  return ap


def test_average_precision_ties_enter_together():
  # One run of three tied scores (1 positive) then the last positive: steps at t = 0.5
  # (P = 1/3, R = 1/2) and t = 0.1 (P = 2/4, R = 1): AP = 1/2 * 1/3 + 1/2 * 1/2 = 5/12.
  # Breaking the tie with the positive first would give (1 + 2/4) / 2 = 3/4.
  scores = np.array([0.5, 0.5, 0.5, 0.1])
  targets = np.array([True, False, False, True])
  assert metrics.average_precision(scores, targets) == pytest.approx(5 / 12)
  assert metrics.average_precision(scores[::-1], targets[::-1]) == pytest.approx(5 / 12)
  # All scores tied: one step, AP = the positive fraction.
  assert metrics.average_precision(np.zeros(5), np.array([1, 0, 0, 1, 0], bool)) == 0.4


def test_average_precision_with_70_percent_ties_at_zero():
  # A squared-cosine head outputs many exact zeros: 70% of the scores tie at 0, with positives
  # among them; the order of the input must not matter and AP must equal the definition.
  rng = np.random.default_rng(0)
  n = 2000
  scores = rng.uniform(0.0, 1.0, n)
  scores[rng.permutation(n)[:1400]] = 0.0
  targets = rng.uniform(size=n) < 0.05 + 0.3 * scores     # scores are informative
  expected = _ap_from_definition(scores, targets)
  assert metrics.average_precision(scores, targets) == pytest.approx(expected, rel=1e-12)
  perm = rng.permutation(n)
  assert metrics.average_precision(scores[perm], targets[perm]) == pytest.approx(expected,
                                                                                 rel=1e-12)
  # The stable-sort AP that ranks tied positives by input position differs here.
  order = np.argsort(-scores, kind="stable")
  hits = targets[order]
  stable = np.sum((np.cumsum(hits) / np.arange(1, n + 1))[hits]) / hits.sum()
  assert abs(stable - expected) > 1e-3


def test_precision_recall_threshold_is_strict_as_torchmetrics():
  # torchmetrics binarises `preds > threshold`: a prediction of exactly 0.2 is negative, and so
  # is a target of exactly 0.2.
  m = metrics.CorrespondenceMetrics()
  m.update(np.array([0.2, 0.2000001, 0.9]), np.array([0.9, 0.9, 0.2]))
  r = m.result()        # TP 1 (0.2000001 / 0.9), FP 1 (0.9 / 0.2), FN 1 (0.2 / 0.9)
  assert (m.tp, m.fp, m.fn) == (1, 1, 1)
  assert r["precision"] == pytest.approx(0.5) and r["recall"] == pytest.approx(0.5)


def test_best_f1_is_the_best_threshold_of_the_definition_and_its_threshold_gives_it():
  # Ties: "score >= 0.5" has P 1/3, R 1/2 (F1 2/5); ">= 0.1" P 1/2, R 1 (F1 2/3), the last step,
  # so the threshold lies just below 0.1.
  f1, threshold = metrics.best_f1(np.array([0.5, 0.5, 0.5, 0.1]),
                                  np.array([True, False, False, True]))
  assert f1 == pytest.approx(2 / 3) and threshold < 0.1 and threshold == pytest.approx(0.1)
  assert np.isnan(metrics.best_f1(np.array([0.3]), np.array([False]))).all()
  rng = np.random.default_rng(0)
  for _ in range(20):
    scores = np.round(rng.random(50), 1)                 # ties
    targets = rng.random(50) < 0.3
    if not targets.any():
      continue
    f1, threshold = metrics.best_f1(scores, targets)

    def f1_of(predicted):
      tp = np.sum(predicted & targets)
      return 2 * tp / (predicted.sum() + targets.sum())

    assert f1 == pytest.approx(max(f1_of(scores >= t) for t in set(scores.tolist())))
    assert f1_of(scores > threshold) == pytest.approx(f1)
