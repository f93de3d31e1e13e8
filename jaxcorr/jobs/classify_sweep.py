"""The `classify_sweep` job: Table-3 rows x seeds (see `jaxcorr.jobs.classify`)."""

from jaxcorr.jobs import classify

run = classify.run_sweep
