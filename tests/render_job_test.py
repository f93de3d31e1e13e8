"""End-to-end runs of the render job: in process, through the command line, and on a real CT."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from jaxcorr import jobs

sys.path.insert(0, str(REPO))
from configs import render  # pylint: disable=wrong-import-position


def _tiny(**overrides):
  config = render.get_config("tiny")
  config.geometry.detector_size = (48, 64)
  config.update_from_flattened_dict(overrides)
  return config


def test_render_writes_drrs_previews_and_geometry(tmp_path):
  jobs.run(_tiny(), str(tmp_path))
  images = np.load(tmp_path / "drr.npy")
  assert images.shape == (2, 48, 64) and images.dtype == np.float32
  assert np.all(np.isfinite(images)) and images.min() >= 0
  # The limb is in the middle of each view and air around it: the border is nearly empty.
  for image in images:
    assert image[20:28, 28:36].mean() > 5 * max(image[0].mean(), image[-1].mean(), 1e-3)
  for n in range(2):
    assert (tmp_path / f"drr_{n}.png").stat().st_size > 1000
  record = json.loads((tmp_path / "geometry.json").read_text())
  mats = np.asarray(record["pixel_index_matrices"])
  # The isocentre projects to the detector centre for centred, offset-free views.
  p = mats @ np.array([0.0, 0.0, 0.0, 1.0])
  np.testing.assert_allclose(p[:, :2] / p[:, 2:], [[31.5, 23.5]] * 2, atol=1e-3)
  assert json.loads((tmp_path / "config.json").read_text())["job"] == "render"
  # Correspondence labels of the pair: [1, L, L] with L = (48 / 16) * (64 / 16) patches.
  corr = np.load(tmp_path / "corr.npy")
  assert corr.shape == (1, 12, 12) and 0 <= corr.min() and 0.1 < corr.max() <= 1
  assert (tmp_path / "corr_0_1.png").stat().st_size > 1000


def test_patient_orbit_and_translation_move_the_image(tmp_path):
  fixed = {"geometry.angles": (0.0,), "geometry.pixel_spacing": (8.0, 8.0)}
  base = _tiny(**fixed)
  jobs.run(base, str(tmp_path / "a"))
  moved = _tiny(**fixed, **{"geometry.translation": (20.0, 0.0, 0.0)})
  jobs.run(moved, str(tmp_path / "b"))
  a, b = np.load(tmp_path / "a" / "drr.npy")[0], np.load(tmp_path / "b" / "drr.npy")[0]
  # Gantry 0 looks along z with u along +x: moving the volume to +x moves the image to
  # higher columns: 20 mm x magnification 1.5 / 8 mm pixels = 3.75 columns.
  cols = np.arange(a.shape[1])
  com = lambda im: (im.sum(0) * cols).sum() / im.sum()
  assert 3.75 * 0.8 < com(b) - com(a) < 3.75 * 1.2
  patient = _tiny(**fixed, **{"geometry.orbit": "patient"})
  jobs.run(patient, str(tmp_path / "c"))
  assert not np.allclose(np.load(tmp_path / "c" / "drr.npy")[0], a)


def test_bad_choices_list_the_allowed_values(tmp_path):
  with pytest.raises(ValueError, match="bone_sigmoid, attenuation"):
    jobs.run(_tiny(**{"intensity.model": "sigmoid"}), str(tmp_path))
  with pytest.raises(ValueError, match="allowed: .*render"):
    jobs.run(_tiny(job="rendr"), str(tmp_path))
  with pytest.raises(ValueError, match="sdd=500.0 must exceed sid=1000.0"):
    jobs.run(_tiny(**{"geometry.sdd": 500.0}), str(tmp_path))


def _main(*args, cwd):
  return subprocess.run([sys.executable, "-m", "jaxcorr.main", *args], cwd=cwd,
                        capture_output=True, text=True, timeout=300,
                        env={**os.environ, "JAX_PLATFORMS": "cpu"})


def test_command_line_with_overrides_and_a_mistyped_field(tmp_path):
  work = tmp_path / "w"
  ok = _main("--config=configs/render.py:tiny", f"--workdir={work}",
             "--config.geometry.angles=(0.,90.,30.)", "--config.geometry.detector_size=(32,32)",
             "--config.png=False", cwd=REPO)
  assert ok.returncode == 0, ok.stderr[-2000:]
  assert np.load(work / "drr.npy").shape == (3, 32, 32)
  bad = _main(f"--config={REPO}/configs/render.py:tiny", f"--workdir={work}",
              "--config.geometry.angle=(0.,)", cwd=tmp_path)
  assert bad.returncode != 0
  assert "--config.geometry.angle is not a field of config.geometry" in bad.stderr
  assert "valid fields: angles," in bad.stderr


def test_render_a_real_ct_with_the_attenuation_model(tmp_path, shared_data):
  path = shared_data / "ct" / "totalseg_example_ct_abdomen_pelvis_3mm.nii.gz"
  config = _tiny(**{"ct.path": str(path), "intensity.model": "attenuation", "png": False})
  jobs.run(config, str(tmp_path))
  images = np.load(tmp_path / "drr.npy")
  # mu of water 0.0206/mm through ~20-40 cm of abdomen: line integrals of a few units.
  assert 2.0 < images.max() < 15.0


def test_same_anatomy_gives_the_same_drr_whatever_the_file_orientation(tmp_path):
  nib = pytest.importorskip("nibabel")
  from jaxcorr.ct import phantoms  # pylint: disable=import-outside-toplevel
  vol = phantoms.make_phantom("hand", seed=3, size=40)
  # RAS affine of the LPS grid: voxel (i, j, k) -> (-x, -y, z).
  ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.block(
      [[np.diag(vol.spacing), vol.origin[:, None]], [np.zeros((1, 3)), np.ones((1, 1))]])
  nib.save(nib.Nifti1Image(vol.data, ras), tmp_path / "lps.nii.gz")
  # The same anatomy stored with axes permuted (z, x, y) and x flipped: new[k, i', j] with
  # i' = X - 1 - i; its affine maps the new indices back to the same world points.
  data = np.transpose(vol.data[::-1], (2, 0, 1))
  perm = np.zeros((4, 4))
  perm[2, 0] = 1.0                                   # new axis 0 is old k
  perm[0, 1] = -1.0                                  # new axis 1 is old i, flipped
  perm[0, 3] = vol.shape[0] - 1
  perm[1, 2] = 1.0                                   # new axis 2 is old j
  perm[3, 3] = 1.0
  nib.save(nib.Nifti1Image(np.ascontiguousarray(data), ras @ perm),
           tmp_path / "permuted.nii.gz")
  images = []
  for name in ("lps", "permuted"):
    config = _tiny(**{"ct.path": str(tmp_path / f"{name}.nii.gz"), "ct.size": 40,
                      "geometry.angles": (0.0, 90.0, 30.0), "geometry.out_of_plane": 10.0,
                      "png": False})
    jobs.run(config, str(tmp_path / name))
    images.append(np.load(tmp_path / name / "drr.npy"))
  np.testing.assert_allclose(images[1], images[0], rtol=1e-5, atol=1e-4)
