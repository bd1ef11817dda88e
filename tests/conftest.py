"""Shared test fixtures. Test data lives in tests/data (copied from the project's shared fixtures, see
tests/data/FIXTURES.md); a test that needs a data file fails, never skips, when it is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA_DIR = Path(__file__).parent / "data"


def data_file(*parts: str) -> Path:
    """Path of a file in tests/data; fails the test (never skips) when it is missing."""
    path = DATA_DIR.joinpath(*parts)
    if not path.is_file():
        pytest.fail(f"test data file missing: {path} (see tests/data/FIXTURES.md)")
    return path


@pytest.fixture
def data_dir() -> Path:
    return DATA_DIR


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own weights cache and never touches the user's home or the network."""
    home = tmp_path_factory.mktemp("realface_home")
    monkeypatch.setenv("REALFACE_HOME", str(home))
    monkeypatch.setenv("REALFACE_OFFLINE", "1")
    yield
