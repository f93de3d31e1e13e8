"""Recipes on the accelerator: the view samplers and the coverage check as jitted JAX code,
vectorised over the batch (`data.recipes='device'`).

The host (Grain) feeds only a volume index and a seed per sample; Grain still owns the order,
the determinism and the checkpointable state. From the seed, per sample (key = fold_in(key(seed), 3);
the augmentations use other folds of the same key):

  candidates  T = `max_tries` draws of the view parameters (`GEOMETRY_KEYS`) from
              `draw_jaxcorr` or `draw_authors` (the NumPy samplers' distributions, `sampler.py`),
              each framed on the volume's anatomy box with `views.framing='anatomy'`
              (`framed_draw`: the host's `anatomy_framing.frame`, with JAX uniforms)
  coverage    [T, N]  fraction of each view's patches hit by the volume's anatomy points
              (`samples._coverage`, as on the host)
  kept        the first candidate whose every view covers >= `min_coverage`; the last one
              when none does. `rejected` = its index (the candidates drawn before it).

A fixed count of candidates keeps every shape static (a while loop of redraws would not), at
T times the sampler's cost, which is small next to rendering. The same seed gives the same
recipe whatever the number of devices, hosts or workers. The NumPy samplers stay the reference
these are tested against (tests/device_recipes_test.py: moments and KS distances on many draws).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxcorr.data import anatomy_framing, sampler as sampler_lib, samples

RECIPES = ("auto", "host", "device")
# The fold of a candidate's key that draws its framing jitter (`framed_draw`); the samplers
# split the candidate's key itself.
FRAMING_FOLD = 1


@dataclasses.dataclass(frozen=True)
class Spec:
  """How the device draws recipes (static under jit): `config.views` fields."""

  view_sampler: sampler_lib.ViewSampler | sampler_lib.AuthorsSampler
  min_coverage: float = 0.02
  max_tries: int = 10


def seeds_only(record, rng) -> dict:
  """The host's part (a Grain `random_map`): the volume index and a seed, nothing drawn."""
  volume = record["volume"] if isinstance(record, dict) else record
  return {"volume": np.int32(volume), "seed": np.uint32(rng.integers(0, 2 ** 32, dtype=np.uint64))}


def resolve(choice: str, platform: str | None = None) -> str:
  """'auto' -> 'device' on an accelerator (GPU, TPU), 'host' on a CPU (where the NumPy sampler
  in Grain's threads costs less than drawing T candidates in the jitted step)."""
  platform = platform or jax.default_backend()
  if choice == "auto":
    return "host" if platform == "cpu" else "device"
  return choice


def _params(**arrays) -> dict:
  return {k: jnp.asarray(arrays[k], jnp.float32) for k in sampler_lib.GEOMETRY_KEYS}


def draw_jaxcorr(key, s: sampler_lib.ViewSampler, extent_mm) -> dict:
  """One sample of `ViewSampler`'s distribution (preset 'jaxcorr')."""
  del extent_mm
  n = s.n_views
  k_mode, k_gantry, k_oop, k_sid, k_idd, k_t = jax.random.split(key, 6)
  modes = jax.random.choice(k_mode, jnp.asarray(s.gantry_modes, jnp.float32), (n,),
                            p=jnp.asarray(s.gantry_probs, jnp.float32))
  gantry = modes + s.gantry_spread * jax.random.normal(k_gantry, (n,))
  oop = s.out_of_plane_nominal + s.out_of_plane_spread * jax.random.normal(k_oop, (n,))
  sid = jax.random.uniform(k_sid, (n,), minval=s.sid_range[0], maxval=s.sid_range[1])
  sdd = sid + jax.random.uniform(k_idd, (n,), minval=s.idd_range[0], maxval=s.idd_range[1])
  t = jax.random.uniform(k_t, (3,), minval=-s.max_translation, maxval=s.max_translation)
  return _params(gantry=jnp.mod(gantry, 360.0), out_of_plane=oop, in_plane=jnp.zeros(n),
                 sid=sid, sdd=sdd, detector_mm=jnp.zeros(n), detector_offset=jnp.zeros((n, 2)),
                 translation=t)


def draw_authors(key, s: sampler_lib.AuthorsSampler, extent_mm) -> dict:
  """One sample of `AuthorsSampler`'s distribution (preset 'authors'; formulas in sampler.py)."""
  n = s.n_views
  k_m, k_key, k_a, k_b, k_sid, k_idd, k_tm, k_ts = jax.random.split(key, 8)
  m = jax.random.randint(k_m, (n,), 0, 3)
  keys = jax.random.choice(k_key, jnp.asarray(sampler_lib.KEY_ANGLES, jnp.float32), (n,),
                           p=jnp.asarray(sampler_lib.KEY_PROBS, jnp.float32))
  za, zb = jax.random.normal(k_a, (n,)), jax.random.normal(k_b, (n,))
  sid = jax.random.randint(k_sid, (n,), 1000, 1101).astype(jnp.float32)
  idd = jax.random.randint(k_idd, (n,), 800, 1201).astype(jnp.float32)
  t_mode, t_size = jax.random.randint(k_tm, (), 0, 3), jax.random.randint(k_ts, (), 1, 51)
  a = jnp.mod(jnp.where(m == 1, jnp.clip(15.0 * za, -20.0, 20.0), keys + 45.0 * za), 360.0)
  b = jnp.select([m == 0, m == 1], [jnp.clip(180.0 + 15.0 * zb, 150.0, 210.0),
                                    jnp.clip(180.0 + 45.0 * zb, 0.0, 360.0)],
                 jnp.clip(180.0 + 60.0 * zb, 0.0, 360.0))
  t = jnp.asarray([0, -1, 1])[t_mode] * t_size
  u = extent_mm / sampler_lib.AUTHORS_VOXELS
  return _params(gantry=jnp.full(n, 90.0), out_of_plane=a + 90.0, in_plane=90.0 - b,
                 sid=sid * u, sdd=(sid + idd) * u,
                 detector_mm=jnp.full(n, sampler_lib.AUTHORS_DETECTOR) * u,
                 detector_offset=jnp.zeros((n, 2)),
                 translation=jnp.stack([t * u, 0.0 * u, 0.0 * u]))


def draw(key, view_sampler, extent_mm) -> dict:
  """One sample of the parameters of `view_sampler`'s distribution, in JAX."""
  if isinstance(view_sampler, sampler_lib.AuthorsSampler):
    return draw_authors(key, view_sampler, extent_mm)
  return draw_jaxcorr(key, view_sampler, extent_mm)


def framed_draw(key, view_sampler, extent_mm, framing: samples.Framing, box=None) -> dict:
  """`draw`, then framed on the anatomy `box` when `framing.anatomy` is set (the host's
  `samples.RecipeMaker.draw`; the framing's uniforms from fold_in(key, FRAMING_FOLD))."""
  params = draw(key, view_sampler, extent_mm)
  if framing.anatomy is None:
    return params
  zoom_u, shift_u = anatomy_framing.uniforms_jax(jax.random.fold_in(key, FRAMING_FOLD),
                                                 view_sampler.n_views)
  return samples.frame(params, box, zoom_u, shift_u, framing, extent_mm)


def recipe(key, points, count, extent, *, view_sampler, framing: samples.Framing,
           min_coverage: float, max_tries: int, box=None) -> dict:
  """The kept candidate of one sample (module docstring): `GEOMETRY_KEYS` and `rejected`.
  `box` [2, 3] is the volume's anatomy box (needed when `framing.anatomy` is set)."""
  candidates = jax.vmap(lambda k: framed_draw(k, view_sampler, extent, framing, box))(
      jax.random.split(key, max_tries))
  if min_coverage <= 0:
    kept = 0
  else:
    cover = jax.vmap(lambda p: samples._coverage(points, count, p, extent, framing))(  # pylint: disable=protected-access
        candidates)                                                                  # [T, N]
    ok = cover.min(axis=-1) >= min_coverage
    kept = jnp.where(ok.any(), jnp.argmax(ok), max_tries - 1)
  return {**jax.tree.map(lambda x: x[kept], candidates), "rejected": jnp.int32(kept)}


def for_batch(bank: dict, volume, seed, *, spec: Spec, framing: samples.Framing) -> dict:
  """`recipes` with the fields of `spec` (inside the input pipeline's jitted step)."""
  return recipes(bank, volume, seed, view_sampler=spec.view_sampler, framing=framing,
                 min_coverage=spec.min_coverage, max_tries=spec.max_tries)


@functools.partial(jax.jit, static_argnames=("view_sampler", "framing", "min_coverage",
                                             "max_tries"))
def recipes(bank: dict, volume, seed, *, view_sampler, framing: samples.Framing,
            min_coverage: float, max_tries: int) -> dict:
  """The recipes of a batch (`samples.RECIPE_KEYS`) from volume indices [B] and seeds [B];
  `bank` holds `extent` [V], `points` [V, A, 3] and `counts` [V] (`samples.bank_arrays`), and
  `anatomy_box` [V, 2, 3] when `framing.anatomy` is set."""
  def one(v, s):
    key = jax.random.fold_in(jax.random.key(s), 3)
    box = None if framing.anatomy is None else bank["anatomy_box"][v]
    return recipe(key, bank["points"][v], bank["counts"][v], bank["extent"][v],
                  view_sampler=view_sampler, framing=framing, min_coverage=min_coverage,
                  max_tries=max_tries, box=box)
  out = jax.vmap(one)(volume, seed)
  return {**out, "volume": volume, "seed": seed}
