"""Dihedral test-time augmentation: group laws, patch permutations and exact invariance."""

import itertools

import numpy as np
import pytest

from jaxcorr.inference import tta


def test_inverse_and_closure():
  x = np.arange(12).reshape(4, 3)
  for g in tta.GROUP:
    np.testing.assert_array_equal(tta.apply(tta.apply(x, g), tta.inverse(g)), x)
  sq = np.arange(16).reshape(4, 4)
  images = {tta.apply(sq, g).tobytes() for g in tta.GROUP}
  assert len(images) == 8   # eight distinct elements
  for g, h in itertools.product(tta.GROUP, repeat=2):
    assert tta.apply(tta.apply(sq, g), h).tobytes() in images


def test_patch_permutation_follows_the_image():
  # An image whose 4 x 4 patches of 2 x 2 pixels carry their patch index.
  grid = (4, 4)
  image = np.kron(np.arange(16).reshape(grid), np.ones((2, 2)))
  for g in tta.GROUP:
    moved = tta.apply(image, g)[::2, ::2]      # patch value at each new position
    perm = tta.patch_permutation(grid, g)
    for a in range(16):
      assert moved.ravel()[perm[a]] == a


def test_unmap_recovers_c_of_the_original_views():
  rng = np.random.default_rng(0)
  grid, pairs = (3, 3), [(0, 1)]
  corr = rng.uniform(size=(1, 9, 9))
  for g0, g1 in itertools.product(tta.GROUP, repeat=2):
    p0, p1 = tta.patch_permutation(grid, g0), tta.patch_permutation(grid, g1)
    seen = np.empty_like(corr)    # what a perfect model predicts for the transformed views
    seen[0][p0[:, None], p1[None, :]] = corr[0]
    np.testing.assert_array_equal(tta.unmap(seen, (g0, g1), pairs, grid), corr)


@pytest.mark.parametrize("reduce", tta.REDUCTIONS)
def test_tta_output_does_not_depend_on_orientation(reduce):
  # Any (even orientation-blind) "model": the reduced TTA prediction for a view turned by r
  # equals the upright one mapped by r.
  rng = np.random.default_rng(1)
  grid, pairs = (4, 4), [(0, 1)]
  w0, w1 = rng.normal(size=(16, 16)), rng.normal(size=(16, 16))

  def model(v0, v1):   # position-dependent, not rotation-invariant
    f0, f1 = np.tanh(w0 @ v0.ravel()), w1 @ v1.ravel()
    return (np.outer(f0, f1) + np.outer(v0.ravel(), v1.ravel()))[None]

  def predict(v0, v1):
    outs = []
    for t in tta.passes(2, square=True):
      outs.append(tta.unmap(model(tta.apply(v0, t[0]), tta.apply(v1, t[1])), t, pairs, grid))
    return np.mean(outs, 0) if reduce == "mean" else np.max(outs, 0)

  v0, v1 = rng.uniform(size=grid), rng.uniform(size=grid)
  upright = predict(v0, v1)
  for r in tta.GROUP:
    turned = predict(v0, tta.apply(v1, r))
    perm = tta.patch_permutation(grid, r)
    np.testing.assert_allclose(turned[0][:, perm], upright[0], atol=1e-9)
