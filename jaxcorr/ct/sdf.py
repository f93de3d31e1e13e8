"""Signed-distance primitives for the procedural phantoms (canonical frame, millimetres).

Each shape gives `sdf(x, y, z)` (negative inside) on broadcastable float32 grids, and
`world_bounds(rot, scale, shift)`, the axis-aligned box of the shape after the phantom's pose,
so the renderer evaluates a shape only near itself. `smin` is the smooth union of two fields.
"""

from __future__ import annotations

import dataclasses

import numpy as np


def unit(v):
  v = np.asarray(v, np.float64)
  return v / np.linalg.norm(v)


def rot(ax=0.0, ay=0.0, az=0.0):
  """Rotation matrix Rz @ Ry @ Rx for angles in degrees."""
  a, b, c = np.deg2rad([ax, ay, az])
  rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
  ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
  rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
  return rz @ ry @ rx


def smin(a, b, k):
  """Polynomial smooth minimum (smooth union of two distance fields) with blend width k mm."""
  if k <= 0:
    return np.minimum(a, b)
  k = float(k)
  h = np.clip(0.5 + (0.5 / k) * (b - a), 0.0, 1.0)
  return b + (a - b) * h - k * h * (1.0 - h)


@dataclasses.dataclass
class Capsule:
  """Segment a->b with a radius tapering linearly from ra to rb (canonical mm)."""
  a: np.ndarray
  b: np.ndarray
  ra: float
  rb: float

  def sdf(self, x, y, z):
    # Python floats keep float32 grids float32 (NumPy scalars would promote them to float64).
    a, b = np.asarray(self.a, np.float64), np.asarray(self.b, np.float64)
    ba, inv = (b - a).tolist(), 1.0 / float((b - a).dot(b - a))
    dx, dy, dz = x - float(a[0]), y - float(a[1]), z - float(a[2])
    t = np.clip((dx * ba[0] + dy * ba[1] + dz * ba[2]) * inv, 0.0, 1.0)
    dist = np.sqrt((dx - t * ba[0]) ** 2 + (dy - t * ba[1]) ** 2 + (dz - t * ba[2]) ** 2)
    return dist - (float(self.ra) + t * float(self.rb - self.ra))

  def world_bounds(self, rot, scale, shift):
    ends = (np.stack([self.a, self.b]) @ rot.T) * scale + shift
    pad = scale * max(self.ra, self.rb)
    return ends.min(0) - pad, ends.max(0) + pad


@dataclasses.dataclass
class Ellipsoid:
  """Ellipsoid with semi-axes `axes` along the columns of rotation `frame` (canonical mm)."""
  c: np.ndarray
  axes: np.ndarray
  frame: np.ndarray = dataclasses.field(default_factory=lambda: np.eye(3))

  def sdf(self, x, y, z):
    c, e, r = np.asarray(self.c, float).tolist(), self.frame.tolist(), np.asarray(self.axes, float)
    r, rmin = r.tolist(), float(r.min())
    dx, dy, dz = x - c[0], y - c[1], z - c[2]
    q = [dx * e[0][n] + dy * e[1][n] + dz * e[2][n] for n in range(3)]
    k0 = np.sqrt(sum((q[n] / r[n]) ** 2 for n in range(3)))
    k1 = np.sqrt(sum((q[n] / r[n] ** 2) ** 2 for n in range(3)))
    # k0 (k0 - 1) / k1 is a first-order distance bound; its limit at the centre is -min(axes).
    ratio = np.where(k1 > 1e-6, k0 / np.maximum(k1, 1e-6), rmin)
    return (k0 - 1.0) * ratio

  def world_bounds(self, rot, scale, shift):
    centre = rot @ self.c * scale + shift
    half = scale * np.sqrt((((rot @ self.frame) * self.axes) ** 2).sum(1))
    return centre - half, centre + half


@dataclasses.dataclass
class Limb:
  """Rounded cylinder a->b with elliptic cross-section, semi-axes tapering from s0 to s1.

  `side` picks the direction of the first semi-axis (projected perpendicular to the axis);
  `rr` rounds the end edges.
  """
  a: np.ndarray
  b: np.ndarray
  s0: tuple
  s1: tuple
  rr: float
  side: tuple = (1.0, 0.0, 0.0)

  def sdf(self, x, y, z):
    a, b = np.asarray(self.a, np.float64), np.asarray(self.b, np.float64)
    length = float(np.linalg.norm(b - a))
    u = (b - a) / length
    v = unit(np.asarray(self.side) - np.dot(self.side, u) * u)
    u, v, w, a = u.tolist(), v.tolist(), np.cross(u, v).tolist(), a.tolist()
    (s0a, s0b), (s1a, s1b), rr = map(float, self.s0), map(float, self.s1), float(self.rr)
    dx, dy, dz = x - a[0], y - a[1], z - a[2]
    h = dx * u[0] + dy * u[1] + dz * u[2]
    p = dx * v[0] + dy * v[1] + dz * v[2]
    q = dx * w[0] + dy * w[1] + dz * w[2]
    t = np.clip(h / length, 0.0, 1.0)
    sa, sb = s0a + t * (s1a - s0a), s0b + t * (s1b - s0b)
    k0 = np.sqrt((p / sa) ** 2 + (q / sb) ** 2)
    k1 = np.sqrt((p / sa**2) ** 2 + (q / sb**2) ** 2)
    radial = (k0 - 1.0) * np.where(k1 > 1e-6, k0 / np.maximum(k1, 1e-6), np.minimum(sa, sb))
    dr, da = radial + rr, np.abs(h - length / 2) - length / 2 + rr
    outside = np.sqrt(np.maximum(dr, 0) ** 2 + np.maximum(da, 0) ** 2)
    return outside + np.minimum(np.maximum(dr, da), 0) - rr

  def world_bounds(self, rot, scale, shift):
    # The solid is the convex hull of its two elliptic end discs, so their boxes bound it.
    a, b = np.asarray(self.a, np.float64), np.asarray(self.b, np.float64)
    u = unit(b - a)
    v = unit(np.asarray(self.side) - np.dot(self.side, u) * u)
    rv, rw = rot @ v, rot @ np.cross(u, v)
    lo, hi = [], []
    for end, (sa, sb) in ((a, self.s0), (b, self.s1)):
      centre = rot @ end * scale + shift
      half = scale * np.sqrt((sa * rv) ** 2 + (sb * rw) ** 2)
      lo.append(centre - half)
      hi.append(centre + half)
    return np.min(lo, 0), np.max(hi, 0)
