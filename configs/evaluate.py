"""Evaluate pretraining runs on held-out CT volumes: the paper's Table 1 (MSE, P, R, AP).

  python -m jaxcorr.main --config=configs/evaluate.py --workdir=/tmp/eval \
      --config.runs="('/tmp/pretrain_small','/tmp/pretrain_small_none')"
      2-core CPU, ~1 min per run at the small preset: results.md/csv/json and overlay PNGs.
Each run is scored on the 'test' split of its own splits.json (volumes it never trained on),
or on the CTs of --config.data.test_path (e.g. ../shared/data/ct/ibsi_sts_STS_049_ct.nii.gz,
which a run trained with the same data.test_path never saw); every table gives the number of
samples and the fraction of positive patch pairs (true C > 0.2) beside MSE/P/R/AP;
`untrained=True` adds the first run's model at initialisation as a baseline row;
`checkpoint=all` scores every saved checkpoint of each run on the same samples and draws
ap_vs_samples.png (held-out AP against training samples seen; keep more checkpoints with the
run's --config.ckpt.every and --config.ckpt.keep). `framing`, `views_preset` and
`label_threshold` score every run on the same views and labels. Rows are named
as the paper's Table 1 names them (`jaxcorr.models.build.TABLE1`); a pretraining run makes each
row with these model flags (paper's AP on its simulated test set):
  no attention                               --config.model.attention=none               54.7
  SuperGlue-style                            --config.model.attention=superglue          80.1
  LoFTR-style                                --config.model.attention=loftr              83.5
  standard transformer with message passing  --config.model.message_passing=True         84.1
  standard transformer (the default)         (none)                                      85.0
Paper, standard transformer: MSE 1.09e-3, P 77.0, R 81.5.
"""

import ml_collections

from configs import common

# One row per preset: what differs from the default.
PRESETS = {
    "default": {},
    "tiny": {"eval.batches": 2, "eval.batch_size": 4},
}


def get_config(arg=None):
  config = ml_collections.ConfigDict()
  config.job = "evaluate"
  config.seed = 0
  config.runs = ("",)                 # pretraining workdirs (a tuple of paths)
  # best | latest | a step number, e.g. "200" | all (every saved one: ap_vs_samples.png)
  config.checkpoint = "best"
  config.untrained = True             # add the untrained model as a baseline row
  config.overlays = 2                 # overlay pictures per run
  # The held-out views' framing (views.framing: cube | anatomy); empty = each run's own. The
  # positive fraction, and so AP, depend on it: compare runs on the same framing.
  config.framing = ""
  # The held-out views' distribution (views.preset: jaxcorr | authors); empty = each run's own.
  config.views_preset = ""
  config.eval = ml_collections.ConfigDict(dict(batches=16, batch_size=8, seed=4321))
  config.drr = common.drr()           # the kernels that render the held-out samples
  config.labels = ml_collections.ConfigDict(dict(method="sparse"))   # 'sparse' | 'dense'
  # >= 0: score every run on labels of this labels.threshold (air below it); -1: each run's own.
  config.label_threshold = -1.0
  # Devices the held-out batches are split over (0 = every device of every host); with
  # distributed=True (or main --distributed) one process per host, as for training.
  config.mesh = ml_collections.ConfigDict(dict(num_devices=0, distributed=False))
  # The CTs to score (a file, folder, .txt list or tuple); empty = each run's own test split.
  config.data = ml_collections.ConfigDict(dict(test_path=common.paths()))

  return common.apply_preset(config, PRESETS, arg)
