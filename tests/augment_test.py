"""Tests for jaxcorr.data.augment: hand-made C, image/C consistency, and agreement with the geometry.

The geometry tests move a view's detector in `Views` the way the transform moves its pixels,
re-render (`drr.project_jit`) and re-label (`labels.correspondence_from_volume`), and compare
with transforming the original images and C.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcorr.data import augment, index_maps
from jaxcorr.projection import drr, geometry, labels

N, H, W, K = 3, 32, 32, 8
G = H // K       # patch grid side (4)
L = G * G        # patches per view (16)
P = N * (N - 1) // 2
PAIRS = list(zip(*np.triu_indices(N, 1)))   # [(0, 1), (0, 2), (1, 2)]


def _patch_ids(n=N, h=H, w=W, k=K):
  """Images whose pixels hold their patch index + 1 (constant over each patch)."""
  pr, pc = np.meshgrid(np.arange(h) // k, np.arange(w) // k, indexing="ij")
  ids = (pr * (w // k) + pc + 1).astype(np.float32)
  return np.broadcast_to(ids, (n, h, w)).copy()


def _one_hot_corr(pair, a, b):
  c = np.zeros((P, L, L), np.float32)
  c[pair, a, b] = 1.0
  return c


def _random_inputs(seed=0):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=(N, H, W)).astype(np.float32),
          rng.uniform(size=(P, L, L)).astype(np.float32))


def _where_one(corr):
  return [tuple(int(x) for x in t) for t in zip(*np.nonzero(np.asarray(corr)))]


# --- Single entries move where predicted --------------------------------------------------------

def test_flip_moves_single_entry():
  a, b = 1 * G + 0, 2 * G + 3                   # patch (1, 0) of view 0, patch (2, 3) of view 1
  _, c = augment.flip_view(_patch_ids(), _one_hot_corr(0, a, b), 0, 1, k=K)
  assert _where_one(c) == [(0, 1 * G + 3, b)]   # horizontal: column 0 -> 3, rows of C_01
  _, c = augment.flip_view(_patch_ids(), _one_hot_corr(0, a, b), 1, 0, k=K)
  assert _where_one(c) == [(0, a, 1 * G + 3)]   # vertical on view 1: row 2 -> 1, columns
  _, c = augment.flip_view(_patch_ids(), _one_hot_corr(2, a, b), 0, 0, k=K)
  assert _where_one(c) == [(2, a, b)]           # view 0 is not in pair (1, 2)


def test_rot90_moves_single_entry():
  # One np.rot90 turn sends patch (r, c) to (G-1-c, r); view 2 is the second of pair (1, 2).
  a, b = 0 * G + 1, 1 * G + 2
  for times, (r, c) in [(1, (1, 1)), (2, (2, 1)), (3, (2, 2)), (4, (1, 2)), (-1, (2, 2))]:
    _, out = augment.rot90_view(_patch_ids(), _one_hot_corr(2, a, b), 2, times, k=K)
    assert _where_one(out) == [(2, a, r * G + c)], times


def test_shift_moves_entry_and_masks_shifted_in_patches():
  a = 1 * G + 1
  c = np.ones((P, L, L), np.float32)
  c[0, a, 5] = 7.0
  images, out = augment.shift_view(_patch_ids(), c, 0, (1, 2), k=K)
  out = np.asarray(out)
  assert out[0, 2 * G + 3, 5] == 7.0            # patch (1, 1) -> (2, 3)
  valid = np.zeros((G, G), bool)
  valid[1:, 2:] = True                          # rows 0 and columns 0, 1 came from outside
  np.testing.assert_array_equal(out[0].any(1).reshape(G, G), valid)
  np.testing.assert_array_equal(out[1].any(1).reshape(G, G), valid)
  np.testing.assert_array_equal(out[2], c[2])
  np.testing.assert_array_equal(np.asarray(images[0]) != 0, np.kron(valid, np.ones((K, K))))
  # Shifting back restores the patches that stayed inside the image; the rest stays zero.
  _, back = augment.shift_view(images, out, 0, (-1, -2), k=K)
  kept = np.zeros((G, G), bool)
  kept[:-1, :-2] = True
  back, kept = np.asarray(back), kept.reshape(-1)
  np.testing.assert_array_equal(back[:2][:, kept], c[:2][:, kept])
  assert not back[:2][:, ~kept].any()


def test_shift_by_the_grid_or_more_zeroes_the_view():
  images, c = _random_inputs()
  img, out = augment.shift_view(images, c, 1, (0, -G), k=K)
  assert not np.asarray(img[1]).any()
  assert not np.asarray(out[0]).any() and not np.asarray(out[2]).any()
  np.testing.assert_array_equal(out[1], c[1])


def test_cutout_zeroes_exactly_the_chosen_rows_and_columns():
  c = np.ones((P, L, L), np.float32)
  cut = np.zeros((G, G), bool)
  cut[1:3, 2:4] = True
  cut = cut.reshape(-1)
  images, out = augment.cutout_view(_patch_ids(), c, 1, (1, 2), (2, 2), k=K)
  out = np.asarray(out)
  # View 1 is the first of pair (1, 2) (rows) and the second of pair (0, 1) (columns).
  assert not out[2][cut].any() and out[2][~cut].all()
  assert not out[0][:, cut].any() and out[0][:, ~cut].all()
  np.testing.assert_array_equal(out[1], c[1])
  ids = np.asarray(images[1])[::K, ::K].reshape(-1)
  assert not ids[cut].any() and (ids[~cut] == np.arange(1, L + 1)[~cut]).all()


def test_crop_keeps_only_the_window():
  images, c = _random_inputs()
  img, out = augment.crop_view(images, c, 0, (1, 0), (2, 3), k=K)
  keep = np.zeros((G, G), bool)
  keep[1:3, 0:3] = True
  pix = np.kron(keep, np.ones((K, K), bool))
  np.testing.assert_array_equal(img[0], np.where(pix, images[0], 0))
  np.testing.assert_array_equal(img[1:], images[1:])
  keep = keep.reshape(-1)
  for p in (0, 1):
    np.testing.assert_array_equal(out[p], np.where(keep[:, None], c[p], 0))
  np.testing.assert_array_equal(out[2], c[2])


# --- Pixel-level images and group laws ------------------------------------------------------------

def test_images_match_numpy():
  images, c = _random_inputs()
  img, _ = augment.flip_view(images, c, 1, 1, k=K)
  np.testing.assert_array_equal(img[1], images[1][:, ::-1])
  img, _ = augment.flip_view(images, c, 1, 0, k=K)
  np.testing.assert_array_equal(img[1], images[1][::-1])
  for t in range(4):
    img, _ = augment.rot90_view(images, c, 2, t, k=K)
    np.testing.assert_array_equal(img[2], np.rot90(images[2], t))
    np.testing.assert_array_equal(img[:2], images[:2])
  img, _ = augment.shift_view(images, c, 0, (-1, 1), k=K)
  expected = np.zeros((H, W), np.float32)
  expected[:-K, K:] = images[0][K:, :-K]
  np.testing.assert_array_equal(img[0], expected)


def test_flip_twice_and_rot90_four_times_are_identity():
  images, c = _random_inputs()
  for view in range(N):
    for axis in (0, 1):
      x = augment.flip_view(images, c, view, axis, k=K)
      x = augment.flip_view(*x, view, axis, k=K)
      np.testing.assert_array_equal(x[0], images)
      np.testing.assert_array_equal(x[1], c)
    x = (images, c)
    for _ in range(4):
      x = augment.rot90_view(*x, view, 1, k=K)
    np.testing.assert_array_equal(x[0], images)
    np.testing.assert_array_equal(x[1], c)
  # Two vertical-and-horizontal flips are a half turn.
  x = augment.flip_view(images, c, 0, 0, k=K)
  x = augment.flip_view(*x, 0, 1, k=K)
  y = augment.rot90_view(images, c, 0, 2, k=K)
  np.testing.assert_array_equal(x[0], y[0])
  np.testing.assert_array_equal(x[1], y[1])


def test_compose_matches_sequential_application():
  images, c = _random_inputs()
  first = index_maps.shift_map(H, W, (1, -1), k=K)
  second = index_maps.rot90_map(H, 1)
  ident = index_maps.identity_map(H, W)
  stack = lambda m: jax.tree.map(lambda a, b: jnp.stack([a, b, b]), m, ident)
  seq = augment.apply_maps(images, c, stack(first), k=K)
  seq = augment.apply_maps(*seq, stack(second), k=K)
  once = augment.apply_maps(images, c, stack(index_maps.compose(first, second)), k=K)
  np.testing.assert_array_equal(seq[0], once[0])
  np.testing.assert_array_equal(seq[1], once[1])


# --- Random composition ---------------------------------------------------------------------------

def test_all_probabilities_zero_is_identity():
  images, c = _random_inputs()
  fn = functools.partial(augment.random_geometric, k=K, p_flip=0.0, p_rot90=0.0, p_shift=0.0,
                         p_crop=0.0, p_cutout=0.0)
  out = jax.jit(fn)(images, c, jax.random.key(3))
  np.testing.assert_array_equal(out[0], images)
  np.testing.assert_array_equal(out[1], c)


def _labelled_inputs():
  """Images holding view * 100 + patch + 1 and C_ij[a, b] = 1000 p + 10 a + b / 10 + 1."""
  ids = _patch_ids() + 100 * np.arange(N, dtype=np.float32)[:, None, None]
  a, b = np.meshgrid(np.arange(L), np.arange(L), indexing="ij")
  c = np.stack([1000 * p + 10 * a + b / 10 + 1 for p in range(P)]).astype(np.float32)
  return ids, c


_random_all = jax.jit(functools.partial(augment.random_geometric, k=K, p_flip=0.5, p_rot90=0.7,
                                        p_shift=0.7, p_crop=0.4, p_cutout=0.4))


@pytest.mark.parametrize("seed", range(6))
def test_random_geometric_keeps_images_and_corr_consistent(seed):
  """Each output patch's source, read off the image, predicts every entry of C."""
  ids, c = _labelled_inputs()
  img, out = _random_all(ids, c, jax.random.key(seed))
  img, out = np.asarray(img), np.asarray(out)
  blocks = img.reshape(N, G, K, G, K).transpose(0, 1, 3, 2, 4).reshape(N, L, K * K)
  assert (blocks == blocks[..., :1]).all()      # whole patches moved
  src = blocks[..., 0] - 100 * np.arange(N)[:, None] - 1   # source patch, or < 0 if zeroed
  valid = blocks[..., 0] != 0
  assert ((src[valid] >= 0) & (src[valid] < L)).all()
  for p, (i, j) in enumerate(PAIRS):
    si, sj = src[i].astype(int), src[j].astype(int)
    expected = 1000 * p + 10 * si[:, None] + sj[None, :] / 10 + 1
    expected = np.where(valid[i][:, None] & valid[j][None, :], expected, 0)
    np.testing.assert_allclose(out[p], expected, rtol=1e-6)


def test_bright_patch_moves_with_its_corr_row():
  images = np.zeros((N, H, W), np.float32)
  images[0, 2 * K:3 * K, 1 * K:2 * K] = 1.0     # patch a = (2, 1) of view 0
  images[1, 0:K, 3 * K:4 * K] = 1.0             # patch b = (0, 3) of view 1
  c = _one_hot_corr(0, 2 * G + 1, 3)
  fn = jax.jit(functools.partial(augment.random_geometric, k=K, p_shift=1.0, max_shift=1,
                                 p_crop=0.0, p_cutout=0.0))
  seen = 0
  for seed in range(8):
    img, out = fn(images, c, jax.random.key(seed))
    img, hits = np.asarray(img), _where_one(out)
    if not (img[0].any() and img[1].any()):     # one of them was shifted out of the image
      assert not hits
      continue
    seen += 1
    pa, pb = (int(np.argmax(img[v][::K, ::K].reshape(-1))) for v in (0, 1))
    assert hits == [(0, pa, pb)]
  assert seen > 0


def test_random_geometric_varies_and_vmaps():
  images, c = _random_inputs()
  keys = jax.random.split(jax.random.key(0), 8)
  fn = functools.partial(augment.random_geometric, k=K, p_crop=0.0, p_cutout=0.0, p_shift=0.0)
  batch_img, batch_c = jax.jit(jax.vmap(fn, in_axes=(None, None, 0)))(images, c, keys)
  assert batch_img.shape == (8, N, H, W) and batch_c.shape == (8, P, L, L)
  # Flips and turns only permute: the multiset of values is kept.
  np.testing.assert_allclose(np.sort(batch_c.reshape(8, -1), -1),
                             np.broadcast_to(np.sort(c.reshape(-1)), (8, P * L * L)))
  assert len({np.asarray(x).tobytes() for x in batch_img}) > 1


def test_traced_parameters_under_jit():
  images, c = _random_inputs()
  flip = jax.jit(augment.flip_view, static_argnames=("axis", "k"))
  rot = jax.jit(augment.rot90_view, static_argnames="k")
  shift = jax.jit(augment.shift_view, static_argnames="k")
  cut = jax.jit(augment.cutout_view, static_argnames="k")
  for view in range(N):
    eager = augment.flip_view(images, c, view, 1, k=K)
    np.testing.assert_array_equal(flip(images, c, view, axis=1, k=K)[1], eager[1])
    eager = augment.rot90_view(images, c, view, 3, k=K)
    np.testing.assert_array_equal(rot(images, c, view, 3, k=K)[1], eager[1])
    eager = augment.shift_view(images, c, view, (1, -1), k=K)
    np.testing.assert_array_equal(shift(images, c, view, jnp.array([1, -1]), k=K)[1], eager[1])
    eager = augment.cutout_view(images, c, view, (0, 1), (2, 1), k=K)
    np.testing.assert_array_equal(cut(images, c, view, (0, 1), (2, 1), k=K)[1], eager[1])


def test_checks_shapes_and_arguments():
  images, c = _random_inputs()
  with pytest.raises(ValueError, match="corr must be"):
    augment.flip_view(images, c[:2], 0, 1, k=K)
  with pytest.raises(ValueError, match="multiple of the patch size"):
    augment.flip_view(images, c, 0, 1, k=5)
  with pytest.raises(ValueError, match="flip axis"):
    augment.flip_view(images, c, 0, 2, k=K)
  wide = np.zeros((2, 16, 32), np.float32)
  wide_c = np.zeros((1, 8, 8), np.float32)
  with pytest.raises(ValueError, match="square"):
    augment.rot90_view(wide, wide_c, 0, 1, k=8)
  with pytest.raises(ValueError, match="p_rot90=0"):
    augment.random_geometric(wide, wide_c, jax.random.key(0), k=8)
  fn = functools.partial(augment.random_geometric, k=8, p_rot90=0.0)
  out = jax.jit(fn)(wide, wide_c, jax.random.key(0))
  assert out[0].shape == wide.shape and out[1].shape == wide_c.shape
  with pytest.raises(ValueError, match="p_flip"):
    augment.random_geometric(images, c, jax.random.key(0), k=K, p_flip=1.5)


# --- Agreement with the geometry: move the detector, re-render and re-label -----------------------

GH = GW = 48          # 6 x 6 patch grid: room for the labelled block's footprint to shift by 1
GL = (GH // K) * (GW // K)


def _scene():
  """Three views of a 32^3 volume (1 mm voxels) and its labels from a central 16^3 block."""
  views = geometry.circular_views(sid=500.0, sdd=1000.0, gantry_angles=[0.0, 70.0, 150.0],
                                  out_of_plane_angles=[0.0, 10.0, -5.0], in_plane_angles=[0, 0, 20],
                                  detector_size=(GH, GW), pixel_spacing=2.0)
  rng = np.random.default_rng(0)
  volume = rng.uniform(0.0, 0.05, (32, 32, 32)).astype(np.float32)
  # Only the central block carries label weight, so every labelled voxel's footprint (its
  # centre +- one 8 mm coarse voxel, ~ +- 13 px here) stays inside the 48 px detector after a
  # one-patch shift; the min-max normalisation over the detector is then unchanged.
  intensity = np.zeros_like(volume)
  intensity[8:24, 8:24, 8:24] = rng.uniform(0.2, 1.0, (16, 16, 16))
  return views, volume, intensity, np.full(3, -15.5, np.float32), np.ones(3, np.float32)


def _move_detector(views, view, kind, arg):
  """The detector of `view` moved like the pixels under augment's transform `kind`."""
  o, u, v = (np.array(x, np.float64) for x in (views.det_origin, views.det_u, views.det_v))
  if kind == "flip" and arg == 1:
    o[view], u[view] = o[view] + (GW - 1) * u[view], -u[view]
  elif kind == "flip":
    o[view], v[view] = o[view] + (GH - 1) * v[view], -v[view]
  elif kind == "rot90":
    for _ in range(arg % 4):      # one turn: out[r, c] = in[c, W-1-r]
      o[view], u[view], v[view] = o[view] + (GW - 1) * u[view], v[view], -u[view]
  else:                           # shift by (dr, dc) patches
    o[view] = o[view] - K * (arg[1] * u[view] + arg[0] * v[view])
  return views._replace(**{name: jnp.asarray(x, jnp.float32) for name, x in
                           (("det_origin", o), ("det_u", u), ("det_v", v))})


def _transform(images, corr, view, kind, arg):
  if kind == "flip":
    return augment.flip_view(images, corr, view, arg, k=K)
  if kind == "rot90":
    return augment.rot90_view(images, corr, view, arg, k=K)
  return augment.shift_view(images, corr, view, arg, k=K)


@pytest.fixture(scope="module")
def scene():
  views, volume, intensity, origin, spacing = _scene()
  render = lambda vs: np.asarray(drr.project_jit(volume, origin, spacing, vs, height=GH,
                                                 width=GW))
  label = lambda vs: np.asarray(labels.correspondence_from_volume(
      intensity, origin, spacing, vs, height=GH, width=GW, k=K))
  return views, render, label


CASES = [("flip", 0), ("flip", 1), ("rot90", 1), ("rot90", 2), ("rot90", 3), ("shift", (1, -1)),
         ("shift", (-1, 0)), ("shift", (0, 1))]


@pytest.mark.parametrize("kind,arg", CASES, ids=[f"{k}{a}" for k, a in CASES])
def test_transform_equals_moving_the_detector(scene, kind, arg):
  views, render, label = scene
  images, corr = render(views), label(views)
  assert corr.max() > 0.1 and (corr > 0).mean() > 0.05     # the labels are not trivial
  for view in range(N):
    img, c = (np.asarray(x) for x in _transform(images, corr, view, kind, arg))
    moved = _move_detector(views, view, kind, arg)
    img_ref, c_ref = render(moved), label(moved)
    if kind == "shift":
      # Only where the pixels / patches came from inside the old detector.
      ones = np.ones((N, GH, GW), np.float32)
      pix, _ = augment.shift_view(ones, np.zeros((P, GL, GL), np.float32), view, arg, k=K)
      pix = np.asarray(pix) > 0
      patch = pix[:, ::K, ::K].reshape(N, -1)
      img_ref = np.where(pix, img_ref, 0)
      first, second = np.triu_indices(N, 1)
      c_ref = np.where(patch[first][:, :, None] & patch[second][:, None, :], c_ref, 0)
    # The moved detector's pixel centres differ from the old ones by float32 rounding only.
    np.testing.assert_allclose(img, img_ref, rtol=1e-5, atol=2e-5 * images.max(),
                               err_msg=f"images, view {view}")
    np.testing.assert_allclose(c, c_ref, rtol=0, atol=1e-5, err_msg=f"corr, view {view}")
