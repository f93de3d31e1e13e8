"""Synthetic fractures inserted into the long bones of HU volumes, and harmless negative changes.

Everything here is NumPy/SciPy on the host, on a `Volume` of HU (data [X, Y, Z] float32, LPS
frame, world(i, j, k) = origin + (i, j, k) * spacing in mm; see `volume.py`).

Bones (`long_bones.find_long_bones`): the long-bone components, each with its principal axis `a`,
length and region (the component with its medullary cavity and partial-volume rim).

Fracture (`insert_fracture`). A long bone is drawn with probability proportional to its length.
A position t along `a` is drawn uniformly in the middle third (|t| <= length / 6 about the
centroid); the fracture point p is the centroid of the region's voxels within one voxel of that
cross-section, and the plane normal n is drawn uniformly on the cap within `max_tilt_deg` of `a`.
The gap is the set of region voxels with |(x - p) . n| < gap_mm / 2 within the cross-section's
radius (over cos(tilt)) of p; it becomes `soft_tissue_hu`. A zero gap cuts nothing.

Displacement. The fragment is the part of the region on one side of the plane (the smaller one,
by voxel count; n is flipped to point at it) connected (26-neighbours) to the gap. It moves
rigidly, x -> p + R (x - p) + t, with R a rotation about an axis through p perpendicular to `a`
by an angle drawn in [1/2, 1] x `angulation_deg`, and t of length drawn in [1/2, 1] x
`displacement_mm` (so a displaced fracture is visibly displaced), perpendicular to `a` except
for a random axial part (a fraction up to `axial_fraction` of its length, either sign:
distraction or impaction). The vacated fragment voxels become soft tissue, then every voxel
whose pre-image T^-1(x) falls inside the fragment (trilinear `map_coordinates` of the fragment
mask >= 0.5) takes the fragment's HU there. Only voxels within `neighbourhood_mm` (the largest
move of a fragment voxel plus 1.5 voxels) of the bone's region are ever written. If the cut does
not separate the component (a bone joined to another elsewhere) the moved side breaks again
where it meets the rest; that is left as is.

Negatives (`make_negative`). With probability `p_change` one harmless change: 'jitter' adds one
offset (|offset| <= `jitter_hu`) to every non-air voxel, or 'blob' adds up to `blob_hu` to the
soft-tissue voxels (HU in `soft_range`) of a random ellipsoid; bones are never touched by the
blob. The benchmark applies the same call to positives before their fracture, so "something
changed" is no cue for the label.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from jaxcorr.ct.long_bones import (Bone, CONNECTIVITY_26, expand_box, NoLongBoneError,
                                   require_long_bones)
from jaxcorr.ct.volume import Volume

AIR_HU = -1000.0
NEGATIVE_KINDS = ("none", "jitter", "blob")


@dataclasses.dataclass(frozen=True)
class FractureInfo:
  """What `insert_fracture` did (world mm, LPS).

  Attributes:
    component: the bone's component id (`Bone.label`).
    point: (3,) fracture point p on the plane.
    normal: (3,) unit plane normal, pointing at the moved fragment.
    axis: (3,) the bone's principal axis.
    gap_mm: gap width.
    translation: (3,) translation t of the fragment (zeros when not displaced).
    rotation_axis: (3,) unit angulation axis through p (perpendicular to `axis`).
    rotation_deg: angulation angle (0 when not angulated).
    gap_voxels: voxels of the gap.
    fragment_voxels: voxels of the moved fragment (0 when nothing moved).
    neighbourhood_mm: no voxel farther than this from the bone's region was written.
    changed: bool [X, Y, Z], voxels whose value changed.
  """

  component: int
  point: np.ndarray
  normal: np.ndarray
  axis: np.ndarray
  gap_mm: float
  translation: np.ndarray
  rotation_axis: np.ndarray
  rotation_deg: float
  gap_voxels: int
  fragment_voxels: int
  neighbourhood_mm: float
  changed: np.ndarray

  @property
  def n_changed(self) -> int:
    return int(np.count_nonzero(self.changed))

  @property
  def displaced(self) -> bool:
    return self.fragment_voxels > 0


@dataclasses.dataclass(frozen=True)
class NegativeInfo:
  """What `make_negative` did: `kind` in NEGATIVE_KINDS, the HU `offset` and voxels changed."""

  kind: str
  offset_hu: float
  changed_voxels: int


def _centres(box, volume: Volume):
  """World coordinates (mm) of the voxel centres of `box`, as three broadcastable axes."""
  return tuple((volume.origin[a] + volume.spacing[a] * np.arange(s.start, s.stop)).reshape(
      [-1 if b == a else 1 for b in range(3)]) for a, s in enumerate(box))


def _unit(v):
  return v / np.linalg.norm(v)


def _perpendicular(axis, rng):
  """A uniformly random unit vector perpendicular to `axis`."""
  while True:
    v = rng.normal(size=3)
    v -= v.dot(axis) * axis
    if np.linalg.norm(v) > 1e-6:
      return _unit(v)


def _tilted(axis, max_tilt_deg, rng):
  """A unit vector uniform on the spherical cap within max_tilt_deg of `axis`."""
  cos_tilt = rng.uniform(np.cos(np.deg2rad(max_tilt_deg)), 1.0)
  return _unit(cos_tilt * axis + np.sqrt(max(0.0, 1 - cos_tilt ** 2)) * _perpendicular(axis, rng))


def _rotation(axis, angle_deg):
  """Right-handed rotation matrix about unit `axis` (Rodrigues)."""
  a = np.deg2rad(angle_deg)
  k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
  return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


def _check(name, value, low=0.0, high=np.inf):
  if not low <= value <= high:
    raise ValueError(f"fracture.{name}={value!r} must be in [{low}, {high}]")


def _fragment(side, touching):
  """The 26-connected parts of `side` that contain a `touching` voxel."""
  labels, _ = ndimage.label(side, CONNECTIVITY_26)
  ids = np.unique(labels[touching & side])
  return np.isin(labels, ids[ids > 0])


def _place(bone, region, xs, along, rng, step, max_tilt_deg, max_tries, source):
  """Draws the fracture point and plane normal (module docstring).

  Returns (point (3,), normal (3,), squared distance to the point [box], section radius mm).
  """
  for _ in range(max(1, max_tries)):
    t = rng.uniform(-bone.length_mm / 6, bone.length_mm / 6)
    section = region & (np.abs(along - t) < step)
    if section.any():
      break
  else:
    raise NoLongBoneError(f"{source or 'volume'}: bone {bone.label} has no voxels near its middle "
                          "third; raise fracture.min_elongation to skip such components")
  idx = np.nonzero(section)
  point = np.array([np.broadcast_to(x, region.shape)[idx].mean() for x in xs])
  dist2 = sum((x - q) ** 2 for x, q in zip(xs, point))
  radius = float(np.sqrt(dist2[idx].max())) + step
  return point, _tilted(bone.axis, max_tilt_deg, rng), dist2, radius


def _motion(axis, rng, displacement_mm, angulation_deg, axial_fraction):
  """(translation (3,) mm, angulation angle deg) of a displaced fragment (module docstring)."""
  magnitude = rng.uniform(0.5, 1.0) * displacement_mm
  axial = rng.uniform(0.0, axial_fraction) * rng.choice([-1.0, 1.0])
  translation = magnitude * (np.sqrt(1 - axial ** 2) * _perpendicular(axis, rng) + axial * axis)
  return translation, float(rng.uniform(0.5, 1.0) * angulation_deg)


def _smaller_side(rest, d, touching):
  """The fragment to move: the smaller non-empty side of the plane (d > 0 or d < 0) of `rest`,
  26-connected to the `touching` voxels. Returns (mask or None, True if it is the d < 0 side)."""
  sides = [_fragment(rest & (d > 0), touching), _fragment(rest & (d < 0), touching)]
  counts = [int(side.sum()) for side in sides]
  pick = int(np.argmin([c if c else np.inf for c in counts]))
  return (sides[pick], pick == 1) if counts[pick] else (None, False)


def insert_fracture(volume: Volume, rng: np.random.Generator, *, gap_mm: float = 2.0,
                    displacement_mm: float = 0.0, angulation_deg: float = 0.0,
                    max_tilt_deg: float = 20.0, axial_fraction: float = 0.3,
                    soft_tissue_hu: float = 40.0, min_bone_hu: float = 300.0,
                    min_length_mm: float = 40.0, min_elongation: float = 1.4,
                    edge_hu: float = 150.0, bones: list[Bone] | None = None,
                    max_tries: int = 10) -> tuple[Volume, FractureInfo]:
  """Cuts a gap (and optionally displaces a fragment) in a long bone; see the module docstring.

  Args:
    volume: HU volume.
    rng: every random choice comes from it.
    gap_mm: gap width (0 cuts nothing).
    displacement_mm: largest fragment translation, mm (drawn in [1/2, 1] of it; 0 = none).
    angulation_deg: largest fragment angulation, degrees (drawn in [1/2, 1] of it; 0 = none).
    max_tilt_deg: largest angle between the plane normal and the bone axis, in [0, 90).
    axial_fraction: largest fraction of the translation along the bone axis, in [0, 1].
    soft_tissue_hu: HU written into the gap and the vacated voxels.
    min_bone_hu, min_length_mm, min_elongation, edge_hu: `find_long_bones` settings.
    bones: the volume's `find_long_bones` result, to skip the search (it is per volume).
    max_tries: fracture positions drawn before giving up on a bone with holes along its axis.

  Returns:
    (the fractured Volume, its `FractureInfo`). The input is not modified.

  Raises:
    NoLongBoneError: no component qualifies (names the volume, the thresholds, what to do).
    ValueError: a setting out of range.
  """
  for name, value, high in (("gap_mm", gap_mm, np.inf),
                            ("displacement_mm", displacement_mm, np.inf),
                            ("angulation_deg", angulation_deg, 90.0),
                            ("max_tilt_deg", max_tilt_deg, 89.0),
                            ("axial_fraction", axial_fraction, 1.0)):
    _check(name, value, 0.0, high)
  if bones is None:
    bones = require_long_bones(volume, min_bone_hu=min_bone_hu, min_length_mm=min_length_mm,
                               min_elongation=min_elongation, edge_hu=edge_hu)
  if not bones:
    raise NoLongBoneError(f"{volume.source or 'volume'}: an empty list of bones was passed")
  lengths = np.array([b.length_mm for b in bones])
  bone = bones[int(rng.choice(len(bones), p=lengths / lengths.sum()))]
  spacing = volume.spacing
  step = float(spacing.max())
  # Bound on any fragment voxel's move, so the working box holds the moved fragment.
  diag = float(np.linalg.norm([(s.stop - s.start) for s in bone.box] * spacing))
  reach = displacement_mm + 2 * np.sin(np.deg2rad(angulation_deg) / 2) * diag + 2 * step
  box = expand_box(bone.box, np.ceil(reach / spacing).astype(int) + 1, volume.shape)
  inner = tuple(slice(b.start - o.start, b.stop - o.start) for b, o in zip(bone.box, box))
  region = np.zeros([s.stop - s.start for s in box], bool)
  region[inner] = bone.mask
  xs = _centres(box, volume)
  along = sum((x - c) * a for x, c, a in zip(xs, bone.centroid, bone.axis))

  point, normal, dist2, radius = _place(bone, region, xs, along, rng, step, max_tilt_deg,
                                        max_tries, volume.source)
  reach_cut = radius / np.dot(normal, bone.axis) + gap_mm / 2
  d = sum((x - q) * n for x, q, n in zip(xs, point, normal))
  near = dist2 <= reach_cut ** 2
  cut = region & near & (np.abs(d) < gap_mm / 2)

  hu = np.asarray(volume.data, np.float32)
  work = hu[box].copy()
  work[cut] = soft_tissue_hu
  rot_axis = _perpendicular(bone.axis, rng)
  translation, angle, fragment = np.zeros(3), 0.0, None
  if displacement_mm > 0 or angulation_deg > 0:
    translation, angle = _motion(bone.axis, rng, displacement_mm, angulation_deg, axial_fraction)
    touching = near & (np.abs(d) <= gap_mm / 2 + 1.5 * step)
    fragment, flip = _smaller_side(region & ~cut, d, touching)
    normal = -normal if flip else normal
  moved = 0.0
  if fragment is not None and (np.any(translation != 0) or angle > 0):
    moved = _move_fragment(work, hu[box], fragment, xs, point, _rotation(rot_axis, angle),
                           translation, region, soft_tissue_hu, spacing, step)
  neighbourhood = moved + 1.5 * step
  out = hu.copy()
  out[box] = work
  changed = out != hu
  return volume.replace(data=out), FractureInfo(
      component=bone.label, point=point, normal=normal, axis=bone.axis, gap_mm=float(gap_mm),
      translation=translation if moved else np.zeros(3), rotation_axis=rot_axis,
      rotation_deg=angle if moved else 0.0, gap_voxels=int(cut.sum()),
      fragment_voxels=int(fragment.sum()) if moved else 0, neighbourhood_mm=float(neighbourhood),
      changed=changed)


def _move_fragment(work, hu, fragment, xs, point, rot, translation, region, soft_hu, spacing,
                   step) -> float:
  """Moves `fragment` of `hu` by x -> p + R (x - p) + t into `work` (in place).

  Only the fragment's bounding box grown by the largest move is resampled. Returns that move
  (mm); writes stay within it plus 1.5 voxels of `region`.
  """
  idx = np.nonzero(fragment)
  pts = np.stack([np.broadcast_to(x, fragment.shape)[idx] for x in xs], -1) - point
  moved = float(np.linalg.norm(pts @ rot.T + translation - pts, axis=-1).max())
  work[fragment] = soft_hu
  grow = np.ceil(moved / spacing).astype(int) + 2
  sub = tuple(slice(max(0, int(i.min()) - g), min(n, int(i.max()) + 1 + g))
              for i, g, n in zip(idx, grow, fragment.shape))
  ys = tuple(np.asarray(x)[tuple(s if x.shape[a] > 1 else slice(None) for a, s in enumerate(sub))]
             for x in xs)
  shape = tuple(s.stop - s.start for s in sub)
  grid = np.stack([np.broadcast_to(y, shape) for y in ys], -1).reshape(-1, 3)
  # Pre-image R^T (x - p - t) + p of every voxel centre (row vectors), as indices into the box.
  pre = (grid - point - translation) @ rot + point
  origin = np.array([float(np.ravel(x)[0]) for x in xs])
  coords = ((pre - origin) / spacing).T
  inside = ndimage.map_coordinates(fragment.astype(np.float32), coords, order=1, cval=0.0)
  source = np.where(fragment, hu, np.float32(soft_hu)).astype(np.float32)
  value = ndimage.map_coordinates(source, coords, order=1, cval=soft_hu).reshape(shape)
  allowed = ndimage.distance_transform_edt(~region[sub], sampling=spacing) <= moved + 1.5 * step
  write = (inside.reshape(shape) >= 0.5) & allowed
  work[sub][write] = value[write]
  return moved


def make_negative(volume: Volume, rng: np.random.Generator, *, p_change: float = 0.5,
                  jitter_hu: float = 20.0, blob_hu: float = 30.0,
                  blob_radius_mm: tuple[float, float] = (10.0, 30.0),
                  soft_range: tuple[float, float] = (-200.0, 200.0)) -> tuple[Volume, NegativeInfo]:
  """A harmless change (or none) for a negative sample; see the module docstring.

  Args:
    volume: HU volume.
    rng: every random choice comes from it.
    p_change: probability of a change; 'jitter' and 'blob' are then equally likely.
    jitter_hu: largest |offset| added to every voxel above -900 HU ('jitter').
    blob_hu: largest |offset| added inside the blob ('blob').
    blob_radius_mm: (low, high) range of the blob's three semi-axes, mm.
    soft_range: (low, high) HU of the voxels a blob may change (soft tissue, never bone).

  Returns:
    (the Volume, a `NegativeInfo`); the input is not modified.
  """
  _check("p_change", p_change, 0.0, 1.0)
  hu = np.asarray(volume.data, np.float32)
  if rng.random() >= p_change:
    return volume, NegativeInfo("none", 0.0, 0)
  if rng.random() < 0.5:
    offset = float(rng.uniform(-jitter_hu, jitter_hu))
    mask = hu > AIR_HU + 100
    out = np.where(mask, hu + np.float32(offset), hu).astype(np.float32)
    changed = int(np.count_nonzero(out != hu))
    return volume.replace(data=out), NegativeInfo("jitter", offset, changed)
  soft = (hu > soft_range[0]) & (hu < soft_range[1])
  candidates = np.flatnonzero(soft)
  offset = float(rng.uniform(-blob_hu, blob_hu))
  if candidates.size == 0:
    return volume, NegativeInfo("blob", offset, 0)
  centre = np.array(np.unravel_index(int(rng.choice(candidates)), hu.shape))
  radii = rng.uniform(*blob_radius_mm, size=3) / volume.spacing  # voxels
  lo = np.maximum(np.floor(centre - radii).astype(int), 0)
  hi = np.minimum(np.ceil(centre + radii).astype(int) + 1, hu.shape)
  box = tuple(slice(a, b) for a, b in zip(lo, hi))
  ii = np.ogrid[box]
  inside = sum(((i - c) / r) ** 2 for i, c, r in zip(ii, centre, radii)) <= 1.0
  out = hu.copy()
  write = inside & soft[box]
  out[box][write] += np.float32(offset)
  return volume.replace(data=out), NegativeInfo("blob", offset, int(np.count_nonzero(out != hu)))
