"""Tests of jaxcorr.pictures.viewer: the HTML is self-contained and holds the data, and in headless
Chromium a click on a patch lights up exactly the patches whose C with it is above threshold.

The browser tests run `chromium --headless --dump-dom` on the page with the test hook in the
URL fragment (see jaxcorr/pictures/viewer.py) and read the page's `<pre id="state">`; they skip when no
Chromium is installed (Debian: `apt-get install -y chromium`).
"""

import base64
import html
import io
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from jaxcorr.pictures import viewer

_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_THRESHOLD = 0.5
_LEVELS = np.array([0.0, 0.2, 0.4, 0.7, 0.9])  # none within a quantisation step of 0.3 or 0.5


def _study():
  """Three views: a plain 4x4 grid, a letterboxed strip whose top and bottom patch rows are
  all padding, and a half-size preview of a 192x192 image with a 6x6 grid; C has a known band
  (same column) on top of levels drawn from _LEVELS."""
  rng = np.random.default_rng(0)
  images = [np.linspace(0, 0.4, 64 * 64).reshape(64, 64),
            rng.integers(0, 100, (20, 80), dtype=np.uint8),
            rng.random((96, 96)) * 0.3]
  rects = [viewer.patch_rects((4, 4), 16, 1.0, (0, 0), (64, 64)),
           viewer.patch_rects((4, 4), 16, 0.8, (0, 24), (20, 80)),
           viewer.patch_rects((6, 6), 16, 0.5, (0, 0), (192, 192), display_shape=(96, 96))]
  coords = [None, None, viewer.patch_centres((6, 6), 16, 0.5, (0, 0))]
  grids = [(4, 4), (4, 4), (6, 6)]
  pairs = [(0, 1), (0, 2), (1, 2)]
  corr = []
  for i, j in pairs:
    c = rng.choice(_LEVELS, (16, grids[j][0] * grids[j][1]), p=[0.5, 0.2, 0.1, 0.1, 0.1])
    cols_i = np.arange(16) % grids[i][1]
    cols_j = np.arange(c.shape[1]) % grids[j][1]
    c[cols_i[:, None] == cols_j[None, :] % 4] = 0.9
    corr.append(c)
  return images, rects, corr, pairs, coords


def _embedded(text):
  match = re.search(r'<script type="application/json" id="data">(.*?)</script>', text, re.S)
  assert match, "no embedded data"
  return json.loads(match.group(1))


def test_patch_rects_letterbox():
  """A 20x80 image scaled by 0.8 into a 64x64 canvas at y offset 24: rows 0 and 3 of the 4x4
  grid are padding, rows 1 and 2 cover image rows [0, 10) and [10, 20)."""
  r = viewer.patch_rects((4, 4), 16, 0.8, (0, 24), (20, 80))
  assert r.shape == (4, 4, 4)
  np.testing.assert_array_equal(r[0], 0)
  np.testing.assert_array_equal(r[3], 0)
  np.testing.assert_allclose(r[1, 1], [20, 0, 40, 10])
  np.testing.assert_allclose(r[2, 3], [60, 10, 80, 20])
  half = viewer.patch_rects((4, 4), 16, 0.8, (0, 24), (20, 80), display_shape=(10, 40))
  np.testing.assert_allclose(half, r / 2)
  # Pixel-index coordinates, unclipped: patch (1, 1) straddles the image's top edge.
  np.testing.assert_allclose(viewer.patch_centres((4, 4), 16, 0.8, (0, 24))[1, 1],
                             [29.5, -0.5])
  np.testing.assert_allclose(viewer.rect_centres(r[2, 3]), [70, 15])


def test_html_is_self_contained_and_holds_the_data(tmp_path):
  images, rects, corr, pairs, coords = _study()
  titles = ["AP </script><b>", "lateral", "oblique"]
  path = viewer.write_viewer(str(tmp_path / "viewer.html"), images, rects, corr, pairs,
                             threshold=_THRESHOLD, titles=titles, pixel_coords=coords)
  assert os.listdir(tmp_path) == ["viewer.html"]  # no temp file left behind
  text = open(path, encoding="utf-8").read()
  assert "http://" not in text and "https://" not in text
  assert not re.search(r"""(src|href)\s*=\s*["']?(\w+:)?//""", text, re.I)
  assert not re.search(r"<(link|iframe|object|embed)\b|<script[^>]*\bsrc\b|@import|url\(", text,
                       re.I)
  data = _embedded(text)
  assert [v["title"] for v in data["views"]] == titles
  assert data["threshold"] == _THRESHOLD
  for v, view in enumerate(data["views"]):
    uri = view["png"]
    assert uri.startswith("data:image/png;base64,")
    png = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    np.testing.assert_array_equal(np.asarray(png), viewer.to_uint8(images[v]))
    np.testing.assert_allclose(view["rects"], rects[v].reshape(-1, 4), atol=0.005)
    want = viewer.rect_centres(rects[v]) - 0.5 if coords[v] is None else coords[v]
    np.testing.assert_allclose(view["coords"], want.reshape(-1, 2), atol=0.05)
  assert [(p["i"], p["j"]) for p in data["pairs"]] == pairs
  for p, c in zip(data["pairs"], corr):
    q = np.frombuffer(base64.b64decode(p["q"]), np.uint8).reshape(p["rows"], p["cols"])
    np.testing.assert_allclose(q / 255, c, atol=1 / 510 + 1e-9)


def test_file_size_bounds(tmp_path):
  rng = np.random.default_rng(1)
  noise = [rng.random((256, 256)), rng.random((256, 256))]  # worst case for PNG
  rects = [viewer.patch_rects((16, 16), 16, 1.0, (0, 0), (256, 256))] * 2
  small = viewer.write_viewer(str(tmp_path / "small.html"), noise, rects,
                              [rng.random((256, 256))], [(0, 1)])
  assert os.path.getsize(small) < 500_000
  smooth = [np.linspace(0, 1, 512 * 512).reshape(512, 512)] * 2
  rects = [viewer.patch_rects((32, 32), 16, 1.0, (0, 0), (512, 512))] * 2
  big = viewer.write_viewer(str(tmp_path / "big.html"), smooth, rects,
                            [rng.random((1024, 1024))], [(0, 1)])
  assert os.path.getsize(big) < 2_000_000


def test_bad_inputs_are_refused(tmp_path):
  images, rects, corr, pairs, _ = _study()
  out = str(tmp_path / "v.html")
  with pytest.raises(ValueError, match="pair"):
    viewer.write_viewer(out, images, rects, corr, [(0, 1), (0, 2), (2, 1)])
  with pytest.raises(ValueError, match="C is"):
    viewer.write_viewer(out, images, rects, [corr[0], corr[1].T, corr[2]], pairs)
  with pytest.raises(ValueError, match="grids"):
    viewer.write_viewer(out, images, [r.reshape(-1, 4) for r in rects], corr, pairs)
  with pytest.raises(ValueError, match="at least 2"):
    viewer.write_viewer(out, images[:1], rects[:1], [], [])
  assert not os.path.exists(out)
  flat = viewer.write_viewer(out, images, [r.reshape(-1, 4) for r in rects], corr, pairs,
                             grids=[(4, 4), (4, 4), (6, 6)])
  assert os.path.exists(flat)


@pytest.fixture(scope="module")
def browser():
  """Path of a Chromium/Chrome executable; skips the test when there is none."""
  for name in _BROWSERS:
    path = shutil.which(name)
    if path:
      return path
  pytest.skip(f"no headless browser found (looked for {', '.join(_BROWSERS)}); "
              "install one, e.g. `apt-get install -y chromium` on Debian")


def _chromium(browser, tmp_path, args, url):
  """Runs headless Chromium once with its own profile; returns stdout."""
  profile = tmp_path / f"profile-{len(os.listdir(tmp_path))}"
  cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", "--no-default-browser-check", "--disable-extensions",
         f"--user-data-dir={profile}", "--virtual-time-budget=10000", *args, url]
  res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
  assert res.returncode == 0, res.stderr[-3000:]
  return res.stdout


@pytest.fixture(scope="module")
def page(tmp_path_factory):
  """The study's viewer page, written once."""
  images, rects, corr, pairs, coords = _study()
  path = tmp_path_factory.mktemp("viewer") / "viewer.html"
  viewer.write_viewer(str(path), images, rects, corr, pairs, threshold=_THRESHOLD,
                      pixel_coords=coords)
  return path


def _state(browser, tmp_path, page, fragment):
  dom = _chromium(browser, tmp_path, ["--dump-dom"], f"{page.as_uri()}#{fragment}")
  assert 'data-ready="1"' in dom, "the page's test hook did not run"
  match = re.search(r'<pre id="state">(.*?)</pre>', dom, re.S)
  return json.loads(html.unescape(match.group(1)))


def _expected(view, patch, threshold):
  """np.nonzero(C > t) for the row (or column) of each pair the selected patch belongs to,
  less the patches with empty rectangles (in the padding, so never shown)."""
  _, rects, corr, pairs, _ = _study()
  shown = [(r[..., 2] > r[..., 0]).ravel() & (r[..., 3] > r[..., 1]).ravel() for r in rects]
  out = {}
  for (i, j), c in zip(pairs, corr):
    if i == view:
      out[str(j)] = np.nonzero((c[patch] > threshold) & shown[j])[0].tolist()
    elif j == view:
      out[str(i)] = np.nonzero((c[:, patch] > threshold) & shown[i])[0].tolist()
  return out


@pytest.mark.parametrize("view,x,y,patch,row,col,xy,threshold", [
    (0, 40, 24, 6, 1, 2, (39.5, 23.5), 0.5),    # a row of C_01 and of C_02
    (1, 30, 5, 5, 1, 1, (29.5, 4.5), 0.5),      # a column of C_01, a row of C_12
    (2, 40, 40, 14, 2, 2, (79.5, 79.5), 0.3),   # columns; coordinates in the 192 px original
])
def test_click_lights_up_the_band(browser, tmp_path, page, view, x, y, patch, row, col, xy,
                                  threshold):
  state = _state(browser, tmp_path, page, f"threshold={threshold}&test-click={view},{x},{y}")
  assert state["selected"] == {"view": view, "patch": patch, "row": row, "col": col,
                               "x": xy[0], "y": xy[1]}
  assert state["pinned"] is True
  assert state["threshold"] == threshold
  expected = _expected(view, patch, threshold)
  assert state["highlighted"] == expected
  assert state["counts"] == {w: len(b) for w, b in expected.items()}
  assert all(len(b) >= 2 for b in expected.values())  # the band is there
  if view != 1:
    # View 1's patches 0-3 lie in the padding: scores above threshold that must stay dark.
    corr = _study()[2]
    towards_1 = corr[0][patch] if view == 0 else corr[2][:, patch]
    assert (towards_1[:4] > threshold).any()
    assert not {0, 1, 2, 3} & set(state["highlighted"]["1"])


def test_hover_selects_without_pinning(browser, tmp_path, page):
  state = _state(browser, tmp_path, page, "test-move=0,40,24")
  assert state["selected"]["patch"] == 6 and state["pinned"] is False
  assert state["highlighted"] == _expected(0, 6, _THRESHOLD)
  # While pinned, hovering elsewhere keeps the pinned patch.
  state = _state(browser, tmp_path, page, "test-click=0,40,24&test-move=2,40,40")
  assert state["selected"]["view"] == 0 and state["selected"]["patch"] == 6


def test_pin_unpin_escape(browser, tmp_path, page):
  # View 1's patch rows 0 and 3 lie in the letterbox padding: its pixels are rows 1 and 2.
  assert _state(browser, tmp_path, page, "test-click=1,10,19")["selected"]["patch"] == 8
  twice = _state(browser, tmp_path, page, "test-click=0,8,8&test-click=0,8,8")
  assert twice["pinned"] is False and twice["selected"]["patch"] == 0
  moved = _state(browser, tmp_path, page, "test-click=0,8,8&test-click=0,56,56")
  assert moved["pinned"] is True and moved["selected"]["patch"] == 15
  escaped = _state(browser, tmp_path, page, "test-click=0,8,8&test-key=Escape")
  assert escaped == {"selected": None, "pinned": False, "threshold": _THRESHOLD,
                     "highlighted": {}, "counts": {}}


def test_screenshot(browser, tmp_path, page):
  shot = tmp_path / "viewer.png"
  _chromium(browser, tmp_path, [f"--screenshot={shot}", "--window-size=1000,700"],
            f"{page.as_uri()}#test-click=0,40,24")
  assert shot.stat().st_size > 10_000
  img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
  assert img.shape == (700, 1000, 3)
  r, g, b = img[..., 0], img[..., 1], img[..., 2]
  heat = (r > 150) & (b < 80) & (r - g > 60)
  pinned = (g > 200) & (r < 60) & (b < 60)
  assert heat.sum() > 500, "no heat overlay on the other views"
  assert pinned.sum() > 50, "no outline on the pinned patch"
