"""The paper's Table 2 on sparse annotations: zero-shot, fine-tuned and baseline rows.

Commands and what to expect:
  python -m jaxcorr.main --config=configs/evaluate_sparse.py --workdir=/tmp/table2 \
      --config.annotations=/tmp/sparse/annotations.jsonl \
      --config.splits=/tmp/finetune/splits.json \
      --config.runs="('/tmp/jaxcorr_pretrain','/tmp/finetune','/tmp/finetune_mlp')"
      any machine, seconds to minutes: precision, recall (at 0.2) and AP on the annotated
      entries of the test studies, printed as a markdown table and written as results.md,
      results.csv and results.json. Paper (real X-rays): fine-tuned AP 83.8, DINOv2-G + MLP
      42.2.
"""

import ml_collections

PRESETS = {"default": {}}  # one preset: the jobs have nothing to size


def get_config(arg=None):
  from configs import common  # pylint: disable=import-outside-toplevel
  common.parse_preset(arg, PRESETS)
  return ml_collections.ConfigDict(dict(
      job="evaluate_sparse",
      annotations="",      # the sparse-annotation JSON-lines file
      splits="",           # a fine-tuning workdir's splits.json ('' = every study)
      split="test",        # which split of it to score
      runs=("",),          # pretraining / fine-tuning workdirs, one row each
      which_checkpoint="best",  # of each run: best | latest | a step number, e.g. "200"
      batch_size=4,
  ))
