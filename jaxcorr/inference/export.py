"""A serialized forward pass that runs without the model's Python code (`jax.export`).

  export(predictor, "/out/model")      writes /out/model/forward.jaxexport + forward.json
  forward = load("/out/model")         in any process with JAX, no jaxcorr model code needed
  corr = forward(views)                views float32 [B, N, H, W, 1] in [0, 1] -> [B, P, L, L]

The artifact is StableHLO with the weights embedded as constants and a symbolic batch size B,
so one file serves every batch size; N, H, W are fixed at export (`forward.json` records them
with the patch size, the grid and the pair order). Letterboxing and test-time augmentation
stay outside, in `Predictor`, so the artifact is exactly the network, its C clipped to [0, 1]
as `Predictor` clips it (a plain-cosine head's negative scores are no match).
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np

ARTIFACT = "forward.jaxexport"
META = "forward.json"


def export(predictor, directory: str, *, n_views: int = 2, platforms=("cpu", "cuda")) -> str:
  """Serializes the predictor's forward pass for `n_views` views; returns the artifact path."""
  h, w = predictor.image_size
  (b,) = jax.export.symbolic_shape("b")
  spec = jax.ShapeDtypeStruct((b, n_views, h, w, 1), np.float32)
  variables = predictor.variables

  def forward(views):
    corr, _ = predictor.model.apply(variables, views, train=False)
    return jax.numpy.clip(corr, 0.0, 1.0)

  exported = jax.export.export(jax.jit(forward), platforms=tuple(platforms))(spec)
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, ARTIFACT)
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "wb") as f:
    f.write(exported.serialize())
  os.replace(tmp, path)
  meta = {"n_views": n_views, "image_size": [h, w], "patch": predictor.patch,
          "grid": list(predictor.grid), "pairs": [[i, j] for i in range(n_views)
                                                  for j in range(i + 1, n_views)],
          "input": "float32 [B, N, H, W, 1] in [0, 1], letterboxed, bone bright",
          "output": "float32 [B, P, L, L]", "platforms": list(platforms),
          "source": predictor.source}
  with open(os.path.join(directory, META), "w") as f:
    json.dump(meta, f, indent=2)
  return path


def load(directory: str):
  """The exported forward pass of `directory` as a function views -> corr (NumPy arrays)."""
  path = os.path.join(directory, ARTIFACT)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} is missing: export a model first (jaxcorr.inference.export)")
  with open(path, "rb") as f:
    exported = jax.export.deserialize(bytearray(f.read()))
  with open(os.path.join(directory, META)) as f:
    meta = json.load(f)
  shape = (meta["n_views"], *meta["image_size"], 1)

  def forward(views):
    views = np.asarray(views, np.float32)
    if views.shape[1:] != shape:
      raise ValueError(f"{path} takes views [B, {', '.join(map(str, shape))}], got {views.shape}")
    return np.asarray(exported.call(views))

  forward.meta = meta
  return forward
