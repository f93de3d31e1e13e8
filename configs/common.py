"""Config blocks shared by every job, and the preset parser.

Each block's keys are the keyword arguments of the code that consumes it, so a block can be
passed as `**config.block` where that makes sense. Derived values (an automatic pixel spacing,
say) are computed in code from these fields, so an override never leaves a stale value.
"""

import ml_collections

# Sentinel for "compute from the other fields" (ml_collections needs a fixed type per field).
AUTO = 0.0
# Every job that resumes (training, generate, make_fractures, make_sparse) has `resume_anyway`:
# True continues a workdir whose config.json differs in fields that alter shapes or the data
# stream (jaxcorr.core.config_diff); the default stops with the list of those fields.
RESUME_ANYWAY = False


def parse_preset(arg, allowed):
  """Returns the preset named by the `--config=file.py:PRESET` argument.

  Args:
    arg: the string after the colon, or None.
    allowed: the preset names this config file knows (a sequence or a dict), the first being
      the default.

  Raises:
    ValueError: for an unknown preset, listing the allowed ones.
  """
  allowed = list(allowed)
  preset = arg or allowed[0]
  if preset not in allowed:
    raise ValueError(f"unknown config preset {preset!r}; allowed presets: {', '.join(allowed)}")
  return preset


def apply_preset(config, presets: dict, arg):
  """`config` (the default) with the overrides of the preset `arg` names.

  Args:
    config: the default config of a file, built whole.
    presets: {name: {flattened field: value}}, one row per preset, the default's row ({})
      first; a row lists only what differs from the default.
    arg: the string after the colon of `--config=file.py:PRESET`, or None.
  """
  config.update_from_flattened_dict(presets[parse_preset(arg, presets)])
  return config


def paths(default=""):
  """A field holding one path or a tuple of paths. Typed `object`, so from the command line
  `--config.ct.path=/cts` gives the string and `--config.ct.path="('/cts','/more.txt')"` the
  tuple (a tuple-typed field would need the tuple syntax for one path too)."""
  return ml_collections.FieldReference(default, field_type=object)


def sized(size):
  """Preset overrides for `size`^3 CT cubes rendered to `size`^2 views."""
  return {"ct.size": size, "views.detector_size": (size, size)}


def ct(size=256):
  """Which CT to read and how to turn it into a cube of intensities (`config.ct`)."""
  return ml_collections.ConfigDict(dict(
      # Rendering: a NIfTI file (.nii/.nii.gz) or a DICOM series folder. Training, generate,
      # evaluate: also a folder of CTs, a .txt list of paths, or a tuple of any of these
      # (`data.splits.list_paths`). Empty = built-in phantoms.
      path=paths(),
      # Built-in synthetic phantom, used when `path` is empty: forearm, hand, foot, knee, random.
      phantom="forearm",
      phantom_seed=0,
      # Edge of the cube, in voxels, that the CT is resampled to (whole CT kept, air-padded).
      size=size,
      # HU window applied after padding values are turned into air.
      hu_window=(-1000.0, 3000.0),
      # Refuse volumes with more voxels than this before resampling (memory guard).
      max_voxels=1024 ** 3,
      # For folders of CTs: 'raise' stops at the first bad file, 'skip' logs it and goes on.
      on_error="raise",
      # World position (mm) of the cube's centre: the isocentre, as the authors do.
      isocenter=(0.0, 0.0, 0.0),
  ))


def intensity(model="bone_sigmoid", x0=1500.0):
  """HU -> projected quantity (`config.intensity`): the paper's bone sigmoid or physical mu."""
  return ml_collections.ConfigDict(dict(
      model=model,        # 'bone_sigmoid' (paper, images x0=1500, labels x0=850) | 'attenuation'
      x0=x0,              # sigmoid centre, in HU + 1000
      k=0.005,            # sigmoid slope, 1/HU
      mu_water=0.0206,    # linear attenuation of water, 1/mm ('attenuation' model)
  ))


def geometry(detector=256):
  """RTK-style circular cone-beam views (`config.geometry`); see docs/geometry.md."""
  return ml_collections.ConfigDict(dict(
      sid=1000.0,                       # source to isocentre, mm
      sdd=1500.0,                       # source to detector, mm
      angles=(0.0, 90.0),               # gantry angles, degrees, one per view
      # Orbit axis: 'rtk' turns about world +y (anterior-posterior for an LPS CT) exactly as
      # RTK does with the volume as read; 'patient' turns about the long axis (IEC 61217:
      # gantry 0 = source anterior, 90 = source at the patient's left).
      orbit="rtk",
      out_of_plane=0.0,                 # out-of-plane angle, degrees, all views
      in_plane=0.0,                     # in-plane angle, degrees, all views
      source_offset=(0.0, 0.0),         # (x, y) mm, RTK SourceOffsetX/Y
      projection_offset=(0.0, 0.0),     # (x, y) mm, RTK ProjectionOffsetX/Y
      detector_size=(detector, detector),  # (rows H, columns W)
      # (row, column) pixel spacing in mm; 0 = fit the magnified cube inside the detector.
      pixel_spacing=(AUTO, AUTO),
      translation=(0.0, 0.0, 0.0),      # volume translation, world mm
      # Optional .npy of [N, 3, 4] pixel-index projection matrices; replaces the circular views.
      matrices="",
  ))


def drr():
  """Projector settings (`config.drr`), the same block in every job that renders."""
  return ml_collections.ConfigDict(dict(
      # auto: the fastest kernel measured on this platform (clipped on CPU, dense on GPU and
      # TPU; logged at start) | clipped (rays only cross the box around the patient) | dense
      # | fused (clipped as one Pallas kernel for GPUs; not yet measured there)
      method="auto",
      dtype="float32",     # volume storage on the device: float32 | bfloat16
      # rays per marching group (clipped), chunk (dense) or program (fused, a power of two);
      # 0 = the kernel's default
      batch_size=0,
  ))


def add_sample_sources(config, *, size, phantoms):
  """The blocks that say where training samples come from, how they look and which kernels
  render them: `ct`, `intensity`, `views`, `labels`, `drr`, `data` (shared by every job that
  renders samples)."""
  config.ct = ct(size=size)
  config.ct.phantom = "random"
  config.intensity = intensity()
  config.views = views(detector=size)
  config.labels = labels()
  config.drr = drr()
  config.data = data(phantoms=phantoms)
  config.resume_anyway = RESUME_ANYWAY
  return config


def views(n_views=2, detector=256):
  """Sampled training views (`config.views`): `data.sampler.ViewSampler` + framing + rejection."""
  return ml_collections.ConfigDict(dict(
      # 'jaxcorr': the fields below | 'authors': the authors' generator exactly (rolls and wide
      # tilts; lengths scale with the cube; the fields below but n_views are unused), see
      # jaxcorr/data/sampler.py.
      preset="jaxcorr",
      n_views=n_views,
      gantry_modes=(0.0, 90.0, 180.0, 270.0),   # first rotation axis: nominal angles, deg
      gantry_probs=(0.4, 0.3, 0.2, 0.1),        # ... and their probabilities
      gantry_spread=10.0,                       # Gaussian std around the nominal, deg
      out_of_plane_nominal=0.0,                 # second rotation axis, deg
      out_of_plane_spread=5.0,
      sid_range=(1000.0, 1100.0),               # source to isocentre, mm
      idd_range=(800.0, 1200.0),                # isocentre to detector, mm
      max_translation=50.0,                     # volume translation, +- mm per axis
      detector_size=(detector, detector),
      fov_scale=1.0,       # 1 fits the whole cube (or the anatomy) at every angle; < 1 zooms in
      # 'cube': each view's field of view fits the whole cube, centred | 'anatomy': it fits the
      # projected box of the anatomy (HU >= framing_hu), as a collimated radiograph; see
      # jaxcorr/data/anatomy_framing.py and docs/framing.md.
      framing="cube",
      framing_margin=0.1,        # anatomy: field of view = (1 + margin) x the box's projection
      framing_zoom=(1.0, 1.3),   # ... times a zoom uniform in this range
      framing_shift=0.04,        # ... centre moved by up to this fraction of the field of view
      framing_hu=300.0,          # anatomy = voxels with HU >= this (300: bone; -500: the body)
      framing_max_zoom=2.0,      # ... never magnified over this x the cube framing (labels' tile)
      orbit="rtk",         # 'rtk' | 'patient', as geometry.orbit
      min_coverage=0.02,   # reject a sample whose view sees anatomy on fewer patches than this
      max_tries=10,        # redraws before the last draw is kept anyway
  ))


def labels(patch=16):
  """Correspondence labels (`config.labels`); see jaxcorr/projection/labels.py."""
  return ml_collections.ConfigDict(dict(
      patch=patch,              # patch size k in pixels (and the volume pooling factor)
      pooling="mean",           # 'mean' | 'max'
      threshold=0.1,            # coarse voxels with weight <= threshold are air
      method="sparse",          # 'sparse' | 'dense' (the same C; see jaxcorr/projection/labels.py)
      intensity=intensity(x0=850.0),  # the paper's correspondence bone map
  ))


def data(phantoms=8):
  """Where samples come from (`config.data`)."""
  return ml_collections.ConfigDict(dict(
      mode="on_the_fly",        # 'on_the_fly' (render in the input path) | 'offline' (shards)
      # on_the_fly: where the views are drawn. 'host' (NumPy, Grain threads) | 'device' (jitted
      # with the rendering; the host sends volume indices and seeds) | 'auto' (device on a GPU
      # or TPU, host on a CPU).
      recipes="auto",
      shards="",                # offline: a generate job's workdir
      phantoms=phantoms,        # without ct.path: this many seeded synthetic phantoms
      split_mm=0.0,             # split CTs longer than this along z (0 = never)
      splits=(0.8, 0.1, 0.1),   # train/validation/test fractions, by volume
      # CTs of the test / validation split instead of the automatic split (a file, folder, .txt
      # list or tuple, as ct.path): never trained on; the other CTs of ct.path fill the rest.
      test_path=paths(),
      validation_path=paths(),
      threads=2,                # Grain read threads
      workers=0,                # Grain worker processes (multiprocess prefetch; 0 = none)
      prefetch=4,               # Grain prefetch buffer (batches)
  ))


def augment():
  """Training augmentations (`config.augment`)."""
  return ml_collections.ConfigDict(dict(
      radiometric=ml_collections.ConfigDict(dict(
          enabled=True, p_invert=0.5, brightness=0.1, contrast=0.2, max_gamma=1.5,
          max_noise=0.02)),
      # DRR -> radiograph look (docs/appearance.md); replaces the per-view min-max when on.
      appearance=ml_collections.ConfigDict(dict(
          enabled=False,
          p_attenuation=0.8, transmission=(0.005, 0.2),
          p_noise=0.8, photons=(1e3, 3e6),
          p_heel=0.5, heel=(0.0, 0.2),
          p_scatter=0.5, scatter=(0.0, 0.5), scatter_sigma=(0.05, 0.2),
          p_display=0.8, window_air=(0.0, 0.15), window_low=(0.0, 0.05),
          window_high=(0.95, 1.0), gamma=(0.67, 1.5), sharpen=(0.0, 1.5),
          sharpen_radius=(0.005, 0.03),
          p_shutter=0.2, shutter=(0.02, 0.15), p_shutter_white=0.5,
          p_glyphs=0.3, glyph_height=(0.04, 0.08), p_glyph_mirror=0.5,
          p_invert=0.5)),
      geometric=ml_collections.ConfigDict(dict(
          enabled=True, p_flip=0.5, p_rot90=0.5, p_shift=0.5, max_shift=2, p_crop=0.25,
          min_crop=0.5, p_cutout=0.25, max_cutout=0.5)),
  ))


def training(steps, learning_rate=1e-4, batch_size=16):
  """Top-level training fields plus `optim`, `mesh`, `ckpt` blocks for the one loop."""
  return dict(
      steps=steps,
      batch_size=batch_size,        # global batch (all devices and hosts)
      # 0 = derived from `steps` when the run starts (`train.loop.cadences`): a log line every
      # steps/10 (at most 50) steps, 4 evaluations (each with a checkpoint), 4 checkpoints.
      log_every=0,
      eval_every=0,
      stop_after_step=0,            # > 0: stop cleanly after this step (time-boxed runs)
      # > 0: a time budget in seconds of wall time for this invocation: after the step that
      # spends it, a final evaluation and a checkpoint; the same command continues.
      stop_after_seconds=0.0,
      resume_anyway=RESUME_ANYWAY,
      optim=ml_collections.ConfigDict(dict(
          learning_rate=learning_rate,  # paper: 1e-4 pretraining, 1e-5 fine-tuning
          warmup_steps=0,
          warmup_fraction=0.0,      # when warmup_steps is 0: this fraction of `steps`
          end_fraction=0.0,         # cosine decays to this fraction of the peak
          clip_norm=0.0,            # > 0: clip the global gradient norm
          weight_decay=0.0,         # > 0: AdamW, decoupled decay on weight matrices only
          b1=0.9, b2=0.999,
      )),
      mesh=ml_collections.ConfigDict(dict(
          num_devices=0,            # 0 = every device of every host
          fsdp=False,               # shard large parameters over the data axis
          distributed=False,        # call jax.distributed.initialize() (multi-host)
      )),
      ckpt=ml_collections.ConfigDict(dict(
          every=0,                  # 0 = steps // 4, derived when the run starts
          every_seconds=0.0,        # > 0: also a checkpoint when this much wall time passed
          keep=3, keep_best=1, best_metric="ap",
      )),
  )
