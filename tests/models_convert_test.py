"""Tests for jaxcorr.models.convert: state dicts with the real torchvision / timm names and shapes
(random NumPy arrays, no download, no torch), written as .safetensors, converted, loaded into our
modules, and checked against NumPy forward passes written from the PyTorch semantics."""

from __future__ import annotations

import functools
import math
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcorr.models import build, convert, resnet, vit


def torchvision_resnet_state(layers=(3, 4, 6, 3), width=64, in_ch=3, classes=1000, seed=0):
  """A torchvision ResNet (Bottleneck) state dict: its keys, shapes and dtypes, random values."""
  rng = np.random.default_rng(seed)
  sd = {}

  def conv(name, o, i, k):
    sd[f"{name}.weight"] = (rng.standard_normal((o, i, k, k)) / np.sqrt(i * k * k)).astype("f4")

  def bn(name, c):
    sd[f"{name}.weight"] = rng.uniform(0.5, 1.5, c).astype("f4")
    sd[f"{name}.bias"] = (0.1 * rng.standard_normal(c)).astype("f4")
    sd[f"{name}.running_mean"] = (0.1 * rng.standard_normal(c)).astype("f4")
    sd[f"{name}.running_var"] = rng.uniform(0.5, 1.5, c).astype("f4")
    sd[f"{name}.num_batches_tracked"] = np.array(7, np.int64)

  conv("conv1", width, in_ch, 7)
  bn("bn1", width)
  inp = width
  for s, n in enumerate(layers):
    w = width * 2 ** s
    for b in range(n):
      p = f"layer{s + 1}.{b}"
      conv(f"{p}.conv1", w, inp, 1), bn(f"{p}.bn1", w)
      conv(f"{p}.conv2", w, w, 3), bn(f"{p}.bn2", w)
      conv(f"{p}.conv3", 4 * w, w, 1), bn(f"{p}.bn3", 4 * w)
      if b == 0:
        conv(f"{p}.downsample.0", 4 * w, inp, 1), bn(f"{p}.downsample.1", 4 * w)
      inp = 4 * w
  sd["fc.weight"] = rng.standard_normal((classes, inp)).astype("f4")
  sd["fc.bias"] = rng.standard_normal(classes).astype("f4")
  return sd


def timm_vit_state(width=384, depth=12, mlp=1536, grid=14, patch=16, in_ch=3, classes=1000,
                   seed=0):
  """A timm VisionTransformer state dict (vit_small_patch16_224 by default), random values."""
  rng = np.random.default_rng(seed)
  r = lambda *shape: (rng.standard_normal(shape) / np.sqrt(shape[-1])).astype("f4")
  sd = {"cls_token": r(1, 1, width), "pos_embed": r(1, grid * grid + 1, width),
        "patch_embed.proj.weight": r(width, in_ch, patch, patch),
        "patch_embed.proj.bias": r(width), "norm.weight": 1 + r(width), "norm.bias": r(width),
        "head.weight": r(classes, width), "head.bias": r(classes)}
  for i in range(depth):
    p = f"blocks.{i}"
    sd.update({f"{p}.norm1.weight": 1 + r(width), f"{p}.norm1.bias": r(width),
               f"{p}.attn.qkv.weight": r(3 * width, width), f"{p}.attn.qkv.bias": r(3 * width),
               f"{p}.attn.proj.weight": r(width, width), f"{p}.attn.proj.bias": r(width),
               f"{p}.norm2.weight": 1 + r(width), f"{p}.norm2.bias": r(width),
               f"{p}.mlp.fc1.weight": r(mlp, width), f"{p}.mlp.fc1.bias": r(mlp),
               f"{p}.mlp.fc2.weight": r(width, mlp), f"{p}.mlp.fc2.bias": r(width)})
  return sd


def _n_params(sd):
  return sum(v.size for k, v in sd.items() if "running" not in k and "num_batches" not in k)


def _abstract(module, shape):
  return jax.eval_shape(functools.partial(module.init, train=False), jax.random.key(0),
                        jax.ShapeDtypeStruct(shape, jnp.float32))


def _same_structure(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    assert x.shape == y.shape and x.dtype == y.dtype


# NumPy forward passes written from the PyTorch definitions (NCHW semantics, on NHWC arrays).

def _np_conv(x, w, stride=1, pad=0):
  """x [H, W, I], torch weight [O, I, k, k] -> [H', W', O]."""
  x = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
  k = w.shape[-1]
  win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(0, 1))[::stride, ::stride]
  return np.einsum("rcikl,oikl->rco", win, w)


def _np_bn(x, sd, name):
  return ((x - sd[f"{name}.running_mean"]) / np.sqrt(sd[f"{name}.running_var"] + 1e-5)
          * sd[f"{name}.weight"] + sd[f"{name}.bias"])


def _np_resnet(x, sd, layers):
  relu = lambda y: np.maximum(y, 0)
  y = relu(_np_bn(_np_conv(x, sd["conv1.weight"], 2, 3), sd, "bn1"))
  y = np.pad(y, ((1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
  y = np.lib.stride_tricks.sliding_window_view(y, (3, 3), axis=(0, 1))[::2, ::2].max((-1, -2))
  for s, n in enumerate(layers):
    for b in range(n):
      p, stride = f"layer{s + 1}.{b}", 2 if s > 0 and b == 0 else 1
      z = relu(_np_bn(_np_conv(y, sd[f"{p}.conv1.weight"]), sd, f"{p}.bn1"))
      z = relu(_np_bn(_np_conv(z, sd[f"{p}.conv2.weight"], stride, 1), sd, f"{p}.bn2"))
      z = _np_bn(_np_conv(z, sd[f"{p}.conv3.weight"]), sd, f"{p}.bn3")
      if f"{p}.downsample.0.weight" in sd:
        y = _np_bn(_np_conv(y, sd[f"{p}.downsample.0.weight"], stride), sd, f"{p}.downsample.1")
      y = relu(z + y)
  return y


def _np_vit(x, sd, depth, heads):
  def ln(y, name):
    mu, var = y.mean(-1, keepdims=True), y.var(-1, keepdims=True)
    return (y - mu) / np.sqrt(var + 1e-6) * sd[f"{name}.weight"] + sd[f"{name}.bias"]

  lin = lambda y, name: y @ sd[f"{name}.weight"].T + sd[f"{name}.bias"]
  gelu = np.vectorize(lambda v: 0.5 * v * (1 + math.erf(v / math.sqrt(2))))
  y = _np_conv(x, sd["patch_embed.proj.weight"], 16) + sd["patch_embed.proj.bias"]
  h, w, d = y.shape
  y = np.concatenate([sd["cls_token"][0], y.reshape(h * w, d)]) + sd["pos_embed"][0]
  for i in range(depth):
    p = f"blocks.{i}"
    qkv = lin(ln(y, f"{p}.norm1"), f"{p}.attn.qkv").reshape(len(y), 3, heads, d // heads)
    q, k, v = qkv.transpose(1, 2, 0, 3)                  # [H, L, Dh] each
    a = q @ k.transpose(0, 2, 1) / np.sqrt(d // heads)
    a = np.exp(a - a.max(-1, keepdims=True))
    o = (a / a.sum(-1, keepdims=True)) @ v               # [H, L, Dh]
    y = y + lin(o.transpose(1, 0, 2).reshape(len(y), d), f"{p}.attn.proj")
    y = y + lin(gelu(lin(ln(y, f"{p}.norm2"), f"{p}.mlp.fc1")), f"{p}.mlp.fc2")
  return ln(y, "norm")


def test_safetensors_round_trip_and_bf16(tmp_path):
  tensors = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "n": np.array(7, np.int64),
             "h": np.ones((2,), np.float16)}
  convert.write_safetensors(tmp_path / "t.safetensors", tensors)
  back = convert.load_state_dict(tmp_path / "t.safetensors")
  assert back.keys() == tensors.keys()
  for k in tensors:
    np.testing.assert_array_equal(back[k], tensors[k])
    assert back[k].dtype == tensors[k].dtype
  # A hand-written BF16 file with metadata: 1.5 is 0x3FC0 in bfloat16.
  json_bytes = ('{"__metadata__": {"format": "pt"}, "x": {"dtype": "BF16", '
                '"shape": [2], "data_offsets": [0, 4]}}').encode()
  raw = struct.pack("<Q", len(json_bytes)) + json_bytes + struct.pack("<2H", 0x3FC0, 0xC000)
  (tmp_path / "b.safetensors").write_bytes(raw)
  np.testing.assert_array_equal(convert.load_state_dict(tmp_path / "b.safetensors")["x"],
                                [1.5, -2.0])


def test_pth_without_torch_says_what_to_do(tmp_path):
  try:
    import torch  # noqa: F401  pylint: disable=unused-import,g-import-not-at-top
    pytest.skip("torch is installed")
  except ImportError:
    pass
  (tmp_path / "w.pth").write_bytes(b"")
  with pytest.raises(ImportError, match="pip install torch.*safetensors"):
    convert.load_state_dict(tmp_path / "w.pth")
  with pytest.raises(ValueError, match="allowed: .safetensors, .pth"):
    convert.load_state_dict(tmp_path / "w.npz")


def test_resnet50_stage3_from_torchvision_file(tmp_path):
  sd = torchvision_resnet_state()
  assert _n_params(sd) == 25_557_032                    # torchvision resnet50
  convert.write_safetensors(tmp_path / "r50.safetensors", sd)
  loaded = convert.load_state_dict(tmp_path / "r50.safetensors")
  template = _abstract(resnet.resnet("resnet50"), (1, 64, 64, 3))
  variables, report = convert.convert_torchvision_resnet(loaded, template)
  _same_structure(variables, template)
  p, s = variables["params"], variables["batch_stats"]
  np.testing.assert_array_equal(p["conv1"]["kernel"], sd["conv1.weight"].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(p["layer3_5"]["conv2"]["kernel"][1, 2, 3, 4],
                                sd["layer3.5.conv2.weight"][4, 3, 1, 2])
  np.testing.assert_array_equal(p["layer2_0"]["downsample_1"]["scale"],
                                sd["layer2.0.downsample.1.weight"])
  np.testing.assert_array_equal(s["layer1_2"]["bn3"]["var"], sd["layer1.2.bn3.running_var"])
  assert not report.missing
  assert all(k.startswith(("layer4.", "fc.")) for k in report.unexpected)
  assert {"fc.weight", "fc.bias", "layer4.2.bn3.running_var"} <= set(report.unexpected)
  assert not any("num_batches_tracked" in k for k in report.unexpected + report.loaded)
  assert len(report.loaded) == len(jax.tree.leaves(template))


def test_resnet_forward_matches_torch_semantics():
  layers = (1, 1, 1)
  sd = torchvision_resnet_state(layers=layers, width=8, classes=10)
  model = resnet.resnet("resnet_tiny")
  x = np.random.default_rng(1).standard_normal((1, 32, 32, 3)).astype(np.float32)
  variables, report = convert.convert_torchvision_resnet(sd, _abstract(model, x.shape))
  assert report.unexpected == ["fc.bias", "fc.weight"] + sorted(
      k for k in sd if k.startswith("layer4") and "num_batches" not in k)
  out, _ = jax.jit(functools.partial(model.apply, train=False))(variables, x)
  np.testing.assert_allclose(out[0], _np_resnet(x[0], sd, layers), rtol=1e-4, atol=1e-4)


def test_vit_s16_from_timm_file_with_pos_embed_resize(tmp_path):
  sd = timm_vit_state()
  assert _n_params(sd) == 22_050_664                    # timm vit_small_patch16_224
  convert.write_safetensors(tmp_path / "vit.safetensors", sd)
  template = _abstract(vit.vit("vit_s16"), (1, 256, 256, 3))          # 16 x 16 grid, not 14
  variables, report = convert.convert_timm_vit(
      convert.load_state_dict(tmp_path / "vit.safetensors"), template)
  _same_structure(variables, template)
  assert report.unexpected == ["head.bias", "head.weight"] and not report.missing
  p = variables["params"]
  qkv, d = sd["blocks.3.attn.qkv.weight"], 384
  np.testing.assert_array_equal(p["blocks_3"]["attn"]["key"]["kernel"].reshape(d, d),
                                qkv[d:2 * d].T)
  np.testing.assert_array_equal(p["blocks_3"]["attn"]["value"]["bias"].reshape(-1),
                                sd["blocks.3.attn.qkv.bias"][2 * d:])
  np.testing.assert_array_equal(p["blocks_0"]["mlp"]["fc1"]["kernel"],
                                sd["blocks.0.mlp.fc1.weight"].T)
  pos = p["pos_embed"]
  assert pos.shape == (1, 257, 384)
  np.testing.assert_array_equal(pos[0, 0], sd["pos_embed"][0, 0])    # the class token's own
  # A position embedding constant over the grid stays constant when resized.
  grid = np.broadcast_to(sd["pos_embed"][:, 1:2], (1, 196, 384))
  const = dict(sd, pos_embed=np.concatenate([sd["pos_embed"][:, :1], grid], 1))
  pos_c = convert.convert_timm_vit(const, template)[0]["params"]["pos_embed"]
  np.testing.assert_allclose(pos_c[0, 1:], np.broadcast_to(sd["pos_embed"][0, 1], (256, 384)),
                             atol=1e-5)


def test_vit_forward_matches_timm_semantics():
  cfg = vit.VITS["vit_test"]
  sd = timm_vit_state(width=cfg["width"], depth=cfg["depth"], mlp=cfg["mlp_dim"], grid=2,
                      classes=5)
  model = vit.vit("vit_test")
  x = np.random.default_rng(2).standard_normal((1, 32, 32, 3)).astype(np.float32)
  variables, _ = convert.convert_timm_vit(sd, _abstract(model, x.shape))
  tokens, aux = jax.jit(functools.partial(model.apply, train=False))(variables, x)
  ref = _np_vit(x[0], sd, cfg["depth"], cfg["num_heads"])
  np.testing.assert_allclose(aux["cls"][0], ref[0], rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(tokens[0].reshape(4, -1), ref[1:], rtol=1e-4, atol=1e-4)


def test_shape_mismatch_is_a_clear_error():
  sd = torchvision_resnet_state(layers=(1, 1, 1), width=16, classes=10)
  template = _abstract(resnet.resnet("resnet_tiny"), (1, 32, 32, 3))
  pattern = r"shape mismatch: source '.*' \(16,\) converts .* needs \(8,\)"
  with pytest.raises(ValueError, match=pattern):
    convert.convert_torchvision_resnet(sd, template)


def test_missing_keys_kept_from_concrete_template_or_error_when_abstract():
  sd = torchvision_resnet_state(layers=(1, 1, 1), width=8, classes=10)
  del sd["layer2.0.conv1.weight"]
  model = resnet.resnet("resnet_tiny")
  abstract = _abstract(model, (1, 32, 32, 3))
  with pytest.raises(ValueError, match="no source for 'params/layer2_0/conv1/kernel'"):
    convert.convert_torchvision_resnet(sd, abstract)
  concrete = jax.tree.map(lambda s: jnp.full(s.shape, 0.25, s.dtype), abstract)
  variables, report = convert.convert_torchvision_resnet(sd, concrete)
  assert report.missing == ["params/layer2_0/conv1/kernel"]
  np.testing.assert_array_equal(variables["params"]["layer2_0"]["conv1"]["kernel"], 0.25)


def test_load_into_correspondence_model_grey_input():
  model = build.from_size("tiny", in_channels=1)
  views = jax.ShapeDtypeStruct((1, 2, 64, 64, 1), jnp.float32)
  template = jax.eval_shape(lambda v: model.init(jax.random.key(0), v, train=False), views)
  sd = torchvision_resnet_state(layers=(1, 1, 1), width=8, classes=10)
  variables, report = convert.load_pretrained_backbone(template, sd, "resnet_tiny")
  assert not report.missing
  # RGB filters summed for the one-channel model; the rest of the model is untouched.
  np.testing.assert_allclose(variables["params"]["backbone"]["conv1"]["kernel"][..., 0, :],
                             sd["conv1.weight"].sum(1).transpose(1, 2, 0), rtol=1e-6)
  assert variables["params"]["encoder"] == template["params"]["encoder"]
  with pytest.raises(ValueError, match="allowed: resnet50"):
    convert.load_pretrained_backbone(template, sd, "resnet18")


def test_resnet50_stage3_matches_a_real_torchvision_module(tmp_path):
  """torchvision's own ResNet-50 (random weights, no download) saved with torch.save, read by
  `load_state_dict` and converted: our stage-3 features equal torchvision's layer3 output."""
  torch = pytest.importorskip("torch")
  torchvision = pytest.importorskip("torchvision")
  torch.manual_seed(0)
  net = torchvision.models.resnet50(weights=None).eval()
  with torch.no_grad():              # BatchNorm statistics and affines away from the identity
    for m in net.modules():
      if isinstance(m, torch.nn.BatchNorm2d):
        m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.1, 0.1)
        m.running_mean.uniform_(-0.1, 0.1), m.running_var.uniform_(0.5, 1.5)
  torch.save(net.state_dict(), tmp_path / "resnet50.pth")
  x = np.random.default_rng(0).standard_normal((1, 64, 96, 3)).astype(np.float32)
  stage3 = torch.nn.Sequential(*list(net.children())[:-3])     # conv1 ... layer3, as the authors
  with torch.no_grad():
    ref = stage3(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
  model = resnet.resnet("resnet50")
  variables, report = convert.convert_torchvision_resnet(
      convert.load_state_dict(tmp_path / "resnet50.pth"), _abstract(model, x.shape))
  assert not report.missing and all(k.startswith(("layer4.", "fc.")) for k in report.unexpected)
  out, _ = jax.jit(functools.partial(model.apply, train=False))(variables, x)
  assert out.shape == ref.shape == (1, 4, 6, 1024)
  np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
