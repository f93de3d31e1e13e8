"""Attention blocks and the token encoder over N views (the ablations of the paper's Table 1).

Tokens. x [B, N, L, D]: N views of L = h * w patch tokens (row-major), width D; `rows`, `cols`
[L] the patch coordinates of one view, shared by all views (the same position in two views gets
the same rotary phase; a learned view embedding, added by the caller, tells views apart).

Encoders (`ATTENTIONS`, the `attention` switch of `Encoder`).
  'none'            no attention: the tokens pass unchanged (CNN + linear projection).
  'transformer'     (default) a pre-norm transformer over the N * L tokens of all views jointly:
                    self-attention spans the views; axial 2D RoPE on q and k; final LayerNorm.
  'transformer_mp'  the same pre-norm blocks with message passing: layers alternate self-attention
                    within each view (even layers) and cross-attention from each view to the
                    tokens of all other views (odd layers); final LayerNorm.
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
"""

from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jaxcorr.core.choices import check_choice
from jaxcorr.models import attention as attn_lib

ATTENTIONS = ("none", "superglue", "loftr", "transformer_mp", "transformer")
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
  """Multi-head attention (softmax or linear) from x to a context, with optional 2D RoPE.

  Positions are (rows, cols) pairs of [L] arrays; RoPE is applied when both q_pos and kv_pos
  are given. Params: query, key, value ([D, H, D/H] kernels) and out ([H, D/H, D]).
  """
  num_heads: int
  kind: str = "softmax"            # 'softmax' | 'linear'
  use_bias: bool = True
  rope_base: float = attn_lib.DEFAULT_ROPE_BASE
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, context=None, *, q_pos=None, kv_pos=None, bias=None, mask=None):
    check_choice("attention kind", self.kind, ("softmax", "linear"))
    context = x if context is None else context
    width = x.shape[-1]
    if width % self.num_heads:
      raise ValueError(f"width {width} is not divisible by num_heads {self.num_heads}.")
    head_dim = width // self.num_heads
    proj = lambda name: nn.DenseGeneral((self.num_heads, head_dim), use_bias=self.use_bias,
                                        dtype=self.dtype, name=name)
    q, k, v = proj("query")(x), proj("key")(context), proj("value")(context)
    rope = q_pos is not None and kv_pos is not None
    if self.kind == "softmax":
      if rope:
        q = attn_lib.rope_2d(q, *q_pos, base=self.rope_base)
        k = attn_lib.rope_2d(k, *kv_pos, base=self.rope_base)
      out = attn_lib.dot_product_attention(q, k, v, bias=bias, mask=mask)
    else:
      if bias is not None or mask is not None:
        raise ValueError("linear attention takes no bias or mask.")
      q, k = attn_lib.elu_feature_map(q), attn_lib.elu_feature_map(k)
      q_num = attn_lib.rope_2d(q, *q_pos, base=self.rope_base) if rope else None
      k_num = attn_lib.rope_2d(k, *kv_pos, base=self.rope_base) if rope else None
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


def _other_views(n: int) -> np.ndarray:
  """[N, N - 1] int: row i lists the views other than i, in order."""
  return np.asarray([[j for j in range(n) if j != i] for i in range(n)], np.int32).reshape(n, -1)


class Encoder(nn.Module):
  """The token encoder over N views; see the module docstring for the `attention` variants."""
  attention: str = "transformer"
  n_layers: int = 8
  n_heads: int = 8
  mlp_dim: int = 1024
  rope_base: float = attn_lib.DEFAULT_ROPE_BASE
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, rows, cols, *, bias=None):
    """Encodes the tokens of all views.

    Args:
      x: [B, N, L, D] tokens.
      rows, cols: [L] patch coordinates of one view's tokens.
      bias: optional additive attention bias [B, H, N*L, N*L] ('transformer' only).

    Returns:
      [B, N, L, D] tokens.
    """
    check_choice("attention", self.attention, ATTENTIONS)
    if bias is not None and self.attention != "transformer":
      raise ValueError(f"an attention bias needs attention='transformer', not {self.attention!r}.")
    if self.attention == "none":
      return x
    if self.attention == "transformer":
      return self._joint(x, rows, cols, bias)
    return self._message_passing(x, rows, cols)

  def _joint(self, x, rows, cols, bias):
    b, n, l, d = x.shape
    pos = (jnp.tile(rows, n), jnp.tile(cols, n))
    y = x.reshape(b, n * l, d)
    for i in range(self.n_layers):
      y = Block(self.n_heads, self.mlp_dim, rope_base=self.rope_base, dtype=self.dtype,
                name=f"layer_{i}")(y, q_pos=pos, kv_pos=pos, bias=bias)
    y = nn.LayerNorm(epsilon=1e-6, dtype=jnp.float32, name="norm")(y)
    return y.reshape(b, n, l, d)

  def _message_passing(self, x, rows, cols):
    b, n, l, d = x.shape
    if n < 2:
      raise ValueError(f"attention={self.attention!r} alternates cross-view layers and needs at "
                       f"least 2 views, got {n}.")
    others = _other_views(n)
    pos = (rows, cols)
    pos_others = (jnp.tile(rows, n - 1), jnp.tile(cols, n - 1))
    for i in range(self.n_layers):
      queries = x.reshape(b * n, l, d)
      if i % 2 == 0:          # self: each view attends to itself
        context, kv_pos = queries, pos
      else:                   # cross: each view attends to all the others
        context = x[:, others].reshape(b * n, (n - 1) * l, d)
        kv_pos = pos_others
      if self.attention == "transformer_mp":
        block = Block(self.n_heads, self.mlp_dim, rope_base=self.rope_base, dtype=self.dtype,
                      name=f"layer_{i}")
      else:
        block = MessageBlock(self.n_heads, style=self.attention, rope_base=self.rope_base,
                             dtype=self.dtype, name=f"layer_{i}")
      x = block(queries, context, q_pos=pos, kv_pos=kv_pos).reshape(b, n, l, d)
    if self.attention == "transformer_mp":
      x = nn.LayerNorm(epsilon=1e-6, dtype=jnp.float32, name="norm")(x)
    return x
