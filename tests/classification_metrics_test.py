"""Exact classification-metric values on hand-made inputs."""

import itertools

import numpy as np
import pytest

from jaxcorr.metrics import classification as cm


def test_auroc_hand_computed_with_ties():
  # Pairs (pos, neg): (0.35, 0.1) 1, (0.35, 0.4) 0, (0.8, 0.1) 1, (0.8, 0.4) 1 -> 3/4.
  assert cm.auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
  # A positive tied with a negative counts 1/2: (1 + 1/2 + 1 + 1) / 4.
  assert cm.auroc([0.2, 0.5, 0.5, 0.9], [0, 1, 0, 1]) == 0.875
  assert cm.auroc([0.3, 0.3, 0.3, 0.3, 0.3], [1, 0, 1, 0, 0]) == 0.5
  assert cm.auroc([0.1, 0.2, 0.8, 0.9], [False, False, True, True]) == 1.0
  assert cm.auroc([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]) == 0.0


def test_auroc_matches_pairwise_count():
  rng = np.random.default_rng(0)
  scores = rng.integers(0, 4, 40).astype(float)   # many ties
  labels = rng.integers(0, 2, 40)
  pos, neg = scores[labels == 1], scores[labels == 0]
  wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg))
  assert cm.auroc(scores, labels) == wins / (pos.size * neg.size)


def test_auroc_nan_when_a_class_is_absent_and_label_checks():
  assert np.isnan(cm.auroc([0.1, 0.9], [1, 1]))
  assert np.isnan(cm.auroc([0.1, 0.9], [0, 0]))
  with pytest.raises(ValueError):
    cm.auroc([0.1, 0.9], [0, 2])
  with pytest.raises(ValueError):
    cm.auroc([0.1, 0.9], [0, 1, 1])
  with pytest.raises(ValueError):
    cm.auroc([0.1, np.nan], [0, 1])


def test_confusion_counts_threshold_as_positive():
  probs = [0.9, 0.5, 0.49, 0.7, 0.1, 0.5]
  labels = [1, 1, 1, 0, 0, 0]
  # pred: 1 1 0 1 0 1 -> TP 2 (0.9, 0.5), FP 2 (0.7, 0.5), TN 1 (0.1), FN 1 (0.49).
  assert cm.confusion(probs, labels, 0.5) == (2, 2, 1, 1)


def test_cohen_kappa_hand_computed():
  assert cm.cohen_kappa(7, 0, 3, 0) == 1.0
  # n = 50, p_o = 35/50 = 0.7, p_e = (25*30 + 25*20) / 2500 = 0.5 -> kappa = 0.2 / 0.5.
  assert cm.cohen_kappa(tp=20, fp=5, tn=15, fn=10) == 0.4
  # Total disagreement with balanced margins: p_o = 0, p_e = 0.5 -> -1.
  assert cm.cohen_kappa(0, 5, 0, 5) == -1.0
  # Chance agreement 1 (both constant, equal) -> 0.0 by definition; empty table -> NaN.
  assert cm.cohen_kappa(5, 0, 0, 0) == 0.0
  assert cm.cohen_kappa(0, 0, 4, 0) == 0.0
  assert np.isnan(cm.cohen_kappa(0, 0, 0, 0))


def test_choose_threshold_separable_gives_accuracy_one():
  probs = np.array([0.1, 0.3, 0.6, 0.8, 0.05, 0.95])
  labels = np.array([0, 0, 1, 1, 0, 1])
  t = cm.choose_threshold(probs, labels)
  assert t == (0.3 + 0.6) / 2   # midpoint of the gap between the classes
  assert cm.binary_metrics(probs, labels, t)["accuracy"] == 1.0


def test_choose_threshold_tie_goes_closest_to_half_then_smaller():
  # Candidates 0.125, 0.1875, 0.4375, 0.75, >0.875 give 2, 3, 2, 3, 2 correct:
  # 0.75 (|0.25|) beats 0.1875 (|0.3125|).
  assert cm.choose_threshold([0.125, 0.25, 0.625, 0.875], [0, 1, 0, 1]) == 0.75
  # Candidates 0.1875 and 0.8125 tie on accuracy and on distance to 0.5: the smaller wins.
  assert cm.choose_threshold([0.125, 0.25, 0.75, 0.875], [0, 1, 0, 1]) == 0.1875


def test_choose_threshold_extremes():
  # All negative: only the threshold just above the maximum gets everything right.
  t = cm.choose_threshold([0.3, 0.6, 0.9], [0, 0, 0])
  assert t == np.nextafter(0.9, np.inf)
  assert cm.confusion([0.3, 0.6, 0.9], [0, 0, 0], t) == (0, 0, 3, 0)
  # All positive: the minimum (everything >= it).
  assert cm.choose_threshold([0.3, 0.6, 0.9], [1, 1, 1]) == 0.3


def test_choose_threshold_is_best_over_a_fine_grid():
  rng = np.random.default_rng(1)
  probs = rng.random(60).round(2)
  labels = (rng.random(60) < probs).astype(int)
  t = cm.choose_threshold(probs, labels)
  best = cm.binary_metrics(probs, labels, t)["accuracy"]
  grid = np.linspace(-0.01, 1.01, 1021)
  assert best == max(cm.binary_metrics(probs, labels, g)["accuracy"] for g in grid)


def test_binary_metrics_hand_computed():
  probs = [0.9, 0.8, 0.3, 0.6, 0.2, 0.1]
  labels = [1, 1, 1, 0, 0, 0]
  # TP 2, FP 1 (0.6), TN 2, FN 1 (0.3); S = 3*3 + 3*3 = 18 -> kappa (24 - 18) / (36 - 18).
  # AUROC: 0.9 and 0.8 beat all 3 negatives, 0.3 beats 2 -> 8/9.
  assert cm.binary_metrics(probs, labels, 0.5) == {
      "accuracy": 4 / 6, "precision": 2 / 3, "recall": 2 / 3, "specificity": 2 / 3,
      "kappa": 1 / 3, "auroc": 8 / 9, "threshold": 0.5, "n": 6.0, "positives": 3.0}


def test_binary_metrics_nothing_predicted_positive():
  r = cm.binary_metrics([0.1, 0.2, 0.3], [1, 0, 0], 0.5)
  assert r["precision"] == 0.0 and r["recall"] == 0.0 and r["specificity"] == 1.0
  assert r["accuracy"] == 2 / 3 and r["kappa"] == 0.0 and r["auroc"] == 0.0
  assert all(isinstance(v, float) for v in r.values())
