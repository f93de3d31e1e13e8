"""Correspondence pretraining (the paper's section 3.2) on DRRs rendered from CT.

Commands and what to expect:
  python -m jaxcorr.main --config=configs/pretrain.py:tiny --workdir=/tmp/pretrain
      2-core CPU, a few minutes: tiny ResNet + 2-layer transformer, 64^2 views of 8 synthetic
      phantoms; the loss falls over the first hundred steps and checkpoints, TensorBoard
      events and metrics.jsonl appear in the workdir. Run it again to resume.
  python -m jaxcorr.main --config=configs/pretrain.py:small --workdir=/tmp/pretrain_small \
      --config.ct.path=../shared/data/ct
      2-core CPU, ~30 min: held-out AP well above an untrained model (docs/benchmarks.md).
  python -m jaxcorr.main --config=configs/pretrain.py --workdir=DIR [--config.ct.path=CTS]
      one GPU: the paper's model (ResNet-50 stage 3 + 8 x 512 transformer, 25.9M parameters),
      256^2 views, batch 16, Adam 1e-4 with cosine decay; paper: AP 85.0 on simulated test data.
      It also runs on a CPU, slowly (2 cores: ~41 s a step, a loss line every 10 steps).
  python -m jaxcorr.main --config=configs/pretrain.py:tiny_vit --workdir=/tmp/pretrain_vit
      2-core CPU, ~4 min (300 steps): a ViT-Ti/16 backbone at 128 px (+ a 2-layer encoder) for
      the classifier's correspondence initialisation (configs/classify.py, Table 3); in 300
      CPU steps it barely learns correspondences (held-out AP 0.35%, docs/benchmarks.md).
  python -m jaxcorr.main --config=configs/pretrain.py:vit --workdir=DIR
      one GPU: the paper_vit model (ViT-S/16 backbone) at 256 px, for ViT-S classifiers.
Switches: model.attention in {none, superglue, loftr, transformer_mp, transformer} (Table 1),
model.head in {cosine, cosine_squared}, data.mode in {on_the_fly, offline}.
"""

import ml_collections

from configs import common

PRESETS = ("default", "tiny", "small", "tiny_vit", "vit")


def get_config(arg=None):
  preset = common.parse_preset(arg, PRESETS)
  size = {"default": 256, "tiny": 64, "small": 128, "tiny_vit": 128, "vit": 256}[preset]
  steps = {"default": 100_000, "tiny": 200, "small": 2000, "tiny_vit": 300,
           "vit": 100_000}[preset]
  batch = {"default": 16, "tiny": 8, "small": 8, "tiny_vit": 8, "vit": 16}[preset]
  config = ml_collections.ConfigDict(common.training(steps, learning_rate=1e-4, batch_size=batch))
  config.job = "pretrain"
  config.seed = 0
  common.add_sample_sources(config, size=size,
                            phantoms={"tiny": 8}.get(preset, 16))
  config.augment = common.augment()
  config.model = ml_collections.ConfigDict(dict(
      backbone={"default": "resnet50", "tiny": "resnet_tiny", "small": "resnet_tiny",
                "tiny_vit": "vit_ti16", "vit": "vit_s16"}[preset],
      d_model={"default": 512, "tiny": 64, "small": 128, "tiny_vit": 64, "vit": 512}[preset],
      n_layers={"default": 8, "tiny": 2, "small": 4, "tiny_vit": 2, "vit": 8}[preset],
      n_heads={"default": 8, "tiny": 4, "small": 4, "tiny_vit": 4, "vit": 8}[preset],
      mlp_dim={"default": 1024, "tiny": 128, "small": 256, "tiny_vit": 128,
               "vit": 1024}[preset],
      attention="transformer",
      head="cosine",
      in_channels=3,
      max_views=8,
      rope_base=100.0,
      dtype="float32",      # compute dtype: float32 | bfloat16 (params and loss stay float32)
  ))
  config.loss = ml_collections.ConfigDict(dict(pos_weight=1.0))
  config.eval = ml_collections.ConfigDict(dict(batches=4 if preset in ("tiny", "tiny_vit") else 16,
                                               batch_size=batch, seed=1234))
  if preset == "default":
    config.log_every = 10  # a line every ~7 min even on a 2-core CPU (0.39 samples/s there)
  # Short CPU runs take larger steps than the paper's 1e-4 (which is for 100k GPU steps).
  config.optim.learning_rate = {"tiny": 1e-3, "small": 3e-4, "tiny_vit": 3e-4}.get(preset, 1e-4)
  return config
