"""Config-driven jobs. `run(config, workdir)` dispatches on `config.job`.

Jobs are the top layer below `main`: each is a module with a `run(config, workdir)` function,
imported only when it is asked for; nothing below them imports them (tests/layering_test.py).
They and `main` are the only code that touches the workdir; config blocks become objects in
the layers below (`jaxcorr.data.from_config`, `jaxcorr.models.build`).
"""

import importlib

JOBS = {
    "render": "jaxcorr.jobs.render",
    "generate": "jaxcorr.jobs.generate",
    "pretrain": "jaxcorr.jobs.pretrain",
    "evaluate": "jaxcorr.jobs.evaluate",
    "finetune": "jaxcorr.jobs.finetune",
    "predict": "jaxcorr.jobs.predict",
    "make_sparse": "jaxcorr.jobs.make_sparse",
    "evaluate_sparse": "jaxcorr.jobs.evaluate_sparse",
    "make_fractures": "jaxcorr.jobs.make_fractures",
    "classify": "jaxcorr.jobs.classify",
    "classify_sweep": "jaxcorr.jobs.classify_sweep",
}


# Jobs that continue an earlier run's work in the same workdir (checkpoints, shards, studies):
# their config is compared with the workdir's config.json first (`core.config_diff`).
RESUMABLE = ("pretrain", "finetune", "classify", "generate", "make_fractures", "make_sparse")


# Jobs that run as one process per host (`main --distributed`, docs/scaling.md); the others
# are small and run on one host.
MULTI_HOST = ("pretrain", "finetune", "classify", "generate", "evaluate")


def run(config, workdir: str) -> None:
  """Runs the job named by `config.job` in `workdir`."""
  if config.job not in JOBS:
    raise ValueError(f"config.job={config.job!r} is not a job; allowed: {', '.join(sorted(JOBS))}")
  import jax  # pylint: disable=import-outside-toplevel
  if jax.process_count() > 1 and config.job not in MULTI_HOST:
    raise ValueError(f"the {config.job} job runs on one host, not on {jax.process_count()} "
                     f"processes: start it without --distributed (jobs for several hosts: "
                     f"{', '.join(MULTI_HOST)})")
  # Every field checked before any work (imported here: `import jaxcorr.jobs` stays light).
  from jaxcorr.data import validation  # pylint: disable=import-outside-toplevel
  validation.validate(config)
  if config.job in RESUMABLE:
    from jaxcorr.core import config_diff  # pylint: disable=import-outside-toplevel
    config_diff.check_resume(config, workdir)
  importlib.import_module(JOBS[config.job]).run(config, workdir)
