"""Synthetic extremity CT phantoms in Hounsfield units: the built-in default data of jaxcorr.

These volumes are procedural and synthetic, not patient data. They let every job and test run on
a fresh machine with no CT files, and give an unlimited supply of distinct volumes.

A phantom is built in a canonical limb frame (mm; +z along the limb towards proximal, +y
posterior, +x across the limb) from two lists of primitives:

  * the body: a smooth union of rounded elliptic cylinders and capsules, soft tissue (~+40 HU)
    with a fat layer (~-100 HU) under the skin, air (-1000 HU) outside;
  * the bones: each a smooth union of tapered capsules and ellipsoids, a cortical shell
    (~1300-1800 HU, a few mm thick) around a cancellous/marrow interior (~200-400 HU). Bones
    that meet at a joint stop a few mm apart, with rounded or condyle-like ends.

Kinds: 'forearm' (radius, ulna, carpals), 'hand' (radius/ulna stubs, carpals, metacarpals and
phalanges: 3 per finger, 2 for the thumb), 'foot' (tibia/fibula stubs, talus, calcaneus,
tarsals, metatarsals, toes) and 'knee' (femur with condyles, tibial plateau, fibular head,
patella). A seeded `np.random.default_rng(seed)` draws the limb's size (scale 0.85-1.15), bone
thickness, fat, tissue densities, finger spread/flexion and its pose: a rotation of up to 30
degrees about each axis plus a small translation. The pose is then shrunk/shifted only as much
as needed to keep a margin of air on all six faces.

The output is a `Volume` of shape (size, size, size) in the LPS frame (data[i, j, k]: i->Left,
j->Posterior, k->Superior), isotropic spacing fov_mm / size, centred on the world origin.
Signed distances (negative inside) are evaluated with vectorised NumPy, the body in z-slabs and
each bone only in its bounding box; a one-voxel linear ramp on the distance gives partial-volume
edges. The same (kind, seed, size, fov_mm) always gives a bitwise identical volume.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxcorr.core.choices import check_choice
from jaxcorr.ct import sdf
from jaxcorr.ct.volume import Volume

KINDS = ("forearm", "hand", "foot", "knee")
DEFAULT_FOV_MM = {"forearm": 300.0, "hand": 280.0, "foot": 300.0, "knee": 300.0}
AIR_HU = -1000.0
_MARGIN = 0.06  # Air margin at each face, as a fraction of the field of view.
_SLAB = 16  # z-slices per slab when evaluating the body over the whole grid.


@dataclasses.dataclass
class _Bone:
  parts: list
  cortex_mm: float  # Thickness of the cortical shell.
  blend_mm: float = 5.0  # Smooth-union width between parts.


def _chain(start, dirs, lengths, radii, gap):
  """Capsule bones laid end to end (phalanges, toes); returns bones as lists of one part each."""
  bones, p = [], np.asarray(start, np.float64)
  for d, length, (r0, r1) in zip(dirs, lengths, radii):
    d = sdf.unit(d)
    bones.append([sdf.Capsule(p + d * r0, p + d * (length - r1), r0, r1)])
    p = p + d * (length + gap)
  return bones, p - d * gap


def _bent(direction, flex_deg, towards=(0.0, -1.0, 0.0)):
  """Rotates `direction` by flex_deg towards `towards` (flexion of a digit)."""
  d, t = sdf.unit(direction), sdf.unit(towards)
  t = sdf.unit(t - np.dot(t, d) * d)
  ang = np.deg2rad(flex_deg)
  return np.cos(ang) * d + np.sin(ang) * t


def _sleeves(bones, extra):
  """Soft-tissue capsules `extra` mm thicker than single-capsule bones (fingers, toes)."""
  return [sdf.Capsule(b[0].a, b[0].b, b[0].ra + extra, b[0].rb + extra) for b in bones]


def _forearm(rng, tf, bf):
  """Radius and ulna side by side, wrist (carpals) at -z, elbow at +z."""
  e = sdf.Ellipsoid
  radius = [sdf.Capsule((13, -2, -68), (7, 0, 72), 6.5 * tf, 5.0 * tf),
            e((12, -2, -72), np.array([14, 9, 9]) * tf), e((8, 0, 80), np.array([8, 8, 5]) * tf)]
  ulna = [sdf.Capsule((-11, 2, -72), (-10, 4, 74), 4.0 * tf, 6.5 * tf),
          e((-11, 2, -76), np.array([6, 6, 5]) * tf), e((-11, 9, 84), np.array([8, 10, 11]) * tf)]
  bones = [_Bone(radius, 2.5), _Bone(ulna, 2.2)]
  for x, z, ax in [(14, -89, 6), (2, -89, 6), (-10, -88, 5), (15, -102, 5), (5, -102, 5),
                   (-5, -102, 5), (-14, -101, 5)]:
    bones.append(_Bone([e((x, rng.uniform(-2, 2), z), np.array([ax, 5, 5]) * tf)], 1.0))
  body = [sdf.Limb((0, 1, -116), (0, 3, 106), (31 * bf, 21 * bf), (42 * bf, 36 * bf), 14.0)]
  return body, bones


def _hand(rng, tf, bf):
  """Wrist stub at -z, carpals, metacarpals and fingers fanning out towards +z."""
  e, bones = sdf.Ellipsoid, []
  bones.append(_Bone([sdf.Capsule((12, 0, -84), (11, 0, -64), 8 * tf, 8 * tf),
                      e((11, 0, -58), np.array([14, 9, 6]) * tf)], 2.0))
  bones.append(_Bone([sdf.Capsule((-14, 2, -84), (-13, 2, -62), 5 * tf, 5.5 * tf)], 1.8))
  for x, z, ax in [(13, -44, 6), (1, -44, 6), (-11, -44, 5), (16, -30, 5), (6, -30, 5),
                   (-4, -30, 5), (-14, -30, 5)]:
    bones.append(_Bone([e((x, rng.uniform(-2, 2), z), np.array([ax, 6, 5]) * tf)], 1.0))
  spread = rng.uniform(0.6, 1.4)
  body = [sdf.Limb((0, 1, -100), (0, 1, -40), (34 * bf, 23 * bf), (38 * bf, 19 * bf), 10.0),
          sdf.Limb((0, 0, -45), (0, -2, 34), (42 * bf, 15 * bf), (44 * bf, 14 * bf), 10.0)]
  fingers = [  # base x, fan angle, metacarpal length, phalanx lengths
      (14, 10, 56, (36, 21, 16)), (4.5, 3, 55, (40, 24, 17)),
      (-4.5, -4, 51, (37, 23, 17)), (-13, -11, 47, (29, 17, 15))]
  for x, fan, mc_len, ph_lens in fingers:
    fan = np.deg2rad(fan * spread)
    d = np.array([np.sin(fan), 0.0, np.cos(fan)])
    mc, tip = _chain((x, 0, -23), [d], [mc_len], [(4.0 * tf, 5.0 * tf)], 3.0)
    flex = np.cumsum(rng.uniform(0, 25, size=3))
    dirs = [_bent(d, f) for f in flex]
    radii = [(4.5 * tf, 4 * tf), (3.7 * tf, 3.3 * tf), (3.2 * tf, 2.6 * tf)]
    ph, end = _chain(tip + d * 3.0, dirs, ph_lens, radii, 3.0)
    bones += [_Bone(b, 1.5) for b in mc + ph]
    body += _sleeves(mc + ph, 5.5 * bf)
  thumb = sdf.unit([0.7 * spread, -0.45, 0.6])
  mc, tip = _chain((21, -5, -27), [thumb], [42], [(4.5 * tf, 5.0 * tf)], 3.0)
  dirs = [_bent(thumb, f, (-1.0, -1.0, 0.0)) for f in np.cumsum(rng.uniform(0, 20, size=2))]
  ph, end = _chain(tip + thumb * 3.0, dirs, [30, 24], [(4.5 * tf, 4 * tf), (3.8 * tf, 3 * tf)], 3.0)
  bones += [_Bone(b, 1.5) for b in mc + ph]
  body += [sdf.Capsule(np.array([12.0, -3, -35]), tip, 14 * bf, 9 * bf)] + _sleeves(ph, 5.5 * bf)
  return body, bones


def _foot(rng, tf, bf):
  """Ankle with tibia/fibula stubs along +z; foot sole near z=0, toes towards -y."""
  e = sdf.Ellipsoid
  bones = [
      _Bone([sdf.Capsule((0, 25, 74), (0, 25, 122), 13 * tf, 12 * tf),
             e((0, 25, 70), np.array([19, 16, 8]) * tf)], 3.0),
      _Bone([sdf.Capsule((26, 31, 40), (25, 33, 122), 6.5 * tf, 5.5 * tf)], 2.0),
      _Bone([e((0, 22, 45), np.array([15, 22, 12]) * tf, sdf.rot(-10, 0, 0))], 1.2),  # Talus.
      _Bone([e((3, 52, 18), np.array([15, 30, 15]) * tf, sdf.rot(-18, 0, 0))], 1.2),  # Calcaneus.
      _Bone([e((-4, -8, 33), np.array([14, 6, 11]) * tf)], 1.0),  # Navicular.
      _Bone([e((18, -4, 22), np.array([10, 13, 10]) * tf)], 1.0),  # Cuboid.
  ]
  for x in (-14, -3, 8):  # Cuneiforms.
    bones.append(_Bone([e((x, -25, 29), np.array([5, 8, 10]) * tf)], 1.0))
  body = [sdf.Limb((0, 28, 12), (0, 28, 145), (40 * bf, 36 * bf), (38 * bf, 35 * bf), 12.0),
          sdf.Limb((3, 92, 24), (0, -90, 14), (40 * bf, 42 * bf), (46 * bf, 18 * bf), 16.0)]
  rays = [(-16, -38, 55, (26, 18), 7.0), (-5, -40, 52, (16, 9, 7), 4.5),
          (4, -38, 50, (15, 9, 7), 4.5), (13, -34, 47, (14, 8, 7), 4.5),
          (21, -20, 45, (12, 7, 6), 4.5)]
  for x, y, mt_len, toe_lens, r in rays:
    d = sdf.unit([0.08 * x / 20 * rng.uniform(0.5, 1.5), -1.0, -0.3])
    mt, tip = _chain((x, y, 32), [d], [mt_len], [(r * tf * 0.8, r * tf)], 3.0)
    flat = sdf.unit([d[0], -1.0, rng.uniform(-0.05, 0.15)])
    radii = [(r * tf * 0.8, r * tf * 0.7)] * len(toe_lens)
    toes, end = _chain(tip + flat * 3.0, [flat] * len(toe_lens), toe_lens, radii, 3.0)
    bones += [_Bone(b, 1.5) for b in mt + toes]
    body += _sleeves(mt + toes, 6 * bf)
  return body, bones


def _knee(rng, tf, bf):
  """Femur (condyles) above, tibia (plateau) and fibula below, patella in front (-y)."""
  e = sdf.Ellipsoid
  femur = [sdf.Capsule((0, 0, 82), (0, 3, 30), 13 * tf, 15 * tf),
           e((0, 5, 20), np.array([30, 22, 16]) * tf),
           e((-19, 10, 8), np.array([13, 22, 14]) * tf),  # Medial and lateral condyles.
           e((19, 10, 9), np.array([13, 21, 14]) * tf)]
  tibia = [e((0, 8, -18), np.array([36, 26, 8]) * tf), e((0, 8, -30), np.array([27, 21, 15]) * tf),
           sdf.Capsule((0, 8, -30), (0, 6, -76), 16 * tf, 12 * tf)]
  fibula = [e((33, 18, -38), np.array([7, 7, 8]) * tf),
            sdf.Capsule((33, 18, -44), (29, 16, -76), 6 * tf, 5 * tf)]
  patella = [e((0, -31, 20 + rng.uniform(-4, 4)), np.array([20, 8, 21]) * tf, sdf.rot(10, 0, 0))]
  bones = [_Bone(femur, 4.0, 8.0), _Bone(tibia, 3.5, 8.0), _Bone(fibula, 2.0), _Bone(patella, 1.5)]
  body = [sdf.Limb((0, -2, -100), (0, -2, 104), (52 * bf, 48 * bf), (58 * bf, 54 * bf), 16.0)]
  return body, bones


_BUILDERS = {"forearm": _forearm, "hand": _hand, "foot": _foot, "knee": _knee}


@dataclasses.dataclass
class _Pose:
  """Canonical -> world: world = scale * rot @ p + shift (mm)."""
  rot: np.ndarray
  scale: float
  shift: np.ndarray

  def canonical(self, wx, wy, wz):
    """Canonical coordinates of broadcastable world coordinate arrays."""
    r, (tx, ty, tz) = (self.rot / self.scale).tolist(), np.asarray(self.shift, float).tolist()
    dx, dy, dz = (np.asarray(w, np.float32) - t for w, t in ((wx, tx), (wy, ty), (wz, tz)))
    return tuple(r[0][n] * dx + r[1][n] * dy + r[2][n] * dz for n in range(3))


def _bounds(parts, pose):
  lo, hi = zip(*(p.world_bounds(pose.rot, pose.scale, pose.shift) for p in parts))
  return np.min(lo, 0), np.max(hi, 0)


def _fit_pose(rng, body, fov):
  """Random rotation, scale and translation, shrunk/shifted so the body keeps an air margin."""
  rot = sdf.rot(*rng.uniform(-30, 30, size=3))
  scale = rng.uniform(0.85, 1.15)
  offset = rng.uniform(-0.04, 0.04, size=3) * fov
  half = fov * (0.5 - _MARGIN)
  lo, hi = _bounds(body, _Pose(rot, 1.0, np.zeros(3)))
  scale = min(scale, 2 * half / (hi - lo).max())
  shift = offset - scale * (lo + hi) / 2
  lo, hi = _bounds(body, _Pose(rot, scale, shift))
  shift = shift + np.maximum(-half - lo, 0) - np.maximum(hi - half, 0)
  return _Pose(rot, scale, shift)


def _index_box(lo, hi, axis, spacing):
  """Voxel index slices covering world bounds [lo, hi] (mm), clipped to the grid."""
  i0 = np.clip(np.floor((lo - axis[0]) / spacing).astype(int) - 1, 0, len(axis))
  i1 = np.clip(np.ceil((hi - axis[0]) / spacing).astype(int) + 2, 0, len(axis))
  return tuple(slice(a, max(a, b)) for a, b in zip(i0, i1))


def _union_sdf(parts, blend, pose, axis, spacing, box, pad):
  """Smooth union of parts' distances (canonical mm) on `box`, each part only near itself.

  Outside a part's bounding box grown by `pad` (world mm) its distance exceeds pad and is left
  at a large value; pad covers the blend width, fat layer and partial-volume ramp.
  """
  shape = tuple(s.stop - s.start for s in box)
  d = np.full(shape, 1e4, np.float32)
  for part in parts:
    lo, hi = part.world_bounds(pose.rot, pose.scale, pose.shift)
    sub = _index_box(lo - pad, hi + pad, axis, spacing)
    sub = tuple(slice(max(s.start, b.start), min(s.stop, b.stop)) for s, b in zip(sub, box))
    if any(s.stop <= s.start for s in sub):
      continue
    coords = pose.canonical(axis[sub[0], None, None], axis[None, sub[1], None],
                            axis[None, None, sub[2]])
    local = tuple(slice(s.start - b.start, s.stop - b.start) for s, b in zip(sub, box))
    d[local] = sdf.smin(d[local], part.sdf(*coords), blend)
  return d


def _ramp(d, width):
  """Occupancy in [0, 1] from a signed distance: a linear partial-volume edge one voxel wide."""
  return np.clip(0.5 - d / width, 0.0, 1.0)


def _render(body, bones, pose, hu, size, spacing):
  """Evaluates body then bones onto a (size,)*3 float32 HU grid centred on the world origin."""
  axis = ((np.arange(size) - (size - 1) / 2) * spacing).astype(np.float64)
  out = np.empty((size, size, size), np.float32)
  width = float(spacing / pose.scale)  # One voxel in canonical mm.
  pad = 3 * spacing + (10.0 + hu["fat_mm"]) * pose.scale
  full = slice(0, size)
  for k0 in range(0, size, _SLAB):
    slab = slice(k0, min(k0 + _SLAB, size))
    d = _union_sdf(body, 10.0, pose, axis, spacing, (full, full, slab), pad)
    tissue = _ramp(d, width)
    muscle = _ramp(d + hu["fat_mm"], width)
    out[:, :, slab] = (AIR_HU + tissue * (hu["fat"] - AIR_HU)
                       + muscle * (hu["muscle"] - hu["fat"]))
  for bone in bones:
    box = _index_box(*_bounds(bone.parts, pose), axis, spacing)
    if any(s.stop <= s.start for s in box):
      continue
    d = _union_sdf(bone.parts, bone.blend_mm, pose, axis, spacing, box,
                   2 * spacing + bone.blend_mm * pose.scale)
    occupied, marrow = _ramp(d, width), _ramp(d + bone.cortex_mm * hu["cortex_scale"], width)
    under = out[box]
    value = under + occupied * (hu["cortical"] - under) + marrow * (hu["marrow"] - hu["cortical"])
    out[box] = np.maximum(under, value)
  return out


def make_phantom(kind: str = "forearm", *, seed: int = 0, size: int = 128,
                 fov_mm: float | None = None) -> Volume:
  """Builds one synthetic extremity CT phantom (HU) centred on the world origin.

  Args:
    kind: one of KINDS: 'forearm', 'hand', 'foot', 'knee'.
    seed: seeds `np.random.default_rng`; same arguments give a bitwise identical volume.
    size: voxels along each axis (the volume is size**3).
    fov_mm: edge length of the cubic field of view; default DEFAULT_FOV_MM[kind].

  Returns:
    A Volume with float32 HU data of shape (size, size, size), isotropic spacing fov_mm / size
    and origin -(size - 1) / 2 * spacing, so the grid is centred on the world origin.

  Raises:
    ValueError: for an unknown kind, a size below 8 or a non-positive fov_mm.
  """
  check_choice("phantom kind", kind, KINDS)
  if int(size) != size or size < 8:
    raise ValueError(f"Phantom size must be an integer >= 8, got {size!r}.")
  fov = float(DEFAULT_FOV_MM[kind] if fov_mm is None else fov_mm)
  if not fov > 0:
    raise ValueError(f"fov_mm must be positive, got {fov_mm!r}.")
  size, spacing = int(size), fov / int(size)
  rng = np.random.default_rng(seed)
  tf, bf = rng.uniform(0.85, 1.2), rng.uniform(0.9, 1.15)  # Bone and soft-tissue thickness.
  hu = dict(cortical=rng.uniform(1300, 1800), marrow=rng.uniform(220, 380),
            muscle=rng.uniform(30, 60), fat=rng.uniform(-120, -80),
            fat_mm=rng.uniform(3, 8), cortex_scale=rng.uniform(0.8, 1.3))
  hu = {key: float(value) for key, value in hu.items()}
  body, bones = _BUILDERS[kind](rng, tf, bf)
  pose = _fit_pose(rng, body, fov)
  data = _render(body, bones, pose, hu, size, spacing)
  origin = np.full(3, -(size - 1) / 2 * spacing)
  source = f"synthetic {kind} phantom (seed={seed}, size={size}, fov={fov:g} mm)"
  return Volume(data=data, spacing=np.full(3, spacing), origin=origin, source=source)


def random_phantom(seed: int, *, size: int = 128, fov_mm: float | None = None) -> Volume:
  """A phantom whose kind is also drawn from the seed.

  The kind comes from a stream independent of make_phantom's (`default_rng((seed, 1))`), so
  `random_phantom(s)` equals `make_phantom(kind, seed=s)` for the drawn kind.

  Args:
    seed: integer seed for both the kind and the phantom.
    size: voxels along each axis.
    fov_mm: field of view in mm; default depends on the drawn kind.

  Returns:
    The Volume from `make_phantom`.
  """
  kind = KINDS[int(np.random.default_rng((seed, 1)).integers(len(KINDS)))]
  return make_phantom(kind, seed=seed, size=size, fov_mm=fov_mm)
