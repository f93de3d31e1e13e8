"""Entry point: `python -m jaxcorr.main --config=configs/<job>.py[:preset] --workdir=DIR`.

`--config` is a config file or an installed config's name (`--config=pretrain:tiny` works
from any directory); `--help` lists the configs, their jobs and presets, then the flags;
with `--config=NAME[:PRESET] --help`, that config's fields and values.

The config names its job (`config.job`); any field can be overridden with `--config.a.b=value`.
Configs are locked: a mistyped override is an error that lists the valid fields.
"""

import importlib.util
import logging as py_logging
import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from jaxcorr.core import config_files

# Config files live in the repository's `configs/` folder beside the package and import
# `configs.common`; make that importable whatever the current directory.
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:
  sys.path.insert(0, _REPO)

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "A config file or an installed config's name (e.g. pretrain), "
    "optionally with ':preset'.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for outputs and checkpoints.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Call jax.distributed.initialize() first: one process per host "
    "(launch/ has the scripts; docs/scaling.md). Same as --config.mesh.distributed=True.")
flags.mark_flags_as_required(["config", "workdir"])


def _load_config_file(spec: str):
  """Loads `path[:arg]` the way --config does, for error messages."""
  path, _, arg = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location("_jaxcorr_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg or None)


def _explain_override(argv) -> str:
  """Names the first `--config.a.b` override that is not a field, with the valid fields there."""
  spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
  if spec is None:
    return ""
  config = _load_config_file(spec)
  for arg in argv:
    if not arg.startswith("--config."):
      continue
    node, done = config, []
    for key in arg[len("--config."):].split("=", 1)[0].split("."):
      if not hasattr(node, "keys") or key not in node:
        where = "config" + "".join(f".{k}" for k in done)
        valid = ", ".join(sorted(node.keys())) if hasattr(node, "keys") else "(not a section)"
        return f"--config.{'.'.join(done + [key])} is not a field of {where}; valid fields: {valid}"
      node, done = node[key], done + [key]
  return ""


def _parse_flags(argv):
  """absl's flag parsing: --config may name an installed config (`core.config_files`),
  --help lists the configs first, and a mistyped config override gets a readable error."""
  try:
    argv = [f"--config={config_files.resolve_spec(a.split('=', 1)[1])}"
            if a.startswith("--config=") else a for a in argv]
  except FileNotFoundError as e:
    sys.stderr.write(f"FATAL {e}\n")
    sys.exit(2)
  if any(a in ("-h", "--help", "--helpshort", "--helpfull") for a in argv[1:]):
    spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
    print((config_files.fields(spec) if spec else config_files.catalogue()) + "\n")
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError, flags.Error) as e:
    message = _explain_override(argv) or str(e)
    sys.stderr.write(f"FATAL flags error: {message}\n")
    sys.exit(2)


class _QuietLibraries(py_logging.Filter):
  """Drops INFO chatter of orbax (a line per checkpoint event) and absl's TPU probe."""

  def filter(self, record):
    return record.levelno >= py_logging.WARNING or not any(
        part in record.pathname for part in ("orbax", "xla_bridge"))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  from jaxcorr import jobs  # pylint: disable=g-import-not-at-top  (keeps --help fast)
  logging.get_absl_handler().addFilter(_QuietLibraries())
  config = _CONFIG.value
  if _DISTRIBUTED.value or ("mesh" in config and config.mesh.get("distributed")):
    from jaxcorr.core import sharding  # pylint: disable=g-import-not-at-top
    sharding.initialize_distributed()
  logging.info("job %s, workdir %s", config.job, _WORKDIR.value)
  from jaxcorr.core import config_diff  # pylint: disable=g-import-not-at-top
  from jaxcorr.data import validation  # pylint: disable=g-import-not-at-top
  try:
    jobs.run(config, _WORKDIR.value)
  except (validation.ConfigError, config_diff.ResumeError) as e:   # the fields, no traceback
    sys.stderr.write(f"FATAL {e}\n")
    sys.exit(2)


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
