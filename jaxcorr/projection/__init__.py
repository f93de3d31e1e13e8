"""The projection engine: pure JAX kernels on arrays, no files, no configs.

`geometry` (RTK-compatible cone-beam views, 3x4 matrices, patch grids), `drr` (the Joseph
ray-marching projector), `ray_march` (its default marcher through the CT's non-background box),
`labels` (correspondence labels C_ij from the CT), `rtk` (optional bridge to ITK-RTK, tests and
benchmarks only).
"""
