"""Correspondences on your own radiographs: C, matches, a picture and an interactive viewer.

Commands and what to expect:
  python -m jaxcorr.main --config=configs/predict.py --workdir=/tmp/predict \
      --config.checkpoint=/tmp/jaxcorr_pretrain \
      --config.views="('../shared/data/xray/nema_wg04_RG2_UNC_CR_hip.dcm','../shared/data/xray/nema_wg04_RG3_UNC_CR_distal_tibia_NOF.dcm')"
      any machine, seconds after compilation: /tmp/predict/study/{corr.npy, matches.csv,
      predict.png, viewer.html, study.json}; open viewer.html in a browser (no server needed).
  ... --config.studies=LIST.csv      many studies (`study_id,view_1,view_2,...` per line); a bad
      study is reported in studies.csv and the others go on.
  ... --config.tta=True              radiographs in any orientation (8 passes, slower).
  ... --config.export=True           also writes export/forward.jaxexport (jax.export).
`checkpoint` is a pretraining or fine-tuning workdir, or one of its checkpoint directories;
`which_checkpoint` picks a workdir's best (default), latest or a given step; the log says which
checkpoint and step it loaded.
"""

import ml_collections

PRESETS = {"default": {}}  # one preset: the jobs have nothing to size


def get_config(arg=None):
  from configs import common  # pylint: disable=import-outside-toplevel
  common.parse_preset(arg, PRESETS)
  return ml_collections.ConfigDict(dict(
      job="predict",
      checkpoint="",          # pretraining / fine-tuning workdir or checkpoint directory
      which_checkpoint="best",  # of a workdir: best | latest | a step number, e.g. "200"
      views=("",),            # the views of one study (paths: DICOM, PNG, JPEG, TIFF)
      studies="",             # or a list file of studies (see jaxcorr/jobs/predict.py)
      tta=False,              # dihedral test-time augmentation (any orientation)
      tta_reduce="mean",      # mean | max over the 8 passes
      threshold=0.5,          # matches.csv and the viewer's initial threshold (the evaluate
                              # job's f1_threshold is a held-out operating point)
      top_k=50,               # rows of matches.csv
      batch_size=1,           # studies per forward pass
      export=False,           # also write the exported forward pass
  ))
