"""Tests for jaxcorr.projection.geometry: RTK equivalence, matrix round trips, patch grids, translations.

The RTK comparisons need itk-rtk (`pip install itk-rtk`); they are skipped without it.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest

from jaxcorr.projection import geometry

H, W = 6, 10
# itk's SWIG bindings warn on import under Python 3.11+.
pytestmark = pytest.mark.filterwarnings("ignore:builtin type:DeprecationWarning")


@functools.lru_cache(maxsize=None)
def _rtk():
  """The `itk` module if it carries RTK, else None (importing it takes ~15 s, so only once)."""
  try:
    import itk  # pylint: disable=g-import-not-at-top
    itk.ThreeDCircularProjectionGeometry  # pylint: disable=pointless-statement
    return itk
  except (ImportError, AttributeError):
    return None


@pytest.fixture(scope="module")
def itk():
  mod = _rtk()
  if mod is None:
    pytest.skip("itk with RTK (pip install itk-rtk) is not installed")
  return mod


def _random_params(n, seed=0):
  """n random RTK parameter sets (every angle and offset nonzero), as circular_views kwargs."""
  rng = np.random.default_rng(seed)
  sid = rng.uniform(400, 1200, n)
  return dict(
      sid=sid, sdd=sid + rng.uniform(100, 800, n),
      gantry_angles=rng.uniform(-360, 360, n),
      out_of_plane_angles=rng.uniform(-40, 40, n),
      in_plane_angles=rng.uniform(-180, 180, n),
      source_offset=rng.uniform(-60, 60, (n, 2)),
      projection_offset=rng.uniform(-80, 80, (n, 2)),
      detector_size=(H, W),
      pixel_spacing=(1.3, 0.7),
      detector_origin=rng.uniform(-100, 100, (n, 2)))


def _rtk_geometry(itk, params):
  g = itk.ThreeDCircularProjectionGeometry.New()
  for i in range(len(params["sid"])):
    g.AddProjection(float(params["sid"][i]), float(params["sdd"][i]),
                    float(params["gantry_angles"][i]),
                    float(params["projection_offset"][i, 0]),
                    float(params["projection_offset"][i, 1]),
                    float(params["out_of_plane_angles"][i]), float(params["in_plane_angles"][i]),
                    float(params["source_offset"][i, 0]), float(params["source_offset"][i, 1]))
  return g


def _np(itk, m):
  return np.asarray(itk.array_from_vnl_matrix(m.GetVnlMatrix().as_matrix()), np.float64)


def _pixel_index_map(params):
  """[N, 3, 3] maps from detector (u, v, 1) to (column, row, 1)."""
  sv, su = params["pixel_spacing"]
  u0, v0 = params["detector_origin"][:, 0], params["detector_origin"][:, 1]
  m = np.zeros((len(u0), 3, 3))
  m[:, 0, 0], m[:, 0, 2] = 1 / su, -u0 / su
  m[:, 1, 1], m[:, 1, 2] = 1 / sv, -v0 / sv
  m[:, 2, 2] = 1
  return m


def _dehom(x):
  return x[..., :2] / x[..., 2:]


def _apply(p, x):
  return np.einsum("...ij,...j->...i", np.asarray(p, np.float64),
                   np.concatenate([x, np.ones(x.shape[:-1] + (1,))], -1))


def _assert_views_close(a, b, atol):
  for name, x, y in zip(geometry.Views._fields, a, b):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, err_msg=name)


def test_rtk_matrices_equal_rtk_get_matrix(itk):
  params = _random_params(64)
  g = _rtk_geometry(itk, params)
  ours = np.asarray(geometry.rtk_matrices(**params))
  assert ours.shape == (64, 3, 4) and ours.dtype == np.float32
  for i in range(64):
    ref = _np(itk, g.GetMatrix(i))
    np.testing.assert_allclose(ours[i], ref, atol=1e-4 * np.abs(ref).max(), err_msg=f"view {i}")


def test_source_and_detector_equal_rtk(itk):
  params = _random_params(32, seed=1)
  g = _rtk_geometry(itk, params)
  views = geometry.circular_views(**params)
  sv, su = params["pixel_spacing"]
  for i in range(32):
    np.testing.assert_allclose(views.source[i], np.asarray(g.GetSourcePosition(i))[:3], atol=2e-3)
    # RTK's projection-coordinates-to-world matrix: pixel (0, 0), and one step along u and v.
    m = _np(itk, g.GetProjectionCoordinatesToFixedSystemMatrix(i))
    u0, v0 = params["detector_origin"][i]
    np.testing.assert_allclose(views.det_origin[i], (m @ [u0, v0, 0, 1])[:3], atol=2e-3)
    np.testing.assert_allclose(views.det_u[i], m[:3, 0] * su, atol=1e-5)
    np.testing.assert_allclose(views.det_v[i], m[:3, 1] * sv, atol=1e-5)


def _check_pixels_project_to_uv(p_rtk, params):
  views = geometry.circular_views(**params)
  centres = np.asarray(views.pixel_centers(H, W), np.float64)            # [N, H, W, 3]
  sv, su = params["pixel_spacing"]
  u0, v0 = params["detector_origin"][:, 0], params["detector_origin"][:, 1]
  u = u0[:, None, None] + su * np.arange(W)[None, None, :]
  v = v0[:, None, None] + sv * np.arange(H)[None, :, None]
  uv = _dehom(_apply(p_rtk[:, None, None], centres))
  np.testing.assert_allclose(uv[..., 0], np.broadcast_to(u, uv.shape[:-1]), atol=2e-3)
  np.testing.assert_allclose(uv[..., 1], np.broadcast_to(v, uv.shape[:-1]), atol=2e-3)
  w_src = _apply(p_rtk, np.asarray(views.source, np.float64))[:, 2]
  scale = np.abs(p_rtk[:, 2, :3]).sum(-1) * np.asarray(params["sid"])
  assert np.all(np.abs(w_src) < 1e-5 * scale)                            # source -> infinity


def test_pixel_centres_project_to_their_rtk_coordinates(itk):
  params = _random_params(16, seed=2)
  g = _rtk_geometry(itk, params)
  _check_pixels_project_to_uv(np.stack([_np(itk, g.GetMatrix(i)) for i in range(16)]), params)


def test_pixel_centres_project_through_rtk_matrices():
  params = _random_params(16, seed=3)
  _check_pixels_project_to_uv(np.asarray(geometry.rtk_matrices(**params), np.float64), params)


def test_gantry_rotates_source_about_y_like_rtk(itk):
  sid = 800.
  views = geometry.circular_views(sid=sid, sdd=1200., gantry_angles=[0., 30., 90.],
                                  detector_size=(H, W), pixel_spacing=1.)
  # Positive gantry angles turn +z towards +x: a right-handed rotation about +y.
  expected = sid * np.array([[0, 0, 1], [0.5, 0, np.sqrt(3) / 2], [1, 0, 0]])
  np.testing.assert_allclose(views.source, expected, atol=1e-3)
  g = itk.ThreeDCircularProjectionGeometry.New()
  g.AddProjection(sid, 1200., 90., 0., 0., 0., 0., 0., 0.)
  np.testing.assert_allclose(np.asarray(g.GetSourcePosition(0))[:3], expected[2], atol=1e-6)


def test_default_detector_origin_is_centred():
  views = geometry.circular_views(sid=1000., sdd=1500., gantry_angles=0., detector_size=(H, W),
                                  pixel_spacing=(2., 1.))
  centre = np.asarray(views.pixel_centers(H, W))[0].mean((0, 1))
  np.testing.assert_allclose(centre, [0, 0, -500], atol=1e-4)
  np.testing.assert_allclose(views.det_u[0], [1, 0, 0], atol=1e-7)
  np.testing.assert_allclose(views.det_v[0], [0, 2, 0], atol=1e-7)


def test_per_view_arguments_broadcast():
  views = geometry.circular_views(sid=1000., sdd=[1500., 1600., 1700.], gantry_angles=10.,
                                  source_offset=(5., 0.), projection_offset=np.zeros((3, 2)),
                                  detector_size=(H, W), pixel_spacing=1.)
  assert all(x.shape == (3, 3) and x.dtype == np.float32 for x in views)
  np.testing.assert_allclose(views.source[0], views.source[2])
  assert not np.allclose(views.det_origin[0], views.det_origin[2])


def test_circular_views_jit():
  params = _random_params(4, seed=4)
  fn = jax.jit(functools.partial(geometry.circular_views, detector_size=(H, W)))
  kwargs = {k: v for k, v in params.items() if k != "detector_size"}
  _assert_views_close(fn(**kwargs), geometry.circular_views(**params), atol=1e-4)


def test_views_to_matrices_maps_pixels_to_indices():
  params = _random_params(8, seed=5)
  views = geometry.circular_views(**params)
  p = np.asarray(geometry.views_to_matrices(views), np.float64)
  centres = np.asarray(views.pixel_centers(H, W), np.float64)
  x = _apply(p[:, None, None], centres)
  np.testing.assert_allclose(x[..., 2], 1, atol=1e-4)                    # w = 1 on the detector
  np.testing.assert_allclose(x[..., 0], np.broadcast_to(np.arange(W), x.shape[:-1]), atol=1e-3)
  np.testing.assert_allclose(x[..., 1], np.broadcast_to(np.arange(H)[:, None], x.shape[:-1]),
                             atol=1e-3)
  # Between source and detector (the isocentre) 0 < w < 1; at the source w = 0.
  w_iso = p[:, 2, 3]
  assert np.all((w_iso > 0) & (w_iso < 1))
  np.testing.assert_allclose(_apply(p, np.asarray(views.source, np.float64))[:, 2], 0, atol=1e-5)


def test_views_to_matrices_agree_with_rtk_matrices():
  params = _random_params(8, seed=6)
  ours = np.asarray(geometry.views_to_matrices(geometry.circular_views(**params)), np.float64)
  theirs = _pixel_index_map(params) @ np.asarray(geometry.rtk_matrices(**params), np.float64)
  theirs /= theirs[:, 2:3, 3:4] / ours[:, 2:3, 3:4]                       # same scale and sign
  np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-4 * np.abs(ours).max())


def test_views_matrices_round_trip():
  params = _random_params(8, seed=7)
  views = geometry.circular_views(**params)
  p = geometry.views_to_matrices(views)
  sdd = np.asarray(params["sdd"])
  _assert_views_close(geometry.views_from_matrices(p, detector_distance=sdd), views, atol=2e-3)
  # Scale and sign of P do not matter; RTK's own scale (w < 0 in front) works too.
  _assert_views_close(geometry.views_from_matrices(-3.7 * p, detector_distance=sdd), views,
                      atol=2e-3)
  p_rtk = _pixel_index_map(params) @ np.asarray(geometry.rtk_matrices(**params), np.float64)
  _assert_views_close(geometry.views_from_matrices(p_rtk, detector_distance=sdd), views,
                      atol=2e-3)


def test_views_from_matrices_default_keeps_rays():
  params = _random_params(8, seed=8)
  views = geometry.circular_views(**params)
  back = geometry.views_from_matrices(geometry.views_to_matrices(views))
  np.testing.assert_allclose(back.source, views.source, atol=1e-3)
  # Every pixel keeps its ray: the unit directions from the source agree.
  def dirs(v):
    d = np.asarray(v.pixel_centers(H, W), np.float64) - np.asarray(v.source)[:, None, None]
    return d / np.linalg.norm(d, axis=-1, keepdims=True)
  np.testing.assert_allclose(dirs(back), dirs(views), atol=1e-5)
  # The default detector is as far beyond the isocentre as the source is before it.
  normal = np.cross(np.asarray(back.det_u), np.asarray(back.det_v))
  normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
  depth_det = np.abs(np.sum(normal * (back.det_origin - back.source), -1))
  depth_iso = np.abs(np.sum(normal * -np.asarray(back.source), -1))
  np.testing.assert_allclose(depth_det, 2 * depth_iso, rtol=1e-4)


def test_coarsen_is_the_patch_grid():
  params = _random_params(3, seed=9)
  params["detector_size"] = (12, 16)
  views = geometry.circular_views(**params)
  k = 4
  fine = np.asarray(views.pixel_centers(12, 16))
  patch_means = fine.reshape(3, 3, k, 4, k, 3).mean((2, 4))
  coarse = np.asarray(geometry.coarsen(views, k).pixel_centers(3, 4))
  np.testing.assert_allclose(coarse, patch_means, atol=1e-3)
  _assert_views_close(geometry.coarsen(views, 1), views, atol=0)


def test_volume_translation_moves_the_system_the_other_way():
  params = _random_params(6, seed=10)
  t = np.array([12., -30., 7.5])
  plain = geometry.circular_views(**params)
  moved = geometry.circular_views(**params, volume_translation=t)
  _assert_views_close(moved, geometry.transform_views(plain, None, -t), atol=1e-4)
  # The point x of the untranslated data lands where x + t lands without translation.
  x = np.random.default_rng(0).uniform(-100, 100, (6, 3))
  p_moved = np.asarray(geometry.views_to_matrices(moved), np.float64)
  p_plain = np.asarray(geometry.views_to_matrices(plain), np.float64)
  np.testing.assert_allclose(_dehom(_apply(p_moved, x)), _dehom(_apply(p_plain, x + t)),
                             atol=1e-3)
  p_rtk = np.asarray(geometry.rtk_matrices(**params, volume_translation=t), np.float64)
  p_rtk0 = np.asarray(geometry.rtk_matrices(**params), np.float64)
  np.testing.assert_allclose(_dehom(_apply(p_rtk, x)), _dehom(_apply(p_rtk0, x + t)), atol=1e-3)


def test_lps_from_iec_orbits_about_the_long_axis():
  views = geometry.circular_views(sid=1000., sdd=1500., gantry_angles=np.arange(0, 360, 45.),
                                  detector_size=(H, W), pixel_spacing=1.)
  views = geometry.transform_views(views, geometry.LPS_FROM_IEC)
  src = np.asarray(views.source)
  np.testing.assert_allclose(src[:, 2], 0, atol=1e-3)                    # orbit in z = 0
  np.testing.assert_allclose(src[0], [0, -1000, 0], atol=1e-3)           # gantry 0: anterior
  np.testing.assert_allclose(src[2], [1000, 0, 0], atol=1e-3)            # gantry 90: left
  np.testing.assert_allclose(views.det_v[:, 2], 1, atol=1e-6)            # rows run superior


def test_fit_pixel_spacing_keeps_a_rotated_cube_on_the_detector():
  edge, sid, sdd, size = 300., 1000., 1500., (96, 128)
  spacing = geometry.fit_pixel_spacing(edge, sid, sdd, size)
  assert spacing > edge * np.sqrt(3) * sdd / sid / min(size)             # beyond the diagonal
  rng = np.random.default_rng(0)
  q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
  corners = (np.stack(np.meshgrid(*[[-.5, .5]] * 3), -1).reshape(-1, 3) * edge) @ q.T
  params = dict(sid=sid, sdd=sdd, gantry_angles=rng.uniform(0, 360, 5), detector_size=size,
                pixel_spacing=spacing)
  p = np.asarray(geometry.views_to_matrices(geometry.circular_views(**params)), np.float64)
  idx = _dehom(_apply(p[:, None], corners[None]))
  assert np.all(idx > -0.5) and np.all(idx[..., 0] < size[1] - 0.5)
  assert np.all(idx[..., 1] < size[0] - 0.5)
  np.testing.assert_allclose(geometry.magnification(sid, sdd), 1.5)
