"""Model construction from configs: the one table of model sizes and `build_model`.

`SIZES` names every correspondence-model size the project uses (the paper's, its ViT-S/16
variant, and the CPU sizes of the tiny/small presets); `configs/pretrain.py`, the benchmarks and
`from_size` read it, so a size is written once. `build_model(config.model)` turns a model block
(the constructor's keyword arguments, plus an optional `kind`) into a Flax module.
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
}

MODEL_KINDS = ("correspondence", "pair_mlp")


def from_size(name: str, **overrides) -> correspondence.CorrespondenceModel:
  """The correspondence model of size `name` (one of `SIZES`), fields overridden by keyword."""
  check_choice("model size", name, SIZES)
  return correspondence.CorrespondenceModel(**{**SIZES[name], **overrides})


def build_model(model_config):
  """The model of `config.model`: its keys are the model's fields, plus an optional `kind`
  ('correspondence', the default: `CorrespondenceModel`; 'pair_mlp': the frozen-backbone
  baseline `PairMLP`). Both map views [B, N, H, W, 1] to (corr [B, P, L, L], aux)."""
  fields = dict(model_config)
  kind = check_choice("config.model.kind", fields.pop("kind", "correspondence"), MODEL_KINDS)
  fields["dtype"] = dtype("config.model.dtype", fields["dtype"])
  if kind == "pair_mlp":
    return pair_mlp.PairMLP(**fields)
  return correspondence.CorrespondenceModel(**fields)
