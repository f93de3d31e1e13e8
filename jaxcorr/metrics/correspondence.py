"""Correspondence metrics on hand-checkable definitions (the paper's, section 4).

  MSE        mean over all pairs and patch pairs of (C_pred - C_true)^2
  precision  TP / (TP + FP), recall TP / (TP + FN), with both C binarised at `threshold`
             (0.2, as the authors do): positive = value > threshold
  AP         average precision of C_pred as a score for the binary target C_true > threshold,
             over all patch pairs: sum over the ranked list of precision@k at each positive,
             divided by the number of positives (ties broken by a stable sort on -score, so
             hand-made examples give exact values)

Streaming: `CorrespondenceMetrics` keeps (sum, count) pairs and the score/target arrays, so
averages over batches and devices are exact.
"""

from __future__ import annotations

import numpy as np

THRESHOLD = 0.2


def average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
  """AP of `scores` for the boolean `targets` (flattened); NaN when there is no positive."""
  scores = np.asarray(scores, np.float64).ravel()
  targets = np.asarray(targets, bool).ravel()
  n_pos = targets.sum()
  if n_pos == 0:
    return float("nan")
  order = np.argsort(-scores, kind="stable")
  hits = targets[order]
  precision_at_k = np.cumsum(hits) / np.arange(1, len(hits) + 1)
  return float(precision_at_k[hits].sum() / n_pos)


def confusion(pred: np.ndarray, true: np.ndarray, threshold: float = THRESHOLD) -> tuple[int, int, int]:
  """(TP, FP, FN) of the binarised matrices."""
  p = np.asarray(pred) > threshold
  t = np.asarray(true) > threshold
  return int(np.sum(p & t)), int(np.sum(p & ~t)), int(np.sum(~p & t))


class CorrespondenceMetrics:
  """Accumulates MSE, precision, recall and AP over batches."""

  def __init__(self, threshold: float = THRESHOLD):
    self.threshold = threshold
    self.sq_sum, self.count = 0.0, 0
    self.tp = self.fp = self.fn = 0
    self.scores, self.targets = [], []

  def update(self, pred: np.ndarray, true: np.ndarray) -> None:
    pred = np.asarray(pred, np.float32)
    true = np.asarray(true, np.float32)
    self.sq_sum += float(np.sum((pred - true) ** 2, dtype=np.float64))
    self.count += pred.size
    tp, fp, fn = confusion(pred, true, self.threshold)
    self.tp, self.fp, self.fn = self.tp + tp, self.fp + fp, self.fn + fn
    self.scores.append(pred.ravel())
    self.targets.append(true.ravel() > self.threshold)

  def result(self) -> dict[str, float]:
    prec = self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0
    rec = self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0
    ap = (average_precision(np.concatenate(self.scores), np.concatenate(self.targets))
          if self.scores else float("nan"))
    return {"mse": self.sq_sum / max(self.count, 1), "precision": prec, "recall": rec, "ap": ap}
