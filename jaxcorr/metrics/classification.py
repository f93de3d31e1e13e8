"""Binary classification metrics for the fracture classifier (NumPy only, exact definitions).

Inputs are 1-D (or flattened) arrays of the same size: `probs`/`scores` are finite floats,
`labels` are booleans or 0/1 (1 = fracture = positive). A case is predicted positive when
prob >= threshold.

  confusion    (TP, FP, TN, FN) of the prediction prob >= threshold against the labels
  accuracy     (TP + TN) / n
  precision    TP / (TP + FP); 0.0 when nothing is predicted positive
  recall       (sensitivity) TP / (TP + FN); 0.0 when there is no positive label
  specificity  TN / (TN + FP); 0.0 when there is no negative label
  kappa        Cohen's kappa (p_o - p_e) / (1 - p_e), with observed agreement
               p_o = (TP + TN) / n and chance agreement
               p_e = ((TP + FP)(TP + FN) + (TN + FN)(TN + FP)) / n^2;
               evaluated in integers as (n (TP + TN) - S) / (n^2 - S),
               S = (TP + FP)(TP + FN) + (TN + FN)(TN + FP), so one rounding only.
               Degenerate cases: 0.0 when p_e = 1 (prediction and labels both constant and
               equal: agreement is exactly what chance gives, so no skill is credited);
               NaN when n = 0
  AUROC        the Mann-Whitney statistic: the fraction of (positive, negative) pairs in which
               the positive has the higher score, ties counting 1/2. Computed in O(n log n) as
               (R_pos - n_pos (n_pos + 1) / 2) / (n_pos n_neg), R_pos the sum of the positives'
               ranks (1-based, tied scores share their average rank); NaN when a class is absent

Threshold selection (`choose_threshold`, on the validation set): with u_1 < ... < u_k the
distinct probabilities, the candidates are u_1 (everything positive), the midpoints
(u_i + u_{i+1}) / 2, and nextafter(u_k, +inf) (the smallest float above u_k: everything
negative). Each candidate is scored by applying it (prob >= t), the one with the most correct
predictions wins; ties go to the candidate closest to 0.5, then to the smaller threshold
(the more sensitive one), so the choice is deterministic.
"""

from __future__ import annotations

import numpy as np


def _probs(probs: np.ndarray) -> np.ndarray:
  p = np.asarray(probs, np.float64).ravel()
  if not np.all(np.isfinite(p)):
    raise ValueError("scores/probabilities must be finite")
  return p


def _labels(labels: np.ndarray, size: int) -> np.ndarray:
  y = np.asarray(labels).ravel()
  if y.size != size:
    raise ValueError(f"labels have {y.size} entries, scores {size}")
  if y.dtype != bool:
    if not np.all((y == 0) | (y == 1)):
      raise ValueError("labels must be booleans or 0/1")
    y = y == 1
  return y


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
  """Mann-Whitney AUROC of `scores` for the binary `labels`, ties 1/2; NaN if a class is absent."""
  s = _probs(scores)
  y = _labels(labels, s.size)
  n_pos = int(y.sum())
  n_neg = y.size - n_pos
  if n_pos == 0 or n_neg == 0:
    return float("nan")
  _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
  ends = np.cumsum(counts)                      # 1-based rank of each group's last member
  average_rank = ends - (counts - 1) / 2.0      # mean of the ranks ends - counts + 1 .. ends
  rank_sum = float(average_rank[inverse.ravel()][y].sum())   # half-integers: exact
  u = rank_sum - n_pos * (n_pos + 1) / 2.0
  return float(u / (n_pos * n_neg))


def confusion(probs: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[int, int, int, int]:
  """(TP, FP, TN, FN) with positive prediction = prob >= threshold."""
  p = _probs(probs)
  y = _labels(labels, p.size)
  pred = p >= threshold
  return (int(np.sum(pred & y)), int(np.sum(pred & ~y)),
          int(np.sum(~pred & ~y)), int(np.sum(~pred & y)))


def cohen_kappa(tp: int, fp: int, tn: int, fn: int) -> float:
  """Cohen's kappa of a 2x2 table; 0.0 when chance agreement is 1, NaN for an empty table."""
  tp, fp, tn, fn = int(tp), int(fp), int(tn), int(fn)
  if min(tp, fp, tn, fn) < 0:
    raise ValueError("confusion counts must be non-negative")
  n = tp + fp + tn + fn
  if n == 0:
    return float("nan")
  chance = (tp + fp) * (tp + fn) + (tn + fn) * (tn + fp)   # n^2 p_e
  if chance == n * n:
    return 0.0
  return (n * (tp + tn) - chance) / (n * n - chance)


def _candidates(probs: np.ndarray) -> np.ndarray:
  u = np.unique(probs)
  upper = np.nextafter(u[-1], np.inf)
  return np.concatenate([u[:1], (u[:-1] + u[1:]) / 2.0, [upper]])


def choose_threshold(probs: np.ndarray, labels: np.ndarray) -> float:
  """Accuracy-maximising threshold on this (validation) set; see the module docstring."""
  p = _probs(probs)
  y = _labels(labels, p.size)
  if p.size == 0:
    raise ValueError("choose_threshold needs at least one example")
  t = _candidates(p)
  pos, neg = np.sort(p[y]), np.sort(p[~y])
  tp = pos.size - np.searchsorted(pos, t, side="left")    # positives with prob >= t
  tn = np.searchsorted(neg, t, side="left")               # negatives with prob < t
  correct = tp + tn
  best = np.flatnonzero(correct == correct.max())
  # Lexicographic: closest to 0.5, then smaller threshold (t is increasing, so first wins).
  distance = np.abs(t[best] - 0.5)
  return float(t[best[np.argmin(distance)]])


def binary_metrics(probs: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
  """accuracy, precision, recall, specificity, kappa, auroc, threshold, n, positives (floats)."""
  p = _probs(probs)
  y = _labels(labels, p.size)
  if p.size == 0:
    raise ValueError("binary_metrics needs at least one example")
  tp, fp, tn, fn = confusion(p, y, threshold)
  n = tp + fp + tn + fn
  return {
      "accuracy": (tp + tn) / n,
      "precision": tp / (tp + fp) if tp + fp else 0.0,
      "recall": tp / (tp + fn) if tp + fn else 0.0,
      "specificity": tn / (tn + fp) if tn + fp else 0.0,
      "kappa": cohen_kappa(tp, fp, tn, fn),
      "auroc": auroc(p, y),
      "threshold": float(threshold),
      "n": float(n),
      "positives": float(tp + fn),
  }
