"""The frozen-backbone pair-MLP baseline: interface, frozen backbone, exact pairwise MLP."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxcorr.models import pair_mlp


class _Jitted:
  """The model with `init` and `apply` compiled once (eager Flax runs op by op, slowly)."""

  def __init__(self, model):
    self.init = jax.jit(functools.partial(model.init, train=False))
    self.apply = jax.jit(model.apply, static_argnames=("train",))


@functools.lru_cache(maxsize=None)
def _model_and_vars(n=2, size=32):
  model = _Jitted(pair_mlp.PairMLP(backbone="resnet_tiny", hidden=8))
  views = jax.random.uniform(jax.random.key(0), (2, n, size, size, 1))
  return model, model.init(jax.random.key(1), views), views


def test_shapes_range_and_pair_order():
  model, variables, views = _model_and_vars()
  corr, aux = model.apply(variables, views, train=False)
  assert corr.shape == (2, 1, 4, 4) and aux["tokens"].shape[:3] == (2, 2, 4)
  assert float(corr.min()) >= 0.0 and float(corr.max()) <= 1.0
  # Each study is scored on its own: a batch of one gives the same C.
  single, _ = model.apply(variables, views[1:], train=False)
  np.testing.assert_allclose(single[0], corr[1], atol=1e-6)


def test_backbone_is_frozen_and_head_learns():
  model, variables, views = _model_and_vars()
  loss = lambda p: jnp.mean(model.apply({**variables, "params": p}, views, train=True)[0])
  grads = jax.grad(loss)(variables["params"])
  backbone = jax.tree.leaves(grads["backbone"])
  assert all(float(jnp.abs(g).max()) == 0.0 for g in backbone)
  assert float(jnp.abs(grads["fc3"]["kernel"]).max()) > 0.0


def test_pairwise_mlp_equals_mlp_on_concatenated_features():
  model, variables, views = _model_and_vars()
  corr, aux = model.apply(variables, views, train=False)
  p = variables["params"]
  g = aux["tokens"]                                              # [B, N, L, C]
  w1 = jnp.concatenate([p["fc1_query"]["kernel"], p["fc1_key"]["kernel"]], axis=0)
  a, b = 3, 5
  x = jnp.concatenate([g[:, 0, a], g[:, 1, b]], axis=-1)         # [B, 2C]
  h = jax.nn.relu(x @ w1 + p["fc1_query"]["bias"])
  h = jax.nn.relu(h @ p["fc2"]["kernel"] + p["fc2"]["bias"])
  s = jax.nn.sigmoid(h @ p["fc3"]["kernel"] + p["fc3"]["bias"])[:, 0]
  np.testing.assert_allclose(corr[:, 0, a, b], s, atol=1e-6)
