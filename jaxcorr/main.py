"""Entry point: `python -m jaxcorr.main --config=configs/<job>.py[:preset] --workdir=DIR`.

The config names its job (`config.job`); any field can be overridden with `--config.a.b=value`.
Configs are locked: a mistyped override is an error that lists the valid fields.
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

# Config files live in the repository's `configs/` folder beside the package and import
# `configs.common`; make that importable whatever the current directory.
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:
  sys.path.insert(0, _REPO)

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Path to a config file, optionally with ':preset'.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for outputs and checkpoints.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  from jaxcorr import jobs  # pylint: disable=g-import-not-at-top  (keeps --help fast)
  config = _CONFIG.value
  logging.info("job %s, workdir %s", config.job, _WORKDIR.value)
  jobs.run(config, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
