"""Correspondence pretraining (the paper's section 3.2) on DRRs rendered from CT.

Commands and what to expect:
  python -m jaxcorr.main --config=configs/pretrain.py:tiny --workdir=/tmp/pretrain
      2-core CPU, a few minutes: tiny ResNet + 2-layer transformer, 64^2 views of 8 synthetic
      phantoms; the loss falls over the first hundred steps and checkpoints, TensorBoard
      events and metrics.jsonl appear in the workdir. Run it again to resume.
  python -m jaxcorr.main --config=configs/pretrain.py:small --workdir=/tmp/pretrain_small \
      --config.ct.path=../shared/data/ct
      2-core CPU, ~10-30 min (2,000 steps of batch 8): held-out AP well above an untrained
      model. With ct/ + ct_limbs/ and --config.data.test_path=../shared/data/ct/
      ibsi_sts_STS_049_ct.nii.gz: 40.3 AP on that never-seen CT (0.81% positives; 1.3
      untrained), 7 min 53 s on a quiet 2-core CPU (docs/benchmarks.md, 2026-12-05).
  python -m jaxcorr.main --config=configs/pretrain.py --workdir=DIR [--config.ct.path=CTS]
      one GPU: the paper's model (ResNet-50 stage 3 + 8 x 512 transformer, 25.9M parameters),
      256^2 views, batch 16, Adam 1e-4 with cosine decay; paper: AP 85.0 on simulated test data.
      The loss weighs the rare positives 10x and the head is max(cos, 0)^2 (the levers that won
      held-out AP on the CPU); --config.loss.pos_weight=1 --config.model.head=cosine is the
      paper's plain MSE on the cosine.
      It also runs on a CPU, slowly (2 cores: ~41 s a step, a loss line every 10 steps).
  python -m jaxcorr.main --config=configs/pretrain.py:gpu10 --workdir=DIR \
      --config.ct.path="('../shared/data/ct','../shared/data/ct_limbs')" \
      --config.data.test_path=../shared/data/ct/ibsi_sts_STS_049_ct.nii.gz
      one H200, ~8 min by the clock: the paper's model in bf16 (params and loss f32), batch 64,
      Adam 2e-4 (the paper's 1e-4 at batch 16 times sqrt(64/16)) after 100 warmup steps, cosine
      to 1,500 steps; stops after 480 s with a final evaluation and a checkpoint (rerun to go
      on), checkpoints every 120 s. NOT YET MEASURED on a GPU: the step count, the time and the
      held-out AP are to be filled in (docs/benchmarks.md, issue 16); launch/gpu_pretrain.sh
      runs it and scores every checkpoint on that CT in one device call.
  python -m jaxcorr.main --config=configs/pretrain.py:tiny_vit --workdir=/tmp/pretrain_vit
      2-core CPU, ~4 min (300 steps): a ViT-Ti/16 backbone at 128 px (+ a 2-layer encoder) for
      the classifier's correspondence initialisation (configs/classify.py, Table 3); in 300
      CPU steps it barely learns correspondences (held-out AP 0.35%, docs/benchmarks.md).
  python -m jaxcorr.main --config=configs/pretrain.py:vit --workdir=DIR
      one GPU: the paper_vit model (ViT-S/16 backbone) at 256 px, for ViT-S classifiers.
Switches: model.attention in {none, superglue, loftr, transformer_alternating, transformer}
and model.message_passing (the authors' x + MLP([x, attention(x)]) layers); the paper's Table 1
rows are `jaxcorr.models.build.TABLE1` (e.g. "standard transformer with message passing" =
--config.model.attention=transformer --config.model.message_passing=True). model.head in
{cosine, cosine_squared, cosine_squared_unclipped (the authors')}; model.rope in {2d, 1d (the
authors': over the concatenated views, base 10000)}; model.init_torchvision=PATH starts the
ResNet-50 from a torchvision state dict file (e.g. ImageNet's ResNet50_Weights, saved with
torch.save(model.state_dict(), PATH) or as .safetensors; init_report.json says what loaded);
data.mode in {on_the_fly, offline}.
"""

import ml_collections

from configs import common
from jaxcorr.models.build import SIZES


def model(size):
  """Preset overrides for the correspondence model of size `size` (`jaxcorr.models.build`)."""
  return {f"model.{k}": v for k, v in SIZES[size].items()}


# One row per preset: what differs from the default (the paper's model on one GPU).
PRESETS = {
    "default": {},
    "tiny": {**common.sized(64), **model("tiny"), "steps": 200, "batch_size": 8,
             "data.phantoms": 8, "eval.batches": 4, "optim.learning_rate": 1e-3, "log_every": 0},
    "small": {**common.sized(128), **model("small"), "steps": 2000, "batch_size": 8,
              "optim.learning_rate": 3e-4, "log_every": 0},
    "tiny_vit": {**common.sized(128), **model("tiny_vit"), "steps": 300, "batch_size": 8,
                 "eval.batches": 4, "optim.learning_rate": 3e-4, "log_every": 0},
    "vit": {**model("paper_vit"), "log_every": 0},
    # The correspondence pretraining of the CPU Table-3 classifier (classify.py:cpu_corr).
    # Its loss and head are those it was measured with (the defaults before 2026-12-05).
    "classify_cpu": {**common.sized(128), **model("classify_cpu"), "steps": 1000,
                     "batch_size": 8, "optim.learning_rate": 3e-4, "log_every": 0,
                     "views.framing": "anatomy", "views.orbit": "patient",
                     "loss.pos_weight": 1.0, "model.head": "cosine"},
    # What one H200 trains in ~8 minutes (not yet measured; see the docstring).
    "gpu10": {"batch_size": 64, "optim.learning_rate": 2e-4, "optim.warmup_steps": 100,
              "steps": 1500, "stop_after_seconds": 480.0, "ckpt.every_seconds": 120.0,
              "model.dtype": "bfloat16", "eval.batches": 8, "log_every": 0},
}


def get_config(arg=None):
  config = ml_collections.ConfigDict(common.training(100_000, learning_rate=1e-4, batch_size=16))
  config.job = "pretrain"
  config.seed = 0
  config.log_every = 10  # a line every ~7 min even on a 2-core CPU (0.39 samples/s there)
  common.add_sample_sources(config, size=256, phantoms=16)
  config.augment = common.augment()
  config.model = ml_collections.ConfigDict(dict(
      **SIZES["paper"],     # backbone, d_model, n_layers, n_heads, mlp_dim
      attention="transformer",
      message_passing=False,   # True: the authors' layers, x + LN(MLP([x, LN(attention)]))
      # max(cos, 0)^2: with loss.pos_weight=10 the best held-out AP of the levers tried
      # (docs/benchmarks.md, issue 16); cosine is the plain one, cosine_squared_unclipped the
      # authors' cos^2.
      head="cosine_squared",
      in_channels=3,
      max_views=8,
      rope="2d",            # 2d: axial on patch rows/cols | 1d: the authors', concatenated views
      rope_base=0.0,        # 0: the rope's own base (2d: 100, 1d: 10000)
      init_torchvision="",  # a torchvision ResNet-50 state dict file; empty = random init
      dtype="float32",      # compute dtype: float32 | bfloat16 (params and loss stay float32)
  ))
  # Entries with C > 0.2 (~1% of patch pairs) weigh pos_weight in the MSE; 1 is the paper's
  # plain MSE. 10 raised held-out AP from 25.5 to 38.2 (40.3 with cosine_squared) in 2,000
  # steps of :small on 48 CTs (docs/benchmarks.md).
  config.loss = ml_collections.ConfigDict(dict(pos_weight=10.0))
  config.eval = ml_collections.ConfigDict(dict(
      batches=16, batch_size=config.get_ref("batch_size"), seed=1234))
  return common.apply_preset(config, PRESETS, arg)
