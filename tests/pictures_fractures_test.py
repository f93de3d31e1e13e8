"""jaxcorr.pictures.fractures: the contact sheet rings the fracture of fractured studies only."""

import numpy as np

from jaxcorr.pictures import fractures, style


def _study(label):
  views = np.random.default_rng(label).random((2, 32, 32)).astype(np.float32)
  out = {"views": views, "volume": "ct_a.nii.gz"}
  if label:
    out.update(fracture_px=np.array([[4.0, 4.0], [28.0, 20.0]]), gap_mm=4.0,
               displacement_mm=6.0, visible_px=np.array([12, 0]))
  return out


def test_sheet_layout_and_rings():
  sheet = fractures.fracture_sheet([{"fractured": _study(1), "intact": _study(0)}],
                                   caption="test", size=128)
  a = np.asarray(sheet)
  # 4 views of 128 px beside each other, gaps between; one caption line + two row lines.
  assert a.shape[1] == 4 * 128 + 2 * style.GAP + 4 * style.GAP
  assert a.shape[0] >= 128 + 3 * style.line_height()
  red = (a[..., 0] == 255) & (a[..., 1] == 60) & (a[..., 2] == 60)
  cols = np.nonzero(red.any(axis=0))[0]
  assert len(cols) and cols.max() < 2 * 128 + style.GAP   # rings on the fractured views only
  # view 2's ring is centred on (28.5, 20.5) * 4 px of the panel.
  rows = np.nonzero(red[:, 128 + style.GAP:2 * 128 + style.GAP].any(axis=1))[0]
  assert abs((rows.min() + rows.max()) / 2 - (a.shape[0] - 128) - 20.5 * 4) <= 2
  empty = fractures.fracture_sheet([], size=64)
  assert min(empty.size) >= 64
