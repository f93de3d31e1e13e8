"""An interactive HTML page for checking a many-to-many patch correspondence by eye.

`write_viewer` writes one self-contained HTML file (images as base64 PNG data URIs, the
matrices quantised to uint8 and base64-encoded, inline script and style, nothing fetched): hover
a patch in any view and the patches of every other view whose correspondence with it is above
the threshold light up as a heat overlay, opaque in proportion to the score. The page's
template, with its script, is `viewer_page.html` beside this module.

Inputs, for a study of K >= 2 views:

  images  K display images, [H, W] greyscale or [H, W, 3] RGB, uint8 or float in [0, 1], in
          original pixels or a downscaled preview; the sizes may differ.
  rects   per view, the patch rectangles in that view's display image, x0, y0, x1, y1 in
          display pixels (x right, y down, edge coordinates: the image spans [0, W) x
          [0, H), pixel (r, c) covers [c, c + 1) x [r, r + 1)), as [gh, gw, 4] (patches
          row-major over the model's patch grid) or [L, 4] with `grids` given. A rectangle
          with x1 <= x0 or y1 <= y0 is empty: a patch entirely in letterbox padding.
          `patch_rects` builds them from a letterbox (scale s, offset (ox, oy), patch size k).
  corr    per pair, C_p [L_i, L_j] in [0, 1]: row = patch of view i, column = patch of view j.
  pairs   the pairs (i, j), i < j, in the order of `corr`, usually row-major over all pairs
          [(0, 1), (0, 2), ..., (1, 2), ...]; a pair that is absent lights up nothing.

The page keeps its state in `<pre id="state">` as JSON, rewritten on every change:

  {"selected": {"view", "patch", "row", "col", "x", "y"} or null, "pinned": bool,
   "threshold": t, "highlighted": {"<view>": [patch indices, ascending]},
   "counts": {"<view>": n}}

(x, y are the patch's coordinates in the original image.) A patch is highlighted when
q / 255 > t, q = round(255 C) being the stored score, so the threshold acts on C to within
1/510, and its rectangle is not empty (padding patches are never shown or counted).

Test hook: the URL fragment `#threshold=T&test-click=V,X,Y&test-key=Escape...` is applied in
order as soon as the page is built (not waiting for the images to decode; they are drawn when
they have): `threshold` moves the slider (firing its input event), `test-click` (`test-move`)
dispatches a real click (mousemove) MouseEvent on view V's canvas at display-image point
(X, Y), edge coordinates like the rectangles, converted to client coordinates through the
canvas's on-screen box (so the page's own handlers map it back), and `test-key` a keydown on
the document; then `<body data-ready="1">` is set. The same fragment works in a browser, e.g.
to open the page on a chosen patch and threshold.
"""

from __future__ import annotations

import base64
import importlib.resources
import io
import json
from typing import Sequence

import numpy as np
from PIL import Image

from jaxcorr.core import files


def _page() -> str:
  """The page template (viewer_page.html, shipped with the package): HTML, style and script,
  with the placeholder __DATA__ for the JSON payload."""
  page = importlib.resources.files("jaxcorr.pictures").joinpath("viewer_page.html")
  return page.read_text("utf-8")


def patch_rects(grid: tuple[int, int], patch: int, scale: float, offset: tuple[float, float],
                image_shape: tuple[int, int],
                display_shape: tuple[int, int] | None = None) -> np.ndarray:
  """Rectangles of the model's patches in a displayed image, [gh, gw, 4] x0, y0, x1, y1.

  The model sees a letterboxed canvas: canvas = scale * original + offset (x, y). Patch
  (r, c) covers canvas [c k, (c + 1) k) x [r k, (r + 1) k); mapped back to the original image,
  clipped to it and scaled to the display size. Patches wholly in the padding get (0, 0, 0, 0).

  Args:
    grid: (gh, gw) patches.
    patch: patch size k in canvas pixels.
    scale: s, original pixels to canvas pixels.
    offset: (ox, oy) of the image's top-left corner in the canvas.
    image_shape: (H, W) of the original image.
    display_shape: (H, W) of the displayed image; default the original size.
  """
  gh, gw = grid
  h, w = image_shape[:2]
  dh, dw = (h, w) if display_shape is None else display_shape[:2]
  rows, cols = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
  x0 = np.clip((cols * patch - offset[0]) / scale, 0, w)
  x1 = np.clip(((cols + 1) * patch - offset[0]) / scale, 0, w)
  y0 = np.clip((rows * patch - offset[1]) / scale, 0, h)
  y1 = np.clip(((rows + 1) * patch - offset[1]) / scale, 0, h)
  rects = np.stack([x0 * dw / w, y0 * dh / h, x1 * dw / w, y1 * dh / h], -1)
  empty = (x1 <= x0) | (y1 <= y0)
  rects[empty] = 0
  return rects


def patch_centres(grid: tuple[int, int], patch: int, scale: float,
                  offset: tuple[float, float]) -> np.ndarray:
  """Centres of the model's patches in the original image, [gh, gw, 2] (x, y).

  In pixel-index coordinates (pixel (r, c) is the point (c, r) and covers [c - 0.5, c + 0.5),
  as NumPy and `jaxcorr.xray.letterbox` count): an edge coordinate less 0.5. Unclipped, so a
  border patch's centre may lie outside the image (in the padding).
  """
  gh, gw = grid
  rows, cols = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
  return np.stack([((cols + 0.5) * patch - offset[0]) / scale - 0.5,
                   ((rows + 0.5) * patch - offset[1]) / scale - 0.5], -1)


def rect_centres(rects: np.ndarray) -> np.ndarray:
  """Centres of rectangles [..., 4] (x0, y0, x1, y1) as [..., 2] (x, y), same coordinates."""
  rects = np.asarray(rects, np.float64)
  return np.stack([(rects[..., 0] + rects[..., 2]) / 2, (rects[..., 1] + rects[..., 3]) / 2], -1)


def to_uint8(image: np.ndarray) -> np.ndarray:
  """A display image as uint8: uint8 kept, floats read as [0, 1] (clipped, NaN as 0)."""
  image = np.asarray(image)
  if image.dtype == np.uint8:
    return image
  image = np.nan_to_num(image.astype(np.float32), nan=0.0)
  return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


def check_inputs(images, rects, corr, pairs, grids=None):
  """Validates a study's views, rectangles and matrices (see the module docstring).

  Returns:
    images as uint8 arrays, rects as float [L_v, 4] arrays, grids as (gh, gw) tuples, corr as
    float32 arrays and pairs as (i, j) int tuples.
  """
  k = len(images)
  if k < 2:
    raise ValueError(f"need at least 2 views, got {k}")
  if len(rects) != k:
    raise ValueError(f"{k} images but {len(rects)} rectangle arrays")
  if grids is not None and len(grids) != k:
    raise ValueError(f"{k} images but {len(grids)} grids")
  imgs, flat, grid_list = [], [], []
  for v in range(k):
    img = to_uint8(images[v])
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
      raise ValueError(f"view {v}: image must be [H, W] or [H, W, 3], got {img.shape}")
    r = np.asarray(rects[v], np.float64)
    if r.ndim == 3 and r.shape[2] == 4:
      grid = (int(r.shape[0]), int(r.shape[1]))
      r = r.reshape(-1, 4)
    elif r.ndim == 2 and r.shape[1] == 4:
      if grids is None:
        raise ValueError(f"view {v}: rects are [L, 4]; pass grids or rects as [gh, gw, 4]")
      grid = (int(grids[v][0]), int(grids[v][1]))
    else:
      raise ValueError(f"view {v}: rects must be [gh, gw, 4] or [L, 4], got {r.shape}")
    if grids is not None and tuple(grids[v]) != grid:
      raise ValueError(f"view {v}: grid {tuple(grids[v])} but rects have grid {grid}")
    if grid[0] * grid[1] != len(r):
      raise ValueError(f"view {v}: grid {grid} has {grid[0] * grid[1]} patches, rects {len(r)}")
    imgs.append(img)
    flat.append(r)
    grid_list.append(grid)
  if len(corr) != len(pairs):
    raise ValueError(f"{len(pairs)} pairs but {len(corr)} matrices")
  pair_list, mats = [], []
  for p, (pair, c) in enumerate(zip(pairs, corr)):
    i, j = int(pair[0]), int(pair[1])
    if not 0 <= i < j < k:
      raise ValueError(f"pair {p} is {tuple(pair)}; need 0 <= i < j < {k}")
    if (i, j) in pair_list:
      raise ValueError(f"pair {(i, j)} given twice")
    c = np.asarray(c, np.float32)
    if c.shape != (len(flat[i]), len(flat[j])):
      raise ValueError(f"pair {(i, j)}: C is {c.shape}, views have "
                       f"{len(flat[i])} and {len(flat[j])} patches")
    pair_list.append((i, j))
    mats.append(c)
  return imgs, flat, grid_list, mats, pair_list


def quantise(corr: np.ndarray) -> np.ndarray:
  """C in [0, 1] as uint8 round(255 C) (clipped, NaN as 0): how the viewer stores it."""
  c = np.nan_to_num(np.asarray(corr, np.float32), nan=0.0)
  return (np.clip(c, 0, 1) * 255 + 0.5).astype(np.uint8)


def _png_data_uri(image: np.ndarray) -> str:
  buf = io.BytesIO()
  Image.fromarray(image).save(buf, format="PNG", optimize=True)
  return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _payload(images, rects, corr, pairs, threshold, titles, pixel_coords, grids) -> dict:
  imgs, flat, grid_list, mats, pair_list = check_inputs(images, rects, corr, pairs, grids)
  k = len(imgs)
  titles = [f"view {v}" for v in range(k)] if titles is None else [str(t) for t in titles]
  if len(titles) != k:
    raise ValueError(f"{k} images but {len(titles)} titles")
  pixel_coords = [None] * k if pixel_coords is None else list(pixel_coords)
  if len(pixel_coords) != k:
    raise ValueError(f"{k} images but {len(pixel_coords)} pixel_coords")
  coords = []
  for v, c in enumerate(pixel_coords):
    # Rectangles are in edge coordinates, pixel positions in pixel-index ones.
    c = rect_centres(flat[v]) - 0.5 if c is None else np.asarray(c, np.float64).reshape(-1, 2)
    if len(c) != len(flat[v]):
      raise ValueError(f"view {v}: {len(c)} pixel_coords for {len(flat[v])} patches")
    coords.append(c)
  views = []
  for v in range(k):
    views.append({
        "title": titles[v], "png": _png_data_uri(imgs[v]),
        "width": int(imgs[v].shape[1]), "height": int(imgs[v].shape[0]),
        "grid": list(grid_list[v]),
        "rects": np.round(flat[v], 2).tolist(),
        "coords": np.round(coords[v], 1).tolist(),
    })
  pair_data = [{"i": i, "j": j, "rows": int(c.shape[0]), "cols": int(c.shape[1]),
                "q": base64.b64encode(quantise(c).tobytes()).decode("ascii")}
               for (i, j), c in zip(pair_list, mats)]
  return {"views": views, "pairs": pair_data, "threshold": round(float(threshold), 3)}


def viewer_html(images: Sequence[np.ndarray], rects, corr, pairs, *, threshold: float = 0.5,
                titles=None, pixel_coords=None, grids=None) -> str:
  """The viewer page as a string; arguments as for `write_viewer`."""
  if not 0 <= threshold <= 1:
    raise ValueError(f"threshold must be in [0, 1], got {threshold}")
  data = _payload(images, rects, corr, pairs, threshold, titles, pixel_coords, grids)
  # "<" escaped so no string in the data can close the script element.
  blob = json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")
  return _page().replace("__DATA__", blob)


def write_viewer(path: str, images: Sequence[np.ndarray], rects, corr, pairs, *,
                 threshold: float = 0.5, titles=None, pixel_coords=None, grids=None) -> str:
  """Writes the viewer page (one self-contained HTML file), atomically.

  Args:
    path: the .html file to write.
    images: K >= 2 display images (see the module docstring).
    rects: per view, patch rectangles in display pixels, [gh, gw, 4] or [L, 4] with grids.
    corr: per pair, C [L_i, L_j] in [0, 1].
    pairs: the (i, j), i < j, of each matrix in `corr`.
    threshold: initial threshold of the slider (0..1, kept to 3 decimals).
    titles: per view, a name shown above it; default "view v".
    pixel_coords: per view, [L, 2] (or [gh, gw, 2]) patch positions (x, y) in the original
      image in pixel-index coordinates (e.g. `patch_centres`), shown in the readout; None
      (for all views or one) means the rectangle centres less 0.5, right when the display
      image is the original.
    grids: per view (gh, gw), needed only when rects are [L, 4].

  Returns:
    path.
  """
  html = viewer_html(images, rects, corr, pairs, threshold=threshold, titles=titles,
                     pixel_coords=pixel_coords, grids=grids)
  with files.atomic_output(path, suffix=".html.tmp") as tmp:
    with open(tmp, "w", encoding="utf-8") as f:
      f.write(html)
  return path
