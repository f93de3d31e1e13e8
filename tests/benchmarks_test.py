"""Tests of the benchmark scripts' helpers and of the DRR benchmark's table (a tiny run)."""

import re
import subprocess
import sys

import pytest

from conftest import REPO, subprocess_env
from jaxcorr.benchmarks import timing


def test_sig_gives_three_significant_figures_in_plain_notation():
  cases = {5012.3: "5010", 0.00019876: "0.000199", 36.54: "36.5", 9996.0: "10000",
           0.9996: "1.00", 99.96: "100", 1.0: "1.00", -0.01234: "-0.0123", 12345.0: "12300",
           0.0: "0", float("nan"): "nan", float("inf"): "inf"}
  for x, want in cases.items():
    assert timing.sig(x) == want, (x, timing.sig(x))
  assert timing.sig(5012.3, 2) == "5000"


def test_median_seconds_repeats_short_calls_to_fill_a_sample():
  calls = []
  fn = lambda: calls.append(1)
  assert timing.median_seconds(fn, 3) >= 0 and len(calls) == 1 + 3   # warm-up + samples
  calls.clear()
  t = timing.median_seconds(fn, 3, min_sample_s=0.01)
  # A call this short is repeated up to the cap (10,000 per sample), then averaged.
  assert len(calls) > 3 * 100 and t < 1e-3


def test_input_pipeline_settings_are_checked():
  from jaxcorr.benchmarks import input_pipeline  # pylint: disable=import-outside-toplevel
  assert input_pipeline.parse_settings(["16:float32", "64:bfloat16"]) == [
      (16, "float32"), (64, "bfloat16")]
  with pytest.raises(ValueError, match="'64' is not batch:dtype"):
    input_pipeline.parse_settings(["64"])
  with pytest.raises(ValueError, match="--settings dtype='float16' is not allowed"):
    input_pipeline.parse_settings(["64:float16"])


def test_drr_benchmark_prints_every_kernel_in_views_per_second():
  cmd = [sys.executable, "-m", "jaxcorr.benchmarks.drr", "--ct=/nonexistent", "--size=16",
         "--detector=16", "--views=2", "--repeats=1", "--rtk=false", "--min_sample_s=0"]
  res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=subprocess_env(1),
                       timeout=600, check=False)
  assert res.returncode == 0, res.stderr[-3000:]
  rows = [line.split("|")[1:-1] for line in res.stdout.splitlines()
          if re.match(r"\| 2 \|", line)]
  assert [r[1].strip() for r in rows] == ["clipped", "dense", "fused (interpret)"]
  for row in rows:
    s_per_view, views_per_s, diff = row[2].strip(), row[3].strip(), float(row[5])
    # Three significant figures, not a fixed number of decimals.
    assert len(re.sub(r"^0\.0*|\.", "", s_per_view)) == 3, s_per_view
    assert len(re.sub(r"\.|0+$", "", views_per_s)) <= 3, views_per_s
    assert abs(1 / float(s_per_view) / float(views_per_s) - 1) < 0.01
    assert diff < 1e-5                         # every kernel's image is the dense one's
    assert row[9].strip() == "-"               # nanodrr's figure is for 256^2 detectors
