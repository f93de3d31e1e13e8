"""Letterboxing: fitting a radiograph of any size into the model's fixed input, and back.

Conventions.
  points    [..., 2] float arrays (x, y): x = column, y = row, in pixel units. The centre of
            pixel (row r, column c) is (x, y) = (c, r), and the pixel covers [c - 0.5, c + 0.5)
            x [r - 0.5, r + 0.5); an H x W image spans x in [-0.5, W - 0.5), y in
            [-0.5, H - 0.5), and rounding a point gives its pixel. (The convention of NumPy
            indices and of `jaxcorr.projection.geometry`'s detector pixels. Tools that put (0, 0)
            at the top-left corner of the first pixel differ by 0.5.)
  original  the radiograph as read: shape (H, W).
  model     the network input: out_shape (out_h, out_w), multiples of the patch size k.
  scale     s = min(out_h / H, out_w / W), one factor for both axes: the image fits inside and
            keeps its aspect ratio. Its content covers H s x W s model pixels, centred, starting
            offset (ox, oy) = ((out_w - W s) / 2, (out_h - H s) / 2) model pixels from the
            model image's top-left edge (fractional in general; 0 on the tight axis).
  mapping   on pixel-edge coordinates (xy + 0.5) it is a scale and a shift:
                model    = (original + 0.5) s + offset - 0.5
                original = (model + 0.5 - offset) / s - 0.5
            `to_model` and `to_original` are exact inverses (to float64 rounding).
  patches   the model grid holds (out_h / k) x (out_w / k) patches of k x k pixels, flattened
            row-major (index r * (out_w / k) + c) as in `jaxcorr.projection.labels`; the centre of
            patch (r, c) is the model point (c k + (k - 1) / 2, r k + (k - 1) / 2).
  apply     area averaging (antialiased for downsampling, box-like for upsampling): a model
            pixel's value is the mean of the original image over the pixel's footprint, the
            padding counting as 0. So pixels wholly inside the content keep a constant image's
            value, pixels on the content's edge are partly padding, and the sum of the model
            image is s^2 times the original's.
"""

from __future__ import annotations

import dataclasses

import numpy as np


def _pair(value, name) -> tuple[int, int]:
  out = tuple(int(v) for v in value)
  if len(out) != 2 or min(out) < 1 or any(o != v for o, v in zip(out, value)):
    raise ValueError(f"Letterbox {name}={tuple(value)!r}: expected two positive integers "
                     "(rows, columns).")
  return out


@dataclasses.dataclass(frozen=True)
class Letterbox:
  """The map between a radiograph of `shape` (H, W) and the model input of `out_shape`."""

  shape: tuple[int, int]
  out_shape: tuple[int, int]

  def __post_init__(self):
    object.__setattr__(self, "shape", _pair(self.shape, "shape"))
    object.__setattr__(self, "out_shape", _pair(self.out_shape, "out_shape"))

  @property
  def scale(self) -> float:
    """Model pixels per original pixel, on both axes."""
    return min(self.out_shape[0] / self.shape[0], self.out_shape[1] / self.shape[1])

  @property
  def offset(self) -> np.ndarray:
    """(ox, oy): model pixels from the model image's top-left edge to the content's."""
    s = self.scale
    return np.asarray([(self.out_shape[1] - self.shape[1] * s) / 2,
                       (self.out_shape[0] - self.shape[0] * s) / 2], np.float64)

  def to_model(self, xy) -> np.ndarray:
    """Original-pixel points [..., 2] (x, y) -> model-pixel points (float64)."""
    return (np.asarray(xy, np.float64) + 0.5) * self.scale + self.offset - 0.5

  def to_original(self, xy) -> np.ndarray:
    """Model-pixel points [..., 2] (x, y) -> original-pixel points (float64)."""
    return (np.asarray(xy, np.float64) + 0.5 - self.offset) / self.scale - 0.5

  def inside(self, xy) -> np.ndarray:
    """bool [...]: original-pixel points [..., 2] that lie on the image (not padding/outside)."""
    xy = np.asarray(xy, np.float64)
    h, w = self.shape
    with np.errstate(invalid="ignore"):
      return ((xy[..., 0] >= -0.5) & (xy[..., 0] < w - 0.5) &
              (xy[..., 1] >= -0.5) & (xy[..., 1] < h - 0.5))

  def grid(self, patch: int) -> tuple[int, int]:
    """(rows, columns) of the model's patch grid; ValueError if `patch` does not divide it."""
    patch = int(patch)
    if patch < 1 or self.out_shape[0] % patch or self.out_shape[1] % patch:
      raise ValueError(f"patch size {patch} must be positive and divide the model input "
                       f"{self.out_shape}.")
    return self.out_shape[0] // patch, self.out_shape[1] // patch

  def patch_of(self, xy_original, patch: int) -> np.ndarray:
    """int64 [...]: the flat row-major patch index of each original-pixel point [..., 2] on the
    model grid, or -1 where the point falls off the image (in the padding, or outside)."""
    gh, gw = self.grid(patch)
    xy = np.asarray(xy_original, np.float64)
    ok = self.inside(xy)
    m = np.where(ok[..., None], self.to_model(np.where(ok[..., None], xy, 0.0)), 0.0)
    col = np.clip(np.floor((m[..., 0] + 0.5) / patch), 0, gw - 1).astype(np.int64)
    row = np.clip(np.floor((m[..., 1] + 0.5) / patch), 0, gh - 1).astype(np.int64)
    return np.where(ok, row * gw + col, -1)

  def patch_center(self, index, patch: int) -> np.ndarray:
    """float64 [..., 2]: the centre (x, y) in original pixels of flat patch indices [...].

    A padding patch's centre lies off the image (outside [-0.5, W - 0.5) etc.).
    """
    gh, gw = self.grid(patch)
    index = np.asarray(index)
    if np.any(index < 0) or np.any(index >= gh * gw):
      raise ValueError(f"patch indices must lie in [0, {gh * gw}) for a {gh}x{gw} grid, got "
                       f"{index.min()}..{index.max()}.")
    centre = np.stack([index % gw, index // gw], -1) * patch + (patch - 1) / 2
    return self.to_original(centre)

  def patch_coverage(self, patch: int) -> np.ndarray:
    """float32 [L]: the fraction of each patch (flat, row-major) covered by image content."""
    gh, gw = self.grid(patch)
    s, (ox, oy) = self.scale, self.offset
    def cover(n, start, length):  # pixel-edge coordinates: patches [lo, lo + k), content
      lo = np.arange(n) * patch     # [start, start + length)
      overlap = np.minimum(lo + patch, start + length) - np.maximum(lo, start)
      return np.clip(overlap, 0, None) / patch
    return np.outer(cover(gh, oy, self.shape[0] * s),
                    cover(gw, ox, self.shape[1] * s)).reshape(-1).astype(np.float32)

  def to_mm(self, xy_original, spacing) -> np.ndarray:
    """Original-pixel points [..., 2] -> mm from the centre of pixel (0, 0), (x, y) order.

    Args:
      xy_original: points in original pixels.
      spacing: (row, column) mm per pixel, e.g. `Radiograph.spacing`.
    """
    if spacing is None:
      raise ValueError("the pixel spacing is unknown (Radiograph.spacing is None: the file "
                       "states none); distances in mm need a spacing.")
    row, col = (float(v) for v in spacing)
    return np.asarray(xy_original, np.float64) * np.asarray([col, row])

  def apply(self, image) -> np.ndarray:
    """[H, W] image -> float32 [out_h, out_w] model input (area averaging, padding 0)."""
    image = np.asarray(image, np.float32)
    if image.shape != self.shape:
      raise ValueError(f"Letterbox for {self.shape} images got an image of shape {image.shape}.")
    s, (ox, oy) = self.scale, self.offset
    wy = _area_weights(self.shape[0], self.out_shape[0], s, oy)
    wx = _area_weights(self.shape[1], self.out_shape[1], s, ox)
    return (wy @ image @ wx.T).astype(np.float32)

  def model_input(self, image) -> np.ndarray:
    """The network input of a radiograph: stretched to [0, 1] (min-max, as the training DRRs
    are normalised per view) and letterboxed (`apply`), float32 [out_h, out_w]."""
    image = np.asarray(image, np.float32)
    lo, hi = float(image.min()), float(image.max())
    return self.apply((image - lo) / (hi - lo) if hi > lo else np.zeros_like(image))

  def to_dict(self) -> dict:
    """JSON-able; scale and offset are there for readers and checked by `from_dict`."""
    return {"shape": list(self.shape), "out_shape": list(self.out_shape), "scale": self.scale,
            "offset": self.offset.tolist()}

  @classmethod
  def from_dict(cls, d) -> "Letterbox":
    missing = [k for k in ("shape", "out_shape") if k not in d]
    if missing:
      raise ValueError(f"Letterbox dict lacks {', '.join(missing)}; got keys {sorted(d)}.")
    box = cls(tuple(d["shape"]), tuple(d["out_shape"]))
    if "scale" in d and not np.isclose(float(d["scale"]), box.scale, rtol=1e-9, atol=0):
      raise ValueError(f"Letterbox dict scale {d['scale']} disagrees with its shapes "
                       f"{box.shape} -> {box.out_shape} (scale {box.scale}).")
    return box


def _area_weights(n_in: int, n_out: int, scale: float, offset: float) -> np.ndarray:
  """float32 [n_out, n_in]: overlap of each output pixel with each input pixel, / its length."""
  # Output pixel i covers [(i - offset) / s, (i + 1 - offset) / s) in input edge coordinates.
  lo = (np.arange(n_out, dtype=np.float64)[:, None] - offset) / scale
  hi = lo + 1.0 / scale
  j = np.arange(n_in, dtype=np.float64)[None, :]
  overlap = np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0.0, None)
  return (overlap * scale).astype(np.float32)
