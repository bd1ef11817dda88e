"""Tests for realface.train.dataset: folder and zip datasets, file checks, the infinite sampler and
the resumable loader. Images are 16 px; image ``i`` carries its number in pixel (0, 0) of every
channel so batches can be traced back to file indices."""

from __future__ import annotations

import logging
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from realface.errors import ConfigError, RealFaceError
from realface.train.dataset import (
    DatasetError,
    ImageDataset,
    InfiniteSampler,
    make_loader,
    to_model_range,
)

RES = 16


def _pixels(i: int, res: int = RES) -> np.ndarray:
    """A distinctive, left-right asymmetric image whose pixel (0, 0) holds ``i``."""
    rng = np.random.default_rng(i)
    a = rng.integers(0, 256, size=(res, res, 3), dtype=np.uint8)  # [H, W, 3]
    a[0, 0, :] = i
    return a


def _write_folder(root: Path, n: int, fmt: str = "png") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        sub = root / f"{i // 8:02d}"  # nested folders, as dataset_tool writes them
        sub.mkdir(exist_ok=True)
        Image.fromarray(_pixels(i)).save(sub / f"img{i:05d}.{fmt}")
    return root


def _write_zip(path: Path, n: int, compression: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for i in range(n):
            buf = _png_bytes(_pixels(i))
            zf.writestr(f"{i // 8:02d}/img{i:05d}.png", buf)
        zf.writestr("dataset.json", '{"labels": null}')
    return path


def _png_bytes(a: np.ndarray, mode: str | None = None) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(a, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def _ids(batch: torch.Tensor) -> list[int]:
    """File index of every image in a batch ``[B, 3, H, W]`` (mirrored images: pixel (0, W-1))."""
    return batch[:, 0, 0, 0].tolist()


# --------------------------------------------------------------------------------------------------
# Dataset


def test_folder_dataset_items_and_order(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "ds", 12)
    (root / "notes.txt").write_text("not an image")
    ds = ImageDataset(root)
    assert len(ds) == 12 and ds.resolution == RES and ds.image_shape == (3, RES, RES)
    assert list(ds.names) == sorted(ds.names) and ds.names[0] == "00/img00000.png"
    for i in (0, 5, 11):
        x = ds[i]
        assert x.dtype == torch.uint8 and x.shape == (3, RES, RES)
        assert torch.equal(x, torch.from_numpy(_pixels(i)).permute(2, 0, 1))
    with pytest.raises(IndexError):
        ds[12]


def test_zip_dataset_equals_folder(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = ImageDataset(_write_folder(tmp_path / "ds", 10))
    with caplog.at_level(logging.DEBUG, logger="realface.train.dataset"):
        zipped = ImageDataset(_write_zip(tmp_path / "ds.zip", 10))
    assert "dataset.json" in caplog.text  # labels are ignored, with a debug message
    assert zipped.names == folder.names
    for i in range(10):
        assert torch.equal(zipped[i], folder[i])
    deflated = ImageDataset(_write_zip(tmp_path / "deflated.zip", 10, zipfile.ZIP_DEFLATED))
    assert torch.equal(deflated[3], folder[3])


def test_xflip_doubles_with_mirrors(tmp_path: Path) -> None:
    ds = ImageDataset(_write_folder(tmp_path / "ds", 6), xflip=True)
    assert len(ds) == 12 and ds.num_images == 6
    for i in range(6):
        assert torch.equal(ds[i + 6], ds[i].flip(2))
        assert not torch.equal(ds[i + 6], ds[i])


def test_max_size_takes_the_official_subset(tmp_path: Path) -> None:
    ds = ImageDataset(_write_folder(tmp_path / "ds", 12), max_size=5)
    idx = np.arange(12)
    np.random.RandomState(0).shuffle(idx)
    expected = [f"{i // 8:02d}/img{i:05d}.png" for i in np.sort(idx[:5])]
    assert list(ds.names) == expected


def test_wrong_resolution_names_the_file(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "ds", 6)
    Image.fromarray(_pixels(99, 32)).save(root / "big.png")
    with pytest.raises(DatasetError, match=r"16x16.*big\.png is 32x32"):
        ImageDataset(root)
    with pytest.raises(DatasetError, match=r"every image must be 32x32.*img00000\.png is 16x16"):
        ImageDataset(root, resolution=32)
    assert issubclass(DatasetError, RealFaceError)


def test_non_square_and_unsupported_mode_are_errors(tmp_path: Path) -> None:
    root = tmp_path / "rect"
    root.mkdir()
    Image.fromarray(np.zeros((16, 24, 3), np.uint8)).save(root / "a.png")
    with pytest.raises(DatasetError, match=r"square.*24x16.*a\.png"):
        ImageDataset(root)
    root = _write_folder(tmp_path / "cmyk", 3, fmt="jpg")
    Image.new("CMYK", (RES, RES)).save(root / "c.jpg")
    with pytest.raises(DatasetError, match=r"RGB.*c\.jpg has mode CMYK"):
        ImageDataset(root)


def test_gray_and_rgba_are_converted_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = _write_folder(tmp_path / "ds", 4)
    gray = np.arange(RES * RES, dtype=np.uint8).reshape(RES, RES)
    Image.fromarray(gray, mode="L").save(root / "g1.png")
    Image.fromarray(gray, mode="L").save(root / "g2.png")
    rgba = np.dstack([_pixels(7), np.full((RES, RES), 10, np.uint8)])
    Image.fromarray(rgba, mode="RGBA").save(root / "rgba.png")
    with caplog.at_level(logging.WARNING, logger="realface.train.dataset"):
        ds = ImageDataset(root)
    warnings = [r for r in caplog.records if "converted to RGB" in r.getMessage()]
    assert len(warnings) == 1 and "L: 2" in warnings[0].getMessage() and "RGBA: 1" in warnings[0].getMessage()
    g = ds[ds.names.index("g1.png")]
    assert g.shape == (3, RES, RES) and torch.equal(g[0], g[2]) and torch.equal(g[0], torch.from_numpy(gray))
    assert torch.equal(ds[ds.names.index("rgba.png")], torch.from_numpy(_pixels(7)).permute(2, 0, 1))


def test_corrupt_files_are_listed_and_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = _write_folder(tmp_path / "ds", 5)
    (root / "garbage.png").write_bytes(b"this is not an image")
    (root / "empty.jpg").write_bytes(b"")
    full = _png_bytes(_pixels(50))
    (root / "truncated.png").write_bytes(full[: len(full) // 2])
    jpg = tmp_path / "x.jpg"
    Image.fromarray(_pixels(51)).save(jpg)
    (root / "truncated.jpg").write_bytes(jpg.read_bytes()[:-40])
    with caplog.at_level(logging.WARNING, logger="realface.train.dataset"):
        ds = ImageDataset(root)
    skipped = {s.name: s.reason for s in ds.skipped}
    assert set(skipped) == {"garbage.png", "empty.jpg", "truncated.png", "truncated.jpg"}
    assert "truncated" in skipped["truncated.png"] and "truncated" in skipped["truncated.jpg"]
    summaries = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(summaries) == 1 and "truncated.png" in summaries[0] and "garbage.png" in summaries[0]
    assert len(ds) == 5 and all(n.startswith("00/") for n in ds.names)
    assert torch.equal(ds[4], torch.from_numpy(_pixels(4)).permute(2, 0, 1))


def test_corruption_found_only_when_decoding_does_not_crash(tmp_path: Path) -> None:
    """A file with an intact header and end but damaged pixel data: replaced by the next image."""
    root = _write_folder(tmp_path / "ds", 4)
    data = bytearray(_png_bytes(_pixels(90)))
    start = data.index(b"IDAT") + 4
    data[start : start + 20] = b"\x00" * 20  # damages the compressed stream, keeps IEND
    (root / "00" / "img00001.png").write_bytes(bytes(data))
    ds = ImageDataset(root)
    assert ds.skipped == ()
    assert torch.equal(ds[1], ds[2])  # deterministic stand-in: the next readable image
    with make_loader(ds, 4, num_workers=0, shuffle=False) as loader:
        assert _ids(next(loader)) == [0, 2, 2, 3]
    checked = ImageDataset(root, verify="decode")
    assert [s.name for s in checked.skipped] == ["00/img00001.png"] and len(checked) == 3


def test_zip_member_path_traversal_is_refused(tmp_path: Path) -> None:
    for bad in ("../evil.png", "/abs/evil.png", "a/../../evil.png", "C:/evil.png", "a\\..\\evil.png"):
        path = tmp_path / "bad.zip"
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("ok/img0.png", _png_bytes(_pixels(0)))
            zf.writestr(bad, _png_bytes(_pixels(1)))
        with pytest.raises(DatasetError, match="refusing the archive"):
            ImageDataset(path)


def test_bad_paths(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="expected a folder or a .zip"):
        ImageDataset(tmp_path / "missing")
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(DatasetError, match="not a readable zip"):
        ImageDataset(tmp_path / "broken.zip")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no readable images"):
        ImageDataset(tmp_path / "empty")


def test_to_model_range() -> None:
    x = torch.tensor([0, 127, 255], dtype=torch.uint8)
    y = to_model_range(x)
    assert y.dtype == torch.float32
    assert torch.allclose(y, torch.tensor([-1.0, 127 / 127.5 - 1, 1.0]), rtol=0, atol=1e-7)
    with pytest.raises(TypeError, match="uint8"):
        to_model_range(y)


# --------------------------------------------------------------------------------------------------
# Sampler and loader


def _reference_walk(n: int, seed: int, window_size: float, rank: int, world: int, count: int) -> list[int]:
    """The sampler's order written as a plain generator loop, for comparison."""
    order = np.arange(n)
    rnd = np.random.RandomState(seed)
    rnd.shuffle(order)
    window = int(np.rint(n * window_size))
    out: list[int] = []
    idx = 0
    while len(out) < count:
        i = idx % n
        if idx % world == rank:
            out.append(int(order[i]))
        if window >= 2:
            j = (i - rnd.randint(window)) % n
            order[i], order[j] = order[j], order[i]
        idx += 1
    return out


@pytest.mark.parametrize("rank,world", [(0, 1), (1, 3)])
def test_sampler_matches_the_walk(rank: int, world: int) -> None:
    it = iter(InfiniteSampler(10, rank=rank, world_size=world, seed=3))
    got = [next(it) for _ in range(57)]
    assert got == _reference_walk(10, 3, 0.5, rank, world, 57)
    assert sorted(set(got)) == list(range(10))


def test_sampler_state_round_trip() -> None:
    a = InfiniteSampler(11, seed=5)
    first = [a.next_index() for _ in range(13)]
    state = a.state_dict()
    rest = [a.next_index() for _ in range(30)]
    b = InfiniteSampler(11, seed=5)
    b.load_state_dict(state)
    assert [b.next_index() for _ in range(30)] == rest
    assert first + rest == _reference_walk(11, 5, 0.5, 0, 1, 43)
    with pytest.raises(ConfigError, match="seed=5.*seed=6"):
        InfiniteSampler(11, seed=6).load_state_dict(state)


def test_ddp_shards_are_disjoint_and_cover(tmp_path: Path) -> None:
    ds = ImageDataset(_write_folder(tmp_path / "ds", 12))
    # Plain shuffled order: one pass over the data splits into disjoint halves that cover it.
    shards = []
    for rank in (0, 1):
        with make_loader(ds, 3, num_workers=0, rank=rank, world_size=2, window_size=0) as loader:
            shards.append(_ids(next(loader)) + _ids(next(loader)))
    assert not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == list(range(12))
    # With the window walk the ranks interleave to exactly the single-process stream.
    streams = []
    for rank in (0, 1):
        with make_loader(ds, 4, num_workers=0, rank=rank, world_size=2) as loader:
            streams.append(sum((_ids(next(loader)) for _ in range(6)), []))
    with make_loader(ds, 4, num_workers=0) as loader:
        single = sum((_ids(next(loader)) for _ in range(12)), [])
    assert single[0::2] == streams[0] and single[1::2] == streams[1]


def test_loader_deterministic_and_independent_of_workers(tmp_path: Path) -> None:
    ds = ImageDataset(_write_zip(tmp_path / "ds.zip", 10), xflip=True)
    runs = []
    for workers in (0, 2, 2):
        with make_loader(ds, 4, num_workers=workers, seed=7) as loader:
            batches = [next(loader) for _ in range(8)]
        assert all(b.shape == (4, 3, RES, RES) and b.dtype == torch.uint8 for b in batches)
        runs.append(torch.stack(batches))
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[1], runs[2])
    with make_loader(ds, 4, num_workers=0, seed=8) as loader:
        assert not torch.equal(torch.stack([next(loader) for _ in range(8)]), runs[0])
    mirrored = runs[0].flatten(0, 1)[:, 0, 0, -1]  # a mirrored copy carries the index in its last column
    flipped_ids = set(mirrored.tolist()) & set(range(10))
    assert flipped_ids, "xflip copies should appear in 32 draws from 20 items"


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_resume_is_exact(tmp_path: Path, workers: int) -> None:
    ds = ImageDataset(_write_folder(tmp_path / "ds", 9), xflip=True)
    with make_loader(ds, 4, num_workers=workers, seed=1) as loader:
        uninterrupted = [next(loader) for _ in range(9)]
    with make_loader(ds, 4, num_workers=workers, seed=1) as loader:
        head = [next(loader) for _ in range(4)]  # the workers have already prefetched further
        state = loader.state_dict()
    assert state["batches_done"] == 4
    rebuilt = ImageDataset(tmp_path / "ds", xflip=True)
    with make_loader(rebuilt, 4, num_workers=workers, seed=1) as loader:
        loader.load_state_dict(state)
        tail = [next(loader) for _ in range(5)]
        assert loader.state_dict()["batches_done"] == 9
    assert torch.equal(torch.stack(head + tail), torch.stack(uninterrupted))


def test_loader_rewind_in_place(tmp_path: Path) -> None:
    ds = ImageDataset(_write_folder(tmp_path / "ds", 7))
    with make_loader(ds, 3, num_workers=2, seed=4) as loader:
        next(loader)
        state = loader.state_dict()
        ahead = [next(loader) for _ in range(3)]
        loader.load_state_dict(state)
        again = [next(loader) for _ in range(3)]
    assert torch.equal(torch.stack(ahead), torch.stack(again))


def test_loader_refuses_mismatched_state(tmp_path: Path) -> None:
    ds = ImageDataset(_write_folder(tmp_path / "ds", 7))
    with make_loader(ds, 3, num_workers=0) as loader:
        next(loader)
        state = loader.state_dict()
    with make_loader(ds, 2, num_workers=0) as other, pytest.raises(ConfigError, match="batch_size=3"):
        other.load_state_dict(state)
    with (
        make_loader(ds, 3, num_workers=0, rank=1, world_size=2) as other,
        pytest.raises(ConfigError, match="rank"),
    ):
        other.load_state_dict(state)


@pytest.mark.parametrize(("cpus", "expected"), [(1, 0), (2, 1), (4, 3), (64, 3)])
def test_default_workers_leave_a_cpu_to_training(monkeypatch, cpus, expected):
    from realface.train.dataset import default_workers
    from realface.train.loop import TrainConfig

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    assert default_workers() == expected
    assert TrainConfig(data="d", real="r").workers == expected
