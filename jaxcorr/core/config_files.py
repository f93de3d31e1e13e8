"""Config files by name, from any directory, and the list `--help` prints.

The configs are a package of their own (`configs/`, installed beside `jaxcorr`), so
`--config` takes either a path or a name:

  --config=configs/pretrain.py:tiny     a file (relative to the current directory)
  --config=pretrain:tiny                the installed config of that name
A path that does not exist but names an installed config (e.g. `configs/pretrain.py` run from
another directory) means that config. `catalogue()` lists every config with its job, the first
line of its docstring and its presets; `fields(spec)` one config's fields with their values.

The config modules are imported only when asked for (they import jaxcorr's higher layers).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import textwrap

from jaxcorr.core import config_diff


def config_dir() -> str:
  """The folder of the `configs` package (the repository's, or the installed copy)."""
  spec = importlib.util.find_spec("configs")
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError("the `configs` package is not installed: reinstall jaxcorr "
                            "(pip install -e .) or run from the repository root")
  return list(spec.submodule_search_locations)[0]


def names() -> list[str]:
  """The installed configs' names (their modules, without common.py)."""
  return sorted(f[:-3] for f in os.listdir(config_dir())
                if f.endswith(".py") and not f.startswith("_") and f != "common.py")


def resolve_spec(spec: str) -> str:
  """`path[:preset]` for a `--config` value that is a path or an installed config's name."""
  path, sep, arg = spec.partition(":")
  if os.path.exists(path):
    return spec
  name = os.path.basename(path)
  name = name[:-3] if name.endswith(".py") else name
  if name in names():
    return os.path.join(config_dir(), f"{name}.py") + sep + arg
  raise FileNotFoundError(f"--config={spec}: no file {path!r} and no installed config named "
                          f"{name!r}; configs: {', '.join(names())}")


def catalogue() -> str:
  """One paragraph per config: name, job, the docstring's first line and the presets."""
  lines = ["Configs (--config=NAME[:PRESET] or a path, e.g. --config=pretrain:tiny):"]
  for name in names():
    module = importlib.import_module(f"configs.{name}")
    job = module.get_config().get("job", name)
    summary = (module.__doc__ or "").strip().splitlines()[0] if module.__doc__ else ""
    table = list(getattr(module, "PRESETS", {}) or ["default"])
    presets = ", ".join(p for p in table if "," not in p)
    if any("," in p for p in table):   # e.g. classify's SIZE,ROW
      presets += " (and combinations such as " + next(p for p in table if "," in p) + ")"
    lines.append(f"  {name:16s} job {job}: {summary}")
    lines += textwrap.wrap(f"presets: {presets}", 96, initial_indent=" " * 19,
                           subsequent_indent=" " * 28)
  return "\n".join(lines)


def fields(spec: str) -> str:
  """Every field of the config `spec` (a path or name, with its preset) as `a.b = value`."""
  path, _, arg = resolve_spec(spec).partition(":")
  module_spec = importlib.util.spec_from_file_location("_jaxcorr_config_fields", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  flat = config_diff.flatten(module.get_config(arg or None).to_dict())
  return "\n".join([f"Fields of {spec} (override with --config.FIELD=VALUE):"]
                   + [f"  {k} = {v!r}" for k, v in flat.items()])

