"""Shared test fixtures: where the real data lives, and the repository root."""

import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def shared_data():
  """The read-only real data folder `../shared/data`; skips the test when it is absent."""
  if not SHARED_DATA.is_dir():
    pytest.skip(f"real data folder {SHARED_DATA} is absent (see ../shared/data/MANIFEST.md)")
  return SHARED_DATA
