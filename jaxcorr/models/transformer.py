"""Attention blocks and the token encoder over N views (the ablations of the paper's Table 1).

Tokens. x [B, N, L, D]: N views of L = h * w patch tokens (row-major), width D; `rows`, `cols`
[L] the patch coordinates of one view, shared by all views.

Positions (`rope`). '2d' (default): axial 2D RoPE on the patch coordinates, the same in every
view (a learned view embedding, added by the caller, tells views apart). '1d' (the authors'):
1D RoPE over the index of each token in the concatenated views, view n's patch a at n * L + a,
so positions also tell views apart. `rope_base` 0 takes the embedding's own base
(`attention.ROPE_BASES`: 100 for '2d', the authors' 10000 for '1d').

Encoders (`ATTENTIONS`, the `attention` switch of `Encoder`): how tokens meet.
  'none'            no attention: the tokens pass unchanged (CNN + linear projection).
  'transformer'     (default) attention over the N * L tokens of all views jointly: every
                    layer's self-attention spans the views.
  'transformer_alternating'  layers alternate self-attention within each view (even layers)
                    and cross-attention from each view to the tokens of all other views (odd
                    layers). Named 'transformer_mp' before; it is not the authors' message
                    passing (that is `message_passing=True`).
  'superglue'       SuperGlue's attentional propagation, alternating self / cross: the message
                    m = MHA(x, source) is concatenated to x and x <- x + MLP([x, m]) with MLP
                    2D -> 2D -> D (ReLU; LayerNorm instead of SuperGlue's BatchNorm, so the
                    encoder keeps no batch statistics), last bias zero-initialised.
  'loftr'           LoFTR's encoder layer, alternating self / cross: linear attention (elu + 1
                    feature map), merge, LayerNorm, MLP on [x, m] (2D -> 2D -> D, ReLU, no
                    biases), LayerNorm, x <- x + m.
RoPE is applied in every attention variant (for 'loftr' to the numerator of linear attention,
see `attention.linear_attention`), so the ablations differ only in how tokens interact.
Cross-attention needs N >= 2; with N > 2 a view attends to the concatenated tokens of the others.

Layer update (`message_passing`).
  False   each variant's own layer: for 'transformer' and 'transformer_alternating' a pre-norm
          block, x <- x + Attn(LN(x)), x <- x + MLP(LN(x)) (MLP D -> mlp_dim -> D, GELU), and
          a final LayerNorm; for 'superglue' and 'loftr' their papers' layers above.
  True    the authors' message passing (their `transformer_message_pass`, on in their released
          config), whatever computes the message:
            m = LN(Attn(LN_q(x), LN_k(ctx), LN_v(ctx)))       separate norms for q, k and v
            x <- x + LN(MLP([x, m]))                           MLP 2D -> mlp_dim -> D, GELU
          (`MessagePassingBlock`; their config: no q/k/v or output-projection biases, no norm
          after the addition, no final norm; torch's LayerNorm epsilon 1e-5; their dropout 0.1
          is left out, as everywhere in jaxcorr). The message comes from joint softmax attention
          ('transformer'), alternating self / cross softmax attention ('transformer_alternating'
          and 'superglue', the same layers then) or alternating linear attention ('loftr');
          'none' has no layers and refuses it.
"""

from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jaxcorr.core.choices import MODEL_CHOICES, MODEL_RENAMED, check_choice
from jaxcorr.models import attention as attn_lib

ATTENTIONS = MODEL_CHOICES["attention"]
ROPES = MODEL_CHOICES["rope"]
Dtype = Any


class Mlp(nn.Module):
  """Dense -> activation -> Dense (names fc1, fc2, as timm's Mlp)."""
  hidden_dim: int
  out_dim: Optional[int] = None
  activation: str = "gelu"
  use_bias: bool = True
  zero_last_bias: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    act = {"gelu": lambda y: nn.gelu(y, approximate=False), "relu": nn.relu}[self.activation]
    out_dim = self.out_dim or x.shape[-1]
    y = act(nn.Dense(self.hidden_dim, use_bias=self.use_bias, dtype=self.dtype, name="fc1")(x))
    return nn.Dense(out_dim, use_bias=self.use_bias, dtype=self.dtype, name="fc2",
                    bias_init=nn.initializers.zeros)(y)


class Attention(nn.Module):
  """Multi-head attention (softmax or linear) from x to a context, with optional RoPE.

  Positions are tuples of [L] or [B, L] arrays, (index,) for 1D or (rows, cols) for 2D RoPE
  (`attention.rope`); RoPE is applied when both q_pos and kv_pos are given. Values come from
  `value` when given (the context after its own norm), else from the context.
  Params: query, key, value ([D, H, D/H] kernels) and out ([H, D/H, D]).
  """
  num_heads: int
  kind: str = "softmax"            # 'softmax' | 'linear'
  use_bias: bool = True
  rope_base: float = attn_lib.DEFAULT_ROPE_BASE
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, context=None, *, value=None, q_pos=None, kv_pos=None, bias=None,
               mask=None):
    check_choice("attention kind", self.kind, ("softmax", "linear"))
    context = x if context is None else context
    value = context if value is None else value
    width = x.shape[-1]
    if width % self.num_heads:
      raise ValueError(f"width {width} is not divisible by num_heads {self.num_heads}.")
    head_dim = width // self.num_heads
    proj = lambda name: nn.DenseGeneral((self.num_heads, head_dim), use_bias=self.use_bias,
                                        dtype=self.dtype, name=name)
    q, k, v = proj("query")(x), proj("key")(context), proj("value")(value)
    rope = q_pos is not None and kv_pos is not None
    if self.kind == "softmax":
      if rope:
        q = attn_lib.rope(q, q_pos, base=self.rope_base)
        k = attn_lib.rope(k, kv_pos, base=self.rope_base)
      out = attn_lib.dot_product_attention(q, k, v, bias=bias, mask=mask)
    else:
      if bias is not None or mask is not None:
        raise ValueError("linear attention takes no bias or mask.")
      q, k = attn_lib.elu_feature_map(q), attn_lib.elu_feature_map(k)
      q_num = attn_lib.rope(q, q_pos, base=self.rope_base) if rope else None
      k_num = attn_lib.rope(k, kv_pos, base=self.rope_base) if rope else None
      out = attn_lib.linear_attention(q, k, v, q_num, k_num)
    return nn.DenseGeneral(width, axis=(-2, -1), use_bias=self.use_bias, dtype=self.dtype,
                           name="out")(out)


class Block(nn.Module):
  """Pre-norm transformer block: x + Attn(LN(x), LN(context)), then x + MLP(LN(x)).

  Names norm1, attn, norm2, mlp (timm's ViT block). Without a context it is self-attention.
  """
  num_heads: int
  mlp_dim: int
  epsilon: float = 1e-6
  rope_base: float = attn_lib.DEFAULT_ROPE_BASE
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, context=None, *, q_pos=None, kv_pos=None, bias=None, mask=None):
    norm1 = nn.LayerNorm(epsilon=self.epsilon, dtype=jnp.float32, name="norm1")
    y = norm1(x).astype(self.dtype)
    ctx = y if context is None else norm1(context).astype(self.dtype)
    y = Attention(self.num_heads, rope_base=self.rope_base, dtype=self.dtype, name="attn")(
        y, ctx, q_pos=q_pos, kv_pos=kv_pos, bias=bias, mask=mask)
    x = x + y
    y = nn.LayerNorm(epsilon=self.epsilon, dtype=jnp.float32, name="norm2")(x).astype(self.dtype)
    return x + Mlp(self.mlp_dim, dtype=self.dtype, name="mlp")(y)


class MessageBlock(nn.Module):
  """Message passing with the message concatenated to the token (SuperGlue or LoFTR style)."""
  num_heads: int
  style: str = "superglue"         # 'superglue' | 'loftr'
  rope_base: float = attn_lib.DEFAULT_ROPE_BASE
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, context, *, q_pos=None, kv_pos=None):
    check_choice("message block style", self.style, ("superglue", "loftr"))
    width = x.shape[-1]
    loftr = self.style == "loftr"
    m = Attention(self.num_heads, kind="linear" if loftr else "softmax", use_bias=not loftr,
                  rope_base=self.rope_base, dtype=self.dtype, name="attn")(
                      x, context, q_pos=q_pos, kv_pos=kv_pos)
    if loftr:
      m = nn.LayerNorm(dtype=jnp.float32, name="norm1")(m).astype(self.dtype)
    y = jnp.concatenate([x.astype(self.dtype), m.astype(self.dtype)], axis=-1)
    y = nn.Dense(2 * width, use_bias=not loftr, dtype=self.dtype, name="fc1")(y)
    if not loftr:    # SuperGlue's MLP normalises before the ReLU.
      y = nn.LayerNorm(dtype=jnp.float32, name="mlp_norm")(y).astype(self.dtype)
    y = nn.Dense(width, use_bias=not loftr, dtype=self.dtype, name="fc2",
                 bias_init=nn.initializers.zeros)(nn.relu(y))
    if loftr:
      y = nn.LayerNorm(dtype=jnp.float32, name="norm2")(y)
    return x + y


class MessagePassingBlock(nn.Module):
  """The authors' message-passing layer: m = LN(Attn(LN_q(x), LN_k(ctx), LN_v(ctx))), then
  x + LN(MLP([x, m])), MLP 2D -> mlp_dim -> D (GELU). Without a context it is self-attention.

  Names norm_q, norm_k, norm_v, attn, attn_norm, mlp (fc1, fc2), mlp_norm.
  """
  num_heads: int
  mlp_dim: int
  kind: str = "softmax"            # 'softmax' | 'linear' (how the message is computed)
  epsilon: float = 1e-5            # torch's LayerNorm default, as the authors'
  rope_base: float = attn_lib.DEFAULT_ROPE_BASE
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, context=None, *, q_pos=None, kv_pos=None, bias=None):
    norm = lambda name, y: nn.LayerNorm(epsilon=self.epsilon, dtype=jnp.float32,
                                        name=name)(y).astype(self.dtype)
    context = x if context is None else context
    m = Attention(self.num_heads, kind=self.kind, use_bias=False, rope_base=self.rope_base,
                  dtype=self.dtype, name="attn")(
                      norm("norm_q", x), norm("norm_k", context), value=norm("norm_v", context),
                      q_pos=q_pos, kv_pos=kv_pos, bias=bias)
    m = norm("attn_norm", m)
    y = jnp.concatenate([x.astype(self.dtype), m], axis=-1)
    y = Mlp(self.mlp_dim, out_dim=x.shape[-1], dtype=self.dtype, name="mlp")(y)
    y = nn.LayerNorm(epsilon=self.epsilon, dtype=jnp.float32, name="mlp_norm")(y)
    return x + y.astype(x.dtype)


def _other_views(n: int) -> np.ndarray:
  """[N, N - 1] int: row i lists the views other than i, in order."""
  return np.asarray([[j for j in range(n) if j != i] for i in range(n)], np.int32).reshape(n, -1)


def token_positions(rope: str, n: int, rows, cols) -> tuple:
  """The RoPE positions of the N * L tokens of N concatenated views, a tuple of [N * L] arrays.

  Args:
    rope: '2d' (rows, cols of each view's patch, the same in every view) or '1d' (the index in
      the concatenation, n * L + a).
    n: the number of views N.
    rows, cols: [L] patch coordinates of one view.
  """
  check_choice("rope", rope, ROPES)
  if rope == "1d":
    return (jnp.arange(n * rows.shape[0], dtype=jnp.int32),)
  return jnp.tile(rows, n), jnp.tile(cols, n)


class Encoder(nn.Module):
  """The token encoder over N views; see the module docstring for `attention`,
  `message_passing` and `rope`."""
  attention: str = "transformer"
  n_layers: int = 8
  n_heads: int = 8
  mlp_dim: int = 1024
  message_passing: bool = False
  rope: str = "2d"
  rope_base: float = 0.0           # 0: the base of `rope` (attention.ROPE_BASES)
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, rows, cols, *, bias=None):
    """Encodes the tokens of all views.

    Args:
      x: [B, N, L, D] tokens.
      rows, cols: [L] patch coordinates of one view's tokens.
      bias: optional additive attention bias [B, H, N*L, N*L] (H may be 1; 'transformer'
        only), the same in every layer; or a list of n_layers such biases (None entries: no
        bias in that layer), one per layer.

    Returns:
      [B, N, L, D] tokens.
    """
    check_choice("attention", self.attention, ATTENTIONS,
                 renamed=MODEL_RENAMED["attention"])
    check_choice("rope", self.rope, ROPES)
    if bias is not None and self.attention != "transformer":
      raise ValueError(f"an attention bias needs attention='transformer', not {self.attention!r}.")
    if self.attention == "none":
      if self.message_passing:
        raise ValueError("message_passing=True needs attention layers to pass messages; "
                         "attention='none' has none (choose another attention).")
      return x
    pos = token_positions(self.rope, x.shape[1], rows, cols)
    if self.attention == "transformer":
      return self._joint(x, pos, bias)
    return self._alternating(x, pos)

  @property
  def _base(self) -> float:
    return float(self.rope_base) or attn_lib.ROPE_BASES[self.rope]

  def _layer(self, i: int):
    """Layer i: the authors' message passing, a pre-norm block, or SuperGlue's / LoFTR's."""
    if self.message_passing:
      kind = "linear" if self.attention == "loftr" else "softmax"
      return MessagePassingBlock(self.n_heads, self.mlp_dim, kind=kind, rope_base=self._base,
                                 dtype=self.dtype, name=f"layer_{i}")
    if self.attention in ("transformer", "transformer_alternating"):
      return Block(self.n_heads, self.mlp_dim, rope_base=self._base, dtype=self.dtype,
                   name=f"layer_{i}")
    return MessageBlock(self.n_heads, style=self.attention, rope_base=self._base,
                        dtype=self.dtype, name=f"layer_{i}")

  def _final_norm(self, y):
    """The pre-norm blocks' final LayerNorm (the authors' message passing has none, nor have
    SuperGlue's and LoFTR's layers)."""
    if self.message_passing or self.attention not in ("transformer", "transformer_alternating"):
      return y
    return nn.LayerNorm(epsilon=1e-6, dtype=jnp.float32, name="norm")(y)

  def _joint(self, x, pos, bias):
    b, n, l, d = x.shape
    biases = list(bias) if isinstance(bias, (list, tuple)) else [bias] * self.n_layers
    if len(biases) != self.n_layers:
      raise ValueError(f"{len(biases)} per-layer biases for {self.n_layers} layers.")
    y = x.reshape(b, n * l, d)
    for i in range(self.n_layers):
      y = self._layer(i)(y, q_pos=pos, kv_pos=pos, bias=biases[i])
    return self._final_norm(y).reshape(b, n, l, d)

  def _alternating(self, x, pos):
    b, n, l, d = x.shape
    if n < 2:
      raise ValueError(f"attention={self.attention!r} alternates cross-view layers and needs at "
                       f"least 2 views, got {n}.")
    others = _other_views(n)
    per_view = [p.reshape(n, l) for p in pos]                              # [N, L] each
    q_pos = tuple(jnp.tile(p, (b, 1)) for p in per_view)                  # [B*N, L]
    others_pos = tuple(jnp.tile(p[others].reshape(n, -1), (b, 1)) for p in per_view)
    for i in range(self.n_layers):
      queries = x.reshape(b * n, l, d)
      if i % 2 == 0:          # self: each view attends to itself
        context, kv_pos = queries, q_pos
      else:                   # cross: each view attends to all the others
        context = x[:, others].reshape(b * n, (n - 1) * l, d)
        kv_pos = others_pos
      x = self._layer(i)(queries, context, q_pos=q_pos, kv_pos=kv_pos).reshape(b, n, l, d)
    return self._final_norm(x)
