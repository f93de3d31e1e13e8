"""A fused Joseph projector for GPUs in Pallas: samples never leave the registers.

`jaxcorr.projection.drr` defines the projector (notation, frames and units are in its docstring)
and `jaxcorr.projection.ray_march` the clipped walk this kernel shares: a ray from s to q, both in
continuous voxel index coordinates of the zero-padded volume's grid, is sampled on each plane
x_a = m of its dominant axis a where it can see the content box (planes m0 .. m0 + count - 1,
`ray_march.ray_planes`), with the value bilinearly interpolated in the two other axes (b, c):

    I = dl ( sum_{k < count} [sample(m0 + k) - b g_b g_c]  +  b G ),

b the background (air) value and b G its share over all of Joseph's planes in closed form
(`ray_march.grid_integral`).

How the work is cut.
  rays       the per-ray constants (`RayPlanes`: strides, x0, dx, sizes, t limits, m0, count,
             dl) are computed by XLA, elementwise, before the kernel, and the closed-form
             background term after it: [R] arrays, a few floats per ray.
  program    one Pallas program per block of B rays (B = 256 by default, `drr.project`'s
             batch_size: one 16 x 16 pixel tile, so the rays of a block cross the same
             planes and read neighbouring voxels), two rays per GPU thread. It loops over
             k = 0 .. max(count) - 1 of its own rays, K planes per iteration (unrolled),
             computes each sample's four bilinear corners as flat indices of the padded
             volume and loads them (a gather from the flat volume, which stays in global
             memory / L2), and adds the weighted sum to a [B] float32 accumulator held in
             registers. Only the [B] sums are written: the [R, M] samples of the dense
             kernel never go to memory.
  volume     the flat padded volume (`drr.pad(volume).reshape(-1)`, float32 or bfloat16), one
             whole-array operand; every index the kernel forms lies inside it (coordinates
             clipped to [-1, n], masked samples read element 0), so loads need no masks.

Lowering: on a GPU, Pallas' Triton backend (a computed index array becomes a pointer tensor;
the loop with its data-dependent bound becomes an scf.for); on a CPU, Pallas' interpret mode
(chosen automatically), which runs the same kernel body as XLA ops, for tests. TPUs are not
supported (Mosaic has no vector gather from memory): use 'dense' there.

The result equals the clipped marcher's and the dense kernel's sums up to float32 rounding
(the order of the additions). The loop is forward-only; `drr.project_rays` differentiates
through the dense formulation (a custom JVP), as for 'clipped'.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from jaxcorr.projection import ray_march

BLOCK = 256     # rays per program (a power of two, as Triton's tensors require)
PLANES = 4      # planes per loop iteration (unrolled)


def _kernel(bg_ref, volume_ref, *refs, planes: int):
  """One program: the [B] box sums of its block of rays. refs: the `RayPlanes` fields' [B]
  blocks, then the [B] output block."""
  *field_refs, out_ref = refs
  r = ray_march.RayPlanes(*(ref[...] for ref in field_refs))
  bg = bg_ref[0]
  read = lambda i: volume_ref[i].astype(jnp.float32)
  steps = jax.lax.div(jnp.max(r.count) + (planes - 1), planes)

  def body(i, acc):
    return acc + ray_march.planes_sum(read, r, i * planes, planes, bg)

  out_ref[...] = jax.lax.fori_loop(0, steps, body, jnp.zeros_like(r.step_mm))


def _call(flat, bg, rays: ray_march.RayPlanes, *, block: int, planes: int, interpret: bool):
  """The kernel over [R] rays (R a multiple of `block`): [R] float32 box sums."""
  n_rays = rays.count.shape[0]
  ray_spec = pl.BlockSpec((block,), lambda i: (i,))
  whole = pl.BlockSpec()   # the whole array, the same for every program
  extra = {}
  if not interpret:
    # Imported here: the Triton module is only needed (and only lowers) for GPUs.
    from jax.experimental.pallas import triton as pltriton  # pylint: disable=g-import-not-at-top
    # Two rays per thread (a warp is 32 threads), from 1 to 8 warps.
    warps = min(max(block // 64, 1), 8)
    extra["compiler_params"] = pltriton.CompilerParams(num_warps=warps, num_stages=1)
  return pl.pallas_call(
      functools.partial(_kernel, planes=planes),
      out_shape=jax.ShapeDtypeStruct((n_rays,), jnp.float32),
      grid=(n_rays // block,),
      in_specs=[whole, whole] + [ray_spec] * len(rays),
      out_specs=ray_spec,
      interpret=interpret,
      name="fused_drr",
      **extra,
  )(jnp.reshape(bg, (1,)), flat, *rays)


def march_fused(flat, dims, strides, spacing, s, q, box, bg=0.0, *, block: int = BLOCK,
                planes: int = PLANES, interpret: bool | None = None) -> jnp.ndarray:
  """Joseph line integrals of rays s -> q through the box's planes, one fused Pallas kernel.

  Args:
    flat: the zero-padded, flattened volume (`drr.pad(volume).reshape(-1)`), float32 or
      bfloat16.
    dims, strides, spacing: unpadded shape (static), padded strides (static) and voxel size
      in mm, as in `ray_march.ray_planes`.
    s, q: [R, 3] rays in voxel index coordinates; runs of `block` consecutive rays should be
      neighbours (a detector tile), since a program loops as long as its longest ray.
    box: int32 [2, 3]: every voxel outside it equals `bg` (`ray_march.content_box`, or
      `ray_march.full_box`).
    bg: the background value (`ray_march.background`).
    block: rays per program (B), a power of two.
    planes: planes per loop iteration (K), static.
    interpret: run in Pallas' interpret mode; None: on a CPU backend only.

  Returns:
    [R] float32 line integrals.
  """
  if block & (block - 1):
    raise ValueError(f"drr batch_size={block} for method='fused' (rays per program) must be "
                     "a power of two (Triton's tensors), e.g. 256.")
  if interpret is None:
    interpret = jax.default_backend() == "cpu"
  if jax.default_backend() == "tpu" and not interpret:
    raise ValueError("drr method='fused' is a GPU (Triton) kernel; on a TPU use 'dense'.")
  n_rays = s.shape[0]
  pad = -n_rays % block
  # Padding rays repeat the last one; their sums are dropped.
  s = jnp.pad(s, ((0, pad), (0, 0)), mode="edge")
  q = jnp.pad(q, ((0, pad), (0, 0)), mode="edge")
  rays = ray_march.ray_planes(dims, strides, spacing, s, q, box)
  bg = jnp.asarray(bg, jnp.float32)
  box_sums = _call(flat, bg, rays, block=block, planes=planes, interpret=interpret)
  return ((box_sums + bg * ray_march.grid_integral(rays)) * rays.step_mm)[:n_rays]
