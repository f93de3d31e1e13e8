"""Resampling CT volumes onto new axis-aligned grids, and HU -> intensity models.

Grids are axis-aligned in the LPS frame (see `volume.py`), so trilinear resampling factors into
three 1D linear interpolations, one per axis; that is exact (trilinear interpolation is the tensor
product of 1D linear ones) and far cheaper than gathering 8 corners per output voxel. Outside the
input, the volume is extended with a fill value (air, -1000 HU): an output point between the last
voxel centre and one voxel beyond blends towards the fill, like `map_coordinates(order=1,
mode='constant')` in `jax.scipy.ndimage`. No anti-aliasing filter is applied when downsampling.

`to_cube` follows the authors' convention: the whole CT is kept inside a cube whose edge is the
CT's largest physical extent, sampled isotropically at `size`^3, and the volume is moved so that
its centre sits at the isocentre.

Intensity models are pure functions usable on NumPy arrays (returning NumPy) and JAX arrays
(returning JAX, jit-able): `bone_sigmoid` (the paper's soft bone emphasis) and `attenuation`
(linear attenuation coefficient in 1/mm).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxcorr.core.choices import check_choice
from jaxcorr.ct.volume import Volume

AIR = -1000.0
# Fractional positions this close to a voxel centre snap onto it, so identity is exact.
_SNAP = 1e-6


def resample(volume: Volume, spacing, shape, origin, *, fill=AIR) -> Volume:
  """Trilinear resampling onto a new axis-aligned grid.

  Args:
    volume: the input volume.
    spacing: (3,) output voxel size, mm.
    shape: (3,) output shape.
    origin: (3,) world position (mm) of the output voxel (0, 0, 0).
    fill: value of the space outside the input (air by default).

  Returns:
    A `Volume` with float32 data of `shape` and the input's `source`.
  """
  spacing = np.broadcast_to(np.asarray(spacing, np.float64), (3,))
  origin = np.broadcast_to(np.asarray(origin, np.float64), (3,))
  shape = tuple(int(n) for n in np.broadcast_to(np.asarray(shape), (3,)))
  # Fractional input index of each output sample, per axis.
  coords = [(origin[a] + spacing[a] * np.arange(shape[a]) - volume.origin[a]) / volume.spacing[a]
            for a in range(3)]
  data = np.asarray(volume.data, np.float32)
  # Shrink the largest reductions first to keep intermediates small; the result is the same.
  for axis in sorted(range(3), key=lambda a: shape[a] / data.shape[a]):
    data = _interp_axis(data, coords[axis], axis, np.float32(fill))
  return Volume(data, spacing, origin, volume.source)


def _interp_axis(data, u, axis, fill) -> np.ndarray:
  """Linear interpolation of `data` at fractional indices `u` along `axis`, `fill` outside."""
  n = data.shape[axis]
  near = np.round(u)
  u = np.where(np.abs(u - near) < _SNAP, near, u)
  i0 = np.floor(u)
  w = (u - i0).astype(np.float32)
  pad = [(0, 0)] * data.ndim
  pad[axis] = (1, 1)
  padded = np.pad(data, pad, constant_values=fill)
  lo = np.clip(i0 + 1, 0, n + 1).astype(np.intp)
  hi = np.clip(i0 + 2, 0, n + 1).astype(np.intp)
  bshape = [1] * data.ndim
  bshape[axis] = -1
  w = w.reshape(bshape)
  out = np.take(padded, lo, axis=axis)
  out *= 1 - w
  out += w * np.take(padded, hi, axis=axis)
  return out


def to_cube(volume: Volume, *, size=256, isocenter=(0.0, 0.0, 0.0), fill=AIR) -> Volume:
  """Resamples a CT into an isotropic cube that keeps all of it, centred at the isocentre.

  Rule: cube edge = the volume's largest physical extent (edge to edge, `volume.extent`), so the
  whole CT fits and shorter axes are padded with `fill` on both sides equally; spacing = edge /
  size. The volume is moved (its origin shifted) so that its centre lies at `isocenter`.

  Args:
    volume: the CT.
    size: voxels along each edge of the cube.
    isocenter: (3,) world position (mm) of the cube's centre.
    fill: value of the padding (air by default).

  Returns:
    A `Volume` of shape (size, size, size) whose `center` equals `isocenter`.
  """
  step = float(np.max(volume.extent)) / size
  half = (size - 1) / 2 * step
  cube = resample(volume, step, (size,) * 3, volume.center - half, fill=fill)
  return cube.replace(origin=np.asarray(isocenter, np.float64) - half)


def _xp(x):
  return jnp if isinstance(x, jax.Array) else np


def bone_sigmoid(hu, x0=1500.0, k=0.005):
  """Soft bone emphasis 1 / (1 + exp(-k ((hu + 1000) - x0))).

  Args:
    hu: HU values (NumPy or JAX array, any shape).
    x0: centre of the sigmoid in HU + 1000 (the paper: 1500 for images, 850 for labels).
    k: slope, 1/HU.

  Returns:
    Values in (0, 1), 0.5 at hu = x0 - 1000; same array type as `hu`.
  """
  z = k * ((hu + 1000.0) - x0)
  if _xp(hu) is jnp:
    return jax.nn.sigmoid(z)
  e = np.exp(-np.abs(z))  # never overflows; keeps relative precision in both tails
  return np.where(z >= 0, 1.0, e).astype(e.dtype) / (1.0 + e)


def attenuation(hu, mu_water=0.0206):
  """Linear attenuation mu_water * (1 + hu / 1000), clipped at 0.

  Args:
    hu: HU values (NumPy or JAX array, any shape).
    mu_water: attenuation of water, 1/mm (0.0206 ~ 70 keV).

  Returns:
    mu in 1/mm: mu_water for water (0 HU), 0 for air (-1000 HU) and below.
  """
  return _xp(hu).maximum(mu_water * (1.0 + hu / 1000.0), 0.0)


INTENSITY_MODELS = ("bone_sigmoid", "attenuation")


def intensity(hu, model, *, x0=1500.0, k=0.005, mu_water=0.0206):
  """Applies the intensity model named `model` to HU; takes `**config.intensity` as is.

  Args:
    hu: HU values.
    model: 'bone_sigmoid' (uses x0, k) or 'attenuation' (uses mu_water).
    x0, k: `bone_sigmoid` parameters.
    mu_water: `attenuation` parameter.

  Returns:
    The mapped values.
  """
  if check_choice("intensity model", model, INTENSITY_MODELS) == "bone_sigmoid":
    return bone_sigmoid(hu, x0=x0, k=k)
  return attenuation(hu, mu_water=mu_water)
