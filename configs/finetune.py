"""Fine-tuning on real radiographs with sparse labels (the paper's section 3.3, Table 2).

Commands and what to expect:
  python -m jaxcorr.main --config=configs/finetune.py:tiny --workdir=/tmp/finetune \
      --config.init_from=/tmp/jaxcorr_pretrain --config.annotations=/tmp/sparse/annotations.jsonl
      2-core CPU, about a minute after a tiny pretraining and a tiny make_sparse run: 40 steps
      on the studies of the 'train' split, validation AP logged, best checkpoint kept.
  python -m jaxcorr.main --config=configs/finetune.py --workdir=DIR --config.init_from=PRETRAIN \
      --config.annotations=FILE.jsonl
      one GPU, the paper's setting: Adam 1e-5, batch 16; paper: AP 83.8 on real X-rays.
  ... --config.head=pair_mlp
      the frozen-backbone baseline (the paper's DINOv2-G + MLP row with the pretraining run's
      backbone): the backbone is frozen and a pair MLP is trained on the same labels.
The annotation file is documented in docs/annotations.md; studies are split 60/10/30 by patient
(or study) into the workdir's splits.json on the first run and reused. The model and its input
size come from the pretraining run (`init_from`) and are written into this run's config.json.
"""

import ml_collections

from configs import common

# One row per preset: what differs from the default (the paper's setting on one GPU).
PRESETS = {
    "default": {},
    # A short CPU run takes larger steps than the paper's 1e-5.
    "tiny": {"steps": 40, "batch_size": 4, "optim.learning_rate": 3e-4, "log_every": 5,
             "eval_every": 20},
}


def get_config(arg=None):
  config = ml_collections.ConfigDict(common.training(steps=2000, learning_rate=1e-5,
                                                     batch_size=16))
  config.job = "finetune"
  config.seed = 0
  config.init_from = ""          # a pretraining workdir (or one of its checkpoint directories)
  config.which_checkpoint = "best"  # of init_from's workdir: best | latest | a step, e.g. "200"
  config.annotations = ""        # the sparse-annotation JSON-lines file (docs/annotations.md)
  config.head = "correspondence"  # 'correspondence' (fine-tune all) | 'pair_mlp' (baseline)
  config.mlp_hidden = 256        # pair_mlp: hidden width
  config.image_size = (0, 0)     # (H, W) model input; (0, 0) = the pretraining run's view size
  config.patch = 16              # patch size in pixels (set from the pretraining run's labels)
  config.split = (0.6, 0.1, 0.3)  # train / validation / test fractions, by patient or study
  config.max_pairs = 128         # annotated patch pairs per study, at most (paper: 3 + 100)
  config.loss = ml_collections.ConfigDict(dict(pos_weight=1.0))
  config.augment = ml_collections.ConfigDict(dict(radiometric=common.augment().radiometric))
  config.eval = ml_collections.ConfigDict(dict(batch_size=config.get_ref("batch_size")))
  config.ckpt.best_metric = "ap"
  return common.apply_preset(config, PRESETS, arg)
