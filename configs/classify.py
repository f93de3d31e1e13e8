"""Multi-view fracture classification (the paper's Table 3): ViT fusion, correspondence
pretraining and attention guidance, on the CT-derived fracture benchmark by default.

Presets: SIZE or SIZE,ROW, with SIZE in tiny | cpu | cpu_real | cpu_corr | default and ROW one
of the Table-3 rows single | late | early | early_pretrained | early_guided (default: early), or
SIZE,sweep for the rows x seeds sweep. Commands and what to expect:
  python -m jaxcorr.main --config=configs/classify.py:tiny --workdir=/tmp/classify
      2-core CPU, ~15 s: makes the tiny fracture benchmark (8 phantoms at 64^3, 2 views of
      64 px) in /tmp/classify/data, trains a 2-layer test ViT (early fusion) for 20 steps,
      writes test_metrics.json, predictions_*.csv and errors.png. Accuracy is near chance:
      it only shows the path works.
  python -m jaxcorr.main --config=configs/pretrain.py:tiny_vit --workdir=/tmp/pretrain_vit
  python -m jaxcorr.main --config=configs/classify.py:cpu,sweep --workdir=/tmp/table3 \
      --config.pretrained=/tmp/pretrain_vit
      2-core CPU, ~55 min: ViT-Ti/16 at 128 px, 300 steps, the 5 rows x 3 seeds; sweep.md /
      sweep.csv hold the test accuracy, AUROC, kappa, precision and recall as mean +- std
      (docs/benchmarks.md: every row is at chance at this scale).
  python -m jaxcorr.main --config=configs/classify.py:default,sweep --workdir=DIR \
      --config.pretrained=PRETRAIN_VIT_S
      one GPU: ViT-S/16 at 256 px (paper, MURA: 73.3 single, 78.7 late, 75.8 early,
      80.1 + pretraining, 80.6 + guidance).
  python -m jaxcorr.main --config=configs/classify.py:cpu_real,cnn --workdir=/tmp/cnn
      The learnability baseline of issue 22 (run from the repository root): makes the
      cpu_real benchmark from ../shared/data/ct + ct_limbs in /tmp/cnn/data without C
      (configs/make_fractures.py:cpu_real: limbs seen from the side, 12 mm gaps, fragments
      displaced 12-24 mm, 64 samples per CT; ~14 min), then trains the CNN
      (model.backbone=resnet, resnet_small, 220k parameters, max-pooled per-position logits)
      on view 0: 2,400 steps of batch 16, AdamW 1e-3, no inversion in the augmentation, ~6 min
      on the 2-core CPU. Measured 2026-12-05: test accuracy 76.8% (590 of 768 studies of 12
      test CTs), AUROC 84.9 (with 32 samples per CT: 72.1%) (docs/benchmarks.md, "Fracture
      benchmark: learnability baseline (issue 22)"). Table-3 rows on it: cpu_real,ROW or
      cpu_real,sweep.
  python -m jaxcorr.main --config=configs/pretrain.py:classify_cpu --workdir=/tmp/pre_cls \
      --config.ct.path=TRAIN_CTS.txt
  python -m jaxcorr.main --config=configs/classify.py:cpu_corr,sweep --workdir=/tmp/table3 \
      --config.pretrained=/tmp/pre_cls --config.corr.checkpoint=/tmp/pre_cls
      Table 3 on the 2-core CPU (issue 22): the cpu_real benchmark, the correspondence model
      as the classifier of every row (model.backbone=correspondence, size classify_cpu: the
      CNN's resnet_small under a 2-layer transformer, max-pooled per-token logits), 1,200
      steps at lr 3e-4; the pretraining (~5 min, 1,000 steps) on the benchmark's training CTs
      (TRAIN_CTS.txt: the 'train' list of the benchmark's splits.json, so make the
      benchmark first: make_fractures.py:cpu_real with generate.with_corr=False, then
      data.shards) gives the '+ pretraining' rows their start and the guided row its C.
      ~110 min for 5 rows x 3 seeds (one run alone: 3.5-4 min single, ~7.5 min with two
      views, ~10 min guided); the commands and the table: docs/benchmarks.md.
Other data: --config.studies.source=mura --config.studies.path=/data (MURA-v1.1 layout) or
studies.source=csv with studies.path=FILE.csv (study_id,label,view_1,view_2,...); then
corr.source=model with corr.checkpoint=PRETRAIN for guidance. ImageNet initialisation:
--config.init_timm=vit_small_patch16_224.safetensors (a timm file you provide).
"""

import ml_collections

from configs import common, make_fractures
from jaxcorr.tasks import classification

# One row per size: what differs from the default (ViT-S/16 at 256 px on one GPU).
SIZES = {
    "default": {},
    "tiny": {**common.sized(64), "image_size": (64, 64), "model.vit": "vit_test",
             "steps": 20, "batch_size": 8, "optim.learning_rate": 1e-3, "log_every": 5,
             "eval_every": 10, "data.phantoms": 8, "generate.samples_per_volume": 4,
             "generate.render_batch": 4, "fracture.gap_mm": 6.0,
             "fracture.displacement_mm": 8.0},
    # Issue 22's CPU benchmark on the real CTs (configs/make_fractures.py CPU_REAL).
    "cpu_real": {**make_fractures.CPU_REAL, "image_size": (128, 128), "model.vit": "vit_ti16",
                 "steps": 300},
    "cpu": {**common.sized(128), "image_size": (128, 128), "model.vit": "vit_ti16",
            "steps": 300, "data.phantoms": 16, "generate.samples_per_volume": 16,
            "generate.visibility": False,
            "fracture.gap_mm": 4.0,            # 128^3 cubes: ~2.3 mm voxels
            "fracture.displacement_mm": 6.0,
            "data.splits": (0.5, 0.25, 0.25)},  # 64 validation and 64 test studies
}
ROWS = tuple(classification.ROWS)


def _row(row):
  """Preset overrides of a Table-3 row (`classification.ROWS`) but its pretraining run, which
  the *_pretrained rows take from --config.init_from (the sweep fills it from
  config.pretrained)."""
  if row == "sweep":
    return {"job": "classify_sweep"}
  return {k: v for k, v in classification.ROWS[row].items() if k != "init_from"}


# The Table-3 rows on the cpu_real benchmark with the correspondence model as the classifier
# (ResNet + transformer, build.SIZES['classify_cpu']), so that '+ pretraining' loads a whole
# `pretrain.py:classify_cpu` run; the guided row takes C from that run (corr.source='model' with
# --config.corr.checkpoint), so the benchmark is made without C.
SIZES["cpu_corr"] = {**SIZES["cpu_real"], "model.backbone": "correspondence",
                     "model.corr_size": "classify_cpu", "model.pool": "max",
                     "corr.source": "model", "generate.with_corr": False, "steps": 1200,
                     "optim.learning_rate": 3e-4,   # 1e-3 (the CNN's) stayed at chance
                     "augment.radiometric.p_invert": 0.0}

# Issue 22's learnability baseline: the single-view CNN on the cpu_real benchmark (no C needed).
CNN_BASELINE = {**SIZES["cpu_real"], **_row("single"), "model.backbone": "resnet",
                "model.resnet": "resnet_small", "model.pool": "max", "corr.source": "none",
                "generate.with_corr": False, "steps": 2400, "optim.learning_rate": 1e-3,
                "augment.radiometric.p_invert": 0.0}

PRESETS = {**{s: SIZES[s] for s in SIZES},
           **{f"{s},{r}": {**SIZES[s], **_row(r)} for s in SIZES for r in ROWS + ("sweep",)},
           "cpu_real,cnn": CNN_BASELINE}


def get_config(arg=None):
  config = make_fractures.get_config()
  config.update(common.training(5000, learning_rate=3e-4, batch_size=16))
  config.job = "classify"
  config.optim.weight_decay = 0.05
  config.optim.warmup_fraction = 0.1
  config.image_size = (256, 256)
  # The fracture benchmark counts visible fracture pixels at the classifier's input size.
  config.generate.visible_size = config.get_ref("image_size")
  config.studies = ml_collections.ConfigDict(dict(
      source="fractures",     # fractures | mura | csv
      path="",                # mura: the folder holding MURA-v1.1; csv: the study list
      body_parts=("XR_ELBOW", "XR_FOREARM", "XR_HAND", "XR_WRIST"),
  ))
  config.model = ml_collections.ConfigDict(dict(
      backbone="vit",         # vit | resnet (the CNN baseline: single or late) | correspondence
      vit="vit_s16",
      resnet="resnet_small",  # backbone='resnet': a jaxcorr.models.resnet.RESNETS variant
      corr_size="small",      # backbone='correspondence': a jaxcorr.models.build.SIZES name
      pool="max",             # backbone='resnet': max | mean of the per-position logits
      fusion="early",         # single | late | early
      max_views=2,
      guidance="none",        # none | layer | head (alpha per layer, or per layer and head)
      alpha_init=1.0,
      guided_layers=0,        # 0: every block but the last; k: the last k of them
      num_classes=1,
      in_channels=3,
      dtype="float32",
  ))
  config.corr = ml_collections.ConfigDict(dict(
      source="exact",         # exact (fracture records) | model | none
      checkpoint="",          # model: a correspondence pretraining / fine-tuning workdir
  ))
  config.pretrained = ""      # correspondence pretraining workdir for the *_pretrained rows
  config.init_from = ""       # backbone from a pretraining run (set by the rows)
  config.which_checkpoint = "best"  # of init_from's workdir: best | latest | a step, e.g. "200"
  config.init_timm = ""       # or from a timm ViT file (.safetensors)
  config.augment = ml_collections.ConfigDict(dict(radiometric=common.augment().radiometric))
  config.eval = ml_collections.ConfigDict(dict(batch_size=config.get_ref("batch_size")))
  config.ckpt.best_metric = "auroc"
  config.sweep = ml_collections.ConfigDict(dict(rows=ROWS, seeds=(0, 1, 2)))
  return common.apply_preset(config, PRESETS, arg)
