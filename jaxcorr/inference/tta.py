"""Test-time augmentation for radiographs in any orientation: the dihedral group D4 per view.

A transform g of D4 (4 rotations by 90 degrees, each optionally flipped left-right) acts on an
image [H, W] (H = W for the rotations) and, identically, on its h x w patch grid: patch a of
the original image lands at patch g(a) of the transformed one. If the model sees views
transformed by g_i and g_j and predicts C', the prediction for the original views is

    C[a, b] = C'[g_i(a), g_j(b)]            (`unmap`)

Passes (`passes`). What the model cannot know is the orientation of one view relative to the
others, so view 0 is kept and all other views take the same g, for every g in the group:
8 passes (4 when only flips apply, for non-square inputs). The set {g o r} is the whole group
for any r in it, so the averaged (or max-reduced) prediction of views turned by r equals that
of the upright views mapped by r exactly: the result no longer depends on the orientation.
"""

from __future__ import annotations

import numpy as np

# (k, flip): rotate by k * 90 degrees counter-clockwise (np.rot90), after a left-right flip.
GROUP = tuple((k, flip) for flip in (False, True) for k in range(4))
REDUCTIONS = ("mean", "max")


def apply(image: np.ndarray, g) -> np.ndarray:
  """The transform g = (k, flip) of an array whose first two axes are rows and columns."""
  k, flip = g
  out = image[:, ::-1] if flip else image
  return np.rot90(out, k, axes=(0, 1))


def inverse(g):
  """g^-1: undoes `apply(., g)`."""
  k, flip = g
  return ((k if flip else -k) % 4, flip)


def patch_permutation(grid: tuple[int, int], g) -> np.ndarray:
  """perm [L] with perm[a] = g(a): where patch a of the original grid lands after g."""
  h, w = grid
  moved = apply(np.arange(h * w).reshape(h, w), g)   # moved[q] = original patch at q
  perm = np.empty(h * w, np.int64)
  perm[moved.ravel()] = np.arange(h * w)
  return perm


def passes(n_views: int, square: bool) -> list[tuple]:
  """Per-view transforms of each pass: view 0 fixed, the others all turned by g."""
  group = GROUP if square else tuple(g for g in GROUP if g[0] % 2 == 0)
  return [((0, False),) + (g,) * (n_views - 1) for g in group]


def unmap(corr: np.ndarray, transforms, pairs, grid) -> np.ndarray:
  """C for the original views from C' [..., P, L, L] of views transformed by `transforms`."""
  out = np.empty_like(corr)
  for p, (i, j) in enumerate(pairs):
    pi, pj = patch_permutation(grid, transforms[i]), patch_permutation(grid, transforms[j])
    out[..., p, :, :] = corr[..., p, :, :][..., pi[:, None], pj[None, :]]
  return out
