"""Safe loading of official pickles, the realface safetensors format, and conversion."""

from __future__ import annotations

import copy
import io
import itertools
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from realface.checkpoints import (
    NetworkRecord,
    convert_pickle,
    detect_format,
    load_discriminator,
    load_generator,
    load_networks,
    read_official_pickle,
    save_networks,
)
from realface.errors import CheckpointError, UnsafePickleError
from realface.nn.arch import state_numel
from realface.nn.stylegan2 import Discriminator, Generator
from tests._helpers import tiny_discriminator, tiny_generator, write_official_pickle
from tests._hostile import NETWORK_CASES
from tests.conftest import data_file


def _same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_official_fixture_reads_every_tensor_in_state_dict_order():
    data = read_official_pickle(data_file("stylegan2-ada", "sg2ada_tiny64.pkl"))
    assert set(data["networks"]) == {"G", "D", "G_ema"}
    rec = data["networks"]["G_ema"]
    assert rec.init_kwargs["synthesis_kwargs"]["channel_base"] == 1024
    G = rec.build()
    assert list(rec.state_dict) == list(G.state_dict())
    assert data["augment_pipe"] is not None and "p" in data["augment_pipe"]
    assert data["training_set_kwargs"]["resolution"] == 64
    # G and G_ema really are different networks in the fixture.
    g = data["networks"]["G"].state_dict
    assert any(not torch.equal(g[k], rec.state_dict[k]) for k in g)


@pytest.mark.parametrize("protocol", [2, 4])
def test_pickles_in_official_layout_for_any_config(tmp_path, protocol):
    G, D = tiny_generator(32, seed=1), tiny_discriminator(32, seed=2)
    G_ema = tiny_generator(32, seed=3)
    pkl = write_official_pickle(tmp_path / "snap.pkl", protocol=protocol, G=G, D=D, G_ema=G_ema)
    _same_state(load_generator(pkl), G_ema)
    _same_state(load_generator(pkl, which="G"), G)
    _same_state(load_discriminator(pkl), D)


def test_safetensors_round_trip_is_exact(tmp_path):
    G, D = tiny_generator(32, seed=4), tiny_discriminator(32, seed=5)
    path = save_networks({"G_ema": G, "D": D}, tmp_path / "nets.safetensors")
    assert detect_format(path) == "safetensors"
    G2, D2 = load_generator(path), load_discriminator(path)
    _same_state(G, G2)
    _same_state(D, D2)
    assert G2.init_kwargs == G.init_kwargs
    z = torch.randn(2, G.z_dim)
    with torch.no_grad():
        assert torch.equal(G(z, noise_mode="const"), G2(z, noise_mode="const"))
    assert set(load_networks(path)) == {"G_ema", "D"}
    assert not G2.training and not any(p.requires_grad for p in G2.parameters())


def test_convert_official_fixture(tmp_path):
    src = data_file("stylegan2-ada", "sg2ada_tiny64.pkl")
    before = src.read_bytes()
    out = convert_pickle(src, tmp_path / "tiny.safetensors")
    assert src.read_bytes() == before  # the source is never touched
    nets = load_networks(out)
    assert set(nets) == {"G", "D", "G_ema"}
    _same_state(nets["G_ema"], load_generator(src))
    _same_state(nets["D"], load_discriminator(src))
    only = convert_pickle(src, tmp_path / "ema.safetensors", only=("G_ema",))
    assert set(load_networks(only)) == {"G_ema"}
    with pytest.raises(CheckpointError, match="no Discriminator"):
        load_discriminator(only)
    with pytest.raises(CheckpointError, match="refusing to overwrite"):
        convert_pickle(src, src)


class _RunsShell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_reduce_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(pickle.dumps({"G": _RunsShell(marker)}))
    with pytest.raises(UnsafePickleError, match="system"):
        load_generator(bad)
    assert not marker.exists()


class _StorageBlob:
    """Pickles as ``torch.storage._load_from_bytes(blob)``, as tensor storages inside network pickles do."""

    def __init__(self, blob):
        self.blob = blob

    def __reduce__(self):
        import torch.storage

        return (torch.storage._load_from_bytes, (self.blob,))


def test_forbidden_global_nested_in_storage_blob_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    # A legacy torch.save stream (magic number, protocol, sys info, then the payload) whose payload
    # calls os.system: a plain torch.load of the blob would execute it.
    blob = io.BytesIO()
    for part in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}):
        pickle.dump(part, blob, protocol=2)
    pickle.dump(_RunsShell(marker), blob, protocol=2)
    bad = tmp_path / "nested.pkl"
    bad.write_bytes(pickle.dumps({"G_ema": _StorageBlob(blob.getvalue())}, protocol=2))
    with pytest.raises(UnsafePickleError):
        read_official_pickle(bad)
    assert not marker.exists()


def test_truncated_and_corrupt_files_give_clear_errors(tmp_path):
    src = data_file("stylegan2-ada", "sg2ada_tiny64.pkl").read_bytes()
    cut = tmp_path / "cut.pkl"
    cut.write_bytes(src[: len(src) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.pkl.*(truncated|ends early)"):
        load_generator(cut)
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match="junk.pkl"):
        load_generator(junk)
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="unrecognised"):
        load_generator(empty)
    with pytest.raises(CheckpointError, match="no such file"):
        load_generator(tmp_path / "missing.pkl")
    good = save_networks({"G_ema": tiny_generator(32)}, tmp_path / "g.safetensors")
    trunc = tmp_path / "trunc.safetensors"
    trunc.write_bytes(good.read_bytes()[:-1000])
    with pytest.raises(CheckpointError, match="trunc.safetensors"):
        load_generator(trunc)


def test_foreign_safetensors_is_rejected(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="not a realface network file"):
        load_generator(path)


@pytest.mark.parametrize("module", ["numpy.core.multiarray", "numpy._core.multiarray"])
def test_numpy_scalar_paths_of_numpy_1_and_2(module):
    from realface.checkpoints import _network_unpickler

    raw = pickle.dumps(np.float64(1.5), protocol=2)
    for name in (b"numpy.core.multiarray\nscalar", b"numpy._core.multiarray\nscalar"):
        raw = raw.replace(name, module.encode() + b"\nscalar")
    value = _network_unpickler(io.BytesIO(raw)).load()
    assert value == 1.5 and isinstance(value, np.float64)


def test_loading_does_not_import_official_modules(tmp_path):
    load_generator(data_file("stylegan2-ada", "sg2ada_tiny64.pkl"))
    assert "torch_utils" not in sys.modules and "dnnlib" not in sys.modules


def test_pickle_is_converted_once_and_cached(tmp_path, monkeypatch):
    import realface.checkpoints as ckpt

    G = tiny_generator(32, seed=6)
    pkl = write_official_pickle(tmp_path / "snap.pkl", G_ema=G, G=G)
    calls = []
    real_convert = ckpt.convert_pickle

    def counting_convert(src, dst, only=None):
        calls.append(src)
        return real_convert(src, dst, only)

    monkeypatch.setattr(ckpt, "convert_pickle", counting_convert)
    _same_state(load_generator(pkl), G)
    _same_state(load_generator(pkl, which="G"), G)
    assert len(calls) == 1
    converted = list(Path(os.environ["REALFACE_HOME"]).rglob("*.safetensors"))  # the per-test cache
    assert len(converted) == 1 and detect_format(converted[0]) == "safetensors"
    # Without the cache the pickle is read directly and nothing new is converted.
    _same_state(load_generator(pkl, cache=False), G)
    assert len(calls) == 1


def test_registry_id_resolves_through_weights_cache():
    from realface.errors import WeightsError

    # Offline (set by conftest) and absent: the weights error names the id and how to import it.
    with pytest.raises(WeightsError, match=r"sg2ada-ffhq1024.*realface weights import"):
        load_generator("sg2ada-ffhq1024")


# --------------------------------------------------------------------------------------------------
# Untrusted architecture metadata: checked before anything is built


@pytest.mark.parametrize("case", sorted(NETWORK_CASES))
def test_hostile_network_metadata_is_refused_before_building(tmp_path, monkeypatch, case):
    build, message = NETWORK_CASES[case]
    path = build(tmp_path / ("net.safetensors" if case.startswith("st_") else "net.pkl"))

    class _NeverBuilt:
        def __init__(self, **kwargs):
            raise AssertionError("a network was constructed from hostile metadata")

    monkeypatch.setattr(
        "realface.checkpoints.NETWORK_CLASSES", {"Generator": _NeverBuilt, "Discriminator": _NeverBuilt}
    )
    with pytest.raises(CheckpointError) as info:
        load_generator(path, cache=False)
    text = str(info.value)
    assert text.startswith(f"{path}: "), text
    assert message in text, text
    assert len(text) < 400 and "\n" not in text, text


def test_size_arithmetic_equals_the_built_networks():
    """state_numel() is what lets a loader refuse unbuilt; it must equal the real state_dict sizes."""
    numel = lambda m: sum(t.numel() for t in m.state_dict().values())  # noqa: E731
    configs = 0
    for res, c_dim, layers, noise, k, filt in itertools.product(
        [4, 8, 32], [0, 3], [1, 2], [True, False], [1, 3], [None, [1, 2, 1]]
    ):
        syn = dict(channel_base=res * 16, channel_max=16, use_noise=noise, kernel_size=k, conv_clamp=256)
        if filt:
            syn["resample_filter"] = filt
        kw = dict(z_dim=8, c_dim=c_dim, w_dim=12, img_resolution=res, img_channels=3,
                  mapping_kwargs=dict(num_layers=layers, layer_features=10), synthesis_kwargs=syn)  # fmt: skip
        assert state_numel("Generator", kw) == numel(Generator(**kw)), kw
        dk = dict(c_dim=c_dim, img_resolution=res, img_channels=1 if noise else 3, channel_base=res * 16,
                  channel_max=16, cmap_dim=None if k == 1 else 5, mapping_kwargs=dict(num_layers=layers),
                  block_kwargs=dict(resample_filter=filt) if filt else {},
                  epilogue_kwargs=dict(mbstd_num_channels=0 if noise else 2))  # fmt: skip
        assert state_numel("Discriminator", dk) == numel(Discriminator(**dk)), dk
        configs += 1
    assert configs == 96
    official = read_official_pickle(data_file("stylegan2-ada", "sg2ada_tiny64.pkl"))["networks"]
    for rec in official.values():
        assert state_numel(rec.class_name, rec.init_kwargs) == sum(t.numel() for t in rec.state_dict.values())


def test_record_build_checks_its_own_tensors():
    """A record made by other code (not read from a file) gets the same check before it is built."""
    G = tiny_generator(8)
    kw = copy.deepcopy(G.init_kwargs)
    kw["synthesis_kwargs"].update(channel_base=2**20, channel_max=2048)
    rec = NetworkRecord("Generator", kw, G.state_dict(), source="G.json")
    with pytest.raises(CheckpointError, match="^G.json: the declared Generator has .* refusing to build it"):
        rec.build()
    _same_state(NetworkRecord("Generator", G.init_kwargs, G.state_dict()).build(), G)
