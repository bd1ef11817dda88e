"""DeepFaceEditing sketch generator: Jittor-format files load key-for-key, the architecture against an
independent functional formulation, the official key table, trailer and allow-list refusals, the
extractor contract and gradients.

Tiny models are written exactly as Jittor's ``Module.save`` writes them: ``pickle.dumps(params, 4)`` of
``{name: float32 numpy array}``, then the SHA-1 of those bytes, then ``b"HCAJSLHD"``.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import pickletools
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open

from realface.errors import CheckpointError, UnsafePickleError, WeightsError
from realface.nn.dfe import (
    SAFETENSORS_FORMAT,
    DFEConfig,
    DFESketch,
    GlobalGenerator,
    convert_dfe,
    infer_config,
    key_layout,
    load_dfe_generator,
    load_dfe_state_dict,
    parameter_count,
    read_jittor_pickle,
)
from realface.nn.sketch import SKETCH_EXTRACTORS, build_sketch_extractor
from realface.weights import import_weight, weight_path

TINY = DFEConfig(ngf=4, n_downsampling=2, n_blocks=2)
_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]


# --------------------------------------------------------------------------------------------------
# Helpers


def _tiny_generator(seed: int = 0, config: DFEConfig = TINY) -> GlobalGenerator:
    torch.manual_seed(seed)
    G = GlobalGenerator(config)
    with torch.no_grad():  # InstanceNorm affine parameters start at 1/0: make them matter
        for name, p in G.named_parameters():
            if ".norm." in name or p.ndim == 1:
                p.add_(torch.randn_like(p) * 0.3)
    return G.eval()


def _params(G: GlobalGenerator) -> dict[str, np.ndarray]:
    """Jittor's ``{p.name(): p.data}``: float32 numpy arrays under the checkpoint names."""
    return {k: v.detach().numpy().astype(np.float32).copy() for k, v in G.state_dict().items()}


class _Numpy1Pickler(pickle._Pickler):
    """Names numpy's array reconstructor ``numpy.core.multiarray._reconstruct``, as numpy 1.x (2021) did."""

    def save_global(self, obj, name=None):
        if obj is _RECONSTRUCT:
            self.save("numpy.core.multiarray")
            self.save("_reconstruct")
            self.write(pickle.STACK_GLOBAL)
            self.memoize(obj)
            return
        super().save_global(obj, name)


def _jittor_bytes(obj: object, numpy1: bool = False) -> bytes:
    if numpy1:
        buf = io.BytesIO()
        _Numpy1Pickler(buf, 4).dump(obj)
        body = buf.getvalue()
    else:
        body = pickle.dumps(obj, 4)
    return body + hashlib.sha1(body).digest() + b"HCAJSLHD"


def _write_jittor(path: Path, obj: object, numpy1: bool = False) -> Path:
    path.write_bytes(_jittor_bytes(obj, numpy1))
    return path


def _images(n: int = 2, size: int = 16, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1  # [N, 3, S, S] in [-1, 1]


def _reference_forward(p: dict[str, np.ndarray], x: torch.Tensor, d: int, b: int) -> torch.Tensor:
    """The global generator written out with torch.nn.functional and Jittor's InstanceNorm formula."""
    t = {k: torch.from_numpy(v).to(x.dtype) for k, v in p.items()}

    def inorm(h: torch.Tensor, pre: str) -> torch.Tensor:
        mean = h.mean((2, 3), keepdim=True)
        var = ((h * h).mean((2, 3), keepdim=True) - mean * mean).clamp(min=0)
        scale, shift = t[pre + ".weight"].view(1, -1, 1, 1), t[pre + ".bias"].view(1, -1, 1, 1)
        return (h - mean) / torch.sqrt(var + 1e-5) * scale + shift

    def conv(h: torch.Tensor, pre: str, stride: int = 1, padding: int = 0) -> torch.Tensor:
        return F.conv2d(h, t[pre + ".weight"], t[pre + ".bias"], stride=stride, padding=padding)

    h = F.relu(inorm(conv(F.pad(x, (3, 3, 3, 3), mode="reflect"), "model.1"), "model.2"))
    i = 4
    for _ in range(d):
        h = F.relu(inorm(conv(h, f"model.{i}", stride=2, padding=1), f"model.{i + 1}"))
        i += 3
    for _ in range(b):
        r = h
        for j in (0, 1):
            pre = f"model.{i}.conv_block.{j}"
            r = inorm(conv(F.pad(r, (1, 1, 1, 1), mode="reflect"), pre + ".conv"), pre + ".norm")
            r = F.relu(r) if j == 0 else r
        h = h + r
        i += 1
    for _ in range(d):
        w, bias = t[f"model.{i}.weight"], t[f"model.{i}.bias"]
        h = F.conv_transpose2d(h, w, bias, stride=2, padding=1, output_padding=1)
        h = F.relu(inorm(h, f"model.{i + 1}"))
        i += 3
    return torch.tanh(conv(F.pad(h, (3, 3, 3, 3), mode="reflect"), f"model.{i + 1}"))


# --------------------------------------------------------------------------------------------------
# Architecture


def test_official_key_table_and_parameter_count():
    layout = key_layout()
    assert len(layout) == 110
    assert parameter_count() == 45_642_243
    expected = {
        "model.1.weight": (32, 3, 7, 7),
        "model.1.bias": (32,),
        "model.2.weight": (32,),
        "model.2.bias": (32,),
        "model.4.weight": (64, 32, 3, 3),
        "model.5.weight": (64,),
        "model.13.weight": (512, 256, 3, 3),
        "model.14.bias": (512,),
        "model.16.conv_block.0.conv.weight": (512, 512, 3, 3),
        "model.16.conv_block.0.conv.bias": (512,),
        "model.16.conv_block.1.norm.weight": (512,),
        "model.24.conv_block.1.norm.bias": (512,),
        "model.25.weight": (512, 256, 3, 3),
        "model.26.weight": (256,),
        "model.34.weight": (64, 32, 3, 3),
        "model.35.bias": (32,),
        "model.38.weight": (3, 32, 7, 7),
        "model.38.bias": (3,),
    }
    for key, shape in expected.items():
        assert layout[key] == shape, key
    top = sorted({int(k.split(".")[1]) for k in layout})
    assert top == [1, 2, 4, 5, 7, 8, 10, 11, 13, 14, *range(16, 25), 25, 26, 28, 29, 31, 32, 34, 35, 38]

    with torch.device("meta"):
        G = GlobalGenerator()
    assert {k: tuple(v.shape) for k, v in G.state_dict().items()} == dict(layout)
    assert sum(p.numel() for p in G.parameters()) == 45_642_243
    assert infer_config(layout) == DFEConfig()


def test_layer_types_and_paddings():
    m = GlobalGenerator(TINY).model
    assert isinstance(m[0], torch.nn.ReflectionPad2d) and m[0].padding == (3, 3, 3, 3)
    assert isinstance(m[4], torch.nn.Conv2d) and m[4].stride == (2, 2) and m[4].padding == (1, 1)
    assert m[4].padding_mode == "zeros"
    norms = [x for x in m.modules() if isinstance(x, torch.nn.InstanceNorm2d)]
    assert norms and all(n.affine and not n.track_running_stats and n.eps == 1e-5 for n in norms)
    assert isinstance(m[-1], torch.nn.Tanh) and isinstance(m[-3], torch.nn.ReflectionPad2d)
    up = m[4 + 3 * TINY.n_downsampling + TINY.n_blocks]
    assert isinstance(up, torch.nn.ConvTranspose2d) and up.output_padding == (1, 1) and up.padding == (1, 1)


def test_transposed_conv_matches_jittors_scatter_definition():
    """Jittor's ConvTranspose adds x[n, i, h, w] * W[i, o, kh, kw] to out[n, o, h*s - p + kh, w*s - p + kw]."""
    G = _tiny_generator()
    layer = G.model[4 + 3 * TINY.n_downsampling + TINY.n_blocks]
    w, b = layer.weight.detach().numpy(), layer.bias.detach().numpy()  # [I, O, 3, 3], [O]
    x = np.random.default_rng(0).standard_normal((2, w.shape[0], 4, 5))
    stride, pad, out_pad = 2, 1, 1
    H, W = (4 - 1) * stride - 2 * pad + 3 + out_pad, (5 - 1) * stride - 2 * pad + 3 + out_pad
    out = np.zeros((2, w.shape[1], H, W)) + b.reshape(1, -1, 1, 1)
    for h in range(4):
        for v in range(5):
            for kh in range(3):
                for kw in range(3):
                    oh, ow = h * stride - pad + kh, v * stride - pad + kw
                    if 0 <= oh < H and 0 <= ow < W:
                        out[:, :, oh, ow] += np.einsum("ni,io->no", x[:, :, h, v], w[:, :, kh, kw])
    got = layer(torch.from_numpy(x).float()).detach().numpy()
    np.testing.assert_allclose(got, out, rtol=0, atol=1e-5)


def test_forward_matches_independent_functional_formulation():
    G = _tiny_generator()
    x = _images()
    expected = _reference_forward(_params(G), x.double(), TINY.n_downsampling, TINY.n_blocks)
    got = G.double()(x.double())
    assert got.shape == (2, 3, 16, 16)
    assert got.std() > 0.05  # not a saturated or constant output
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-9)


def test_input_shape_is_checked():
    G = _tiny_generator()
    with pytest.raises(ValueError, match=r"expected images \[N, 3, H, W\]"):
        G(torch.zeros(1, 1, 16, 16))
    with pytest.raises(ValueError, match="multiples of 4"):
        G(torch.zeros(1, 3, 18, 16))
    with pytest.raises(ValueError, match="at least 8"):
        G(torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match=r"expected RGB images"):
        DFESketch(G)(torch.zeros(1, 1, 16, 16))


# --------------------------------------------------------------------------------------------------
# Jittor files


@pytest.mark.parametrize("numpy1", [False, True], ids=["numpy2-names", "numpy1-names"])
def test_tiny_jittor_file_loads_key_for_key(tmp_path, numpy1):
    G = _tiny_generator()
    path = _write_jittor(tmp_path / "sketch_generator.pkl", _params(G), numpy1=numpy1)
    globals_named = {
        arg for op, arg, _ in pickletools.genops(path.read_bytes()[:-28]) if isinstance(arg, str)
    }
    assert ("numpy.core.multiarray" in globals_named) == numpy1  # the writer really produced that spelling

    arrays = read_jittor_pickle(path)
    assert list(arrays) == list(G.state_dict())
    assert all(a.dtype == np.float32 for a in arrays.values())
    state, config = load_dfe_state_dict(path)
    assert config == TINY

    loaded = load_dfe_generator(path)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    x = _images()
    with torch.no_grad():
        assert torch.equal(loaded(x), G(x))


def test_older_pickle_protocols_load_through_the_same_allow_list(tmp_path):
    params = _params(_tiny_generator())
    body = pickle.dumps(params, 2)  # raw bytes spelled as _codecs.encode(str, "latin1")
    assert b"_codecs" in body
    path = tmp_path / "p2.pkl"
    path.write_bytes(body + hashlib.sha1(body).digest() + b"HCAJSLHD")
    arrays = read_jittor_pickle(path)
    assert arrays.keys() == params.keys() and all(np.array_equal(arrays[k], params[k]) for k in params)


def test_checkpoint_with_wrong_tensors_is_refused(tmp_path):
    params = _params(_tiny_generator())
    missing = dict(params)
    del missing["model.2.bias"]
    with pytest.raises(CheckpointError, match=r"1 missing \['model.2.bias'\]"):
        load_dfe_state_dict(_write_jittor(tmp_path / "missing.pkl", missing))
    wrong = dict(params, **{"model.5.weight": np.zeros(3, np.float32)})
    with pytest.raises(CheckpointError, match="of the wrong shape"):
        load_dfe_state_dict(_write_jittor(tmp_path / "wrong.pkl", wrong))
    with pytest.raises(CheckpointError, match="no 4-d tensor 'model.1.weight'"):
        load_dfe_state_dict(
            _write_jittor(tmp_path / "other.pkl", {"fc.weight": np.zeros((2, 2), np.float32)})
        )
    with pytest.raises(CheckpointError, match="expected floating point"):
        load_dfe_state_dict(
            _write_jittor(tmp_path / "ints.pkl", {k: v.astype(np.int32) for k, v in params.items()})
        )


@pytest.mark.parametrize(
    "where,match",
    [
        (100, "checksum mismatch"),  # inside the pickle
        (-20, "checksum mismatch"),  # inside the stored SHA-1
        (-3, "does not end with Jittor's checksum trailer"),  # inside the magic
    ],
)
def test_trailer_detects_a_flipped_byte(tmp_path, where, match):
    data = bytearray(_jittor_bytes(_params(_tiny_generator())))
    read_jittor_pickle(_write_jittor(tmp_path / "ok.pkl", _params(_tiny_generator())))  # intact: fine
    data[where] ^= 0x01
    path = tmp_path / "flipped.pkl"
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=match) as info:
        read_jittor_pickle(path)
    assert str(path) in str(info.value)
    with pytest.raises(CheckpointError, match=match):
        load_dfe_state_dict(path)


def test_truncated_or_missing_trailer_is_refused(tmp_path):
    data = _jittor_bytes(_params(_tiny_generator()))
    cut = tmp_path / "cut.pkl"
    cut.write_bytes(data[:-1000])
    with pytest.raises(CheckpointError, match="does not end with Jittor's checksum trailer"):
        load_dfe_state_dict(cut)
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(data[:-28])  # a valid pickle, but not as Jittor writes it
    with pytest.raises(CheckpointError, match="does not end with Jittor's checksum trailer"):
        load_dfe_state_dict(plain)
    with pytest.raises(CheckpointError, match="no such file"):
        load_dfe_state_dict(tmp_path / "absent.pkl")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="unrecognised file"):
        load_dfe_state_dict(junk)


class _RunsCommand:
    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    payload = dict(_params(_tiny_generator()), **{"model.1.bias": _RunsCommand(f"touch {marker}")})
    # The trailer is valid, so the restricted unpickler is what decides.
    path = _write_jittor(tmp_path / "sketch_generator.pkl", payload)

    with pytest.raises(UnsafePickleError, match=r"refusing to load global '(posix|os|nt)\.system'") as info:
        read_jittor_pickle(path)
    assert str(path) in str(info.value)
    with pytest.raises(UnsafePickleError):
        build_sketch_extractor("dfe", path=path)
    assert not marker.exists()

    pickle.loads(path.read_bytes()[:-28])  # noqa: S301 - proves the payload is live with a plain unpickler
    assert marker.exists()


def test_object_arrays_and_foreign_types_are_refused(tmp_path):
    with pytest.raises(UnsafePickleError, match="object dtypes"):
        read_jittor_pickle(_write_jittor(tmp_path / "obj.pkl", {"a": np.array([1, None], dtype=object)}))
    with pytest.raises(UnsafePickleError, match="numpy.ma.core"):
        read_jittor_pickle(_write_jittor(tmp_path / "masked.pkl", {"a": np.ma.masked_array([1.0, 2.0])}))
    with pytest.raises(CheckpointError, match="expected a dict of arrays"):
        read_jittor_pickle(_write_jittor(tmp_path / "list.pkl", [np.zeros(2)]))
    with pytest.raises(CheckpointError, match="expected str → numpy.ndarray"):
        read_jittor_pickle(_write_jittor(tmp_path / "nested.pkl", {"a": {"b": 1}}))


# --------------------------------------------------------------------------------------------------
# Conversion


def test_safetensors_conversion_round_trip(tmp_path):
    G = _tiny_generator(seed=3)
    src = _write_jittor(tmp_path / "sketch_generator.pkl", _params(G))
    dst = tmp_path / "out" / "sketch_generator.safetensors"
    convert_dfe(src, dst)
    with safe_open(str(dst), framework="pt") as f:
        meta = f.metadata()
        assert set(f.keys()) == set(G.state_dict())
    assert meta["format"] == SAFETENSORS_FORMAT and meta["source"] == "sketch_generator.pkl"
    assert '"ngf": 4' in meta["config"]
    x = _images(seed=5)
    with torch.no_grad():
        assert torch.equal(load_dfe_generator(dst)(x), G(x))
    again = tmp_path / "again.safetensors"
    convert_dfe(dst, again)  # a conversion is itself a valid source
    assert load_dfe_state_dict(again)[1] == TINY
    assert sorted(p.name for p in dst.parent.iterdir()) == ["sketch_generator.safetensors"]


def test_failed_conversion_leaves_nothing(tmp_path):
    data = bytearray(_jittor_bytes(_params(_tiny_generator())))
    data[50] ^= 0xFF
    src = tmp_path / "bad.pkl"
    src.write_bytes(bytes(data))
    out = tmp_path / "out"
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        convert_dfe(src, out / "x.safetensors")
    assert not out.exists() or list(out.iterdir()) == []


def test_foreign_safetensors_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={"format": "realface.networks"})
    with pytest.raises(CheckpointError, match="expected 'realface.dfe-sketch'"):
        load_dfe_state_dict(path)


# --------------------------------------------------------------------------------------------------
# The "dfe" sketch extractor


def test_registry_builds_dfe_from_a_path(tmp_path):
    G = _tiny_generator()
    path = _write_jittor(tmp_path / "sketch_generator.pkl", _params(G))
    S = build_sketch_extractor("dfe", path=path, device="cpu")
    assert "dfe" in SKETCH_EXTRACTORS
    assert isinstance(S, DFESketch) and not S.training
    assert not any(p.requires_grad for p in S.parameters())
    x = _images()
    with torch.no_grad():
        assert torch.equal(S(x), DFESketch(G)(x))


def test_registry_without_a_path_propagates_the_weights_error():
    with pytest.raises(WeightsError) as direct:
        weight_path("dfe-sketch")
    with pytest.raises(WeightsError) as built:
        build_sketch_extractor("dfe")
    assert type(built.value) is type(direct.value) and str(built.value) == str(direct.value)


def test_registry_without_a_path_uses_the_cached_file_and_converts_it_once(tmp_path, monkeypatch):
    import dataclasses

    from realface.weights import registry

    G = _tiny_generator(seed=7)
    src = _write_jittor(tmp_path / "sketch_generator.pkl", _params(G))
    # The tiny network of the real format is far smaller than the published file: let the
    # record expect its size, so the import's plausibility check still runs on it.
    tiny = dataclasses.replace(registry.REGISTRY["dfe-sketch"], approx_size=src.stat().st_size)
    monkeypatch.setitem(registry.REGISTRY, "dfe-sketch", tiny)
    import_weight("dfe-sketch", src)
    S = build_sketch_extractor("dfe")
    derived_dir = Path(os.environ["REALFACE_HOME"]) / "weights" / "dfe-sketch" / "derived"
    (converted,) = derived_dir.glob("*.safetensors")
    assert load_dfe_state_dict(converted)[1] == TINY
    x = _images(seed=2)
    with torch.no_grad():
        assert torch.equal(S(x), DFESketch(G)(x))
    stamp = converted.stat().st_mtime_ns
    build_sketch_extractor("dfe")
    assert list(derived_dir.glob("*.safetensors")) == [converted] and converted.stat().st_mtime_ns == stamp


def test_output_contract_range_shape_and_orientation():
    G = _tiny_generator()
    S = DFESketch(G).eval()
    x = _images(n=3, size=32)
    with torch.no_grad():
        out = S(x)
        y = G(x)  # [3, 3, 32, 32]
    assert out.shape == (3, 1, 32, 32) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1
    torch.testing.assert_close(out, (y.mean(dim=1, keepdim=True) + 1) / 2, rtol=0, atol=1e-7)

    last = G.model[-2]
    for bias, expected in ((50.0, 1.0), (-50.0, 0.0)):  # network output +1 is white paper, -1 is ink
        with torch.no_grad():
            last.weight.zero_()
            last.bias.fill_(bias)
            torch.testing.assert_close(S(x), torch.full((3, 1, 32, 32), expected), rtol=0, atol=1e-6)


def test_gradients_reach_the_input_and_no_parameter():
    S = DFESketch(_tiny_generator()).requires_grad_(False)
    x = _images().requires_grad_(True)
    S(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in S.parameters())

    Sd = DFESketch(_tiny_generator().double()).requires_grad_(False)
    xd = _images(n=1).double().requires_grad_(True)
    assert torch.autograd.gradcheck(Sd, (xd,), fast_mode=True)
