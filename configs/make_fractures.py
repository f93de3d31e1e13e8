"""CT-derived multi-view fracture benchmark: DRR pairs of CTs with and without inserted fractures.

  python -m jaxcorr.main --config=configs/make_fractures.py:tiny --workdir=/tmp/fractures
      8 synthetic phantoms (64^3 cubes, 64^2 views), 4 samples each (2 fractured, 2 not),
      with exact correspondence labels: 17 s on the 2-core CPU (most of it compiling), 0.6 GB.
      Writes splits.json, train/validation/test/<NNNNN>.array_record (one shard per volume),
      manifest.json (samples, positives and negatives per split) and config.json.
  python -m jaxcorr.main --config=configs/make_fractures.py --workdir=/data/fractures \
      --config.ct.path=/data/limb_cts
      The default: 256^3 cubes, 256^2 views, 16-pixel patches (ViT-S/16 inputs, 256 patches per
      view), 64 samples per volume; without ct.path, 64 seeded phantoms (4,096 samples).
      Measured on the busy 2-core CPU: 2.4 s a sample after a ~30 s start (about 3 h for the
      phantoms), 4 GB of memory, ~75 kB a sample on disk. Rendering moves to an accelerator
      when there is one; the host part (fracture, intensities, pooling) is ~1 s a sample.
      `generate.visibility=False` skips the before/after render of positives (~1/4 of the time).
  python -m jaxcorr.main --config=configs/make_fractures.py:cpu_real --workdir=/tmp/fractures_real
      The CPU benchmark of issue 22 from the real CTs (run from the repository root, which holds
      ../shared/data/ct and ../shared/data/ct_limbs; ct.path is a tuple of both folders; the
      one CT without a long bone is skipped): 47 CTs split by volume 50/25/25 (23 train, 12
      validation, 12 test), 64 samples each (3,008), 128^3 cubes and 128 px views framed on the
      bone (views.framing='anatomy') from a gantry turning about the patient's long axis
      (views.orbit='patient': the limb seen from the side, as radiographs of a limb are, never
      end-on, where a transverse fracture cannot be seen), fractures a 12 mm gap with every fragment displaced
      12-24 mm and angulated 15-30 degrees, positives that do not show their fracture in both
      views (fewer than 16 pixels changed by 0.05 of the view's range) redrawn up to 4 times
      (visible: 100% of train and validation, 94.0% of test positives). About 14 min on the
      2-core CPU without C (generate.with_corr=False; 6 min 40 s for 32 samples each, 31 min
      measured behind two test-suite runs), 1.6 GB; with C (the default, which the guided
      Table-3 rows need) it takes longer. The CNN baseline on it: configs/classify.py
      and docs/benchmarks.md, "Fracture benchmark: learnability baseline (issue 22)".
Both are resumable: run the same command again after a kill and only missing shards are
written. A volume without a long bone (see jaxcorr/ct/long_bones.py) is skipped with a warning and
listed in manifest.json (`ct.on_error=raise` stops instead). Splits are by volume
(data.splits), so no CT is in two splits. Records and their fields:
jaxcorr/data/fractures.py; read them with records.shard_paths / fractures.decode.

Difficulty: `fracture.gap_mm` (gap width; it must span a voxel of the cube, ~1.2 mm at 256^3
of a 300 mm field), `displacement_mm` and `angulation_deg` (largest fragment move; drawn in
[1/2, 1] of them), `p_displace` (share of fractures displaced/angulated), `max_tilt_deg`.
"""

import ml_collections

from configs import common

def fracture():
  """Fracture insertion (`config.fracture`): `fracture.insert_fracture` keywords + p_displace."""
  return ml_collections.ConfigDict(dict(
      gap_mm=2.0,                           # gap width, mm (a voxel of the cube or more)
      displacement_mm=4.0,                  # largest fragment translation, mm
      angulation_deg=10.0,                  # largest fragment angulation, degrees
      p_displace=0.5,                       # probability a fracture is displaced/angulated
      max_tilt_deg=20.0,                    # plane normal within this of the bone axis
      axial_fraction=0.3,                   # largest axial share of the translation
      soft_tissue_hu=40.0,                  # HU of the gap and vacated voxels
      min_bone_hu=300.0,                    # bone threshold for components
      min_length_mm=40.0,                   # shortest long bone (principal length), mm
      min_elongation=1.4,                   # smallest sqrt(l1 / l2) of a long bone
      edge_hu=150.0,                        # partial-volume rim voxels above this join a bone
  ))


def negative():
  """Harmless changes (`config.negative`): `fracture.make_negative` keywords."""
  return ml_collections.ConfigDict(dict(
      p_change=0.5,                 # probability of a change (jitter or blob, equally likely)
      jitter_hu=20.0,               # largest global HU offset of non-air voxels
      blob_hu=30.0,                 # largest HU offset of a soft-tissue blob
      blob_radius_mm=(10.0, 30.0),  # range of the blob's semi-axes, mm
      soft_range=(-200.0, 200.0),   # HU a blob may change (never bone)
  ))


# The real CTs of ../shared/data (read from the repository root): the CPU benchmark's volumes.
REAL_CTS = ("../shared/data/ct", "../shared/data/ct_limbs")

# Issue 22's CPU benchmark on the real CTs: fractures a CNN can learn to see at 128 px
# (docs/benchmarks.md, "Fracture benchmark: learnability baseline").
CPU_REAL = {**common.sized(128), "ct.path": REAL_CTS,
            "data.splits": (0.5, 0.25, 0.25), "generate.samples_per_volume": 64,
            "fracture.gap_mm": 12.0, "fracture.displacement_mm": 24.0,
            "fracture.angulation_deg": 30.0, "fracture.p_displace": 1.0,
            "generate.invisible": "redraw", "generate.visible_in": "all",
            "generate.visible_noise": 0.05, "generate.visible_min_px": 16}

# One row per preset: what differs from the default (256^3 cubes, 64 samples per volume).
PRESETS = {
    "default": {},
    # 64^3 cubes have ~4.7 mm voxels: a wider gap and a larger move stay visible.
    "tiny": {**common.sized(64), "data.phantoms": 8, "generate.samples_per_volume": 4,
             "generate.render_batch": 4, "fracture.gap_mm": 6.0,
             "fracture.displacement_mm": 8.0},
    "cpu_real": CPU_REAL,
}


def get_config(arg=None):
  config = ml_collections.ConfigDict()
  config.job = "make_fractures"
  config.seed = 0
  common.add_sample_sources(config, size=256, phantoms=64)
  # Views as limb radiographs are taken: collimated to the bone, the limb seen from the side
  # (a gantry about the patient's long axis; end-on views cannot show a transverse fracture).
  config.views.framing = "anatomy"
  config.views.orbit = "patient"
  config.ct.on_error = "skip"
  config.fracture = fracture()
  config.negative = negative()
  config.generate = ml_collections.ConfigDict(dict(
      samples_per_volume=64,                 # half of them fractured
      render_batch=8,                        # samples rendered per device call
      views_dtype="float16",                 # float16 | uint16
      with_corr=True,                        # store the exact correspondence labels C
      # Visibility of positives (jaxcorr/data/fractures.py): before/after rendered, the
      # difference counted at the model's input size in normalised units (view range = 1).
      visibility=True,                       # render before/after: change, visible_px
      visible_size=(0, 0),                   # the model's input size; (0, 0) = detector size
      visible_noise=0.02,                    # a pixel counts above this (augmentation noise)
      visible_min_px=4,                      # a view is `visible` with this many pixels
      visible_in="any",                      # any | all: views that must show the fracture
      invisible="keep",                      # keep | drop | redraw positives that do not
      max_redraws=4,                         # redraw: new fractures tried before keeping
  ))
  return common.apply_preset(config, PRESETS, arg)
