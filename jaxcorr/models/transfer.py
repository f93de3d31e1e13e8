"""Backbone transfer: a pretrained subtree of parameters into a new model (e.g. a classifier).

Parameters are nested dicts; a path is a tuple of names, printed joined by '/'
('backbone/blocks_0/attn/query/kernel').

`load_subtree(target, source)` copies every leaf of source[source_path] into the leaf of the
same name under target[target_path] when the shapes agree. The one shape change it repairs is a
ViT position embedding 'pos_embed' [1, n_prefix + h * w, D] made for another patch grid (another
image size): the n_prefix class-token entries are kept and the [h, w, D] grid is resized
bicubically (`jax.image.resize`, as timm's resample_abs_pos_embed). Any other shape mismatch is
a ValueError naming the parameter and both shapes: a pretrained weight is never silently
replaced by a random one. The `Report` says what happened to every leaf:
  loaded          copied as is (target paths);
  interpolated    resized position embeddings (target paths; `details` has the shapes);
  reinitialised   target leaves without a source (e.g. 'head/kernel', 'view_embed'), kept
                  from the target's initialisation;
  unused          source leaves not copied: those of the subtree without a target, and all
                  outside the subtree (e.g. the correspondence model's proj and encoder).

Sources. `read_checkpoint_params(path)` reads the params of a training run (`train.checkpoint`
layout: <workdir>/{best,checkpoints}/<step>/state) and its config.json; `load_timm_backbone`
converts a timm ViT file with `convert.convert_timm_vit`; `load_backbone` picks one of the two
from the path, for a task's `restore_init`; `load_model` copies a whole pretrained model
(params and BatchNorm statistics) into a subtree, e.g. a correspondence model used as a
classifier's backbone. `load_torchvision_backbone` converts a torchvision
ResNet state dict (e.g. ImageNet's ResNet50_Weights, the authors' start) into a ResNet
backbone's params and batch statistics (`model.init_torchvision` of pretraining); its report's
paths start with the collection ('params/backbone/conv1/kernel', 'batch_stats/...') and
`details` gives each loaded leaf's source key and shapes.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any, Mapping, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from jaxcorr.core import checkpoints
from jaxcorr.models import convert, resnet as resnet_lib

Path = tuple[str, ...]
_TIMM_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


@dataclasses.dataclass
class Report:
  """What a transfer did with each parameter (paths joined by '/')."""
  loaded: list[str] = dataclasses.field(default_factory=list)
  interpolated: list[str] = dataclasses.field(default_factory=list)
  reinitialised: list[str] = dataclasses.field(default_factory=list)
  unused: list[str] = dataclasses.field(default_factory=list)
  details: dict[str, str] = dataclasses.field(default_factory=dict)
  source: str = ""

  def to_dict(self) -> dict:
    """A JSON-serialisable dict of the report."""
    return dataclasses.asdict(self)

  def format(self, max_items: int = 20) -> str:
    """A few lines for a log: counts, then the paths of each group (at most max_items)."""
    lines = [f"transfer from {self.source or 'source'}: loaded {len(self.loaded)}, interpolated "
             f"{len(self.interpolated)}, re-initialised {len(self.reinitialised)}, unused "
             f"{len(self.unused)}"]
    for name in ("interpolated", "reinitialised", "unused"):
      paths = getattr(self, name)
      if paths:
        shown = [f"{p} ({self.details[p]})" if p in self.details else p
                 for p in paths[:max_items]]
        more = f" ... and {len(paths) - max_items} more" if len(paths) > max_items else ""
        lines.append(f"  {name}: {', '.join(shown)}{more}")
    return "\n".join(lines)


def _flatten(tree) -> dict[Path, Any]:
  return flax.traverse_util.flatten_dict(flax.core.unfreeze(tree))


def _join(path: Path) -> str:
  return "/".join(path)


def _subtree(tree, path: Sequence[str], what: str):
  node = flax.core.unfreeze(tree)
  for i, name in enumerate(path):
    if not isinstance(node, Mapping) or name not in node:
      keys = sorted(node) if isinstance(node, Mapping) else []
      raise ValueError(f"{what} has no {_join(tuple(path[:i + 1]))!r}; its keys there: {keys}.")
    node = node[name]
  return node


def resize_pos_embed(pos, num_tokens: int, *, n_prefix: int = 1, source_grid=None,
                     target_grid=None) -> jnp.ndarray:
  """Resizes a position embedding [1, n_prefix + g_h g_w, D] to [1, num_tokens, D].

  Args:
    pos: the source embedding; the first n_prefix entries (class token) are kept.
    num_tokens: n_prefix + h * w of the target.
    n_prefix: the class-token entries.
    source_grid, target_grid: (rows, cols) of the patch grids; default square grids
      (the square root of the token count, which must then be an integer).

  Returns:
    [1, num_tokens, D] float32, the patch grid resized bicubically.
  """
  pos = jnp.asarray(pos, jnp.float32)

  def grid_of(tokens, given, which):
    if given is not None:
      given = tuple(int(g) for g in given)
      if len(given) != 2 or given[0] * given[1] != tokens - n_prefix:
        raise ValueError(f"{which} grid {given} does not hold {tokens - n_prefix} patches.")
      return given
    side = int(round(np.sqrt(tokens - n_prefix)))
    if side * side != tokens - n_prefix:
      raise ValueError(f"{which} position embedding has {tokens - n_prefix} patch entries, "
                       f"not a square grid; pass {which}_grid=(rows, cols).")
    return side, side

  src = grid_of(pos.shape[1], source_grid, "source")
  dst = grid_of(num_tokens, target_grid, "target")
  grid = pos[0, n_prefix:].reshape(*src, pos.shape[-1])
  grid = jax.image.resize(grid, (*dst, pos.shape[-1]), "bicubic", antialias=False)
  return jnp.concatenate([pos[:, :n_prefix], grid.reshape(1, -1, pos.shape[-1])], axis=1)


def load_subtree(target, source, *, target_path: Sequence[str] = ("backbone",),
                 source_path: Sequence[str] = ("backbone",), interpolate_pos: bool = True,
                 source_grid=None, target_grid=None):
  """Copies the leaves of source[source_path] into target[target_path].

  Args:
    target: the new model's params (nested dicts of concrete arrays, e.g. from model.init).
    source: pretrained params (nested dicts of arrays).
    target_path, source_path: the subtrees to match, names relative to them.
    interpolate_pos: resize a 'pos_embed' of another token count (else that is an error).
    source_grid, target_grid: (rows, cols) patch grids for non-square position embeddings.

  Returns:
    (params: target with the subtree's matching leaves replaced (in the target leaf's dtype),
     Report with target paths for loaded / interpolated / reinitialised (every target leaf
     not copied, inside the subtree or not), source paths for unused).

  Raises:
    ValueError: a path does not exist, a leaf's shape differs (other than a resizable
      pos_embed), or no leaf of the subtree matched at all (e.g. a ResNet checkpoint for a ViT).
  """
  target_path, source_path = tuple(target_path), tuple(source_path)
  src = _flatten(_subtree(source, source_path, "source"))
  _subtree(target, target_path, "target")
  all_source = [p for p in _flatten(source) if p[:len(source_path)] != source_path]
  out, report, used = {}, Report(), set()
  for path, leaf in _flatten(target).items():
    rel = path[len(target_path):]
    if path[:len(target_path)] != target_path or rel not in src:
      out[path] = leaf
      report.reinitialised.append(_join(path))
      continue
    value, name = src[rel], _join(path)
    shape, src_shape = tuple(np.shape(leaf)), tuple(np.shape(value))
    if shape == src_shape:
      report.loaded.append(name)
    elif (rel[-1] == "pos_embed" and interpolate_pos and len(shape) == len(src_shape) == 3
          and shape[::2] == src_shape[::2]):
      value = resize_pos_embed(value, shape[1], source_grid=source_grid, target_grid=target_grid)
      report.interpolated.append(name)
      report.details[name] = f"{src_shape} -> {shape}"
    else:
      resizable = rel[-1] == "pos_embed" and not interpolate_pos
      hint = " (interpolate_pos=False)" if resizable else ""
      raise ValueError(f"shape mismatch for {name!r}: source {_join(source_path + rel)!r} is "
                       f"{src_shape}, target needs {shape}{hint}.")
    out[path] = jnp.asarray(value, leaf.dtype)
    used.add(rel)
  if not used:
    raise ValueError(f"no parameter of source[{_join(source_path)!r}] matches a name under "
                     f"target[{_join(target_path)!r}]: is it the same architecture? source has "
                     f"{sorted(map(_join, src))[:8]}...")
  report.unused = [_join(source_path + rel) for rel in src if rel not in used]
  report.unused += [_join(path) for path in all_source]
  return flax.traverse_util.unflatten_dict(out), report


def _restore_params(state_dir: pathlib.Path) -> dict:
  """{'params', 'model_state'} of a saved TrainState as NumPy arrays, whatever the devices and
  sharding it was saved with (the optimiser state is not read)."""
  with ocp.PyTreeCheckpointer() as checkpointer:
    # The item's own metadata: the checkpoint-level file lives in the step folder above, so
    # asking the checkpointer for it here logs "Metadata file does not exist".
    metadata = ocp.PyTreeCheckpointHandler().metadata(state_dir)
    tree = getattr(getattr(metadata, "item_metadata", metadata), "tree", metadata)
    if "params" not in tree:
      raise ValueError(f"checkpoint {state_dir.parent} holds no 'params' (keys: {sorted(tree)}).")
    wanted = {k: tree[k] for k in ("params", "model_state") if k in tree}
    restore_args = jax.tree.map(lambda m: ocp.RestoreArgs(restore_type=np.ndarray), wanted)
    item = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), wanted)
    return checkpointer.restore(state_dir, args=ocp.args.PyTreeRestore(
        item=item, restore_args=restore_args, partial_restore=True))


def read_checkpoint_params(path, select="best"):
  """Reads the params of a training checkpoint and logs which one it read.

  Args:
    path: a training workdir, or a step folder <workdir>/best/<step> or
      <workdir>/checkpoints/<step>.
    select: for a workdir, 'best' (its best checkpoint when best/ has one, else the latest of
      checkpoints/), 'latest' or a step number (`jaxcorr.core.checkpoints.resolve`).

  Returns:
    (params, model_state (a dict, maybe empty), the run's config.json as a dict or None when
    the workdir has none).

  Raises:
    FileNotFoundError: no checkpoint there, or the step folder is incomplete.
  """
  loaded = checkpoints.resolve(str(path), select)
  step_dir = pathlib.Path(loaded.directory)
  workdir = pathlib.Path(loaded.workdir) if loaded.workdir else None
  state_dir = step_dir / "state"
  if not state_dir.is_dir() or not (state_dir / "_METADATA").exists():
    raise FileNotFoundError(f"incomplete checkpoint {step_dir}: no {state_dir.name}/_METADATA "
                            "(an interrupted save, or not a jaxcorr training checkpoint).")
  state = _restore_params(state_dir)
  logging.info("loaded %s", loaded.describe())
  config = None
  if workdir is not None and (workdir / "config.json").exists():
    config = json.loads((workdir / "config.json").read_text())
  return state["params"], dict(state.get("model_state") or {}), config


def load_timm_backbone(target_params, path, *, target_path: Sequence[str] = ("backbone",)):
  """Initialises a ViT subtree from a timm VisionTransformer file (`convert.convert_timm_vit`).

  Args:
    target_params: the model's params with our `vit.ViT` under target_path.
    path: a timm state dict file (.safetensors read with NumPy; .pth / .pt / .bin need torch).
    target_path: where the ViT is.

  Returns:
    (params, Report); a square patch grid of another size is resized (pos_embed reported as
    interpolated); timm's head.* is reported unused.
  """
  target_path = tuple(target_path)
  state_dict = convert.load_state_dict(path)
  sub = _subtree(target_params, target_path, "target")
  ours, theirs = tuple(np.shape(sub["cls_token"])), tuple(np.shape(state_dict.get("cls_token")))
  if theirs != ours:          # another width: say so before the converter's reshapes fail
    raise ValueError(f"{path} does not fit the ViT under {_join(target_path)!r}: its cls_token "
                     f"is {theirs}, the target's {ours}.")
  converted, timm_report = convert.convert_timm_vit(state_dict, {"params": sub})
  missing = {tuple(m.split("/")[1:]) for m in timm_report.missing}
  if len(missing) == len(_flatten(sub)):
    raise ValueError(f"{path}: no tensor matches the ViT under {_join(target_path)!r}.")
  report = Report(source=str(path), unused=list(timm_report.unexpected))
  out = {}
  flat_new = _flatten(converted["params"])
  for full, leaf in _flatten(target_params).items():
    rel, name = full[len(target_path):], _join(full)
    if full[:len(target_path)] != target_path or rel in missing:
      out[full] = leaf
      report.reinitialised.append(name)
      continue
    out[full] = flat_new[rel]
    if rel == ("pos_embed",) and np.shape(state_dict["pos_embed"]) != np.shape(leaf):
      report.interpolated.append(name)
      report.details[name] = f"{np.shape(state_dict['pos_embed'])} -> {np.shape(leaf)}"
    else:
      report.loaded.append(name)
  return flax.traverse_util.unflatten_dict(out), report


def load_torchvision_backbone(params, model_state, path, *, backbone: str,
                              scope: str = "backbone"):
  """Initialises a ResNet backbone from a torchvision state dict file.

  Args:
    params: the model's params (concrete), our `resnet.ResNet` under `scope`.
    model_state: the model's other collections ({'batch_stats': ...}).
    path: a torchvision ResNet state dict: .pth / .pt (torch.save of model.state_dict(), needs
      torch) or .safetensors (read without torch).
    backbone: the model's backbone name; it must be one of `resnet.RESNETS`.
    scope: the backbone's module name.

  Returns:
    (params, model_state, Report): the backbone's leaves loaded (conv kernels OIHW -> HWIO,
    BatchNorm weight/bias/running stats), every other leaf kept and listed as reinitialised
    (the projection, the encoder, ...), the source keys not used (layer4, fc of a full
    ResNet-50) as unused, and `details[path]` = "<source key> <torch shape> -> <our shape>".

  Raises:
    ValueError: a backbone that is not a ResNet, a tensor whose shape does not fit (another
      ResNet depth or width), or a file none of whose tensors fits.
  """
  if backbone not in resnet_lib.RESNETS:
    raise ValueError(f"config.model.init_torchvision={str(path)!r} needs a ResNet backbone "
                     f"({', '.join(resnet_lib.RESNETS)}), not {backbone!r}; a timm ViT file "
                     "initialises classifiers (config.init_timm).")
  state_dict = convert.load_state_dict(path)
  variables = {"params": params, **model_state}
  try:
    new, tv_report = convert.load_pretrained_backbone(variables, state_dict, backbone, scope)
  except ValueError as e:
    raise ValueError(f"config.model.init_torchvision={str(path)!r} does not fit the "
                     f"{backbone} backbone: {e}") from e
  if not tv_report.loaded:
    raise ValueError(f"config.model.init_torchvision={str(path)!r}: no tensor matches the "
                     f"{backbone} backbone (is it a torchvision ResNet state dict? its keys "
                     f"begin {sorted(state_dict)[:4]}).")
  missing = set(tv_report.missing)
  report = Report(source=str(path), unused=list(tv_report.unexpected))
  for collection, tree in new.items():
    for rel, leaf in _flatten(tree).items():
      name = _join((collection,) + rel)
      inner = _join((collection,) + rel[1:])
      if rel[0] != scope or inner in missing:
        report.reinitialised.append(name)
        continue
      key = convert.torchvision_resnet_key(inner)
      report.loaded.append(name)
      report.details[name] = (f"{key} {tuple(np.shape(state_dict[key]))} -> "
                              f"{tuple(np.shape(leaf))}")
  new_state = {k: v for k, v in new.items() if k != "params"}
  return new["params"], new_state, report


def load_backbone(target_params, path, *, target_path: Sequence[str] = ("backbone",),
                  source_path: Sequence[str] = ("backbone",), select="best"):
  """`load_timm_backbone` for a timm file, else `load_subtree` of `read_checkpoint_params`.

  The one call a task's `restore_init` needs for `config.init_from` (`select`: which
  checkpoint of a workdir, as `read_checkpoint_params`); returns (params, Report).
  """
  if pathlib.Path(str(path)).suffix in _TIMM_SUFFIXES:
    return load_timm_backbone(target_params, path, target_path=target_path)
  source, _, _ = read_checkpoint_params(path, select)
  params, report = load_subtree(target_params, source, target_path=target_path,
                                source_path=source_path)
  report.source = str(path)
  return params, report


def load_model(target_params, target_state, path, *, target_path: Sequence[str] = ("backbone",),
               select="best"):
  """A training run's whole model (params and model state) into target[target_path].

  Args:
    target_params: the new model's params, the pretrained model nested under `target_path`.
    target_state: its model state ({'batch_stats': ...} or {}), nested the same way.
    path, select: the run, as `read_checkpoint_params`.

  Returns:
    (params, model state, Report): the report's paths start with the collection ('params/...',
    'batch_stats/...'). Shapes must agree (a ValueError names the leaf otherwise).
  """
  source, source_state, _ = read_checkpoint_params(path, select)
  params, report = load_subtree(target_params, source, target_path=target_path, source_path=())
  report = Report(**{k: ([f"params/{p}" for p in v] if isinstance(v, list) else v)
                     for k, v in report.to_dict().items()})
  state = dict(target_state or {})
  for collection, tree in (target_state or {}).items():
    if collection not in source_state:
      raise ValueError(f"{path}: the checkpoint has no model state {collection!r} (it has "
                       f"{sorted(source_state)}): is it the same architecture?")
    state[collection], part = load_subtree(tree, source_state[collection],
                                           target_path=target_path, source_path=())
    for name in ("loaded", "reinitialised", "unused"):
      getattr(report, name).extend(f"{collection}/{p}" for p in getattr(part, name))
  report.source = str(path)
  return params, state, report
