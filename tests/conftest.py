"""Shared test fixtures. Test data lives in tests/data (copied from the project's shared fixtures, see
tests/data/FIXTURES.md); a test that needs a data file fails, never skips, when it is missing."""

from __future__ import annotations

import os
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


def _home_caches() -> list[Path]:
    xdg = os.environ.get("XDG_CACHE_HOME")
    roots = [Path.home() / ".cache" / "realface"]
    if xdg:
        roots.append(Path(xdg).expanduser() / "realface")
    return roots


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every entry below ``root`` ({} when it does not exist)."""
    if not root.exists():
        return {}
    out = {str(root): (0, root.stat().st_mtime_ns)}
    for p in root.rglob("*"):
        st = p.lstat()
        out[str(p)] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture(scope="session", autouse=True)
def _home_cache_untouched(tmp_path_factory):
    """The whole run, subprocesses included, leaves the user's real cache exactly as it was. Session
    fixtures (which run outside the per-test cache below) get a cache of their own too."""
    before = {str(r): _tree(r) for r in _home_caches()}
    saved = {k: os.environ.get(k) for k in ("REALFACE_HOME", "REALFACE_OFFLINE")}
    os.environ["REALFACE_HOME"] = str(tmp_path_factory.mktemp("realface_session_home"))
    os.environ["REALFACE_OFFLINE"] = "1"
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    after = {str(r): _tree(r) for r in _home_caches()}
    assert after == before, "the tests wrote into the user's cache (~/.cache/realface)"


@pytest.fixture(scope="session")
def apply_models(tmp_path_factory) -> dict[str, Path]:
    """The tiny 64 px fixture as G_real and G_rendering safetensors, and a random-weight VGG16 file:
    what ``realface apply`` needs in the CLI tests (written once per test session)."""
    from realface.checkpoints import convert_pickle
    from tests._helpers import random_vgg16_file

    d = tmp_path_factory.mktemp("apply_models")
    pkl = data_file("stylegan2-ada", "sg2ada_tiny64.pkl")
    return {
        "real": convert_pickle(pkl, d / "real.safetensors", only=("G",)),
        "rendering": convert_pickle(pkl, d / "rendering.safetensors", only=("G_ema",)),
        "vgg": random_vgg16_file(d / "vgg16.pth"),
    }
