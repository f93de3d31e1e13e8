"""The order of layers holds: every jaxcorr module imports only its own package or lower layers.

  core  <  ct, projection, xray  <  data, models, metrics, pictures  <  inference  <  tasks
        <  train  <  jobs  <  main, benchmarks, tools (the entry points)

Imports are read with `ast` (lazy imports inside functions count too), so a cycle cannot be
papered over by moving an import into a function.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).parents[1] / "jaxcorr"

LAYERS = (
    ("core",),
    ("ct", "projection", "xray"),
    ("data", "models", "metrics", "pictures"),
    ("inference",),
    ("tasks",),
    ("train",),
    ("jobs",),
    ("main", "benchmarks", "tools"),
)
RANK = {package: rank for rank, layer in enumerate(LAYERS) for package in layer}


def _package(module: str) -> str:
  """'jaxcorr.data.samples' -> 'data'; 'jaxcorr' (the version only) -> ''."""
  parts = module.split(".")
  return parts[1] if len(parts) > 1 else ""


def imported_modules(source: str) -> list[tuple[int, str]]:
  """(line, module) of every jaxcorr module imported by `source`, `from jaxcorr import x` as
  'jaxcorr.x'."""
  out = []
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Import):
      out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "jaxcorr"]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      if node.module == "jaxcorr":
        out += [(node.lineno, f"jaxcorr.{a.name}") for a in node.names if a.name != "__version__"]
      elif node.module.startswith("jaxcorr."):
        out.append((node.lineno, node.module))
  return out


def violations(module: str, source: str) -> list[str]:
  """The upward or sideways imports of `module` (dotted name) whose text is `source`."""
  own = _package(module)
  found = []
  for line, target in imported_modules(source):
    other = _package(target)
    if other in ("", own):
      continue
    if other not in RANK:
      found.append(f"{module}:{line} imports {target}, which is in no layer")
    elif own not in RANK or RANK[other] >= RANK[own]:
      found.append(f"{module}:{line} imports {target} ({other} is not below {own})")
  return found


def _modules():
  for path in sorted(ROOT.rglob("*.py")):
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    if parts[-1] == "__init__":
      parts = parts[:-1]
    yield ".".join(parts), path


def test_every_package_is_in_a_layer():
  packages = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
  packages |= {p.stem for p in ROOT.glob("*.py") if p.stem != "__init__"}
  assert packages == set(RANK), "put new top-level packages into LAYERS (and the README)"


def test_no_module_imports_upwards_or_sideways():
  found = [v for module, path in _modules() for v in violations(module, path.read_text())]
  assert not found, "\n".join(found)


@pytest.mark.parametrize("module, source, bad", [
    ("jaxcorr.data.x", "from jaxcorr.tasks import base", True),           # upward
    ("jaxcorr.data.x", "def f():\n  from jaxcorr.jobs import common", True),  # lazy, upward
    ("jaxcorr.data.x", "from jaxcorr import train", True),                # upward, root form
    ("jaxcorr.data.x", "import jaxcorr.models.build", True),              # sideways
    ("jaxcorr.data.x", "from jaxcorr.projection import drr", False),      # downward
    ("jaxcorr.data.x", "from jaxcorr.data import samples", False),        # own package
    ("jaxcorr.data.x", "from jaxcorr import __version__\nimport jaxcorr", False),
    ("jaxcorr.main", "from jaxcorr import jobs", False),
])
def test_the_checker_catches_an_upward_import(module, source, bad):
  assert bool(violations(module, source)) == bad


def test_every_job_module_has_run_config_workdir():
  for path in sorted((ROOT / "jobs").glob("*.py")):
    if path.stem == "__init__":
      continue
    tree = ast.parse(path.read_text())
    runs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "run"]
    assert runs and [a.arg for a in runs[0].args.args][:2] == ["config", "workdir"], path.name
