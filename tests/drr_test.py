"""Tests of the Joseph projector: analytic phantoms, a NumPy reference, jit, symmetry, gradients."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxcorr.projection import drr
from jaxcorr.projection.geometry import Views


def _grid(n, spacing):
  x = (np.arange(n) - (n - 1) / 2) * spacing
  return np.meshgrid(x, x, x, indexing="ij"), np.full(3, -(n - 1) / 2 * spacing)


def _views(src, centre, u, v, h, w):
  """One view per row of src/centre/u/v (world mm), detector centred on `centre`."""
  src, centre, u, v = (np.atleast_2d(np.asarray(a, np.float64)) for a in (src, centre, u, v))
  origin = centre - (w - 1) / 2 * u - (h - 1) / 2 * v
  return Views(*(jnp.asarray(a, jnp.float32) for a in (src, origin, u, v)))


def _chords_ball(views, h, w, radius, centre=np.zeros(3)):
  pix = np.asarray(views.pixel_centers(h, w), np.float64)
  src = np.asarray(views.source, np.float64)[:, None, None, :]
  d = pix - src
  d /= np.linalg.norm(d, axis=-1, keepdims=True)
  oc = src - centre
  b = np.sum(oc * d, -1)
  disc = b ** 2 - (np.sum(oc ** 2, -1) - radius ** 2)
  return 2 * np.sqrt(np.maximum(disc, 0))


def test_uniform_ball_matches_analytic_chords():
  n, sp, radius = 96, 1.0, 36.0
  (x, y, z), origin = _grid(n, sp)
  vol = (x ** 2 + y ** 2 + z ** 2 <= radius ** 2).astype(np.float32)
  h = w = 48
  views = _views([[0, 0, 800.0], [800.0, 0, 0]], [[0, 0, -400.0], [-400.0, 0, 0]],
                 [[2.5, 0, 0], [0, 0, -2.5]], [[0, 2.5, 0], [0, 2.5, 0]], h, w)
  img = np.asarray(drr.project_jit(jnp.asarray(vol), origin, np.full(3, sp), views,
                                   height=h, width=w))
  chord = _chords_ball(views, h, w, radius)
  inside = chord > 0.5 * radius  # away from the rim, where voxelisation dominates
  rel = np.abs(img - chord)[inside].sum() / chord[inside].sum()
  assert rel < 0.01, rel
  # The volume integral (sum of line integrals x pixel footprint) is conserved too.
  assert abs(img.sum() / chord.sum() - 1) < 0.01


def test_uniform_box_parallel_rays_give_exact_thickness():
  n, sp = 40, 0.5
  vol = np.zeros((n, n, n), np.float32)
  vol[10:30, 5:35, 12:20] = 2.0  # 20 x 30 x 8 voxels = 10 x 15 x 4 mm, value 2 /mm
  origin = np.zeros(3)
  # Rays along z, far source: nearly parallel; centre pixel passes through the box middle.
  src = np.array([[9.75, 9.75, 1e6]])
  views = _views(src, [[9.75, 9.75, -50.0]], [[0.5, 0, 0]], [[0, 0.5, 0]], 5, 5)
  img = np.asarray(drr.project_jit(jnp.asarray(vol), origin, np.full(3, sp), views,
                                   height=5, width=5))
  np.testing.assert_allclose(img[0], 2.0 * 4.0, rtol=1e-4)
  # Oblique ray through the box along (1, 0, 1) / sqrt2 crossing the 4 mm slab: length 4 sqrt2.
  s = np.array([[9.75 - 1000, 9.75, 7.75 + 1000]])
  q = np.array([[9.75 + 1000, 9.75, 7.75 - 1000]])
  out = drr.project_rays(jnp.asarray(vol), origin, np.full(3, sp), s, q)
  np.testing.assert_allclose(out, 2.0 * 4.0 * np.sqrt(2), rtol=0.01)


def _numpy_joseph(vol, origin, spacing, s, q):
  """Straight-line loop version of Joseph's method (the documented formula), for tiny inputs."""
  dims = np.array(vol.shape)
  s = (s - origin) / spacing
  q = (q - origin) / spacing
  d = q - s
  a = int(np.argmax(np.abs(d)))
  b, c = [ax for ax in range(3) if ax != a]
  total = 0.0
  for m in range(dims[a]):
    t = (m - s[a]) / d[a]
    if not 0 <= t <= 1:
      continue
    p = s + t * d
    acc = 0.0
    for ib, wb in ((np.floor(p[b]), 1 - (p[b] - np.floor(p[b]))), (np.floor(p[b]) + 1, p[b] - np.floor(p[b]))):
      for ic, wc in ((np.floor(p[c]), 1 - (p[c] - np.floor(p[c]))), (np.floor(p[c]) + 1, p[c] - np.floor(p[c]))):
        idx = [0, 0, 0]
        idx[a], idx[b], idx[c] = m, int(ib), int(ic)
        if all(0 <= idx[k] < dims[k] for k in range(3)):
          acc += wb * wc * vol[tuple(idx)]
    total += acc
  return total * np.linalg.norm(d * spacing) / abs(d[a])


def test_matches_numpy_reference_on_random_rays():
  rng = np.random.default_rng(0)
  vol = rng.random((7, 5, 9)).astype(np.float32)
  origin, spacing = np.array([-3.0, -2.0, -5.0]), np.array([1.0, 0.8, 1.2])
  # Random rays through the volume from random directions.
  n = 64
  dirs = rng.normal(size=(n, 3))
  dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
  centre = origin + (np.array(vol.shape) - 1) * spacing / 2 + rng.normal(size=(n, 3))
  s, q = centre - 30 * dirs, centre + 30 * dirs
  got = np.asarray(drr.project_rays(jnp.asarray(vol), origin, spacing, s, q, batch_size=16))
  want = np.array([_numpy_joseph(vol, origin, spacing, s[i], q[i]) for i in range(n)])
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def _small_case(n=24, seed=1):
  rng = np.random.default_rng(seed)
  vol = rng.random((n, n, n)).astype(np.float32)
  origin = np.full(3, -(n - 1) / 2)
  # Second view at 30 deg: away from 45 deg, where rays switch their dominant axis.
  c, s = np.cos(np.pi / 6), np.sin(np.pi / 6)
  views = _views([[0, 0, 100.0], [100 * s, 0, 100 * c]], [[0, 0, -50.0], [-50 * s, 0, -50 * c]],
                 [[1.5, 0, 0], [1.5 * c, 0, -1.5 * s]], [[0, 1.5, 0], [0, 1.5, 0]], 16, 20)
  return vol, origin, views


def test_jit_equals_no_jit_and_chunking_is_invisible():
  vol, origin, views = _small_case()
  a = drr.project(jnp.asarray(vol), origin, np.ones(3), views, height=16, width=20, batch_size=None)
  b = drr.project_jit(jnp.asarray(vol), origin, np.ones(3), views, height=16, width=20, batch_size=37)
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


def test_rotating_volume_equals_rotating_gantry():
  vol, origin, _ = _small_case(n=20)
  h, w = 12, 14
  base = _views([[0, 0, 90.0]], [[0, 0, -45.0]], [[1.7, 0, 0]], [[0, 1.7, 0]], h, w)
  # Rotation by +90 deg about y: (x, y, z) -> (z, y, -x). Rotate the volume's content...
  rot = np.array([[0, 0, 1], [0, 1, 0], [-1, 0, 0]], np.float64)
  vol_rot = np.transpose(vol, (2, 1, 0))[:, :, ::-1]  # new[i,j,k] = old[n-1-k, j, i]
  # ...or rotate source and detector the same way (the volume is centred on the origin).
  moved = Views(*(jnp.asarray(np.asarray(a) @ rot.T, jnp.float32) for a in base))
  a = drr.project_jit(jnp.asarray(vol_rot), origin, np.ones(3), moved, height=h, width=w)
  b = drr.project_jit(jnp.asarray(vol), origin, np.ones(3), base, height=h, width=w)
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-4)


def test_bfloat16_volume_accumulates_in_float32():
  vol, origin, views = _small_case()
  a = drr.project_jit(jnp.asarray(vol), origin, np.ones(3), views, height=16, width=20)
  b = drr.project_jit(jnp.asarray(vol, jnp.bfloat16), origin, np.ones(3), views, height=16, width=20)
  assert b.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-2)


def test_gradients_are_finite_and_match_finite_differences():
  _, origin, views = _small_case(n=12)
  # A smooth blob: trilinear interpolation is only piecewise linear, so finite differences of
  # the geometry agree with the gradient when the volume varies slowly between voxels.
  (x, y, z), _ = _grid(12, 1.0)
  vol = np.exp(-(x ** 2 + 2 * y ** 2 + z ** 2) / 20.0).astype(np.float32)

  def loss(volume, source):
    v = views._replace(source=source)
    return jnp.sum(drr.project(volume, origin, np.ones(3), v, height=16, width=20) ** 2)

  g_vol, g_src = jax.grad(loss, argnums=(0, 1))(jnp.asarray(vol), views.source)
  assert np.all(np.isfinite(g_vol)) and np.all(np.isfinite(g_src))
  assert np.abs(np.asarray(g_vol)).sum() > 0 and np.abs(np.asarray(g_src)).sum() > 0
  # Linearity in the volume: grad of sum(P v) is P^T 1, so <grad, v> = sum(P v) for the
  # linear functional; check through a directional derivative instead for the squared loss.
  dv = np.random.default_rng(3).normal(size=vol.shape).astype(np.float32)
  eps = 1e-2
  fd = (loss(jnp.asarray(vol + eps * dv), views.source)
        - loss(jnp.asarray(vol - eps * dv), views.source)) / (2 * eps)
  np.testing.assert_allclose(float(jnp.vdot(g_vol, dv)), float(fd), rtol=1e-3)
  ds = np.array([[0.3, -0.2, 0.1], [0.0, 0.4, -0.3]], np.float32)
  # A larger step for the geometry: the float32 loss (~2.5e3) moves by only ~1e-2 per 1e-2 mm,
  # close to its rounding, while the image stays piecewise linear over 0.05 mm.
  eps = 5e-2
  fd = (loss(jnp.asarray(vol), views.source + eps * ds)
        - loss(jnp.asarray(vol), views.source - eps * ds)) / (2 * eps)
  np.testing.assert_allclose(float(jnp.vdot(g_src, ds)), float(fd), rtol=2e-2)


def test_batched_over_volumes_with_vmap():
  vol, origin, views = _small_case()
  vols = jnp.stack([jnp.asarray(vol), 2 * jnp.asarray(vol)])
  out = jax.vmap(lambda v: drr.project(v, origin, np.ones(3), views, height=16, width=20))(vols)
  np.testing.assert_allclose(np.asarray(out[1]), 2 * np.asarray(out[0]), rtol=1e-5)


def test_system_matrix_reproduces_the_projector():
  vol, origin, views = _small_case(n=10)
  vol = vol[:, :7, :]  # non-cubic
  a = drr.system_matrix(vol.shape, origin, np.ones(3), views, height=16, width=20)
  assert a.shape == (2, 16 * 20, vol.size)
  img = drr.project_jit(jnp.asarray(vol), origin, np.ones(3), views, height=16, width=20)
  np.testing.assert_allclose(np.asarray(a @ vol.ravel()).reshape(2, 16, 20), np.asarray(img),
                             rtol=1e-5, atol=1e-5)


def test_prepadded_volume_gives_the_same_image():
  vol, origin, views = _small_case()
  a = drr.project_jit(jnp.asarray(vol), origin, np.ones(3), views, height=16, width=20)
  b = drr.project_jit(drr.pad(jnp.asarray(vol)), origin, np.ones(3), views, height=16,
                      width=20, padded=True)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_sharded_over_views_equals_one_call():
  vol, origin, views = _small_case()
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("data",))
  a = drr.project_jit(jnp.asarray(vol), origin, np.ones(3), views, height=16, width=20)
  b = drr.project_sharded(jnp.asarray(vol), origin, np.ones(3), views, mesh, height=16, width=20)
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)
