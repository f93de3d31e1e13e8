"""Render DRRs of one CT (or of the built-in phantom) into the workdir.

Writes `drr.npy` (float32 [N, H, W] line integrals, rows/columns in RTK's projection order),
`drr_<n>.png` previews, `corr.npy` (float32 [P, L, L] correspondence labels, patches flattened
row-major as in drr.npy, pairs (0,1), (0,2), ..., (1,2), ...), `corr_<i>_<j>.png` (views i and
j side by side, query patches and their bands), `geometry.json` and `config.json`.

Commands (2-core CPU figures; a GPU is far faster):
  python -m jaxcorr.main --config=configs/render.py --workdir=/tmp/render
      256^3 forearm phantom, 2 x 256^2 views, ~10 s including compilation.
  python -m jaxcorr.main --config=configs/render.py --workdir=/tmp/render \
      --config.ct.path=CT.nii.gz --config.geometry.angles="(0.,90.,30.)"
  python -m jaxcorr.main --config=configs/render.py:tiny --workdir=/tmp/r   (64^3, CI, ~2 s)
Expected result: the previews look like radiographs of the limb (bone bright).
"""

import ml_collections

from configs import common

# One row per preset: what differs from the default (256^3 -> 256^2).
PRESETS = {
    "default": {},
    "tiny": {"ct.size": 64, "geometry.detector_size": (64, 64)},
}


def get_config(arg=None):
  config = ml_collections.ConfigDict()
  config.job = "render"
  config.seed = 0
  config.ct = common.ct(size=256)
  config.intensity = common.intensity()
  config.geometry = common.geometry(detector=256)
  config.drr = common.drr()
  config.labels = common.labels()
  config.labels.enabled = True   # write corr.npy and the correspondence pictures
  config.png = True
  return common.apply_preset(config, PRESETS, arg)
