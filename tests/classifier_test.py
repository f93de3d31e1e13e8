"""Tests for jaxcorr.models.classifier (and the multi-view path of jaxcorr.models.vit): the three
fusion modes, guidance, the view mask, the class-token attention map and the backbone's
parameter names, on the tiny 'vit_test' ViT with 32 x 48 images (2 x 3 patches per view)."""

from __future__ import annotations

import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcorr.models import classifier, vit
from jaxcorr.models.correspondence import INCEPTION_MEAN, INCEPTION_STD, normalise_views

B, N, HEIGHT, WIDTH = 2, 3, 32, 48
L = (HEIGHT // 16) * (WIDTH // 16)
P = N * (N - 1) // 2


def _views(seed=0, n=N):
  return jnp.asarray(np.random.default_rng(seed).random((B, n, HEIGHT, WIDTH, 1)), jnp.float32)


def _corr(seed=1):
  return jnp.asarray(np.random.default_rng(seed).random((B, P, L, L)), jnp.float32)


def _model(**kwargs):
  """The classifier on 'vit_test'. alpha_init only matters to init (test_initial_values):
  tests set alpha in the variables, so that equal models share one compiled apply."""
  return classifier.FusionClassifier(**{"vit": "vit_test", "max_views": 4, **kwargs})


@functools.lru_cache(maxsize=None)
def _jitted_apply(model):
  return jax.jit(functools.partial(model.apply, train=False))


def _apply(model, variables, *args, **kwargs):
  """model.apply(..., train=False), jitted once per model (running op by op compiles every op
  of every new shape, which costs more on CPU)."""
  return _jitted_apply(model)(variables, *args, **kwargs)


def _abstract_init(model, views, corr=None):
  """The variables' shapes (tracing only: shape and switch errors surface here)."""
  return jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), views,
                        corr)


@functools.lru_cache(maxsize=1)
def _base_params():
  """One real initialisation holding every parameter kind (jitted: op by op, the initialisers
  compile one by one; the other tests derive their variables from it), and the same with a
  random head: the zero-initialised one would hide every difference."""
  model = _model(fusion="early", guidance="head", alpha_init=0.5)
  init = jax.jit(functools.partial(model.init, train=False))
  # An 'rbg' key: its generator compiles in half the time of the default threefry's.
  initial = init(jax.random.key(0, impl="rbg"), _views(), _corr())["params"]
  kernel = np.random.default_rng(5).standard_normal(initial["head"]["kernel"].shape)
  head = {"kernel": jnp.asarray(kernel, jnp.float32),
          "bias": jnp.full(initial["head"]["bias"].shape, 0.1)}
  return initial, {**initial, "head": head}


def _init(model, views, corr=None, alpha=0.5):
  """Variables of `model` (checked against its own init's shapes) from `_base_params`, with
  every alpha = `alpha`."""
  abstract = _abstract_init(model, views, corr)["params"]
  base = _base_params()[1]
  params = {k: base[k] for k in abstract if k != "alpha"}
  if "alpha" in abstract:
    params["alpha"] = jnp.full(abstract["alpha"].shape, alpha, jnp.float32)
  assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, abstract)
  return {"params": params}


def _without(variables, name):
  return {"params": {k: v for k, v in variables["params"].items() if k != name}}


@pytest.mark.parametrize("fusion, guidance", [("single", "none"), ("late", "none"),
                                              ("early", "none"), ("early", "layer"),
                                              ("early", "head")])
def test_shapes_and_aux(fusion, guidance):
  model = _model(fusion=fusion, guidance=guidance)
  views, corr = _views(), _corr()
  variables = _init(model, views, corr)
  logits, aux = _apply(model, variables, views, corr)
  assert logits.shape == (B,) and logits.dtype == jnp.float32
  n_att = 1 if fusion == "single" else N
  assert aux["attention"].shape == (B, n_att, 2, 2, 3)
  # Per class token and head, the attention over patch tokens is a part of the softmax.
  axes = (3, 4) if fusion == "late" else (1, 3, 4)
  total = np.asarray(aux["attention"]).sum(axis=axes)
  assert np.all(total > 0) and np.all(total <= 1 + 1e-5)
  if fusion == "late":
    assert aux["view_logits"].shape == (B, N) and aux["cls"].shape == (B, N, 32)
  if guidance != "none":
    expected = (1,) if guidance == "layer" else (1, 2)       # vit_test: blocks 0 of 2, 2 heads
    np.testing.assert_array_equal(aux["alpha"], np.full(expected, 0.5))
  else:
    assert "alpha" not in aux


def test_initial_values():
  """A real init: zero head (logit 0), zero view embedding, alpha at alpha_init."""
  model = _model(fusion="early", guidance="head", alpha_init=0.5)
  params = _base_params()[0]
  np.testing.assert_array_equal(params["head"]["kernel"], 0.0)
  np.testing.assert_array_equal(params["view_embed"], np.zeros((4, 32)))
  np.testing.assert_array_equal(params["alpha"], np.full((1, 2), 0.5))
  logits, _ = _apply(model, {"params": params}, _views(), _corr())
  np.testing.assert_array_equal(logits, 0.0)


def test_num_classes():
  model = _model(fusion="early", num_classes=3)
  variables = _abstract_init(model, _views())
  assert variables["params"]["head"]["kernel"].shape == (32, 3)
  logits, _ = jax.eval_shape(functools.partial(model.apply, train=False), variables, _views())
  assert logits.shape == (B, 3) and logits.dtype == jnp.float32


def test_single_ignores_other_views():
  model = _model(fusion="single")
  views = _views()
  variables = _init(model, views)
  changed = views.at[:, 1:].set(_views(seed=9, n=N - 1))
  a, _ = _apply(model, variables, views)
  b, _ = _apply(model, variables, changed)
  np.testing.assert_array_equal(a, b)
  c, _ = _apply(model, variables, views.at[:, 0].set(changed[:, 1]))
  assert not np.allclose(a, c)


def test_late_is_the_max_of_single_view_logits_and_order_invariant():
  late, single = _model(fusion="late"), _model(fusion="single")
  views = _views()
  variables = _init(late, views)        # the same parameter tree as 'single'
  logits, aux = _apply(late, variables, views)
  per_view = np.stack([_apply(single, variables, views[:, i:i + 1])[0]
                       for i in range(N)], axis=1)
  np.testing.assert_allclose(aux["view_logits"], per_view, rtol=1e-5, atol=3e-5)
  np.testing.assert_allclose(logits, per_view.max(axis=1), rtol=1e-5, atol=3e-5)
  assert len(np.unique(np.round(per_view, 4))) > 1          # the views do differ
  swapped, _ = _apply(late, variables, views[:, ::-1])
  np.testing.assert_allclose(swapped, logits, rtol=1e-6, atol=3e-5)


def test_late_view_mask_pools_present_views_only():
  model = _model(fusion="late")
  views = _views()
  variables = _init(model, views)
  mask = jnp.asarray([[True, True, False], [True, False, False]])
  logits, aux = _apply(model, variables, views, view_mask=mask)
  view_logits = np.asarray(_apply(model, variables, views)[1]["view_logits"])
  expected = [view_logits[0, :2].max(), view_logits[1, 0]]
  np.testing.assert_allclose(logits, expected, rtol=1e-6)
  assert np.all(np.asarray(aux["view_logits"])[~np.asarray(mask)] < -1e30)


def test_early_with_one_view_equals_single():
  """The view embedding starts at zero, so one view in the early sequence is the plain ViT."""
  early, single = _model(fusion="early"), _model(fusion="single")
  views = _views(n=1)
  variables = _init(early, views)
  a, aux_a = _apply(early, variables, views)
  b, aux_b = _apply(single, _without(variables, "view_embed"), views)
  np.testing.assert_allclose(a, b, rtol=1e-5, atol=3e-5)
  np.testing.assert_allclose(aux_a["attention"], aux_b["attention"], rtol=1e-5, atol=1e-7)


def test_early_is_not_per_view():
  """Views see each other: changing view 2 changes the class token of the study."""
  model = _model(fusion="early")
  views = _views()
  variables = _init(model, views)
  a, _ = _apply(model, variables, views)
  b, _ = _apply(model, variables, views.at[:, 2].set(1.0 - views[:, 2]))
  assert not np.allclose(a, b)


def test_early_view_mask_hides_absent_views():
  model = _model(fusion="early")
  views = _views()
  variables = _init(model, views)
  mask = jnp.asarray([[True, True, False], [True, False, False]])
  a, aux = _apply(model, variables, views, view_mask=mask)
  other = views.at[:, 2].set(0.0).at[1, 1].set(1.0)
  b, _ = _apply(model, variables, other, view_mask=mask)
  np.testing.assert_allclose(a, b, rtol=1e-5, atol=3e-5)
  attention = np.asarray(aux["attention"])                   # [B, N, heads, h, w]
  assert not np.any(attention[0, 2]) and not np.any(attention[1, 1:])
  c, _ = _apply(model, variables, other)
  assert not np.allclose(a, c)


@pytest.mark.parametrize("guidance", ["layer", "head"])
def test_guidance_with_alpha_zero_equals_no_guidance_exactly(guidance):
  """alpha_init = 0 (test_initial_values checks init sets alpha to alpha_init)."""
  views, corr = _views(), _corr()
  guided = _model(fusion="early", guidance=guidance)
  plain = _model(fusion="early", guidance="none")
  variables = _init(guided, views, corr, alpha=0.0)
  a, aux_a = _apply(guided, variables, views, corr)
  b, aux_b = _apply(plain, _without(variables, "alpha"), views)
  np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(aux_a["attention"], aux_b["attention"])


def test_guidance_changes_the_output_when_alpha_and_corr_are_nonzero():
  views, corr = _views(), _corr()
  guided = _model(fusion="early", guidance="head")
  variables = _init(guided, views, corr, alpha=2.0)
  plain, _ = _apply(_model(fusion="early"), _without(variables, "alpha"), views)
  a, _ = _apply(guided, variables, views, corr)
  assert np.all(np.abs(np.asarray(a) - np.asarray(plain)) > 1e-4)
  zero, _ = _apply(guided, variables, views, jnp.zeros_like(corr))
  np.testing.assert_array_equal(zero, plain)                # a zero bias is no bias


def test_gradients_reach_alpha_and_the_view_embedding():
  views, corr = _views(), _corr()
  model = _model(fusion="early", guidance="layer")
  variables = _init(model, views, corr, alpha=0.0)
  loss = lambda p: jnp.sum(model.apply({"params": p}, views, corr, train=False)[0])
  grads = jax.jit(jax.grad(loss))(variables["params"])
  assert np.all(np.abs(grads["alpha"]) > 1e-4)
  assert np.abs(grads["view_embed"][:N]).sum() > 0
  np.testing.assert_array_equal(grads["view_embed"][N:], 0.0)    # rows of unused view slots


def test_guided_layers_selects_the_last_blocks():
  """The final block is never guided (only its class-token output reaches the logit and the
  class-token row of the bias is 0)."""
  assert classifier.guided_blocks(0, 12) == list(range(11))
  assert classifier.guided_blocks(3, 12) == [8, 9, 10]
  views, corr = _views(), _corr()
  model = _model(fusion="early", guidance="layer", guided_layers=1)
  variables = _init(model, views, corr)
  assert variables["params"]["alpha"].shape == (1,)
  for bad in (-1, 2, "all", True):
    with pytest.raises(ValueError, match="guided_layers"):
      _abstract_init(_model(fusion="early", guidance="layer", guided_layers=bad), views, corr)


def test_class_token_attention_matches_the_block():
  """aux['attention'] recomputes the last block's softmax; compare it with the query and key
  projections the block computed (captured intermediates)."""
  model = _model(fusion="single")
  views = _views()
  variables = _init(model, views)
  apply = jax.jit(functools.partial(model.apply, train=False, capture_intermediates=True))
  (_, aux), state = apply(variables, views)
  attn = state["intermediates"]["backbone"]["blocks_1"]["attn"]
  q, k = attn["query"]["__call__"][0], attn["key"]["__call__"][0]       # [B, T, H, D]
  logits = np.einsum("bhd,bkhd->bhk", q[:, 0], k) / np.sqrt(q.shape[-1])
  weights = np.exp(logits - logits.max(-1, keepdims=True))
  weights /= weights.sum(-1, keepdims=True)
  np.testing.assert_allclose(aux["attention"][:, 0].reshape(B, 2, L), weights[:, :, 1:],
                             rtol=1e-5, atol=1e-7)


def test_backbone_param_names_equal_a_plain_vit():
  views = _views()
  x = normalise_views(views[:, 0], INCEPTION_MEAN, INCEPTION_STD, 3)
  plain = jax.eval_shape(functools.partial(vit.vit("vit_test").init, train=False),
                         jax.random.key(0), x)["params"]
  shapes = lambda tree: {k: v.shape for k, v in flax.traverse_util.flatten_dict(tree).items()}
  for fusion in ("single", "late", "early"):
    params = _abstract_init(_model(fusion=fusion, guidance="none"), views)["params"]
    assert shapes(params["backbone"]) == shapes(plain)
  # And the backbone computes the plain ViT: the class token of view 0 in 'single' mode.
  model = _model(fusion="single")
  variables = _init(model, views)
  _, aux = _apply(model, variables, views)
  plain_vit = vit.vit("vit_test")
  _, ref = jax.jit(functools.partial(plain_vit.apply, train=False))(
      {"params": variables["params"]["backbone"]}, x)
  np.testing.assert_allclose(aux["cls"], ref["cls"], rtol=1e-5, atol=1e-5)


def test_errors():
  views, corr = _views(), _corr()
  with pytest.raises(ValueError, match="needs corr"):
    _abstract_init(_model(fusion="early", guidance="layer"), views)
  with pytest.raises(ValueError, match="fusion='mid' is not allowed; allowed: single, late"):
    _abstract_init(_model(fusion="mid"), views)
  with pytest.raises(ValueError, match="guidance='soft' is not allowed"):
    _abstract_init(_model(guidance="soft"), views, corr)
  with pytest.raises(ValueError, match="needs fusion='early'"):
    _abstract_init(_model(fusion="late", guidance="layer"), views, corr)
  with pytest.raises(ValueError, match="exceed max_views=2"):
    _abstract_init(_model(max_views=2), views)
  with pytest.raises(ValueError, match=r"corr must be \[B, P=3"):
    _abstract_init(_model(guidance="layer"), views, corr[:, :1])
  with pytest.raises(ValueError, match="not a multiple of the patch"):
    _abstract_init(_model(), views[:, :, :24])


def test_bfloat16_compute_keeps_float32_params_and_logits():
  views, corr = _views(), _corr()
  f32 = _model(fusion="early", guidance="layer")
  variables = _init(f32, views, corr, alpha=1.0)
  bf16 = _model(fusion="early", guidance="layer", dtype=jnp.bfloat16)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(_abstract_init(bf16, views, corr)))
  a, aux_a = _apply(f32, variables, views, corr)
  b, aux = _apply(bf16, variables, views, corr)
  assert b.dtype == jnp.float32 and aux["attention"].dtype == jnp.float32
  # bfloat16 keeps ~3 significant digits: the normalised class token agrees to a few 1e-2.
  np.testing.assert_allclose(aux["cls"], aux_a["cls"], atol=0.1)
  np.testing.assert_allclose(b, a, atol=0.05 * np.abs(a).max() + 0.1)


@pytest.mark.parametrize("pool", ["mean", "max"])
def test_resnet_baseline_logits_attention_and_parameter_count(pool):
  """The CNN baseline: the ResNet's own parameters plus a C -> 1 head; the study logit is the
  max over views of the head on the mean-pooled features ('mean'), or of the largest
  per-position logit ('max', never below the mean's); attention is a softmax per view."""
  from jaxcorr.models import resnet  # pylint: disable=import-outside-toplevel
  fusion = "late"
  model = _model(backbone="resnet", resnet="resnet_tiny", fusion=fusion, pool=pool)
  views = jnp.asarray(np.random.default_rng(0).random((B, N, 32, 32, 1)), jnp.float32)
  abstract = _abstract_init(model, views)
  rng = np.random.default_rng(2)   # random weights, running mean 0 and variance 1 (no init run)
  variables = {"params": jax.tree.map(lambda a: jnp.asarray(
      0.1 * rng.standard_normal(a.shape), jnp.float32), abstract["params"]),
               "batch_stats": jax.tree_util.tree_map_with_path(
                   lambda path, a: jnp.full(a.shape, float(path[-1].key == "var")),
                   abstract["batch_stats"])}
  net = resnet.resnet("resnet_tiny")
  alone = jax.eval_shape(functools.partial(net.init, train=False), jax.random.key(0),
                         jnp.zeros((1, 32, 32, 3)))
  count = lambda tree: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))
  assert count(variables["params"]) == count(alone["params"]) + net.out_channels + 1
  assert sorted(variables) == ["batch_stats", "params"]
  head = {"kernel": jnp.asarray(np.random.default_rng(1).standard_normal((128, 1)), jnp.float32),
          "bias": jnp.full((1,), 0.1)}
  variables = {**variables, "params": {**variables["params"], "head": head}}
  logits, aux = _apply(model, variables, views)
  n = 1 if fusion == "single" else N
  assert logits.shape == (B,) and logits.dtype == jnp.float32
  assert aux["attention"].shape == (B, n, 1, 2, 2)
  np.testing.assert_allclose(np.asarray(aux["attention"]).sum(axis=(2, 3, 4)), 1.0, rtol=1e-5)
  pooled = np.asarray(aux["cls"]).reshape(B, n, 128)
  view_logits = pooled @ np.asarray(head["kernel"])[:, 0] + 0.1
  if pool == "mean":
    np.testing.assert_allclose(logits, view_logits.max(axis=1), rtol=1e-4, atol=1e-5)
  else:
    assert np.all(np.asarray(logits) > view_logits.max(axis=1) + 1e-4)
  single = _model(backbone="resnet", resnet="resnet_tiny", fusion="single")
  logits, aux = jax.eval_shape(functools.partial(single.apply, train=False), variables, views)
  assert logits.shape == (B,) and aux["attention"].shape == (B, 1, 1, 2, 2)


def test_resnet_baseline_refuses_early_fusion_and_guidance():
  views = jnp.zeros((1, 2, 32, 32, 1))
  with pytest.raises(ValueError, match="fusion .*'early'.* allowed: single, late"):
    _abstract_init(_model(backbone="resnet", resnet="resnet_tiny", fusion="early"), views)
  with pytest.raises(ValueError, match="backbone.*'cnn'"):
    _abstract_init(_model(backbone="cnn"), views)
  with pytest.raises(ValueError, match="pool.*'sum'.* allowed: max, mean"):
    _abstract_init(_model(backbone="resnet", resnet="resnet_tiny", fusion="single", pool="sum"),
                   views)


def test_correspondence_backbone_fusions_mask_and_guidance():
  """backbone='correspondence': the pretraining's model (size 'tiny') under 'backbone' with its
  own parameter tree; late = the max over views of single on each view; early with only view
  0 present = single; guidance with alpha 0 = no guidance, exactly, and alpha > 0 changes the
  logit; attention is a softmax over each view's positions."""
  from jaxcorr.models import build  # pylint: disable=import-outside-toplevel
  model = functools.partial(_model, backbone="correspondence", corr_size="tiny")
  views, corr = _views(), _corr()
  guided = model(fusion="early", guidance="layer")
  variables = jax.jit(functools.partial(guided.init, train=False))(
      jax.random.key(0, impl="rbg"), views, corr)
  params = dict(variables["params"])
  params["head"] = {"kernel": jnp.asarray(np.random.default_rng(5).standard_normal(
      params["head"]["kernel"].shape), jnp.float32), "bias": jnp.full((1,), 0.1)}
  alone = jax.eval_shape(functools.partial(build.from_size("tiny").init, train=False),
                         jax.random.key(0), views)
  assert (jax.tree.map(jnp.shape, params["backbone"])
          == jax.tree.map(jnp.shape, alone["params"]))
  assert (jax.tree.map(jnp.shape, variables["batch_stats"]["backbone"])
          == jax.tree.map(jnp.shape, alone["batch_stats"]))
  plain = {"params": {k: v for k, v in params.items() if k != "alpha"},
           "batch_stats": variables["batch_stats"]}
  single, aux_single = _apply(model(fusion="single"), plain, views)
  per_view = [_apply(model(fusion="single"), plain, views[:, v:v + 1])[0] for v in range(N)]
  late, aux_late = _apply(model(fusion="late"), plain, views)
  np.testing.assert_allclose(late, np.max(per_view, axis=0), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(aux_late["view_logits"], np.stack(per_view, 1), rtol=1e-5,
                             atol=1e-5)
  early, aux_early = _apply(model(fusion="early"), plain, views)
  assert np.abs(np.asarray(early) - np.asarray(late)).max() > 1e-3   # views see each other
  only_first = jnp.asarray([[True] + [False] * (N - 1)] * B)
  masked, _ = _apply(model(fusion="early"), plain, views, view_mask=only_first)
  np.testing.assert_allclose(masked, single, rtol=1e-5, atol=1e-5)
  zero = {**plain, "params": {**plain["params"], "alpha": jnp.zeros_like(params["alpha"])}}
  np.testing.assert_array_equal(_apply(guided, zero, views, corr)[0], early)
  one = {**plain, "params": {**plain["params"], "alpha": jnp.ones_like(params["alpha"])}}
  assert np.abs(np.asarray(_apply(guided, one, views, corr)[0]) - np.asarray(early)).max() > 1e-4
  assert aux_single["attention"].shape == (B, 1, 1, 2, 3)
  assert aux_early["attention"].shape == (B, N, 1, 2, 3)
  np.testing.assert_allclose(np.asarray(aux_early["attention"]).sum(axis=(2, 3, 4)), 1.0,
                             rtol=1e-5)
