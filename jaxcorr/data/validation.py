"""One validation pass over a resolved config before any work: every known numeric, tuple and
choice field, and the relations between fields, with errors that name the field, the value and
what would work.

The rules are a table keyed by field (`RULES`), applied to the fields a job's config has;
choices come from `from_config.CHOICES` and, for the correspondence model's switches
(`model.attention`, `model.head`, `model.rope`), from `core.choices.MODEL_CHOICES` (an old value
such as attention='transformer_mp' is named with its new spelling); relations (sdd > sid, a
detector divisible by the patch, an ordered HU window) follow. All problems are reported at once.
"""

from __future__ import annotations

import numbers

from jaxcorr.core import choices
from jaxcorr.data import from_config


class ConfigError(ValueError):
  """A config that cannot work, found before any work; the message lists every problem."""


def _is_int(v) -> bool:
  return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_num(v) -> bool:
  return isinstance(v, numbers.Real) and not isinstance(v, bool)


def integer(low: int):
  """An integer >= low."""
  return (lambda v: _is_int(v) and v >= low), f"an integer >= {low}"


def number(low: float, strict: bool = False):
  """A number >= low (> low when strict)."""
  ok = (lambda v: _is_num(v) and v > low) if strict else (lambda v: _is_num(v) and v >= low)
  return ok, f"a number {'>' if strict else '>='} {low:g}"


def pair(check, what: str, example: str):
  """Two values, each passing `check`."""
  def ok(v):
    return isinstance(v, (tuple, list)) and len(v) == 2 and all(check(x) for x in v)
  return ok, f"two {what}, e.g. {example}"


def bounded(low: float, high: float):
  """A number in [low, high)."""
  return (lambda v: _is_num(v) and low <= v < high), f"a number in [{low:g}, {high:g})"


def nonempty_numbers():
  def ok(v):
    return isinstance(v, (tuple, list)) and len(v) > 0 and all(_is_num(x) for x in v)
  return ok, "a non-empty tuple of numbers, e.g. (0., 90.)"


def ordered_range(low: float):
  def ok(v):
    return (isinstance(v, (tuple, list)) and len(v) == 2 and all(_is_num(x) for x in v)
            and low < v[0] <= v[1])
  return ok, f"(lo, hi) with {low:g} < lo <= hi"


def fractions():
  def ok(v):
    return (isinstance(v, (tuple, list)) and len(v) == 3 and all(_is_num(x) and x >= 0 for x in v)
            and sum(v) > 0)
  return ok, "three fractions >= 0 (train, validation, test), not all 0"


def boolean():
  return (lambda v: isinstance(v, bool)), "True or False"


def text():
  return (lambda v: isinstance(v, str)), "a string (a path, or empty)"


def paths():
  def ok(v):
    return isinstance(v, str) or (isinstance(v, (tuple, list)) and len(v) > 0 and all(
        isinstance(x, str) and x for x in v))
  return ok, ("a path, or a tuple of non-empty paths (CT files or folders, folders of CTs, .txt "
              "lists), e.g. \"('ct', 'ct_limbs')\"")


_POSITIVE_INTS = pair(lambda x: _is_int(x) and x >= 1, "integers >= 1", "(256, 256)")

RULES = {
    "steps": integer(1),
    "batch_size": integer(1),
    "seed": integer(0),
    "eval.batch_size": integer(1),
    "eval.batches": integer(1),
    "ct.path": paths(),
    "data.test_path": paths(),
    "data.validation_path": paths(),
    "ct.size": integer(8),
    "ct.max_voxels": integer(1),
    "ct.hu_window": pair(_is_num, "numbers", "(-1000., 3000.)"),
    "geometry.detector_size": _POSITIVE_INTS,
    "geometry.pixel_spacing": pair(lambda x: _is_num(x) and x >= 0, "numbers >= 0 (0 = fit)",
                                   "(0., 0.)"),
    "geometry.sid": number(0, strict=True),
    "geometry.sdd": number(0, strict=True),
    "views.n_views": integer(2),
    "views.detector_size": _POSITIVE_INTS,
    "views.sid_range": ordered_range(0),
    "views.idd_range": ordered_range(0),
    "views.fov_scale": number(0, strict=True),
    "views.max_tries": integer(1),
    "views.min_coverage": number(0),
    "views.framing_margin": number(0),
    "views.framing_zoom": ordered_range(0),
    "views.framing_shift": bounded(0, 0.5),
    "views.framing_hu": bounded(-2000, 5000),
    "views.framing_max_zoom": bounded(1, 16),
    "labels.patch": integer(1),
    "labels.threshold": number(0),
    "data.phantoms": integer(1),
    "data.splits": fractions(),
    "data.threads": integer(1),
    "data.workers": integer(0),
    "data.prefetch": integer(1),
    "drr.batch_size": integer(0),
    "generate.samples_per_volume": integer(1),
    "generate.render_batch": integer(1),
    "optim.learning_rate": number(0, strict=True),
    "stop_after_seconds": number(0),
    "ckpt.every_seconds": number(0),
    "model.message_passing": boolean(),
    "model.rope_base": number(0),
    "model.init_torchvision": text(),
}


def _get(config, field: str):
  node = config
  for key in field.split("."):
    if not hasattr(node, "keys") or key not in node:
      return None, False
    node = node[key]
  return node, True


def problems(config) -> list[str]:
  """Every problem of `config`, one line each (empty when it is valid)."""
  found = []
  for field, (ok, what) in RULES.items():
    value, present = _get(config, field)
    if present and not ok(value):
      found.append(f"config.{field}={value!r}: expected {what}")
  for field in from_config.CHOICES:
    value, present = _get(config, field)
    if present:
      try:
        from_config.check_choice(field, value)
      except ValueError as e:
        found.append(str(e))
  for key, allowed in choices.MODEL_CHOICES.items():
    value, present = _get(config, f"model.{key}")
    if present:
      try:
        choices.check_choice(f"config.model.{key}", value, allowed,
                             renamed=choices.MODEL_RENAMED.get(key))
      except ValueError as e:
        found.append(str(e))
  return found + _relations(config)


def _relations(config) -> list[str]:
  found = []
  (sid, has_sid), (sdd, _) = _get(config, "geometry.sid"), _get(config, "geometry.sdd")
  matrices, _ = _get(config, "geometry.matrices")
  if has_sid and not matrices and _is_num(sid) and _is_num(sdd) and not sdd > sid:
    found.append(f"config.geometry: sdd={sdd} must exceed sid={sid} (the detector lies beyond "
                 "the isocentre)")
  angles, has_angles = _get(config, "geometry.angles")
  if has_angles and not matrices and not nonempty_numbers()[0](angles):
    found.append(f"config.geometry.angles={angles!r}: expected {nonempty_numbers()[1]}, one "
                 "angle per view (or geometry.matrices)")
  window, has_window = _get(config, "ct.hu_window")
  if has_window and RULES["ct.hu_window"][0](window) and not window[0] < window[1]:
    found.append(f"config.ct.hu_window={tuple(window)}: expected lo < hi")
  (preset, _), (orbit, _) = _get(config, "views.preset"), _get(config, "views.orbit")
  if preset == "authors" and orbit != "rtk":
    found.append(f"config.views.orbit={orbit!r}: views.preset='authors' places its views with "
                 "RTK's own axes, as the authors do; use views.orbit='rtk'")
  patch, has_patch = _get(config, "labels.patch")
  if has_patch and RULES["labels.patch"][0](patch):
    for field in ("views.detector_size", "geometry.detector_size"):
      size, present = _get(config, field)
      if present and _POSITIVE_INTS[0](size) and any(s % patch for s in size):
        found.append(f"config.{field}={tuple(size)}: both sides must be multiples of "
                     f"labels.patch={patch}")
  return found


def validate(config) -> None:
  """Raises a ConfigError listing every problem of `config` (see `problems`); `jobs.run` calls
  it before any work."""
  found = problems(config)
  if found:
    raise ConfigError("bad config (nothing was run):\n  " + "\n  ".join(found))
