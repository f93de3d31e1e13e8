"""Pretrained initialisation: torchvision ResNet and timm ViT state dicts -> our Flax variables.

Files. `load_state_dict` reads `.safetensors` with NumPy alone (the format: an 8-byte
little-endian header length n, n bytes of JSON {name: {dtype, shape, data_offsets: [begin,
end]}, optional "__metadata__"}, then the raw little-endian bytes, offsets relative to the end
of the header) and `.pth` / `.pt` / `.bin` with torch, imported only then.

Conversion fills a template, the variables of our module (`model.init(...)` or
`jax.eval_shape` of it): every template leaf is mapped to a source key, converted and checked
against the template's shape (a mismatch is a ValueError naming both). Layouts:
  conv weight  torch [O, I, kh, kw] (OIHW) -> flax kernel [kh, kw, I, O] (HWIO); a 3-channel
               first conv for a 1-channel model is summed over I (as timm does for grey input).
  linear       torch [out, in] -> flax kernel [in, out]; bias as is.
  BatchNorm    weight / bias -> params scale / bias; running_mean / running_var -> batch_stats
               mean / var; num_batches_tracked is ignored.
  ViT qkv      timm attn.qkv [3 D, D] -> query / key / value kernels [D, H, D / H] (q, k, v in
               that order), attn.proj [D, D] -> out kernel [H, D / H, D].
  pos_embed    [1, 1 + g * g, D]; when our grid differs the patch part is resized bicubically
               (`jax.image.resize`) as timm's resample_abs_pos_embed does.
The `Report` lists the loaded source keys, the missing template leaves (kept from the template,
which must then be concrete) and the unexpected source keys (e.g. layer4 and fc for the
stage-3 ResNet cut, head for the ViT).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import struct
from typing import Callable, Mapping

import flax
import jax
import jax.numpy as jnp
import numpy as np

from jaxcorr.core.choices import check_choice
from jaxcorr.models import resnet, vit

_SAFETENSORS_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
    "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}
_NUMPY_TO_SAFETENSORS = {np.dtype(v): k for k, v in _SAFETENSORS_DTYPES.items()}


@dataclasses.dataclass
class Report:
  """What a conversion used: source keys loaded, template leaves missing, source keys unused."""
  loaded: list[str]
  missing: list[str]
  unexpected: list[str]

  def __str__(self):
    return (f"loaded {len(self.loaded)} tensors; missing {len(self.missing)}: {self.missing}; "
            f"unexpected {len(self.unexpected)}: {self.unexpected}")


def read_safetensors(path) -> dict[str, np.ndarray]:
  """Reads a .safetensors file into {name: array} (BF16 is widened to float32)."""
  data = pathlib.Path(path).read_bytes()
  (n,) = struct.unpack("<Q", data[:8])
  header = json.loads(data[8:8 + n].decode("utf-8"))
  body = memoryview(data)[8 + n:]
  out = {}
  for name, info in header.items():
    if name == "__metadata__":
      continue
    begin, end = info["data_offsets"]
    raw = np.frombuffer(body[begin:end], dtype=np.uint8)
    if info["dtype"] == "BF16":
      array = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
    elif info["dtype"] in _SAFETENSORS_DTYPES:
      array = raw.view(np.dtype(_SAFETENSORS_DTYPES[info["dtype"]]).newbyteorder("<"))
    else:
      raise ValueError(f"{path}: tensor {name!r} has unsupported dtype {info['dtype']!r}; "
                       f"allowed: {', '.join(['BF16', *_SAFETENSORS_DTYPES])}.")
    out[name] = array.reshape(info["shape"]).copy()
  return out


def write_safetensors(path, tensors: Mapping[str, np.ndarray]) -> None:
  """Writes {name: array} as a .safetensors file (little-endian, 8-byte aligned header)."""
  header, offset, blobs = {}, 0, []
  for name, array in tensors.items():
    array = np.ascontiguousarray(array)
    if array.dtype not in _NUMPY_TO_SAFETENSORS:
      raise ValueError(f"tensor {name!r}: unsupported dtype {array.dtype}.")
    blob = array.astype(array.dtype.newbyteorder("<")).tobytes()
    header[name] = {"dtype": _NUMPY_TO_SAFETENSORS[array.dtype], "shape": list(array.shape),
                    "data_offsets": [offset, offset + len(blob)]}
    offset += len(blob)
    blobs.append(blob)
  encoded = json.dumps(header).encode("utf-8")
  encoded += b" " * (-len(encoded) % 8)
  with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(encoded)) + encoded + b"".join(blobs))


def load_state_dict(path) -> dict[str, np.ndarray]:
  """Reads a checkpoint file into {name: float32 or integer NumPy array}.

  Args:
    path: a .safetensors file (read with NumPy), or a .pth / .pt / .bin torch pickle (needs
      torch); a dict holding the weights under 'state_dict' or 'model' is unwrapped.
  """
  path = pathlib.Path(path)
  if path.suffix == ".safetensors":
    return read_safetensors(path)
  check_choice(f"{path}: checkpoint suffix", path.suffix, (".safetensors", ".pth", ".pt", ".bin"))
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(f"reading {path} needs torch: `pip install torch`, or convert the "
                      "checkpoint to .safetensors, which jaxcorr reads without torch.") from e
  state = torch.load(path, map_location="cpu", weights_only=True)
  for wrapper in ("state_dict", "model"):
    if isinstance(state, dict) and wrapper in state and isinstance(state[wrapper], dict):
      state = state[wrapper]
  return {k: v.float().numpy() if v.is_floating_point() else v.numpy() for k, v in state.items()}


def _conv(w, shape):
  w = np.transpose(w, (2, 3, 1, 0))                        # OIHW -> HWIO
  if w.shape[2] != shape[2] and shape[2] == 1:
    w = w.sum(axis=2, keepdims=True)
  return w


def _linear(w, shape):
  del shape
  return w.T


def _identity(w, shape):
  del shape
  return w


def _fill(template, rules: Callable, state_dict: Mapping[str, np.ndarray]):
  """Fills the template's leaves; rules(path) -> (source key, convert(array, shape)) or None."""
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(template), sep="/")
  state = {k: v for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}
  used, missing, out = set(), [], {}
  for path, leaf in flat.items():
    rule = rules(path)
    if rule is None or rule[0] not in state:
      if isinstance(leaf, jax.ShapeDtypeStruct):
        raise ValueError(f"no source for {path!r} (key {rule and rule[0]!r}) and the template "
                         "is abstract; pass concrete variables from model.init to keep them.")
      missing.append(path)
      out[path] = leaf
      continue
    key, convert = rule
    value = np.asarray(convert(np.asarray(state[key], np.float32), tuple(leaf.shape)))
    if value.shape != tuple(leaf.shape):
      raise ValueError(f"shape mismatch: source {key!r} {tuple(state[key].shape)} converts to "
                       f"{value.shape}, but {path!r} needs {tuple(leaf.shape)}.")
    out[path] = jnp.asarray(value, leaf.dtype)
    used.add(key)
  report = Report(loaded=sorted(used), missing=missing,
                  unexpected=sorted(k for k in state if k not in used))
  return flax.traverse_util.unflatten_dict(out, sep="/"), report


_BN = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}


def _resnet_rule(path: str):
  """'params/layer1_0/downsample_0/kernel' -> ('layer1.0.downsample.0.weight', _conv)."""
  collection, *modules, leaf = path.split("/")
  prefix = ".".join(m.replace("_", ".") for m in modules)
  if leaf == "kernel":
    return f"{prefix}.weight", _conv
  if collection in ("params", "batch_stats") and leaf in _BN:
    return f"{prefix}.{_BN[leaf]}", _identity
  return None


def torchvision_resnet_key(path: str):
  """The torchvision state-dict key of one of our ResNet leaves ('params/layer1_0/conv1/kernel'
  -> 'layer1.0.conv1.weight'), or None for a leaf torchvision has no tensor for."""
  rule = _resnet_rule(path)
  return rule[0] if rule else None


def convert_torchvision_resnet(state_dict: Mapping[str, np.ndarray], template):
  """torchvision ResNet state dict -> variables {'params', 'batch_stats'} of our `ResNet`.

  Args:
    state_dict: torchvision names ('conv1.weight', 'layer1.0.bn1.running_mean', ...).
    template: our ResNet's variables (concrete or `jax.eval_shape`), same structure returned.

  Returns:
    (variables, Report); keys of stages we cut (layer4) and fc are reported as unexpected.
  """
  return _fill(template, _resnet_rule, state_dict)


def _resize_pos_embed(pos, shape):
  """[1, 1 + g * g, D] -> shape [1, 1 + h * w, D], bicubic on the patch grid (square h == w)."""
  if pos.shape == shape:
    return pos
  g, h = int(round(np.sqrt(pos.shape[1] - 1))), int(round(np.sqrt(shape[1] - 1)))
  if g * g != pos.shape[1] - 1 or h * h != shape[1] - 1 or pos.shape[2] != shape[2]:
    return pos          # not square grids: left to the shape check's error
  grid = pos[0, 1:].reshape(g, g, -1)
  grid = jax.image.resize(jnp.asarray(grid), (h, h, grid.shape[-1]), "bicubic", antialias=False)
  return np.concatenate([pos[:, :1], np.asarray(grid).reshape(1, h * h, -1)], axis=1)


def _qkv(index: int):
  def convert(w, shape):
    d = w.shape[0] // 3
    part = w[index * d:(index + 1) * d]
    return part.T.reshape(shape) if part.ndim == 2 else part.reshape(shape)
  return convert


def _attn_out(w, shape):
  return w.T.reshape(shape)


_VIT_TOP = {"patch_embed/kernel": ("patch_embed.proj.weight", _conv),
            "patch_embed/bias": ("patch_embed.proj.bias", _identity),
            "cls_token": ("cls_token", _identity), "pos_embed": ("pos_embed", _resize_pos_embed),
            "norm/scale": ("norm.weight", _identity), "norm/bias": ("norm.bias", _identity)}
_VIT_BLOCK = {"norm1/scale": "norm1.weight", "norm1/bias": "norm1.bias",
              "norm2/scale": "norm2.weight", "norm2/bias": "norm2.bias",
              "attn/out/bias": "attn.proj.bias", "attn/out/kernel": "attn.proj.weight",
              "mlp/fc1/kernel": "mlp.fc1.weight", "mlp/fc1/bias": "mlp.fc1.bias",
              "mlp/fc2/kernel": "mlp.fc2.weight", "mlp/fc2/bias": "mlp.fc2.bias"}


def _vit_rule(path: str):
  collection, rest = path.split("/", 1)
  if collection != "params":
    return None
  if rest in _VIT_TOP:
    return _VIT_TOP[rest]
  block, inner = rest.split("/", 1)
  prefix = block.replace("_", ".")                       # blocks_3 -> blocks.3
  for i, name in enumerate(("query", "key", "value")):
    for leaf, src in (("kernel", "weight"), ("bias", "bias")):
      if inner == f"attn/{name}/{leaf}":
        return f"{prefix}.attn.qkv.{src}", _qkv(i)
  if inner not in _VIT_BLOCK:
    return None
  convert = {"attn/out/kernel": _attn_out}.get(inner, _linear if inner.endswith("kernel")
                                                 else _identity)
  return f"{prefix}.{_VIT_BLOCK[inner]}", convert


def convert_timm_vit(state_dict: Mapping[str, np.ndarray], template):
  """timm VisionTransformer state dict -> variables {'params'} of our `ViT`.

  Args:
    state_dict: timm names ('patch_embed.proj.weight', 'blocks.0.attn.qkv.weight', ...).
    template: our ViT's variables (concrete or `jax.eval_shape`); its pos_embed length sets
      the grid the checkpoint's position embedding is resized to.

  Returns:
    (variables, Report); head.* is reported as unexpected.
  """
  return _fill(template, _vit_rule, state_dict)


def load_pretrained_backbone(variables, state_dict: Mapping[str, np.ndarray], backbone: str,
                             scope: str = "backbone"):
  """Replaces the backbone part of a model's variables with converted pretrained weights.

  Args:
    variables: the model's variables ({'params', maybe 'batch_stats'}), concrete or abstract.
    state_dict: torchvision (ResNet backbones) or timm (ViT backbones) names.
    backbone: the backbone name (a key of RESNETS or VITS) deciding the converter.
    scope: the backbone's module name in the model.

  Returns:
    (variables with the backbone replaced, Report).
  """
  check_choice("backbone", backbone, (*resnet.RESNETS, *vit.VITS))
  convert = convert_torchvision_resnet if backbone in resnet.RESNETS else convert_timm_vit
  sub = {c: v[scope] for c, v in flax.core.unfreeze(variables).items() if scope in v}
  converted, report = convert(state_dict, sub)
  out = flax.core.unfreeze(variables)
  for collection, tree in converted.items():
    out[collection] = {**out[collection], scope: tree}
  return out, report
