"""Tests for jaxcorr.models.correspondence and transformer: every attention variant and backbone
on tiny inputs, the head, presets, dtypes, and the paper-size model on abstract shapes."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcorr.models import build, correspondence, transformer
from jaxcorr.projection import labels

B, N, S = 2, 3, 64           # 3 views of 64 x 64 -> 4 x 4 = 16 tokens per view
P = N * (N - 1) // 2
L = (S // 16) ** 2


def _views(seed=0, b=B, n=N, s=S):
  return jax.random.uniform(jax.random.key(seed), (b, n, s, s, 1))


def _random_variables(model, views, seed=0):
  """Variables shaped as model.init's, filled from NumPy (jitted random init compiles slowly on
  CPU); BatchNorm scales and variances are positive, so no block starts as the identity."""
  shapes = jax.eval_shape(lambda v: model.init(jax.random.key(0), v, train=False), views)
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = getattr(path[-1], "key", "")
    if name in ("scale", "var"):
      return jnp.asarray(rng.uniform(0.5, 1.5, leaf.shape), leaf.dtype)
    fan_in = int(np.prod(leaf.shape[:-1])) if len(leaf.shape) > 1 else 10
    return jnp.asarray(rng.standard_normal(leaf.shape) / np.sqrt(fan_in), leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, shapes)


@functools.lru_cache(maxsize=None)
def _model_apply(**fields):
  model = build.from_size("tiny", **fields)
  return model, jax.jit(functools.partial(model.apply, train=False))


def _run(views, seed=0, **fields):
  model, apply = _model_apply(**fields)
  variables = _random_variables(model, views, seed)
  return apply(variables, views), variables


def test_init_is_deterministic_and_float32():
  # An 'rbg' key: jitted init with the default threefry key takes ~10 s to compile on CPU.
  model = build.from_size("tiny", dtype=jnp.bfloat16)
  init = jax.jit(functools.partial(model.init, train=False))
  key = lambda seed: jax.random.key(seed, impl="rbg")
  a, b = init(key(3), _views()), init(key(3), _views())
  jax.tree.map(np.testing.assert_array_equal, a, b)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(a))
  c = init(key(4), _views())
  assert not np.allclose(a["params"]["proj"]["kernel"], c["params"]["proj"]["kernel"])


@pytest.mark.parametrize("attention", transformer.ATTENTIONS)
def test_attention_variants_shapes(attention):
  views = _views()
  (corr, aux), variables = _run(views, attention=attention)
  if attention != "none":
    assert sorted(variables["params"]["encoder"])[:2] == ["layer_0", "layer_1"]
  assert corr.shape == (B, P, L, L) and corr.dtype == jnp.float32
  assert aux["tokens"].shape == (B, N, L, 64) and aux["tokens"].dtype == jnp.float32
  assert np.all(np.isfinite(corr)) and np.all(np.abs(corr) <= 1.0)
  assert ("view_embed" in variables["params"]) == (attention != "none")
  assert ("encoder" in variables["params"]) == (attention != "none")


def test_tokens_interact_across_views_only_with_attention():
  views = np.asarray(_views())
  changed = views.copy()
  changed[:, 1] = 1.0 - changed[:, 1]
  for attention, interacts in (("none", False), ("transformer", True), ("loftr", True)):
    (_, a), _ = _run(jnp.asarray(views), attention=attention)
    (_, b), _ = _run(jnp.asarray(changed), attention=attention)
    assert np.allclose(a["tokens"][:, 0], b["tokens"][:, 0], atol=1e-5) != interacts, attention


@pytest.mark.parametrize("backbone", ["resnet_tiny", "vit_test"])
def test_backbones(backbone):
  (corr, aux), variables = _run(_views(), backbone=backbone)
  assert corr.shape == (B, P, L, L)
  assert ("batch_stats" in variables) == (backbone == "resnet_tiny")


def test_in_channels_one_and_three():
  (c1, _), v1 = _run(_views(), in_channels=1)
  (c3, _), v3 = _run(_views(), in_channels=3)
  assert v1["params"]["backbone"]["conv1"]["kernel"].shape[2] == 1
  assert v3["params"]["backbone"]["conv1"]["kernel"].shape[2] == 3
  assert c1.shape == c3.shape


def test_train_mode_updates_batch_stats():
  model, _ = _model_apply()
  views = _views()
  variables = _random_variables(model, views)
  apply = jax.jit(functools.partial(model.apply, train=True, mutable=["batch_stats"]))
  (corr, _), updates = apply(variables, views)
  assert corr.shape == (B, P, L, L)
  old = variables["batch_stats"]["backbone"]["bn1"]["mean"]
  assert not np.allclose(updates["batch_stats"]["backbone"]["bn1"]["mean"], old)


def test_apply_deterministic():
  (a, _), _ = _run(_views(), seed=3)
  (b, _), _ = _run(_views(), seed=3)
  np.testing.assert_array_equal(a, b)
  (c, _), _ = _run(_views(), seed=4)
  assert not np.allclose(a, c)


def test_bfloat16_compute_gives_float32_outputs():
  (corr, aux), variables = _run(_views(), dtype=jnp.bfloat16, head="cosine_squared")
  assert corr.dtype == jnp.float32 and aux["tokens"].dtype == jnp.float32
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables["params"]))
  (ref, _), _ = _run(_views())             # float32, 'cosine'
  np.testing.assert_allclose(corr, np.maximum(ref, 0) ** 2, atol=0.15)


def test_head_ranges_and_pair_order():
  tokens = jax.random.normal(jax.random.key(0), (2, 4, 5, 8))
  cos = np.asarray(correspondence.correspondence_scores(tokens, "cosine"))
  sq = np.asarray(correspondence.correspondence_scores(tokens, "cosine_squared"))
  assert cos.shape == (2, 6, 5, 5) and cos.min() >= -1 and cos.max() <= 1 and cos.min() < 0
  assert sq.min() >= 0 and sq.max() <= 1
  np.testing.assert_allclose(sq, np.maximum(cos, 0) ** 2, atol=1e-6)
  t = np.asarray(tokens) / np.linalg.norm(tokens, axis=-1, keepdims=True)
  for p, (i, j) in enumerate(labels.pair_indices(4)):
    np.testing.assert_allclose(cos[:, p], np.einsum("bld,bmd->blm", t[:, i], t[:, j]), atol=1e-5)
  # Same token in both views -> 1 on the diagonal.
  same = correspondence.correspondence_scores(jnp.repeat(tokens[:, :1], 2, axis=1))
  np.testing.assert_allclose(np.diagonal(same[:, 0], axis1=-2, axis2=-1), 1.0, atol=1e-5)


def test_swapping_views_transposes():
  tokens = jax.random.normal(jax.random.key(1), (1, 2, 6, 8))
  a = correspondence.correspondence_scores(tokens, "cosine_squared")
  b = correspondence.correspondence_scores(tokens[:, ::-1], "cosine_squared")
  np.testing.assert_allclose(b[:, 0], np.swapaxes(a[:, 0], -1, -2), atol=1e-6)
  # The whole model without attention (no view embedding) does the same.
  views = _views()
  (c, _), _ = _run(views, attention="none")
  (d, _), _ = _run(views[:, np.array([1, 0, 2])], attention="none")
  np.testing.assert_allclose(d[:, 0], np.swapaxes(c[:, 0], -1, -2), atol=1e-5)   # (0, 1)
  np.testing.assert_allclose(d[:, 1], c[:, 2], atol=1e-5)                          # (0, 2)


def test_attention_bias_hook():
  model, apply = _model_apply()
  views = _views()
  variables = _random_variables(model, views)
  zero = jnp.zeros((B, 4, N * L, N * L))
  with_bias = jax.jit(functools.partial(model.apply, train=False))(variables, views, bias=zero)
  np.testing.assert_allclose(with_bias[0], apply(variables, views)[0], atol=1e-5)
  with pytest.raises(ValueError, match="attention='transformer'"):
    model = build.from_size("tiny", attention="loftr")
    jax.eval_shape(lambda v: model.init(jax.random.key(0), v, train=False, bias=zero), views)


def test_gradients_reach_every_parameter():
  model, _ = _model_apply()
  views = _views()
  variables = _random_variables(model, views)

  def loss(params):
    corr, _ = model.apply({**variables, "params": params}, views, train=True,
                          mutable=["batch_stats"])[0]
    return jnp.mean((corr - 0.5) ** 2)

  grads = jax.jit(jax.grad(loss))(variables["params"])
  flat = jax.tree_util.tree_leaves_with_path(grads)
  dead = [jax.tree_util.keystr(p) for p, g in flat if not np.any(np.asarray(g) != 0)]
  assert not dead, dead


@pytest.mark.parametrize("field, value, match", [
    ("attention", "perceiver", "allowed: none, superglue, loftr"),
    ("head", "dot", "allowed: cosine, cosine_squared, cosine_squared_unclipped"),
    ("backbone", "resnet101", "allowed: resnet50"),
    ("in_channels", 2, "allowed: 1, 3"),
])
def test_closed_sets(field, value, match):
  model = build.from_size("tiny", **{field: value})
  with pytest.raises(ValueError, match=match):
    jax.eval_shape(lambda v: model.init(jax.random.key(0), v, train=False), _views())


def test_bad_inputs():
  with pytest.raises(ValueError, match="allowed: paper, paper_vit"):
    build.from_size("huge")
  model = build.from_size("tiny", attention="transformer_alternating")
  with pytest.raises(ValueError, match="at least 2 views"):
    jax.eval_shape(lambda v: model.init(jax.random.key(0), v, train=False), _views(n=1))
  with pytest.raises(ValueError, match="multiple of the backbone stride"):
    jax.eval_shape(lambda v: model.init(jax.random.key(0), v, train=False), _views(s=40))


@pytest.mark.parametrize("preset, low, high", [("paper", 20e6, 40e6), ("paper_vit", 30e6, 45e6)])
def test_paper_size_model_on_abstract_shapes(preset, low, high):
  model = build.from_size(preset)
  views = jax.ShapeDtypeStruct((1, 2, 256, 256, 1), jnp.float32)
  variables = jax.eval_shape(lambda v: model.init(jax.random.key(0), v, train=False), views)
  corr, aux = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, views)
  assert corr.shape == (1, 1, 256, 256) and corr.dtype == jnp.float32
  assert aux["tokens"].shape == (1, 2, 256, 512)
  counts = {k: sum(x.size for x in jax.tree.leaves(v)) for k, v in variables["params"].items()}
  total = sum(counts.values())
  print(f"{preset}: {total:,} params ({counts}); the official PyTorch model has 30.1M")
  assert low < total < high


def _layer_norm(x, p, eps=1e-5):
  mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * p["scale"] + p["bias"]


def _message_passing_reference(p, x, ctx):
  """The authors' layer in NumPy: m = LN(Attn(LN_q(x), LN_k(ctx), LN_v(ctx))),
  x + LN(fc2(gelu(fc1([x, m])))); x [Lq, D], ctx [Lk, D], no RoPE."""
  from scipy.special import erf  # pylint: disable=import-outside-toplevel
  q = np.einsum("ld,dhk->lhk", _layer_norm(x, p["norm_q"]), p["attn"]["query"]["kernel"])
  k = np.einsum("ld,dhk->lhk", _layer_norm(ctx, p["norm_k"]), p["attn"]["key"]["kernel"])
  v = np.einsum("ld,dhk->lhk", _layer_norm(ctx, p["norm_v"]), p["attn"]["value"]["kernel"])
  logits = np.einsum("qhk,lhk->hql", q, k) / np.sqrt(q.shape[-1])
  w = np.exp(logits - logits.max(-1, keepdims=True))
  w /= w.sum(-1, keepdims=True)
  heads = np.einsum("hql,lhk->qhk", w, v)
  m = _layer_norm(np.einsum("qhk,hkd->qd", heads, p["attn"]["out"]["kernel"]), p["attn_norm"])
  h = np.concatenate([x, m], -1) @ p["mlp"]["fc1"]["kernel"] + p["mlp"]["fc1"]["bias"]
  h = 0.5 * h * (1 + erf(h / np.sqrt(2)))
  y = h @ p["mlp"]["fc2"]["kernel"] + p["mlp"]["fc2"]["bias"]
  return x + _layer_norm(y, p["mlp_norm"])


def test_message_passing_block_matches_the_authors_definition():
  d, lq, lk = 16, 5, 7
  block = transformer.MessagePassingBlock(num_heads=2, mlp_dim=24)
  rng = np.random.default_rng(0)
  x = rng.standard_normal((1, lq, d)).astype(np.float32)
  ctx = rng.standard_normal((1, lk, d)).astype(np.float32)
  shapes = jax.eval_shape(lambda: block.init(jax.random.key(0), x, ctx))["params"]
  params = jax.tree.map(lambda a: rng.standard_normal(a.shape).astype(np.float32) * 0.5, shapes)
  assert sorted(params) == ["attn", "attn_norm", "mlp", "mlp_norm", "norm_k", "norm_q",
                            "norm_v"]
  assert sorted(params["attn"]["query"]) == ["kernel"]          # no q / k / v / out biases
  assert params["mlp"]["fc1"]["kernel"].shape == (2 * d, 24)    # MLP on [x, m]: 2D -> mlp_dim
  assert params["mlp"]["fc2"]["kernel"].shape == (24, d)
  apply = jax.jit(block.apply)
  out = np.asarray(apply({"params": params}, x, ctx))
  assert out.shape == x.shape
  np.testing.assert_allclose(out[0], _message_passing_reference(params, x[0], ctx[0]),
                             rtol=1e-4, atol=1e-4)
  # Self-attention without a context; and the residual: a zero output norm passes x through.
  np.testing.assert_allclose(np.asarray(jax.jit(block.apply)({"params": params}, x))[0],
                             _message_passing_reference(params, x[0], x[0]), rtol=1e-4, atol=1e-4)
  silent = {**params, "mlp_norm": jax.tree.map(np.zeros_like, params["mlp_norm"])}
  np.testing.assert_array_equal(np.asarray(apply({"params": silent}, x, ctx)), x)


@pytest.mark.parametrize("attention", ["transformer", "transformer_alternating", "superglue",
                                       "loftr"])
def test_message_passing_with_every_attention(attention):
  views = _views()
  (corr, aux), variables = _run(views, attention=attention, message_passing=True)
  encoder = variables["params"]["encoder"]
  assert sorted(encoder) == ["layer_0", "layer_1"]               # no final norm
  assert sorted(encoder["layer_0"]) == ["attn", "attn_norm", "mlp", "mlp_norm", "norm_k",
                                        "norm_q", "norm_v"]
  assert encoder["layer_0"]["mlp"]["fc1"]["kernel"].shape == (2 * 64, 128)
  assert corr.shape == (B, P, L, L) and aux["tokens"].shape == (B, N, L, 64)
  assert np.all(np.isfinite(corr))
  # The message depends on the other views (joint or cross layers).
  changed = views.at[:, 1].set(1.0 - views[:, 1])
  (corr2, aux2), _ = _run(changed, attention=attention, message_passing=True)
  assert not np.allclose(aux2["tokens"][:, 0], aux["tokens"][:, 0], atol=1e-4)


def test_message_passing_needs_attention_and_transformer_mp_was_renamed():
  for fields, match in (
      (dict(attention="none", message_passing=True), "attention='none' has none"),
      (dict(attention="transformer_mp"),
       "attention='transformer_mp' was renamed: use 'transformer_alternating'"),
      (dict(rope="3d"), "rope='3d' is not allowed; allowed: 2d, 1d")):
    model = build.from_size("tiny", **fields)
    with pytest.raises(ValueError, match=match):
      jax.eval_shape(lambda v, m=model: m.init(jax.random.key(0), v, train=False), _views())


def test_rope_1d_positions_run_over_the_concatenated_views():
  rows, cols = jnp.arange(4) // 2, jnp.arange(4) % 2          # a 2 x 2 grid, L = 4
  (index,) = transformer.token_positions("1d", 3, rows, cols)
  np.testing.assert_array_equal(index, np.arange(12))         # view n, patch a -> n * 4 + a
  r, c = transformer.token_positions("2d", 3, rows, cols)
  np.testing.assert_array_equal(r, np.tile([0, 0, 1, 1], 3))
  np.testing.assert_array_equal(c, np.tile([0, 1, 0, 1], 3))
  assert transformer.Encoder(rope="1d")._base == 10000.0
  assert transformer.Encoder(rope="2d")._base == 100.0
  assert transformer.Encoder(rope="1d", rope_base=50.0)._base == 50.0
  views = _views()
  for attention in ("transformer", "transformer_alternating"):
    (c1, _), variables = _run(views, attention=attention, rope="1d")
    (c2, _) = _model_apply(attention=attention)[1](variables, views)   # same weights, 2D RoPE
    assert np.all(np.isfinite(c1)) and not np.allclose(c1, c2, atol=1e-4)


def test_unclipped_squared_cosine_head_is_the_authors():
  tokens = jax.random.normal(jax.random.key(0), (2, 3, 5, 8))
  cos = np.asarray(correspondence.correspondence_scores(tokens, "cosine"))
  sq = np.asarray(correspondence.correspondence_scores(tokens, "cosine_squared_unclipped"))
  np.testing.assert_allclose(sq, cos ** 2, atol=1e-6)
  assert sq.min() >= 0 and sq.max() <= 1
  # Opposite tokens: a match for the authors' head, none for the clipped square.
  opposite = jnp.stack([tokens[:, 0], -tokens[:, 0]], axis=1)
  for head, value in (("cosine_squared_unclipped", 1.0), ("cosine_squared", 0.0),
                      ("cosine", -1.0)):
    scores = correspondence.correspondence_scores(opposite, head)
    np.testing.assert_allclose(np.diagonal(scores[:, 0], axis1=-2, axis2=-1), value, atol=1e-5)


def test_table1_rows_by_the_papers_names():
  assert list(build.TABLE1) == ["no attention", "SuperGlue-style", "LoFTR-style",
                                "standard transformer with message passing",
                                "standard transformer"]
  for name, fields in build.TABLE1.items():
    assert build.row_name(fields) == name
    build.from_size("tiny", **fields)          # every row is a model
  assert build.row_name({"attention": "transformer"}) == "standard transformer"   # old runs
  assert build.row_name({"attention": "transformer_alternating"}) == "transformer_alternating"
  assert build.row_name({"attention": "transformer_alternating", "message_passing": True}) == (
      "transformer_alternating, message passing")


def test_build_model_leaves_out_the_task_keys():
  block = {**build.SIZES["tiny"], "attention": "transformer", "message_passing": True,
           "head": "cosine", "in_channels": 3, "max_views": 8, "rope": "1d", "rope_base": 0.0,
           "init_torchvision": "/some/resnet50.pth", "dtype": "float32"}
  model = build.build_model(block)
  assert model.message_passing and model.rope == "1d" and model.dtype == jnp.float32


def test_paper_model_with_message_passing_has_the_official_parameter_count():
  # The authors' released model (message passing on) has 30.1M parameters; their MLP on
  # [x, m] is what adds 8 x 512 x 1024 to jaxcorr's 25.9M.
  model = build.from_size("paper", message_passing=True)
  views = jax.ShapeDtypeStruct((1, 2, 256, 256, 1), jnp.float32)
  variables = jax.eval_shape(lambda v: model.init(jax.random.key(0), v, train=False), views)
  total = sum(x.size for x in jax.tree.leaves(variables["params"]))
  assert total == 30_096_960 and round(total / 1e6, 1) == 30.1
