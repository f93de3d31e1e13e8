"""Cone-beam view geometry: RTK's circular geometry, general 3x4 matrices, patch grids.

Frames and notation (all lengths in mm, all angles in degrees).

  world     ITK's physical frame, which for jaxcorr volumes is LPS (`jaxcorr.ct.volume`):
            +x Left, +y Posterior, +z Superior.
  rotating  RTK's gantry frame (x', y', z'). With every angle zero it coincides with the world
            frame: the source sits on +z' and the detector plane is z' = sid - sdd (behind the
            isocentre, the world origin). A rotating-frame point p' is the world point
                p = M p',   M = Ry(gantry) Rx(out_of_plane) Rz(in_plane),
            with right-handed rotations Rx(a) = [[1, 0, 0], [0, c, -s], [0, s, c]],
            Ry(a) = [[c, 0, s], [0, 1, 0], [-s, 0, c]], Rz(a) = [[c, -s, 0], [s, c, 0], [0, 0, 1]].
            So the gantry turns the whole system about world +y (gantry 90 puts the source on
            +x), the out-of-plane angle tilts it about the rotated x' axis and the in-plane angle
            spins the detector (and the source offset) about the rotated z' axis.
  detector  RTK's projection coordinates (u, v): the ITK physical coordinates of the projection
            image (identity direction). The detector point (u, v) is the rotating-frame point
                (u + px, v + py, sid - sdd),      (px, py) = projection_offset,
            and the source is the rotating-frame point (sx, sy, sid), (sx, sy) = source_offset.
  pixels    A projection of ITK size (W, H) is the NumPy array [H, W]; pixel (row r, column c)
            has detector coordinates (u, v) = (u0 + c * su, v0 + r * sv), where (u0, v0) is the
            image's ITK origin and (su, sv) its ITK spacing. Column index follows u, row index v.

             gantry = 0, seen from +y (y out of the page)         +x ^
                                                                     |
             detector              isocentre             source      +----> +z
             z' = sid - sdd   <------- O <--------------- S (sx, sy, sid)
             u along +x, v along +y           gantry 90 moves S to +x (about +y)

  Parameter     RTK AddProjection         effect (rotating frame)
  sid           sourceToIsocenterDistance source at z' = sid
  sdd           sourceToDetectorDistance  detector plane at z' = sid - sdd
  gantry        gantryAngle               M = Ry(gantry) ..., positive turns +z towards +x
  out_of_plane  outOfPlaneAngle           ... Rx(out_of_plane) ..., positive turns +z' to -y'
  in_plane      inPlaneAngle              ... Rz(in_plane), positive turns +u towards +v
  source_offset (sourceOffsetX, Y)        source at (sx, sy, sid)
  proj. offset  (projOffsetX, Y)          detector coordinate (u, v) at (u + px, v + py)

RTK's projection matrix (`rtk_matrices`, equal to `GetMatrix`) follows from intersecting the
ray through the source S' = (sx, sy, sid) and a rotating-frame point p' = M^T p with the
detector plane: x' = sx + sdd (p'_x - sx) / (sid - p'_z), and u = x' - px (same for v), i.e.

    P_rtk = K [M^T | -S'],   K = [[-sdd, 0, sx - px], [0, -sdd, sy - py], [0, 0, 1]],

whose homogeneous scale w = p'_z - sid is negative in front of the source.

`Views` (what the projector consumes) stores the same geometry explicitly in the world frame.
A volume translation t (the volume moved by +t) is applied as the opposite move of the imaging
system: every source and detector point is shifted by -t, so projecting the untranslated volume
data with these views equals projecting the translated volume with the plain RTK geometry.

General calibrated geometries are 3x4 matrices P mapping world homogeneous points to pixel
indices (column, row, 1) * w (`views_to_matrices` / `views_from_matrices`): with
B = [det_u, det_v, det_origin - source] (columns), P = [B^-1 | -B^-1 source] and
w = 1 on the detector plane, 0 < w < 1 between source and detector.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import jax.numpy as jnp

ArrayLike = jnp.ndarray | float | Sequence[float]

# Rotation taking IEC 61217 fixed coordinates (x patient left, y towards the gantry = superior
# for a head-first supine patient, z up = anterior) to LPS. RTK's orbit axis is +y, so
# `transform_views(views, LPS_FROM_IEC)` turns an RTK orbit into one about the patient's
# long axis (world z), with gantry 0 placing the source anterior.
LPS_FROM_IEC = ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0), (0.0, 1.0, 0.0))
# The orbits a config can name: 'rtk' (about world +y, as RTK) | 'patient' (LPS_FROM_IEC).
ORBITS = ("rtk", "patient")


class Views(NamedTuple):
  """N cone-beam views in world (LPS, mm) coordinates; a pytree, so it can be jitted and vmapped.

  Attributes:
    source: [..., N, 3] source (focal spot) positions.
    det_origin: [..., N, 3] centre of detector pixel (row 0, column 0).
    det_u: [..., N, 3] vector from one pixel centre to the next along a row (column index + 1).
    det_v: [..., N, 3] vector from one pixel centre to the next along a column (row index + 1).

  The centre of pixel (r, c) is det_origin + c * det_u + r * det_v. The detector's shape (H, W)
  is static and passed separately.
  """

  source: jnp.ndarray
  det_origin: jnp.ndarray
  det_u: jnp.ndarray
  det_v: jnp.ndarray

  def pixel_centers(self, height: int, width: int) -> jnp.ndarray:
    """World positions of all pixel centres, [..., N, H, W, 3]."""
    r = jnp.arange(height, dtype=jnp.float32)[:, None, None]
    c = jnp.arange(width, dtype=jnp.float32)[None, :, None]
    o, u, v = (x[..., None, None, :] for x in (self.det_origin, self.det_u, self.det_v))
    return o + c * u + r * v


def _f32(x: ArrayLike) -> jnp.ndarray:
  return jnp.asarray(x, jnp.float32)


def _pair(x: ArrayLike, name: str) -> jnp.ndarray:
  """A (..., 2) float32 array from a scalar or a pair (or [N, 2])."""
  x = _f32(x)
  if x.ndim == 0:
    x = jnp.stack([x, x])
  if x.shape[-1] != 2:
    raise ValueError(f"{name} must be a scalar, a pair or [N, 2]; got shape {x.shape}")
  return x


def rotation_matrices(gantry_angles: ArrayLike, out_of_plane_angles: ArrayLike = 0.,
                      in_plane_angles: ArrayLike = 0.) -> jnp.ndarray:
  """M = Ry(gantry) Rx(out_of_plane) Rz(in_plane): rotating frame -> world, [N, 3, 3].

  Args:
    gantry_angles: [N] or scalar, degrees.
    out_of_plane_angles: broadcastable to the gantry angles, degrees.
    in_plane_angles: broadcastable to the gantry angles, degrees.

  Returns:
    [N, 3, 3] float32 rotations; column k is the rotating frame's k-th axis in world coordinates.
  """
  g, o, i = jnp.broadcast_arrays(*(jnp.deg2rad(_f32(a)) for a in
                                   (gantry_angles, out_of_plane_angles, in_plane_angles)))
  g, o, i = (jnp.atleast_1d(a) for a in (g, o, i))
  zero, one = jnp.zeros_like(g), jnp.ones_like(g)

  def mat(rows):
    return jnp.stack([jnp.stack(r, -1) for r in rows], -2)

  cg, sg, co, so, ci, si = jnp.cos(g), jnp.sin(g), jnp.cos(o), jnp.sin(o), jnp.cos(i), jnp.sin(i)
  ry = mat([[cg, zero, sg], [zero, one, zero], [-sg, zero, cg]])
  rx = mat([[one, zero, zero], [zero, co, -so], [zero, so, co]])
  rz = mat([[ci, -si, zero], [si, ci, zero], [zero, zero, one]])
  return ry @ rx @ rz


def _circular_params(sid, sdd, gantry_angles, out_of_plane_angles, in_plane_angles,
                     source_offset, projection_offset):
  """Broadcasts the per-view RTK parameters to a common [N]; returns them with M [N, 3, 3]."""
  rot = rotation_matrices(gantry_angles, out_of_plane_angles, in_plane_angles)
  sid, sdd = _f32(sid), _f32(sdd)
  so, po = _pair(source_offset, "source_offset"), _pair(projection_offset, "projection_offset")
  n = jnp.broadcast_shapes(rot.shape[:-2], sid.shape, sdd.shape, so.shape[:-1], po.shape[:-1])
  rot = jnp.broadcast_to(rot, n + (3, 3))
  sid, sdd = (jnp.broadcast_to(x, n) for x in (sid, sdd))
  so, po = (jnp.broadcast_to(x, n + (2,)) for x in (so, po))
  return rot, sid, sdd, so, po


def rtk_matrices(*, sid: ArrayLike, sdd: ArrayLike, gantry_angles: ArrayLike,
                 out_of_plane_angles: ArrayLike = 0., in_plane_angles: ArrayLike = 0.,
                 source_offset: ArrayLike = (0., 0.), projection_offset: ArrayLike = (0., 0.),
                 volume_translation: ArrayLike = (0., 0., 0.), **unused) -> jnp.ndarray:
  """RTK's projection matrices (`ThreeDCircularProjectionGeometry::GetMatrix`).

  Args:
    sid, sdd: source-to-isocentre and source-to-detector distances (mm), scalar or [N].
    gantry_angles, out_of_plane_angles, in_plane_angles: degrees, broadcast to [N].
    source_offset, projection_offset: (x, y) mm, a pair or [N, 2].
    volume_translation: (3,) mm; the volume moved by t (P becomes P [I t; 0 1]).
    **unused: the detector arguments of `circular_views` (ignored), so both take one dict.

  Returns:
    [N, 3, 4] float32 matrices: world homogeneous point -> (u, v, 1) * w, (u, v) the detector's
    physical coordinates, with RTK's scale (w < 0 in front of the source).
  """
  del unused
  rot, sid, sdd, so, po = _circular_params(sid, sdd, gantry_angles, out_of_plane_angles,
                                           in_plane_angles, source_offset, projection_offset)
  zero, one = jnp.zeros_like(sid), jnp.ones_like(sid)
  k = jnp.stack([jnp.stack([-sdd, zero, so[..., 0] - po[..., 0]], -1),
                 jnp.stack([zero, -sdd, so[..., 1] - po[..., 1]], -1),
                 jnp.stack([zero, zero, one], -1)], -2)
  src_rot = jnp.concatenate([so, sid[..., None]], -1)                  # S' in the rotating frame
  rt = jnp.swapaxes(rot, -1, -2)
  t = _f32(volume_translation)
  ext = jnp.concatenate([rt, (rt @ t - src_rot)[..., None]], -1)        # [M^T | M^T t - S']
  return k @ ext


def circular_views(*, sid: ArrayLike, sdd: ArrayLike, gantry_angles: ArrayLike,
                   out_of_plane_angles: ArrayLike = 0., in_plane_angles: ArrayLike = 0.,
                   source_offset: ArrayLike = (0., 0.), projection_offset: ArrayLike = (0., 0.),
                   detector_size: tuple[int, int], pixel_spacing: ArrayLike,
                   detector_origin: ArrayLike | None = None,
                   volume_translation: ArrayLike = (0., 0., 0.)) -> Views:
  """Views of RTK's `ThreeDCircularProjectionGeometry` (same parameters, same images).

  Args:
    sid: source-to-isocentre distance (mm), scalar or [N].
    sdd: source-to-detector distance (mm), scalar or [N].
    gantry_angles: [N] or scalar, degrees (RTK's gantryAngle).
    out_of_plane_angles: degrees, broadcast to [N] (RTK's outOfPlaneAngle).
    in_plane_angles: degrees, broadcast to [N] (RTK's inPlaneAngle).
    source_offset: (sourceOffsetX, sourceOffsetY) mm, a pair or [N, 2].
    projection_offset: (projOffsetX, projOffsetY) mm, a pair or [N, 2].
    detector_size: (H, W) pixels, static; the projection array is [H, W].
    pixel_spacing: (sv, su) mm between rows and between columns, or one scalar.
    detector_origin: (u0, v0) mm, the ITK origin of the projection image (pixel (0, 0)), a pair
      or [N, 2]; default centred on the detector: -(size - 1) / 2 * spacing per axis.
    volume_translation: (3,) mm; the volume is moved by t in the world, applied as every source
      and detector moved by -t.

  Returns:
    `Views` with [N, 3] float32 fields; pixel (r, c) of view n is the world point with RTK
    detector coordinates (u0 + c * su, v0 + r * sv).
  """
  h, w = (int(s) for s in detector_size)
  rot, sid, sdd, so, po = _circular_params(sid, sdd, gantry_angles, out_of_plane_angles,
                                           in_plane_angles, source_offset, projection_offset)
  spacing = _pair(pixel_spacing, "pixel_spacing")
  sv, su = spacing[..., 0], spacing[..., 1]
  if detector_origin is None:
    u0, v0 = -(w - 1) / 2 * su, -(h - 1) / 2 * sv
  else:
    origin = _pair(detector_origin, "detector_origin")
    u0, v0 = origin[..., 0], origin[..., 1]
  n = sid.shape
  u0, v0, su, sv = (jnp.broadcast_to(_f32(x), n) for x in (u0, v0, su, sv))
  src_rot = jnp.concatenate([so, sid[..., None]], -1)
  det_rot = jnp.stack([u0 + po[..., 0], v0 + po[..., 1], sid - sdd], -1)
  t = _f32(volume_translation)
  apply = lambda p: jnp.einsum("...ij,...j->...i", rot, p)
  return Views(source=apply(src_rot) - t,
               det_origin=apply(det_rot) - t,
               det_u=rot[..., :, 0] * su[..., None],
               det_v=rot[..., :, 1] * sv[..., None])


def views_to_matrices(views: Views) -> jnp.ndarray:
  """3x4 matrices mapping world homogeneous points to pixel indices.

  Args:
    views: `Views` with [..., 3] fields.

  Returns:
    [..., 3, 4] float32 P with P (x, 1) = (column, row, 1) * w; w = 1 on the detector plane,
    w > 0 in front of the source (0 < w < 1 between source and detector) and w = 0 through it.
  """
  b = jnp.stack([views.det_u, views.det_v, views.det_origin - views.source], -1)
  b_inv = jnp.linalg.inv(b)
  return jnp.concatenate([b_inv, -(b_inv @ views.source[..., None])], -1)


def views_from_matrices(p: ArrayLike, *, detector_distance: ArrayLike | None = None,
                        front_point: ArrayLike = (0., 0., 0.)) -> Views:
  """Views of general 3x4 projection matrices (world homogeneous -> pixel index homogeneous).

  A 3x4 matrix fixes the rays (source = its null space, one ray per pixel) but neither the scale
  of the detector nor which side of the source it lies on. The side is chosen so that
  `front_point` (default the world origin, the isocentre of a C-arm) is in front of the source.
  The detector plane is perpendicular to the principal axis (the third row of P[:, :3], the
  plane's normal) at `detector_distance` from the source; by default twice the distance from
  the source to `front_point` along that axis, i.e. a magnification of 2 at the isocentre.
  Line integrals only depend on the rays as long as the detector lies beyond the volume (the
  projector integrates from the source to each pixel); pass the true source-to-detector
  distance to recover the physical pixel pitch.

  Args:
    p: [..., 3, 4] matrices mapping world (x, 1) to (column, row, 1) * w, any scale or sign
      (e.g. `views_to_matrices`, or RTK's `GetMatrix` composed with its pixel-index map).
    detector_distance: mm, scalar or [...]; see above.
    front_point: (3,) a world point in front of the source, e.g. the isocentre.

  Returns:
    `Views` with [..., 3] float32 fields.
  """
  p = _f32(p)
  a, b = p[..., :3], p[..., 3]
  source = -jnp.linalg.solve(a, b[..., None])[..., 0]
  a3 = a[..., 2, :]
  depth = jnp.einsum("...i,...i->...", a3, _f32(front_point) - source)
  sign = jnp.where(depth < 0, -1.0, 1.0)
  norm = jnp.linalg.norm(a3, axis=-1)
  # |depth| / norm is the distance from the source to front_point along the principal axis.
  dist = 2 * jnp.abs(depth) / norm if detector_distance is None else _f32(detector_distance)
  # Scale P so that its third row is n / dist (n the unit normal): the plane w = 1 is then the
  # detector plane, and B = A^-1 holds the pixel steps and the principal-point offset.
  scale = sign / (dist * norm)
  bmat = jnp.linalg.inv(a * scale[..., None, None])
  return Views(source=source, det_origin=source + bmat[..., 2], det_u=bmat[..., 0],
               det_v=bmat[..., 1])


def coarsen(views: Views, k: int) -> Views:
  """The patch grid: pixel (r, c) of the result is the centre of the k x k patch (r, c).

  Args:
    views: `Views` of a detector whose size is a multiple of k.
    k: patch size in pixels.

  Returns:
    `Views` of the coarse detector (size / k), steps k * det_u and k * det_v.
  """
  half = (k - 1) / 2
  return Views(source=views.source,
               det_origin=views.det_origin + half * (views.det_u + views.det_v),
               det_u=k * views.det_u, det_v=k * views.det_v)


def transform_views(views: Views, rotation: ArrayLike | None = None,
                    translation: ArrayLike = (0., 0., 0.)) -> Views:
  """Moves the imaging system rigidly: x -> R x + t for sources and detectors.

  Equivalent to moving the volume by the inverse transform. `volume_translation=t` of
  `circular_views` is `transform_views(views, None, -t)`.

  Args:
    views: `Views` with [..., 3] fields.
    rotation: (3, 3) rotation R, default identity (e.g. `LPS_FROM_IEC`).
    translation: (3,) t, mm.

  Returns:
    The moved `Views`.
  """
  r = jnp.eye(3, dtype=jnp.float32) if rotation is None else _f32(rotation)
  t = _f32(translation)
  rot = lambda x: x @ r.T
  return Views(source=rot(views.source) + t, det_origin=rot(views.det_origin) + t,
               det_u=rot(views.det_u), det_v=rot(views.det_v))


def magnification(sid: ArrayLike, sdd: ArrayLike) -> jnp.ndarray:
  """Magnification sdd / sid of an object at the isocentre."""
  return _f32(sdd) / _f32(sid)


def fit_pixel_spacing(extent_mm: float, sid: float, sdd: float,
                      detector_size: tuple[int, int]) -> float:
  """Square pixel spacing so that a cube at the isocentre projects inside a centred detector.

  The cube (edge `extent_mm`, any orientation, centred on the isocentre) lies in its
  circumscribed ball of radius rho = extent_mm * sqrt(3) / 2 (half its space diagonal). The cone
  from the source tangent to that ball meets the detector in a disc of radius
  sdd * rho / sqrt(sid^2 - rho^2), slightly more than the magnified half-diagonal
  rho * sdd / sid; the spacing makes that disc's diameter equal the shorter detector side
  (edge to edge). Offsets are not accounted for.

  Args:
    extent_mm: cube edge, mm.
    sid, sdd: source-to-isocentre and source-to-detector distances, mm.
    detector_size: (H, W) pixels.

  Returns:
    Pixel spacing in mm: a Python float for scalar arguments, else an array (e.g. per view, or
    traced under jit, where the containment check cannot run).
  """
  rho = extent_mm * math.sqrt(3) / 2
  scalars = all(isinstance(x, (int, float)) for x in (extent_mm, sid, sdd))
  if scalars and rho >= sid:
    raise ValueError(f"a cube of edge {extent_mm} mm contains the source (sid = {sid} mm)")
  radius = sdd * rho / jnp.sqrt(jnp.asarray(sid, jnp.float32) ** 2 - rho ** 2)
  spacing = 2 * radius / min(detector_size)
  return float(spacing) if scalars else spacing
