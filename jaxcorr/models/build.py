"""Model construction from configs: the one table of model sizes and `build_model`.

`SIZES` names every correspondence-model size the project uses (the paper's, its ViT-S/16
variant, and the CPU sizes of the tiny/small presets); `configs/pretrain.py`, the benchmarks and
`from_size` read it, so a size is written once. `build_model(config.model)` turns a model block
(the constructor's keyword arguments, plus an optional `kind` and `init_torchvision`, which the
pretraining task reads) into a Flax module.

`TABLE1` names the rows of the paper's Table 1 by the model fields that make them, and
`row_name` names a model block's row (the evaluate job's row labels).
"""

from __future__ import annotations

from jaxcorr.core.choices import check_choice, dtype
from jaxcorr.models import correspondence, pair_mlp

SIZES = {
    "paper": dict(backbone="resnet50", d_model=512, n_layers=8, n_heads=8, mlp_dim=1024),
    "paper_vit": dict(backbone="vit_s16", d_model=512, n_layers=8, n_heads=8, mlp_dim=1024),
    "small": dict(backbone="resnet_tiny", d_model=128, n_layers=4, n_heads=4, mlp_dim=256),
    "tiny": dict(backbone="resnet_tiny", d_model=64, n_layers=2, n_heads=4, mlp_dim=128),
    "tiny_vit": dict(backbone="vit_ti16", d_model=64, n_layers=2, n_heads=4, mlp_dim=128),
    # The CPU Table-3 classifier (configs/classify.py:cpu_corr): the CNN baseline's ResNet
    # under a 2-layer transformer, pretrained as a correspondence model first.
    "classify_cpu": dict(backbone="resnet_small", d_model=128, n_layers=2, n_heads=4,
                         mlp_dim=256),
}

MODEL_KINDS = ("correspondence", "pair_mlp")
# Model-block keys that are not constructor arguments (read by the tasks).
NOT_FIELDS = ("kind", "init_torchvision")

# The paper's Table 1 (simulated test set, AP): its row names -> the model fields that make them.
TABLE1 = {
    "no attention": dict(attention="none", message_passing=False),                   # 54.7
    "SuperGlue-style": dict(attention="superglue", message_passing=False),          # 80.1
    "LoFTR-style": dict(attention="loftr", message_passing=False),                  # 83.5
    "standard transformer with message passing": dict(attention="transformer",
                                                      message_passing=True),        # 84.1
    "standard transformer": dict(attention="transformer", message_passing=False),   # 85.0
}


def row_name(model_config) -> str:
  """The Table 1 row of a model block (`TABLE1`), else its attention (+ ', message passing').

  Blocks saved before `message_passing` existed read as message_passing=False.
  """
  attention = model_config.get("attention", "transformer")
  mp = bool(model_config.get("message_passing", False))
  for name, fields in TABLE1.items():
    if fields == dict(attention=attention, message_passing=mp):
      return name
  return attention + (", message passing" if mp else "")


def from_size(name: str, **overrides) -> correspondence.CorrespondenceModel:
  """The correspondence model of size `name` (one of `SIZES`), fields overridden by keyword."""
  check_choice("model size", name, SIZES)
  return correspondence.CorrespondenceModel(**{**SIZES[name], **overrides})


def build_model(model_config):
  """The model of `config.model`: its keys are the model's fields, plus an optional `kind`
  ('correspondence', the default: `CorrespondenceModel`; 'pair_mlp': the frozen-backbone
  baseline `PairMLP`). Both map views [B, N, H, W, 1] to (corr [B, P, L, L], aux)."""
  fields = {k: v for k, v in dict(model_config).items() if k not in NOT_FIELDS}
  kind = check_choice("config.model.kind", model_config.get("kind", "correspondence"),
                      MODEL_KINDS)
  fields["dtype"] = dtype("config.model.dtype", fields["dtype"])
  if kind == "pair_mlp":
    return pair_mlp.PairMLP(**fields)
  return correspondence.CorrespondenceModel(**fields)
