"""How far labels move between the true coarse geometry and the authors' near-parallel one.

  python -m jaxcorr.benchmarks.label_geometry [--ct=PATH] [--out=docs/figures/label_geometry.png]

The authors project the 16^3 coarse volume as if it were 16 mm wide: a coarse image with 1 mm
voxels centred at the isocentre, with the full source distances (sid, sdd) and a 16 x 16 patch
detector. For that volume to cover the patch grid as the CT covers the full detector, the patch
pitch must shrink by the same factor s = 1 mm / (coarse voxel size) as the volume; that is our
reading of "as if 16 mm wide", and it is what this script calls the authors' geometry. Scaling
the volume and the detector by s while keeping sid and sdd is the true geometry with sid and sdd
divided by s (here ~31 m): a near-parallel beam with the isocentre's magnification sdd / sid
everywhere. jaxcorr keeps the true geometry (coarse voxels of 16 fine voxels' size, patches of
16 pixels' size), so each voxel's magnification depends on its depth.

For the Visible Human pelvis (256^3, 16^3 coarse, 2 views at gantry 0 and 90 degrees, sid 1000 mm,
sdd 1500 mm, 256^2 detector from `fit_pixel_spacing`, k = 16) it prints:
  * per coarse voxel above the threshold and per view, the distance (in patches) between the
    centroids of its footprint under the two geometries, binned by the distance of the true
    centroid from the image centre (mean, max), and how often the peak patch differs;
  * IoU (labels > 0.2) and MSE between the two C;
  * a bead test: a 4^3-voxel bead at the centre of one coarse voxel, projected by the
    full-resolution DRR; where the DRR shows it, in patch coordinates, against the centroid and
    peak of the voxel's footprint and the bead's strongest label under both geometries;
and draws docs/figures/label_geometry.png.
"""

from __future__ import annotations

import os

import jax.numpy as jnp
import numpy as np
from absl import app, flags
from PIL import Image, ImageDraw

from jaxcorr.ct import io, preprocess
from jaxcorr.pictures import style, viz
from jaxcorr.projection import drr, geometry, labels

_DEFAULT_CT = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "ct",
                           "visible_human_male_pelvis_hands.nii.gz")
_DEFAULT_OUT = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "figures",
                            "label_geometry.png")
_CT = flags.DEFINE_string("ct", _DEFAULT_CT, "CT file or DICOM folder.")
_OUT = flags.DEFINE_string("out", _DEFAULT_OUT, "Where to write the figure (PNG).")

SIZE, DET, K = 256, 256, 16
SID, SDD = 1000.0, 1500.0
GANTRY = (0.0, 90.0)
BINARY_AT = 0.2
FIGURE_VIEW = 1  # the lateral view (gantry 90), where the body's labels move most
BEAD_HALF = 2  # the bead is 2 * BEAD_HALF fine voxels wide, centred on a coarse voxel centre


def authors_grid(dims, coarse_spacing, pixel_spacing):
  """The authors' coarse grid and full-detector pixel spacing: 1 mm voxels at the isocentre.

  Returns:
    (origin, spacing, pixel spacing): the grid of `dims` voxels of 1 mm centred at the origin,
    and the detector pixel spacing scaled by the same factor as the voxels (so patches are
    k times that).
  """
  s = 1.0 / float(coarse_spacing)
  origin = -(np.asarray(dims, np.float64) - 1) / 2
  return origin, np.ones(3), pixel_spacing * s


def footprint_centroids(a: np.ndarray, w: int):
  """Centroids (row, column) in patches and peak patches of system-matrix columns.

  Args:
    a: [N, L, V] system matrix on an h x w patch grid.
    w: patches per row.

  Returns:
    (centroids [N, V, 2] float (NaN where unseen), peaks [N, V] int patch index).
  """
  l = a.shape[1]
  rows, cols = np.arange(l) // w, np.arange(l) % w
  total = a.sum(axis=1)
  with np.errstate(invalid="ignore", divide="ignore"):
    cen = np.stack([np.einsum("nlv,l->nv", a, rows) / total,
                    np.einsum("nlv,l->nv", a, cols) / total], -1)
  return cen, a.argmax(axis=1)


def _iou_mse(c1, c2):
  a, b = c1 > BINARY_AT, c2 > BINARY_AT
  return float((a & b).sum() / max((a | b).sum(), 1)), float(np.mean((c1 - c2) ** 2))


def _bead(vol_shape, coarse_index):
  """A one-valued cube of fine voxels centred on the centre of coarse voxel `coarse_index`."""
  bead = np.zeros(vol_shape, np.float32)
  lo = [K * int(i) + K // 2 - BEAD_HALF for i in coarse_index]
  bead[lo[0]:lo[0] + 2 * BEAD_HALF, lo[1]:lo[1] + 2 * BEAD_HALF, lo[2]:lo[2] + 2 * BEAD_HALF] = 1
  return bead


def _image_centroid(img):
  """Intensity centroid (row, column) of a [H, W] image, in pixels."""
  r, c = np.nonzero(img > 0)
  wts = img[r, c]
  return np.array([np.sum(r * wts), np.sum(c * wts)]) / wts.sum()


def main(argv):
  del argv
  vol = preprocess.to_cube(io.load_ct(_CT.value), size=SIZE)
  intensity = preprocess.bone_sigmoid(vol.data, x0=850.0)
  wc = np.asarray(labels.pool_weights(intensity, K))
  dims = wc.shape
  h = w = DET // K
  c_origin, c_spacing = (np.asarray(x, np.float64) for x in
                         labels.coarse_grid(vol.origin, vol.spacing, K))
  pixel = geometry.fit_pixel_spacing(float(vol.extent.max()), sid=SID, sdd=SDD,
                                     detector_size=(DET, DET))
  a_origin, a_spacing, a_pixel = authors_grid(dims, c_spacing[0], pixel)
  assert np.allclose(c_spacing, c_spacing[0]), "to_cube gives isotropic voxels"
  cone = dict(sid=SID, sdd=SDD, gantry_angles=GANTRY, detector_size=(DET, DET))
  views = {"true": geometry.circular_views(pixel_spacing=pixel, **cone),
           "authors": geometry.circular_views(pixel_spacing=a_pixel, **cone)}
  grids = {"true": (c_origin, c_spacing), "authors": (a_origin, a_spacing)}
  det = dict(height=DET, width=DET, k=K)

  cen, peak, corr = {}, {}, {}
  for name in views:
    o, s = grids[name]
    a = np.asarray(drr.system_matrix(dims, o, s, geometry.coarsen(views[name], K), height=h,
                                     width=w))
    cen[name], peak[name] = footprint_centroids(a, w)
    corr[name] = np.asarray(labels.correspondence_jit(jnp.asarray(wc), o, s, views[name], **det))

  active = (wc > labels.DEFAULT_THRESHOLD).reshape(-1)
  centre = np.array([(h - 1) / 2, (w - 1) / 2])
  shift = np.linalg.norm(cen["true"] - cen["authors"], axis=-1)           # [N, V]
  radius = np.linalg.norm(cen["true"] - centre, axis=-1)
  seen = np.isfinite(shift) & active[None]
  iou, mse = _iou_mse(corr["true"], corr["authors"])
  print(f"CT {os.path.basename(_CT.value)} -> {SIZE}^3, spacing {vol.spacing[0]:.3f} mm; coarse "
        f"{dims[0]}^3 voxels of {c_spacing[0]:.2f} mm ({int(active.sum())} above the threshold "
        f"{labels.DEFAULT_THRESHOLD}); detector {DET}^2 of {pixel:.3f} mm = {h}x{w} patches of "
        f"{K * pixel:.2f} mm; views at gantry {GANTRY} deg, sid {SID:.0f} mm, sdd {SDD:.0f} mm.")
  print(f"Authors' geometry: coarse voxels of 1 mm (factor s = 1/{c_spacing[0]:.2f}), patches of "
        f"{K * a_pixel:.3f} mm; equivalent to the true geometry with sid {SID * c_spacing[0]:.0f} "
        f"mm, sdd {SDD * c_spacing[0]:.0f} mm.")
  bins = [(r, r + 1) for r in range(8)]
  print("| distance of the footprint centroid from the image centre (patches) | voxel-views "
        "| mean shift (patches) | max shift (patches) | peak patch differs |")
  print("|---|---|---|---|---|")
  table = []
  for lo, hi in bins:
    sel = seen & (radius >= lo) & (radius < hi)
    if not sel.any():
      continue
    differs = (peak["true"] != peak["authors"])[sel].mean()
    table.append((lo, hi, shift[sel].mean(), shift[sel].max()))
    print(f"| {lo}-{hi} | {int(sel.sum())} | {shift[sel].mean():.3f} | {shift[sel].max():.3f} "
          f"| {100 * differs:.0f}% |")
  differs = (peak["true"] != peak["authors"])[seen].mean()
  print(f"| all | {int(seen.sum())} | {shift[seen].mean():.3f} | {shift[seen].max():.3f} "
        f"| {100 * differs:.0f}% |")
  every = np.isfinite(shift)
  edge = every & (radius >= 6)
  print(f"All {every.shape[1]} voxels of the cube (air included): mean shift "
        f"{shift[every].mean():.3f}, max {shift[every].max():.3f} patches; beyond 6 patches from "
        f"the centre: mean {shift[edge].mean():.3f}, max {shift[edge].max():.3f}.")
  print(f"C (true) vs C (authors): IoU of labels > {BINARY_AT} = {iou:.3f}, MSE = {mse:.2e} "
        f"({int((corr['true'] > BINARY_AT).sum())} vs {int((corr['authors'] > BINARY_AT).sum())} "
        f"labels > {BINARY_AT}).")

  bead_v, bead_rows = _bead_test(vol, dims, views, dict(grids, weights=wc), cen, peak, shift,
                                 det)
  drr_img = np.asarray(drr.project_jit(
      jnp.asarray(preprocess.attenuation(vol.data) + 0.05 * _bead(vol.shape, bead_v)),
      vol.origin, vol.spacing, views["true"], height=DET, width=DET))[FIGURE_VIEW]
  _figure(drr_img, cen, seen, radius, shift, table, bead_rows, iou, mse, w)
  print(f"Wrote {_OUT.value} ({os.path.getsize(_OUT.value) / 1024:.0f} KB).")


def _bead_test(vol, dims, views, grids, cen, peak, shift, det):
  """Beads where the geometries disagree most; prints where each geometry and the DRR put them.

  Two beads: in the coarse voxel above the threshold (inside the body) whose footprint moves
  most in some view, and in the voxel of the cube whose footprint moves most in the view where
  it moves least (a corner). Returns the first bead's voxel and its rows for the figure.
  """
  seen = np.isfinite(shift)
  body = seen & (grids["weights"] > labels.DEFAULT_THRESHOLD).reshape(-1)[None]
  picks = {"body": int(np.argmax(np.where(body, shift, -1).max(axis=0))),
           "corner": int(np.argmax(np.where(seen, shift, -1).min(axis=0)))}
  print("| bead | view | bead in the DRR (row, col in patches; its patch) | true: centroid "
        "(distance to the DRR's bead) / peak patch / strongest label | authors': same |")
  print("|---|---|---|---|---|")
  w = DET // K
  first = None
  for kind, v_flat in picks.items():
    bead_v = tuple(int(i) for i in np.unravel_index(v_flat, dims))
    img = np.asarray(drr.project_jit(jnp.asarray(_bead(vol.shape, bead_v)), vol.origin,
                                     vol.spacing, views["true"], height=DET, width=DET))
    one = np.zeros(dims, np.float32)
    one[bead_v] = 1.0
    best = {}
    for name in views:
      o, s = grids[name]
      c = np.asarray(labels.correspondence_jit(jnp.asarray(one), o, s, views[name],
                                               threshold=0.0, **det))[0]
      best[name] = np.unravel_index(int(np.argmax(c)), c.shape)
    world = np.round(grids["true"][0] + np.asarray(bead_v) * grids["true"][1])
    rows = []
    for n in range(len(GANTRY)):
      px = _image_centroid(img[n])
      at = (px - (K - 1) / 2) / K                  # patch coordinates of the DRR's bead
      cells = []
      for name in ("true", "authors"):
        cc = cen[name][n, v_flat]
        cells.append(f"({cc[0]:.2f}, {cc[1]:.2f}) ({np.linalg.norm(cc - at):.2f}) / "
                     f"{divmod(int(peak[name][n, v_flat]), w)} / "
                     f"{divmod(int(best[name][n]), w)}")
        rows.append((n, name, at, cc))
      print(f"| {kind}, voxel {bead_v}, world {world.astype(int).tolist()} mm | {GANTRY[n]:.0f} "
            f"deg | ({at[0]:.2f}, {at[1]:.2f}); {tuple(int(x) for x in np.floor(px / K))} | "
            f"{cells[0]} | {cells[1]} |")
    first = first or (bead_v, rows)
  return first


def _plot(size, table, radius, shift, seen, font):
  """Shift (patches) against distance from the image centre (patches), both views."""
  wd, ht = size
  img = Image.new("RGB", size, "white")
  d = ImageDraw.Draw(img)
  x0, y0, x1, y1 = 46, 20, wd - 12, ht - 40
  r_max, s_max = 8.0, max(1.2, float(np.nanmax(shift[seen])) * 1.1)
  px = lambda r: x0 + (x1 - x0) * r / r_max
  py = lambda s: y1 - (y1 - y0) * s / s_max
  d.rectangle([x0, y0, x1, y1], outline="black")
  for r in range(0, 9):
    d.line([px(r), y1, px(r), y1 + 4], fill="black")
    d.text((px(r) - 4, y1 + 6), str(r), fill="black", font=font)
  for s in np.arange(0, s_max, 0.25):
    d.line([x0 - 4, py(s), x0, py(s)], fill="black")
    d.text((x0 - 34, py(s) - 6), f"{s:.2f}", fill="black", font=font)
  d.text((x0 + 10, y1 + 22), "distance of the footprint from the image centre (patches)",
         fill="black", font=font)
  d.text((x0 + 6, y0 + 4), "label shift, true vs authors' geometry (patches)", fill="black",
         font=font)
  colours = [(70, 110, 220), (230, 130, 40)]
  for n in range(shift.shape[0]):
    for r, s in zip(radius[n][seen[n]], shift[n][seen[n]]):
      d.ellipse([px(r) - 1.5, py(s) - 1.5, px(r) + 1.5, py(s) + 1.5], fill=colours[n])
    d.text((x0 + 6, y0 + 20 + 16 * n), f"view {GANTRY[n]:.0f} deg", fill=colours[n], font=font)
  for key, colour in ((2, (0, 0, 0)), (3, (200, 0, 0))):
    d.line([(px((row[0] + row[1]) / 2), py(row[key])) for row in table], fill=colour, width=2)
  d.text((x0 + 6, y0 + 52), "black: mean per bin, red: max per bin", fill="black", font=font)
  return img


def _figure(drr_img, cen, seen, radius, shift, table, bead_rows, iou, mse, w):
  """Left: FIGURE_VIEW with footprint centroids under both geometries; right: shift vs radius."""
  font = style.font(style.SMALL)
  scale = 2
  grey = viz.window_level(drr_img)
  left = Image.fromarray(np.kron(grey, np.ones((scale, scale), np.uint8))).convert("RGB")
  d = ImageDraw.Draw(left)
  step = K * scale
  for i in range(1, w):
    d.line([i * step, 0, i * step, left.height], fill=(60, 60, 60))
    d.line([0, i * step, left.width, i * step], fill=(60, 60, 60))
  to_px = lambda rc: ((rc[1] + 0.5) * step, (rc[0] + 0.5) * step)   # patch coords -> figure px
  f = FIGURE_VIEW
  order = np.flatnonzero(seen[f])
  order = order[np.argsort(-shift[f, order])][::2]   # every other voxel, largest shifts first
  for v in order:
    (xt, yt), (xa, ya) = to_px(cen["true"][f, v]), to_px(cen["authors"][f, v])
    d.ellipse([xa - 3, ya - 3, xa + 3, ya + 3], fill=(255, 60, 60))
    d.line([xt, yt, xa, ya], fill=(255, 220, 0), width=2)
    d.ellipse([xt - 2, yt - 2, xt + 2, yt + 2], fill=(60, 220, 60))
  for n, name, at, cc in bead_rows:
    if n != f:
      continue
    xb, yb = to_px(at)
    d.ellipse([xb - 7, yb - 7, xb + 7, yb + 7], outline=(0, 200, 255), width=2)
    x, y = to_px(cc)
    col = (60, 220, 60) if name == "true" else (255, 60, 60)
    d.rectangle([x - 4, y - 4, x + 4, y + 4], outline=col, width=2)
  right = _plot((420, left.height), table, radius, shift, seen, font)
  both = Image.new("RGB", (left.width + right.width, left.height), "white")
  both.paste(left, (0, 0))
  both.paste(right, (left.width, 0))
  caption = (f"Left: view at gantry {GANTRY[f]:.0f} deg; footprint centroids of every other "
             "coarse voxel above the threshold: green = true cone geometry (jaxcorr), "
             "red = authors' 1 mm voxels, yellow = shift. Cyan circle: a bead where the "
             "full-resolution DRR shows it; squares: its voxel's centroid under each geometry.\n"
             f"Right: shift vs distance from the image centre. C(true) vs C(authors): IoU of "
             f"labels > {BINARY_AT} = {iou:.3f}, MSE = {mse:.1e}.")
  out = style.caption(both, caption)
  os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
  out.quantize(colors=128).save(_OUT.value, optimize=True)


if __name__ == "__main__":
  app.run(main)
