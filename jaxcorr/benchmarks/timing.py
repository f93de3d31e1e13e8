"""Timing and number formatting helpers shared by the benchmark scripts."""

from __future__ import annotations

import math
import statistics
import time


def median_seconds(fn, repeats: int, *, min_sample_s: float = 0.0) -> float:
  """Median wall time of one `fn()` call over `repeats` samples, after one warm-up
  (compilation) call.

  A sample times `fn()` called back to back as often as it takes to fill `min_sample_s`
  (estimated from a second warm-up call; at least once), so calls far shorter than the
  clock's and the host's jitter (a GPU rendering a DRR in ~0.1 ms) are still resolved.
  """
  fn()
  calls = 1
  if min_sample_s > 0:
    t0 = time.perf_counter()
    fn()
    once = time.perf_counter() - t0
    calls = max(1, min(10_000, math.ceil(min_sample_s / max(once, 1e-9))))
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    for _ in range(calls):
      fn()
    times.append((time.perf_counter() - t0) / calls)
  return statistics.median(times)


def sig(x: float, digits: int = 3) -> str:
  """`x` rounded to `digits` significant figures, in plain notation: 5012.3 -> '5010',
  0.00019876 -> '0.000199', 36.54 -> '36.5'; 'nan' and 'inf' as such."""
  if not math.isfinite(x) or x == 0:
    return str(float(x)) if x != 0 else "0"
  decimals = digits - 1 - math.floor(math.log10(abs(x)))
  x = round(x, decimals)
  decimals = digits - 1 - math.floor(math.log10(abs(x)))   # 0.9996 rounds up to 1.00
  return f"{round(x, decimals):.{max(decimals, 0)}f}"
