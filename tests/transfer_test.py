"""Tests for jaxcorr.models.transfer: a tiny correspondence model's ViT ('vit_test') saved by the
project's Checkpoints into a workdir, read back and loaded into a FusionClassifier at another
image size (position embedding resized, reported); errors for a mismatched width, a foreign
architecture and missing or incomplete checkpoints; a timm safetensors file."""

from __future__ import annotations

import functools
import json

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcorr.models import classifier, convert, correspondence, transfer, vit
from jaxcorr.train import checkpoint, state as state_lib

PRETRAIN = 64          # correspondence pretraining images: a 4 x 4 patch grid, 17 position entries
FINETUNE = 32          # the classifier's images: 2 x 2 patches, 5 position entries


def _abstract(model, *args, **kwargs):
  return jax.eval_shape(functools.partial(model.init, train=False, **kwargs),
                        jax.random.key(0), *args)


def _random_params(abstract, seed=0):
  """Random NumPy values for a tree of shapes (no module initialisers: they run op by op)."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda x: rng.standard_normal(x.shape).astype(np.float32) * 0.2, abstract)


@functools.lru_cache(maxsize=1)
def _pretrained():
  """Params of a tiny correspondence model with the 'vit_test' backbone at 64 x 64."""
  model = correspondence.CorrespondenceModel(backbone="vit_test", d_model=32, n_layers=1,
                                             n_heads=2, mlp_dim=64)
  views = jnp.zeros((1, 2, PRETRAIN, PRETRAIN, 1))
  return _random_params(_abstract(model, views)["params"])


def _classifier_params(size=FINETUNE, **kwargs):
  model = classifier.FusionClassifier(vit="vit_test", fusion="early", guidance="layer", **kwargs)
  views = jnp.zeros((1, 2, size, size, 1))
  corr = jnp.zeros((1, 1, (size // 16) ** 2, (size // 16) ** 2))
  return model, _random_params(_abstract(model, views, corr)["params"], seed=1)


def _save_run(workdir, params, steps=(1,), best_step=None):
  """A workdir as the training loop leaves it: TrainStates under checkpoints/ (and best/),
  config.json."""
  tx = optax.adam(1e-3)
  ckpt = checkpoint.Checkpoints(str(workdir))
  for step in steps:
    scaled = jax.tree.map(lambda x, s=step: x * s, params)          # tell the steps apart
    state = state_lib.TrainState(step=jnp.asarray(step, jnp.int32), params=scaled,
                                 model_state={}, opt_state=tx.init(scaled))
    ckpt.save(step, state, {"epoch": 0}, {"ap": 0.5} if step == best_step else None)
  ckpt.wait()
  ckpt.close()
  (workdir / "config.json").write_text(json.dumps({"model": {"backbone": "vit_test"}}))


def _flat(tree):
  return flax.traverse_util.flatten_dict(tree, sep="/")


def test_checkpoint_to_classifier_at_another_image_size(tmp_path):
  source = _pretrained()
  _save_run(tmp_path, source)
  params, model_state, config = transfer.read_checkpoint_params(tmp_path)
  assert model_state == {} and config == {"model": {"backbone": "vit_test"}}
  for path, value in _flat(source).items():
    np.testing.assert_array_equal(_flat(params)[path], value)

  model, target = _classifier_params()
  loaded, report = transfer.load_subtree(target, params)
  flat, src = _flat(loaded), _flat(source)
  backbone = [p for p in _flat(target) if p.startswith("backbone/")]
  assert report.interpolated == ["backbone/pos_embed"]
  assert report.details["backbone/pos_embed"] == "(1, 17, 32) -> (1, 5, 32)"
  assert sorted(report.loaded) == sorted(p for p in backbone if p != "backbone/pos_embed")
  assert sorted(report.reinitialised) == ["alpha", "head/bias", "head/kernel", "view_embed"]
  assert {"proj/kernel", "view_embed", "encoder/norm/scale"} <= set(report.unused)
  assert not any(p.startswith("backbone/") for p in report.unused)
  for path in report.loaded:
    np.testing.assert_array_equal(flat[path], src[path])
  for path in report.reinitialised:
    np.testing.assert_array_equal(flat[path], _flat(target)[path])
  pos = flat["backbone/pos_embed"]
  assert pos.shape == (1, 5, 32) and pos.dtype == jnp.float32
  np.testing.assert_array_equal(pos[:, 0], src["backbone/pos_embed"][:, 0])    # class token kept
  assert "interpolated 1" in report.format() and "head/kernel" in report.format()
  assert json.loads(json.dumps(report.to_dict()))["interpolated"] == ["backbone/pos_embed"]

  views = jax.random.uniform(jax.random.key(2), (2, 2, FINETUNE, FINETUNE, 1))
  corr = jnp.zeros((2, 1, 4, 4))
  logits, _ = model.apply({"params": loaded}, views, corr, train=False)
  assert logits.shape == (2,) and np.all(np.isfinite(logits))


def test_same_image_size_reproduces_the_pretrained_vit():
  """At the pretraining size nothing is resized and the classifier's backbone is the
  correspondence model's ViT: the same class token."""
  source = _pretrained()
  model, target = _classifier_params(size=PRETRAIN)
  loaded, report = transfer.load_subtree(target, source)
  assert report.interpolated == [] and "backbone/pos_embed" in report.loaded
  single = classifier.FusionClassifier(vit="vit_test", fusion="single")
  views = jax.random.uniform(jax.random.key(3), (1, 1, PRETRAIN, PRETRAIN, 1))
  _, aux = single.apply({"params": {k: loaded[k] for k in ("backbone", "head")}}, views,
                        train=False)
  x = correspondence.normalise_views(views[:, 0], correspondence.INCEPTION_MEAN,
                                     correspondence.INCEPTION_STD, 3)
  _, ref = vit.vit("vit_test").apply({"params": source["backbone"]}, x, train=False)
  np.testing.assert_array_equal(aux["cls"], ref["cls"])


def test_resize_pos_embed_values():
  const = np.concatenate([np.full((1, 1, 8), 7.0), np.full((1, 16, 8), 0.25)], axis=1)
  up = transfer.resize_pos_embed(const, 1 + 36)
  np.testing.assert_allclose(up[:, 1:], 0.25, rtol=1e-6)
  np.testing.assert_array_equal(up[:, 0], 7.0)
  # A ramp along the columns of a 2 x 4 grid, resized to 2 x 8: still increasing along columns,
  # constant along rows (non-square grids are given explicitly).
  ramp = np.concatenate([np.zeros((1, 1, 1)),
                         np.tile(np.arange(4.0), 2).reshape(1, 8, 1)], axis=1)
  out = np.asarray(transfer.resize_pos_embed(ramp, 17, source_grid=(2, 4), target_grid=(2, 8)))
  grid = out[0, 1:, 0].reshape(2, 8)
  np.testing.assert_allclose(grid[0], grid[1], rtol=1e-6)
  assert np.all(np.diff(grid[0]) > 0)
  with pytest.raises(ValueError, match="not a square grid; pass source_grid"):
    transfer.resize_pos_embed(ramp, 17)


def test_mismatched_width_raises():
  """A ViT of another width must not load (and never silently re-initialises)."""
  narrow = vit.ViT(width=16, depth=2, num_heads=2, mlp_dim=64)
  source = {"backbone": _random_params(_abstract(narrow, jnp.zeros((1, 32, 32, 3)))["params"])}
  _, target = _classifier_params()
  with pytest.raises(ValueError, match=r"shape mismatch for 'backbone/[^']+': source "
                                       r"'backbone/[^']+' is \([0-9, ]+\), target needs"):
    transfer.load_subtree(target, source)


def test_pos_embed_without_interpolation_raises():
  _, target = _classifier_params()
  with pytest.raises(ValueError, match=r"'backbone/pos_embed'.*\(1, 17, 32\).*\(1, 5, 32\) "
                                       r"\(interpolate_pos=False\)"):
    transfer.load_subtree(target, _pretrained(), interpolate_pos=False)


def test_foreign_architecture_and_bad_paths_raise():
  _, target = _classifier_params()
  resnet_like = {"backbone": {"conv1": {"kernel": np.zeros((7, 7, 3, 8), np.float32)}}}
  with pytest.raises(ValueError, match="no parameter of source\\['backbone'\\] matches"):
    transfer.load_subtree(target, resnet_like)
  with pytest.raises(ValueError, match="source has no 'encoder/layer_0/missing'"):
    transfer.load_subtree(target, _pretrained(), source_path=("encoder", "layer_0", "missing"))


def test_read_checkpoint_prefers_best_then_latest_and_step_folders(tmp_path):
  source = {"backbone": {"w": np.ones((2, 3), np.float32)}}
  _save_run(tmp_path, source, steps=(1, 2), best_step=1)
  params, _, _ = transfer.read_checkpoint_params(tmp_path)
  np.testing.assert_array_equal(params["backbone"]["w"], 1.0)                 # best: step 1
  params, _, config = transfer.read_checkpoint_params(tmp_path / "checkpoints" / "2")
  np.testing.assert_array_equal(params["backbone"]["w"], 2.0)
  assert config == {"model": {"backbone": "vit_test"}}
  other = tmp_path / "latest_only"
  other.mkdir()
  _save_run(other, source, steps=(1, 3))
  np.testing.assert_array_equal(transfer.read_checkpoint_params(other)[0]["backbone"]["w"], 3.0)


def test_read_checkpoint_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    transfer.read_checkpoint_params(tmp_path / "nowhere")
  with pytest.raises(FileNotFoundError, match="neither a training workdir"):
    transfer.read_checkpoint_params(tmp_path)
  (tmp_path / "checkpoints").mkdir()
  with pytest.raises(FileNotFoundError, match="no finished checkpoint"):
    transfer.read_checkpoint_params(tmp_path)
  (tmp_path / "checkpoints" / "5").mkdir()
  with pytest.raises(FileNotFoundError, match="incomplete checkpoint"):
    transfer.read_checkpoint_params(tmp_path)
  tmp = tmp_path / "checkpoints" / "6.orbax-checkpoint-tmp-1"
  tmp.mkdir()
  with pytest.raises(FileNotFoundError, match="not a finished checkpoint"):
    transfer.read_checkpoint_params(tmp)


def _timm_state(width=32, depth=2, mlp=64, grid=4, classes=10, seed=0):
  """A timm VisionTransformer state dict (timm's tensor names and layouts), random values."""
  rng = np.random.default_rng(seed)
  r = lambda *shape: rng.standard_normal(shape).astype(np.float32)
  sd = {"patch_embed.proj.weight": r(width, 3, 16, 16), "patch_embed.proj.bias": r(width),
        "cls_token": r(1, 1, width), "pos_embed": r(1, 1 + grid * grid, width),
        "norm.weight": r(width), "norm.bias": r(width), "head.weight": r(classes, width),
        "head.bias": r(classes)}
  for i in range(depth):
    sd.update({f"blocks.{i}.{k}": v for k, v in {
        "norm1.weight": r(width), "norm1.bias": r(width), "norm2.weight": r(width),
        "norm2.bias": r(width), "attn.qkv.weight": r(3 * width, width),
        "attn.qkv.bias": r(3 * width), "attn.proj.weight": r(width, width),
        "attn.proj.bias": r(width), "mlp.fc1.weight": r(mlp, width), "mlp.fc1.bias": r(mlp),
        "mlp.fc2.weight": r(width, mlp), "mlp.fc2.bias": r(width)}.items()})
  return sd


def test_timm_safetensors_into_the_classifier(tmp_path):
  sd = _timm_state()
  path = tmp_path / "vit.safetensors"
  convert.write_safetensors(path, sd)
  _, target = _classifier_params()
  params, report = transfer.load_backbone(target, path)
  assert report.interpolated == ["backbone/pos_embed"]
  assert sorted(report.reinitialised) == ["alpha", "head/bias", "head/kernel", "view_embed"]
  assert report.unused == ["head.bias", "head.weight"]
  assert len(report.loaded) == len(_flat(target["backbone"])) - 1
  np.testing.assert_array_equal(params["backbone"]["norm"]["scale"], sd["norm.weight"])
  np.testing.assert_array_equal(params["backbone"]["cls_token"], sd["cls_token"])
  np.testing.assert_array_equal(params["backbone"]["blocks_1"]["attn"]["query"]["kernel"],
                                sd["blocks.1.attn.qkv.weight"][:32].T.reshape(32, 2, 16))
  np.testing.assert_array_equal(params["head"]["kernel"], target["head"]["kernel"])
  convert.write_safetensors(tmp_path / "wide.safetensors", _timm_state(width=48))
  with pytest.raises(ValueError, match=r"does not fit .* 'backbone': its cls_token is "
                                       r"\(1, 1, 48\), the target's \(1, 1, 32\)"):
    transfer.load_timm_backbone(target, tmp_path / "wide.safetensors")


def test_load_backbone_from_a_workdir(tmp_path):
  _save_run(tmp_path, _pretrained())
  _, target = _classifier_params()
  params, report = transfer.load_backbone(target, tmp_path)
  assert report.source == str(tmp_path) and report.interpolated == ["backbone/pos_embed"]
  np.testing.assert_array_equal(params["backbone"]["norm"]["scale"],
                                _pretrained()["backbone"]["norm"]["scale"])


# torchvision ResNet-50 (the authors' ImageNet start) into the correspondence model ------------

def _torchvision_file(tmp_path, **kwargs):
  from models_convert_test import torchvision_resnet_state  # pylint: disable=import-outside-toplevel
  sd = torchvision_resnet_state(**kwargs)
  path = tmp_path / "resnet.safetensors"
  convert.write_safetensors(path, sd)
  return sd, path


def test_torchvision_resnet50_into_the_correspondence_model(tmp_path):
  sd, path = _torchvision_file(tmp_path)
  model = correspondence.CorrespondenceModel(backbone="resnet50", d_model=32, n_layers=1,
                                             n_heads=2, mlp_dim=64)
  variables = _random_params(_abstract(model, jnp.zeros((1, 2, 32, 32, 1))))
  params, state = variables["params"], {"batch_stats": variables["batch_stats"]}
  new_params, new_state, report = transfer.load_torchvision_backbone(params, state, path,
                                                                     backbone="resnet50")
  bb, stats = new_params["backbone"], new_state["batch_stats"]["backbone"]
  np.testing.assert_array_equal(bb["conv1"]["kernel"], sd["conv1.weight"].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(bb["layer3_5"]["bn3"]["scale"], sd["layer3.5.bn3.weight"])
  np.testing.assert_array_equal(stats["layer2_0"]["downsample_1"]["mean"],
                                sd["layer2.0.downsample.1.running_mean"])
  np.testing.assert_array_equal(new_params["proj"]["kernel"], params["proj"]["kernel"])
  # The report: every backbone leaf loaded with its source and shapes, the rest kept.
  n_backbone = len(jax.tree.leaves(params["backbone"])) + len(jax.tree.leaves(
      state["batch_stats"]["backbone"]))
  # 43 convs (conv1, 13 blocks x 3, 3 downsamples): a kernel each, and a norm each (scale,
  # bias, mean, var).
  assert len(report.loaded) == n_backbone == 43 * 5
  assert report.details["params/backbone/conv1/kernel"] == (
      "conv1.weight (64, 3, 7, 7) -> (7, 7, 3, 64)")
  assert report.details["batch_stats/backbone/bn1/var"] == "bn1.running_var (64,) -> (64,)"
  assert {"params/proj/kernel", "params/view_embed", "params/encoder/layer_0/attn/query/kernel"
          } <= set(report.reinitialised)
  assert not [r for r in report.reinitialised if "/backbone/" in r]
  assert {"fc.weight", "layer4.2.bn3.running_var"} <= set(report.unused)
  assert all(k.startswith(("layer4.", "fc.")) for k in report.unused)
  assert report.format().startswith(f"transfer from {path}: loaded {n_backbone}, interpolated 0")


def test_torchvision_file_that_does_not_fit(tmp_path):
  _, path = _torchvision_file(tmp_path)           # a ResNet-50 file
  tiny = correspondence.CorrespondenceModel(backbone="resnet_tiny", d_model=32, n_layers=1,
                                            n_heads=2, mlp_dim=64)
  variables = _random_params(_abstract(tiny, jnp.zeros((1, 2, 32, 32, 1))))
  state = {"batch_stats": variables["batch_stats"]}
  with pytest.raises(ValueError, match=r"does not fit the resnet_tiny backbone: shape mismatch: "
                                       r"source '.*' \(64,"):
    transfer.load_torchvision_backbone(variables["params"], state, path, backbone="resnet_tiny")
  with pytest.raises(ValueError, match="needs a ResNet backbone"):
    transfer.load_torchvision_backbone(variables["params"], state, path, backbone="vit_test")
  other = tmp_path / "other.safetensors"
  convert.write_safetensors(other, {"encoder.weight": np.zeros((2, 2), np.float32)})
  with pytest.raises(ValueError, match="no tensor matches the resnet_tiny backbone"):
    transfer.load_torchvision_backbone(variables["params"], state, other, backbone="resnet_tiny")


def save_correspondence_run(workdir, size="tiny", image=64, seed=0):
  """A workdir as `pretrain.py:SIZE` leaves it, with random params and batch statistics of
  the correspondence model of `size` (no training: a saved TrainState and config.json, so that
  `Predictor.from_checkpoint` and `load_model` read it); returns (params, batch_stats)."""
  import sys  # pylint: disable=import-outside-toplevel
  from conftest import REPO  # pylint: disable=import-outside-toplevel
  sys.path.insert(0, str(REPO))
  from configs import pretrain  # pylint: disable=import-outside-toplevel
  from jaxcorr.models import build  # pylint: disable=import-outside-toplevel
  abstract = _abstract(build.from_size(size), jnp.zeros((1, 2, image, image, 1)))
  params = _random_params(abstract["params"], seed)
  stats = _random_params(abstract["batch_stats"], seed + 1)
  stats = jax.tree.map(np.abs, stats)                                    # variances >= 0
  tx = optax.adam(1e-3)
  ckpt = checkpoint.Checkpoints(str(workdir))
  ckpt.save(1, state_lib.TrainState(step=jnp.asarray(1, jnp.int32), params=params,
                                    model_state={"batch_stats": stats}, opt_state=tx.init(params)),
            {"epoch": 0}, {"ap": 0.5})
  ckpt.wait()
  ckpt.close()
  config = pretrain.get_config(size)
  config.views.detector_size = (image, image)
  (workdir / "config.json").write_text(config.to_json())
  return params, stats


def test_load_model_puts_a_whole_correspondence_run_into_a_classifier(tmp_path):
  """backbone='correspondence': every param and BatchNorm statistic of the run lands, exactly,
  under 'backbone'; the head stays as initialised and the report says so; a run of another
  size is refused with the leaf's name."""
  params, stats = save_correspondence_run(tmp_path)
  model = classifier.FusionClassifier(backbone="correspondence", corr_size="tiny",
                                      fusion="early", max_views=2)
  abstract = _abstract(model, jnp.zeros((1, 2, 32, 32, 1)))
  target = _random_params(abstract["params"], seed=7)
  state = {"batch_stats": _random_params(abstract["batch_stats"], seed=8)}
  out, out_state, report = transfer.load_model(target, state, tmp_path)
  for got, want in ((out["backbone"], params), (out_state["batch_stats"]["backbone"], stats)):
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
      np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(out["head"]["kernel"], target["head"]["kernel"])
  assert report.reinitialised == ["params/head/bias", "params/head/kernel"]
  assert report.unused == [] and report.source == str(tmp_path)
  assert "batch_stats/backbone/backbone/bn1/mean" in report.loaded
  small = classifier.FusionClassifier(backbone="correspondence", corr_size="small",
                                      fusion="early", max_views=2)
  abstract = _abstract(small, jnp.zeros((1, 2, 32, 32, 1)))
  with pytest.raises(ValueError, match="shape mismatch for 'backbone/"):
    transfer.load_model(abstract["params"], {"batch_stats": abstract["batch_stats"]}, tmp_path)
