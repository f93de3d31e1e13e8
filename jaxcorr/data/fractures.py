"""Multi-view fracture samples drawn from one CT cube, rendered and encoded as records.

The sample maker of the CT-derived fracture benchmark (the `make_fractures` job, the paper's
Table 3 task on DRRs). For one volume's `ct.size`^3 HU cube, `generate.samples_per_volume`
samples are drawn, exactly half positive (an odd count gets one extra of a seeded random label):
  1. `fracture.make_negative` (a harmless change with prob. `negative.p_change`), for positives
     too, so a change by itself is no cue;
  2. positives: `fracture.insert_fracture` with `config.fracture` (gap always; fragment
     displacement and angulation with prob. `fracture.p_displace`);
  3. views from the pretraining sampler (`config.views`, coverage rejection on the untouched
     cube), rendered in `config.intensity`, and, with `generate.with_corr`, the exact
     correspondence labels C of `config.labels`.

Record fields (`decode`; N views, P = N (N - 1) / 2 pairs, L patches per view):
  views          float32 [N, H, W]  DRR line integrals (stored float16 or uint16,
                                    `generate.views_dtype`); the pipeline normalises per view
  corr           float32 [P, L, L]  correspondence labels in `labels.pair_indices` order, or
                                    [0] when generate.with_corr is False
  label          int32 []           1 fracture, 0 none
  volume         str                the volume's name in splits.json
  gantry, out_of_plane, in_plane, sid, sdd, detector_mm float32 [N], translation float32 [3]
                                    the views (deg, mm; `sampler.GEOMETRY_KEYS`)
  seed           uint32 []          the sample's seed
  negative_kind  str                harmless change applied: 'none', 'jitter' or 'blob'
  gap_mm, displacement_mm, angulation_deg  float32 []   what was inserted (0 for negatives)
  fracture_px    float32 [N, 2]     (column, row) of the fracture point per view (NaN: none)
  ray_plane_deg  float32 [N]        angle between the ray through that point and the gap
                                    plane (0 = the gap seen edge-on; NaN for negatives)
  change         float32 [N]        max |DRR after - DRR before the fracture| over the view's
                                    range (max - min), i.e. in normalised image units, at the
                                    model's resolution (below; 0 for negatives; 0 everywhere
                                    when generate.visibility is False)
  visible_px     int32 [N]          pixels of that normalised difference >= generate.visible_noise
                                    at the model's resolution: how much of the fracture the
                                    model can see in each view (0 for negatives)
  visible        uint8 [N]          visible_px >= generate.visible_min_px
  redraws        int32 []           fractures drawn and found invisible before this one
                                    (generate.invisible='redraw'; 0 otherwise and for negatives)

Visibility (generate.visibility). Positives are rendered before and after the fracture (the
difference is the DRR of the intensity difference: DRRs are linear in the volume). The
difference and the view are brought to the model's input size `generate.visible_size` as the
classify pipeline does (`downsample`: the mean over each f x f block; (0, 0) = the detector
size) and divided by the view's range there, which is the per-view min-max normalisation the
classifier sees. A pixel counts as changed when that exceeds `generate.visible_noise`, by default
0.02 = the largest noise sigma the classify augmentation adds (augment.radiometric.max_noise), so
a counted pixel changes by more than the noise the model is trained under. A sample shows its
fracture when `generate.visible_in` ('any' | 'all') of its views are `visible`; a positive that
does not is kept as it is ('keep'), left out ('drop'; its volume then has fewer records) or
refractured ('redraw': the same views and harmless change, a new fracture from the derived seed
[seed, volume index, 2, sample, try], at most `generate.max_redraws` times, then kept as drawn
last and counted in `redraws`). manifest.json reports per split the positives that show their
fracture (`visible`, `visible_fraction`) and the redraws and drops.

Reading: `records.shard_paths(workdir, split, job="make_fractures")` lists a split's complete,
non-empty shards (for `grain.sources.ArrayRecordDataSource`), `decode(record)` gives the dict
above.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from jaxcorr.ct import fracture, long_bones, preprocess
from jaxcorr.data import from_config, records, sampler, samples, volumes
from jaxcorr.projection import drr, geometry

_LABEL_STREAM = 1  # seed-sequence tags: per-volume labels, per-sample draws, redraws
_SAMPLE_STREAM = 0
_REDRAW_STREAM = 2
INVISIBLE = ("keep", "drop", "redraw")
VISIBLE_IN = ("any", "all")


def downsample(images: np.ndarray, size) -> np.ndarray:
  """[..., H, W] -> [..., h, w], the mean over each (H / h) x (W / w) block: the model's input of
  views rendered larger than it (`size` (0, 0) or (H, W): unchanged). A ValueError when H, W
  are not multiples of h, w."""
  (h, w), (big_h, big_w) = tuple(int(v) for v in size), images.shape[-2:]
  if (h, w) in ((0, 0), (big_h, big_w)):
    return images
  if h < 1 or w < 1 or big_h % h or big_w % w:
    raise ValueError(f"views of {big_h} x {big_w} cannot be brought to the model's {h} x {w} by "
                     "averaging blocks: make views.detector_size a multiple of the image size "
                     "(classify: image_size; make_fractures: generate.visible_size)")
  fh, fw = big_h // h, big_w // w
  return images.reshape(*images.shape[:-2], h, fh, w, fw).mean(axis=(-3, -1))


def shows_fracture(visible: np.ndarray, visible_in: str) -> bool:
  """Whether a sample's per-view `visible` [N] shows its fracture ('any' or 'all' views)."""
  return bool(np.any(visible) if visible_in == "any" else np.all(visible))


def volume_labels(seed: int, index: int, count: int) -> np.ndarray:
  """The labels of one volume's samples: half 1, half 0 (+1 seeded random if odd), shuffled."""
  rng = np.random.default_rng([seed, index, _LABEL_STREAM])
  labels = [1] * (count // 2) + [0] * (count // 2)
  if count % 2:
    labels.append(int(rng.integers(2)))
  return rng.permutation(np.asarray(labels, np.int32))


@functools.partial(jax.jit, static_argnames=("framing", "projector"))
def _project(images, origin, spacing, extent, params, framing: samples.Framing,
             projector: samples.Projector):
  """DRRs [B, N, H, W] of B (unpadded) volumes, each with its own view parameters."""
  h, w = framing.detector_size

  def one(image, o, s, e, p):
    views = sampler.views_from_params(p, extent_mm=e, detector_size=(h, w),
                                      fov_scale=framing.fov_scale, orbit=framing.orbit)
    return drr.project(image, o, s, views, height=h, width=w, method=projector.method,
                       batch_size=projector.ray_batch)
  return jax.vmap(one)(images, origin, spacing, extent, params)


def _fracture_geometry(info, params, extent, framing):
  """(fracture_px [N, 2], ray_plane_deg [N]) of a fracture point in one sample's views."""
  views = sampler.views_from_params({k: np.asarray(v) for k, v in params.items()},
                                    extent_mm=extent, detector_size=tuple(framing.detector_size),
                                    fov_scale=framing.fov_scale, orbit=framing.orbit)
  mats = np.asarray(geometry.views_to_matrices(views), np.float64)        # [N, 3, 4]
  hom = mats @ np.append(info.point, 1.0)
  px = hom[:, :2] / hom[:, 2:]
  rays = info.point - np.asarray(views.source, np.float64)
  sines = np.abs(rays @ info.normal) / np.linalg.norm(rays, axis=-1)
  return px.astype(np.float32), np.degrees(np.arcsin(np.clip(sines, 0, 1))).astype(np.float32)


class _Incremental:
  """HU -> intensity that recomputes only the voxels differing from a reference volume.

  A fracture changes a few thousand voxels of a 256^3 cube; mapping all 16.8M again (three
  times a sample) would dominate the run. Volumes changing over a quarter of their voxels (the
  global 'jitter') are mapped whole.
  """

  def __init__(self, fn, reference: np.ndarray):
    self.fn, self.reference = fn, reference
    self.whole = jax.jit(fn)  # ~4x NumPy's speed on a whole cube
    self.base = np.asarray(self.whole(reference), np.float32)

  def __call__(self, hu: np.ndarray) -> np.ndarray:
    if hu is self.reference:
      return self.base
    where = np.flatnonzero(hu != self.reference)
    if where.size > hu.size // 4:
      return np.asarray(self.whole(hu), np.float32)
    out = self.base.copy()
    out.reshape(-1)[where] = self.fn(hu.reshape(-1)[where])
    return out


class _Sampler:
  """Draws one volume's samples (HU changes + view recipes); see the module docstring."""

  def __init__(self, cube, config):
    self.cube, self.config = cube, config
    f = dict(config.fracture)
    self.p_displace = f.pop("p_displace")
    self.motion = {k: f.pop(k) for k in ("displacement_mm", "angulation_deg")}
    self.fracture_kw = f
    self.bones = long_bones.require_long_bones(
        cube, **{k: f[k] for k in ("min_bone_hu", "min_length_mm", "min_elongation", "edge_hu")})
    self.image_fn = _Incremental(functools.partial(
        from_config.intensity_volume, intensity_config=config.intensity), cube.data)
    label_fn = _Incremental(functools.partial(
        from_config.intensity_volume, intensity_config=config.labels.intensity), cube.data)
    self.entry = functools.partial(volumes.make_entry, image_intensity=self.image_fn,
                                   label_intensity=label_fn, patch=config.labels.patch,
                                   pooling=config.labels.pooling,
                                   threshold=config.labels.threshold,
                                   anatomy_hu=config.views.framing_hu)
    self.maker = from_config.recipe_maker(config, volumes.stack([self.entry(cube)]))

  def draw(self, rng, label: int) -> dict:
    before, negative = fracture.make_negative(self.cube, rng, **self.config.negative)
    out = {"label": np.int32(label), "negative_kind": negative.kind, "info": None,
           "before": before, "redraws": 0}
    out = self._fracture(out, rng) if label else {**out, "entry": self.entry(before),
                                                  "diff": None}
    out["recipe"] = self.maker({"volume": 0}, rng)
    return out

  def redraw(self, drawn: dict, rng) -> dict:
    """The same sample (views, harmless change) with a new fracture drawn from `rng`."""
    return self._fracture({**drawn, "redraws": drawn["redraws"] + 1}, rng)

  def _fracture(self, out: dict, rng) -> dict:
    before = out["before"]
    scale = 1.0 if rng.random() < self.p_displace else 0.0
    after, info = fracture.insert_fracture(before, rng, bones=self.bones, **self.fracture_kw,
                                           **{k: v * scale for k, v in self.motion.items()})
    entry = self.entry(after)
    diff = (entry["images"] - self.image_fn(before.data)
            if self.config.generate.visibility else None)
    return {**out, "info": info, "entry": entry, "diff": diff}


_GEOMETRY = sampler.GEOMETRY_KEYS


def _render(drawn: list[dict], config):
  """Renders drawn samples in one static-size batch (repeats fill it; extras are dropped).

  Returns (views [B, N, H, W], corr [B, P, L, L] or None, the batch's bank, view params).
  """
  g, frame = config.generate, from_config.framing(config)
  part = drawn + [drawn[-1]] * (g.render_batch - len(drawn))
  bank = volumes.stack([d["entry"] for d in part])
  recipes = {k: np.stack([d["recipe"][k] for d in part]) for k in samples.RECIPE_KEYS}
  recipes["volume"] = np.arange(len(part), dtype=np.int32)
  params = {k: recipes[k] for k in _GEOMETRY}
  if not g.with_corr:
    views = _project(bank.images, bank.origin, bank.spacing, bank.extent, params, frame,
                     from_config.projector(config))
    return np.asarray(views), None, bank, params
  views, corr = samples.render_batch(samples.bank_arrays(bank, from_config.volume_dtype(config)),
                                     recipes, framing=frame, threshold=config.labels.threshold,
                                     projector=from_config.projector(config))
  return np.asarray(views), np.asarray(corr), bank, params


def _visibility(d, i, views, bank, params, frame, projector, g) -> tuple[np.ndarray, np.ndarray]:
  """(change [N], visible_px [N]) of sample i at the model's resolution (module docstring).

  DRRs are linear in the volume, so the difference is the DRR of the intensity difference.
  """
  n = views.shape[1]
  if d["diff"] is None:
    return np.zeros(n, np.float32), np.zeros(n, np.int32)
  one = slice(i, i + 1)
  delta = np.asarray(_project(d["diff"][None], bank.origin[one], bank.spacing[one],
                              bank.extent[one], {k: v[one] for k, v in params.items()}, frame,
                              projector))[0]
  seen = downsample(np.asarray(views[i], np.float64), g.visible_size)
  span = seen.max(axis=(1, 2)) - seen.min(axis=(1, 2))
  change = np.abs(downsample(delta.astype(np.float64), g.visible_size)) / np.where(
      span > 0, span, 1.0)[:, None, None]
  return (change.max(axis=(1, 2)).astype(np.float32),
          np.count_nonzero(change >= g.visible_noise, axis=(1, 2)).astype(np.int32))


def _record(d, views, corr, change, visible_px, extent, config) -> dict:
  """The record dict of one rendered sample (fields in the module docstring)."""
  info, r, n = d["info"], d["recipe"], views.shape[0]
  rec = {"views": views, "corr": corr if corr is not None else np.zeros((0,), np.float16),
         "label": d["label"], "volume": d["name"], "negative_kind": d["negative_kind"],
         "redraws": np.int32(d["redraws"]), "visible_px": visible_px,
         "visible": (visible_px >= config.generate.visible_min_px).astype(np.uint8),
         **{k: r[k] for k in _GEOMETRY + ("seed",)}}
  if info is None:
    return {**rec, "gap_mm": np.float32(0), "displacement_mm": np.float32(0),
            "angulation_deg": np.float32(0), "fracture_px": np.full((n, 2), np.nan, np.float32),
            "ray_plane_deg": np.full(n, np.nan, np.float32), "change": np.zeros(n, np.float32)}
  px, angle = _fracture_geometry(info, {k: r[k] for k in _GEOMETRY}, extent,
                                 from_config.framing(config))
  return {**rec, "gap_mm": np.float32(info.gap_mm),
          "displacement_mm": np.float32(np.linalg.norm(info.translation)),
          "angulation_deg": np.float32(info.rotation_deg), "fracture_px": px,
          "ray_plane_deg": angle, "change": change}


def _encode_batch(drawn: list[dict], config, sampler: _Sampler) -> list[bytes]:
  """Renders and encodes a batch of drawn samples, dropping or redrawing positives that do not
  show their fracture (generate.invisible); keeps the batch's order."""
  g = config.generate
  done, pending = {}, list(enumerate(drawn))
  while pending:
    views, corr, bank, params = _render([d for _, d in pending], config)
    retry = []
    for i, (pos, d) in enumerate(pending):
      if not (np.all(np.isfinite(views[i])) and (corr is None or np.all(np.isfinite(corr[i])))):
        raise FloatingPointError(f"{d['name']}: non-finite sample (a label footprint wider "
                                 "than the sparse window?); set labels.method='dense'")
      change, visible_px = _visibility(d, i, views, bank, params, from_config.framing(config),
                                       from_config.projector(config), g)
      rec = _record(d, views[i], None if corr is None else corr[i], change, visible_px,
                    float(bank.extent[i]), config)
      if d["label"] and not shows_fracture(rec["visible"], g.visible_in):
        if g.invisible == "drop":
          continue
        if g.invisible == "redraw" and d["redraws"] < g.max_redraws:
          rng = np.random.default_rng([config.seed, d["volume_index"], _REDRAW_STREAM,
                                       d["sample"], d["redraws"] + 1])
          retry.append((pos, sampler.redraw(d, rng)))
          continue
      done[pos] = records.encode(rec, g.views_dtype)
    pending = retry
  return [done[pos] for pos in sorted(done)]


def volume_records(name: str, index: int, config) -> tuple[list[bytes], int]:
  """All records of one volume (encoded) and the number of rejected view draws."""
  hu = from_config.hu_volume(name, config.ct)
  cube = preprocess.to_cube(hu, size=config.ct.size)
  cube = cube.replace(source=name)
  draw = _Sampler(cube, config)
  labels = volume_labels(config.seed, index, config.generate.samples_per_volume)
  out, rejected, batch = [], 0, []
  for s, label in enumerate(labels):
    d = draw.draw(np.random.default_rng([config.seed, index, _SAMPLE_STREAM, s]), int(label))
    d.update(name=name, volume_index=index, sample=s)
    rejected += int(d["recipe"]["rejected"])
    batch.append(d)
    if len(batch) == config.generate.render_batch or s == len(labels) - 1:
      out += _encode_batch(batch, config, draw)
      batch = []
  return out, rejected


def decode(record: bytes) -> dict:
  """One record as the dict of the module docstring (NumPy arrays, `volume` and
  `negative_kind` as str)."""
  sample = records.decode(record)
  sample["label"] = np.int32(sample["label"])
  sample["visible"] = np.asarray(sample["visible"], np.uint8)
  n = len(sample["visible"])   # records written before visible_px / redraws existed
  sample["visible_px"] = np.asarray(sample.get("visible_px", np.zeros(n)), np.int32)
  sample["redraws"] = np.int32(sample.get("redraws", 0))
  return sample
