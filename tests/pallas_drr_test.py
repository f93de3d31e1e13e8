"""Tests of the fused Pallas DRR kernel (interpret mode on a CPU): the dense kernel's images and
gradients, and a Triton lowering for GPUs."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcorr.projection import drr, pallas_drr, ray_march
from jaxcorr.projection.geometry import Views

H = W = 8


def _case(background=0.0, n=16, seed=0):
  """A 16^3 volume with `background` around a random block, and 2 views (0 and 30 degrees,
  the second away from 45 degrees, where rays switch their dominant axis)."""
  rng = np.random.default_rng(seed)
  vol = np.full((n, n, n), background, np.float32)
  vol[3:13, 4:12, 2:14] = rng.random((10, 8, 12))
  origin = np.full(3, -(n - 1) / 2)
  c, s = np.cos(np.pi / 6), np.sin(np.pi / 6)
  src = np.array([[0, 0, 60.0], [60 * s, 0, 60 * c]])
  centre = np.array([[0, 0, -30.0], [-30 * s, 0, -30 * c]])
  u = np.array([[3.0, 0, 0], [3.0 * c, 0, -3.0 * s]])
  v = np.array([[0, 3.0, 0], [0, 3.0, 0]])
  det_origin = centre - (W - 1) / 2 * u - (H - 1) / 2 * v
  views = Views(*(jnp.asarray(a, jnp.float32) for a in (src, det_origin, u, v)))
  return jnp.asarray(vol), origin, views


def _render(vol, origin, views, method, batch_size=None):
  return np.asarray(drr.project_jit(vol, origin, np.ones(3), views, height=H, width=W,
                                    method=method, batch_size=batch_size))


# Air around the block with the default 256 rays per program (16 x 16 tiles, padded from
# 8 x 8), and a non-zero background with 64 rays per program (8 x 8 tiles).
@pytest.mark.parametrize("background,rays_per_program", [(0.0, None), (0.37, 64)])
def test_fused_images_equal_the_dense_kernel(background, rays_per_program):
  vol, origin, views = _case(background)
  dense = _render(vol, origin, views, "dense")
  fused = _render(vol, origin, views, "fused", rays_per_program)
  assert fused.shape == (2, H, W) and dense.max() > 1.0
  # Pixels through the random block and through the background only: no trivial image.
  assert np.ptp(dense) > 3.0 and len(np.unique(dense.round(3))) > 40
  np.testing.assert_allclose(fused, dense, rtol=0, atol=1e-5 * dense.max())


def test_fused_vmapped_over_a_bfloat16_bank_equals_dense():
  # As a training batch renders: vmapped over samples, each its own bfloat16 volume and views
  # (the batch becomes a second grid axis of the kernel).
  vol, origin, views = _case(0.1)
  vols = jnp.stack([vol, 2 * vol[::-1]]).astype(jnp.bfloat16)
  batch_views = jax.tree.map(lambda a: jnp.stack([a, a[::-1]]), views)

  def render(method):
    one = lambda v, vw: drr.project(v, origin, np.ones(3), vw, height=H, width=W, method=method)
    return np.asarray(jax.jit(jax.vmap(one))(vols, batch_views))

  dense, fused = render("dense"), render("fused")
  assert fused.shape == (2, 2, H, W) and fused.dtype == np.float32
  assert not np.allclose(dense[0], dense[1])
  np.testing.assert_allclose(fused, dense, rtol=0, atol=1e-5 * dense.max())


def test_fused_rays_of_any_count_equal_dense():
  # 37 rays (padded to one program of 256 inside), some missing the volume, some ending in it.
  rng = np.random.default_rng(1)
  vol, origin, _ = _case(0.2)
  dirs = rng.normal(size=(37, 3))
  dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
  start = rng.normal(size=(37, 3)) * 4 - 20 * dirs
  end = start + rng.uniform(10, 50, size=(37, 1)) * dirs
  rays = jax.jit(drr.project_rays, static_argnames="method")
  got = rays(vol, origin, np.ones(3), start, end, method="fused")
  want = rays(vol, origin, np.ones(3), start, end, method="dense")
  assert np.count_nonzero(np.asarray(want) == 0) < 37
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=1e-5)


def test_fused_gradients_are_the_dense_ones():
  vol, origin, views = _case(0.1)

  def loss(method, volume, source):
    img = drr.project(volume, origin, np.ones(3), views._replace(source=source), height=H,
                      width=W, method=method)
    return jnp.sum(img ** 2)

  grad = lambda method: jax.jit(jax.grad(functools.partial(loss, method), argnums=(0, 1)))(
      vol, views.source)
  fused, dense = grad("fused"), grad("dense")
  assert np.abs(np.asarray(fused[0])).sum() > 0 and np.abs(np.asarray(fused[1])).sum() > 0
  np.testing.assert_allclose(np.asarray(fused[0]), np.asarray(dense[0]), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(np.asarray(fused[1]), np.asarray(dense[1]), rtol=1e-4, atol=1e-3)


def test_fused_kernel_lowers_to_triton_for_gpus():
  # Lowering (not compiling) for CUDA runs on a CPU-only host: every primitive of the kernel
  # body has a Triton rule (the gathers, the data-dependent loop, the reduction).
  vol, _, _ = _case()
  flat, strides, dims = drr._padded_flat(vol)  # pylint: disable=protected-access
  fn = functools.partial(pallas_drr.march_fused, dims=dims, strides=tuple(int(x) for x in strides),
                         interpret=False)
  rays = jnp.zeros((512, 3), jnp.float32)
  try:
    lowered = jax.jit(fn).trace(flat, spacing=jnp.ones(3), s=rays, q=rays + 1.0,
                                box=ray_march.full_box(dims), bg=0.0).lower(
                                    lowering_platforms=("cuda",))
  except (ImportError, RuntimeError) as e:  # a jaxlib built without the Triton dialect
    pytest.skip(f"this jaxlib cannot lower Pallas kernels for CUDA: {e}")
  text = lowered.as_text()
  assert "xla.gpu.triton" in text and 'name = "fused_drr"' in text
  assert "grid_x = 2" in text                  # 512 rays, 256 per program


def test_fused_block_must_be_a_power_of_two():
  vol, _, _ = _case()
  flat, strides, dims = drr._padded_flat(vol)  # pylint: disable=protected-access
  with pytest.raises(ValueError, match="batch_size=100 for method='fused'.*power of two"):
    pallas_drr.march_fused(flat, dims, strides, jnp.ones(3), jnp.zeros((4, 3)),
                           jnp.ones((4, 3)), ray_march.full_box(dims), block=100)
