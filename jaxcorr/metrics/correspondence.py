"""Correspondence metrics on hand-checkable definitions (the paper's, section 4).

  MSE        mean over all pairs and patch pairs of (C_pred - C_true)^2
  precision  TP / (TP + FP), recall TP / (TP + FN), with both C binarised at `threshold`
             (0.2, as the authors do with torchmetrics' binary Precision / Recall):
             positive = value > threshold, strictly. (torchmetrics first applies a sigmoid to
             predictions outside [0, 1]; the authors' squared-cosine head never has any, and
             neither do jaxcorr's [0, 1] heads; a plain-cosine prediction is binarised as is.)
  AP         average precision of C_pred as a score for the binary target C_true > threshold,
             over all patch pairs, step-wise over the distinct scores t_1 > t_2 > ... :
               AP = sum_k (R_k - R_{k-1}) P_k,  R_0 = 0,
             P_k, R_k the precision and recall of "score >= t_k". Tied scores enter the ranking
             together, so AP equals scikit-learn's average_precision_score and torchmetrics'
             binary AveragePrecision (thresholds=None), the authors' metric; without ties it is
             the mean of precision@k over the positives.

  best_f1, f1_threshold  the highest F1 = 2 P R / (P + R) over the same steps, and a threshold
             that gives it to "score > f1_threshold" (midway between t_k and the next lower
             score): the operating point to hand predict (`--config.threshold`), since a
             positive-weighted loss moves the scores and with them what a fixed 0.2 keeps.

  samples    how many samples were scored (the leading axis of each update, [B, P, L, L])
  positive_fraction  the fraction of patch pairs whose true C > threshold: AP depends strongly
             on it (0.03% of pairs in held-out batches of real CTs), so a table that gives AP
             without it cannot be compared with another.

Streaming: `CorrespondenceMetrics` keeps (sum, count) pairs and the score/target arrays, so
averages over batches and devices are exact.
"""

from __future__ import annotations

import numpy as np

THRESHOLD = 0.2


def _steps(scores: np.ndarray, targets: np.ndarray):
  """(distinct scores t_k descending, P_k, R_k of "score >= t_k") with ties entering together:
  sorted by decreasing score, the last index of each run of equal scores closes a step; its
  cumulative true positives tp_k and ranks n_k give P_k = tp_k / n_k and R_k = tp_k / n_pos."""
  order = np.argsort(-scores, kind="stable")
  ranked = scores[order]
  tp = np.cumsum(targets[order])
  last = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]   # end of each tie run
  return ranked[last], tp[last] / (last + 1.0), tp[last] / targets.sum()


def average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
  """AP of `scores` for the boolean `targets` (flattened), ties as scikit-learn; NaN when there
  is no positive."""
  scores = np.asarray(scores, np.float64).ravel()
  targets = np.asarray(targets, bool).ravel()
  if not targets.any():
    return float("nan")
  _, precision, recall = _steps(scores, targets)
  return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def best_f1(scores: np.ndarray, targets: np.ndarray) -> tuple[float, float]:
  """(the highest F1 of "score >= t_k" over the steps, a threshold giving it to "score >
  threshold": midway to the next lower distinct score, just below t_k at the last); (NaN,
  NaN) when there is no positive."""
  scores = np.asarray(scores, np.float64).ravel()
  targets = np.asarray(targets, bool).ravel()
  if not targets.any():
    return float("nan"), float("nan")
  t, precision, recall = _steps(scores, targets)
  f1 = np.where(precision + recall > 0,
                2 * precision * recall / np.maximum(precision + recall, 1e-300), 0.0)
  k = int(np.argmax(f1))
  below = (t[k] + t[k + 1]) / 2 if k + 1 < len(t) else np.nextafter(t[k], -np.inf)
  return float(f1[k]), float(below)


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
    self.samples = self.positives = 0
    self.scores, self.targets = [], []

  def update(self, pred: np.ndarray, true: np.ndarray, samples: int | None = None) -> None:
    """Adds a batch; `samples` defaults to the leading axis (1 for a scalar)."""
    pred = np.asarray(pred, np.float32)
    true = np.asarray(true, np.float32)
    self.samples += int(samples if samples is not None else (true.shape[0] if true.ndim else 1))
    self.positives += int(np.sum(true > self.threshold))
    self.sq_sum += float(np.sum((pred - true) ** 2, dtype=np.float64))
    self.count += pred.size
    tp, fp, fn = confusion(pred, true, self.threshold)
    self.tp, self.fp, self.fn = self.tp + tp, self.fp + fp, self.fn + fn
    self.scores.append(pred.ravel())
    self.targets.append(true.ravel() > self.threshold)

  def result(self) -> dict[str, float]:
    prec = self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0
    rec = self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0
    scores = np.concatenate(self.scores) if self.scores else np.zeros(0)
    targets = np.concatenate(self.targets) if self.targets else np.zeros(0, bool)
    f1, f1_threshold = best_f1(scores, targets)
    return {"mse": self.sq_sum / max(self.count, 1), "precision": prec, "recall": rec,
            "ap": average_precision(scores, targets), "best_f1": f1,
            "f1_threshold": f1_threshold, "samples": self.samples,
            "positive_fraction": self.positives / max(self.count, 1)}
