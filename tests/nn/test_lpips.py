"""LPIPS-VGG against the ``lpips`` package (test-only oracle), the fixed-target path against the reference,
loading and its errors, and area downsampling.

The oracle is ``lpips.LPIPS(net="vgg", pnet_rand=True)``: its VGG16 is randomly initialised (nothing is
downloaded) and its heads are the real v0.1 heads shipped in the package. Its VGG tensors are written
in torchvision's ``features.*`` layout and both files go through :func:`load_lpips_vgg`, the loader
users call.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import lpips as lpips_oracle
import pytest
import torch

from realface.errors import CheckpointError
from realface.nn.lpips import LPIPS, TAP_CHANNELS, load_lpips_vgg
from realface.nn.resize import area_downsample
from realface.weights import MissingWeightsError, WeightsError, weight_path


def _package_heads() -> Path:
    spec = importlib.util.find_spec("lpips")
    assert spec is not None and spec.submodule_search_locations
    path = Path(spec.submodule_search_locations[0]) / "weights" / "v0.1" / "vgg.pth"
    assert path.is_file(), path
    return path


@pytest.fixture(scope="module")
def oracle_and_files(tmp_path_factory):
    """The oracle network and the two files (torchvision-layout VGG16, real heads) that reproduce it."""
    torch.manual_seed(0)
    oracle = lpips_oracle.LPIPS(net="vgg", pnet_rand=True, verbose=False).eval()
    vgg_state: dict[str, torch.Tensor] = {}
    for name, tensor in oracle.net.state_dict().items():  # "slice{k}.{i}.weight" keeps torchvision's index i
        _, index, kind = name.split(".")
        vgg_state[f"features.{index}.{kind}"] = tensor.clone()
    assert len(vgg_state) == 26
    vgg_state["classifier.0.weight"] = torch.randn(8, 4)  # must be ignored, as the real file's classifier
    folder = tmp_path_factory.mktemp("lpips_files")
    vgg_path = folder / "vgg16.pth"
    torch.save(vgg_state, vgg_path)
    return oracle, vgg_path, _package_heads()


@pytest.fixture(scope="module")
def ours(oracle_and_files) -> LPIPS:
    _, vgg_path, lin_path = oracle_and_files
    return load_lpips_vgg(vgg_path=vgg_path, lin_path=lin_path)


def _pair(n: int, size: int, seed: int, close: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g) * 2 - 1  # [N, 3, S, S]
    if close:
        y = (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    else:
        y = torch.rand(n, 3, size, size, generator=g) * 2 - 1
    return x, y


@pytest.mark.parametrize("n,size,close", [(2, 64, False), (2, 64, True), (1, 256, False)])
def test_matches_lpips_package(oracle_and_files, ours, n, size, close):
    oracle, _, _ = oracle_and_files
    x, y = _pair(n, size, seed=size + close, close=close)
    with torch.no_grad():
        theirs = oracle(x, y).flatten()  # [N]
        mine = ours(x, y)  # [N]
    assert mine.shape == (n,)
    assert bool((theirs > 1e-3).all()), f"degenerate oracle values {theirs}"
    diff = (mine - theirs).abs().max().item()
    assert diff < 1e-5, f"max |ours - lpips| = {diff:.3g} (values {theirs.tolist()})"


def test_fixed_target_path_equals_reference(ours):
    x, _ = _pair(3, 32, seed=1)
    target, _ = _pair(1, 32, seed=2)
    with torch.no_grad():
        reference = ours(x, target.expand_as(x))  # [3]
        t = ours.features(target)  # fixed target, batch 1
        fast = ours.distance(ours.features(x), t)  # [3]
        swapped = ours.distance(t, ours.features(x))
    assert fast.shape == (3,)
    torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(swapped, fast)


def test_identical_images_are_at_distance_zero(ours):
    x, _ = _pair(2, 32, seed=3)
    with torch.no_grad():
        d = ours(x, x.clone())
        f = ours.features(x)
        d_feat = ours.distance(f, f)
    assert torch.equal(d, torch.zeros(2))
    assert torch.equal(d_feat, torch.zeros(2))


def test_symmetric(ours):
    x, y = _pair(2, 32, seed=4)
    with torch.no_grad():
        torch.testing.assert_close(ours(x, y), ours(y, x), rtol=1e-6, atol=1e-7)


def test_gradients_reach_inputs_not_weights(ours):
    x, y = _pair(2, 32, seed=5)
    x.requires_grad_(True)
    ours(x, y).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in ours.parameters())
    assert not ours.training

    x2 = x.detach().clone().requires_grad_(True)
    with torch.no_grad():
        t = ours.features(y)
    ours.distance(ours.features(x2), t).sum().backward()
    torch.testing.assert_close(x2.grad, x.grad, rtol=1e-4, atol=1e-7)


def test_loader_reads_heads_and_vgg_exactly(oracle_and_files, ours):
    oracle, _, lin_path = oracle_and_files
    heads = torch.load(lin_path, map_location="cpu", weights_only=True)
    for k, ch in enumerate(TAP_CHANNELS):
        assert torch.equal(getattr(ours, f"lin{k}").weight, heads[f"lin{k}.model.1.weight"])
        assert getattr(ours, f"lin{k}").weight.shape == (1, ch, 1, 1)
    assert torch.equal(ours.net.features[28].weight, getattr(oracle.net.slice5, "28").weight)
    assert torch.equal(ours.net.features[0].bias, getattr(oracle.net.slice1, "0").bias)


def test_default_heads_come_from_the_lpips_package(oracle_and_files, ours):
    _, vgg_path, _ = oracle_and_files
    assert weight_path("lpips-vgg-v0.1").resolve() == _package_heads().resolve()
    model = load_lpips_vgg(vgg_path=vgg_path)
    for k in range(len(TAP_CHANNELS)):
        assert torch.equal(getattr(model, f"lin{k}").weight, getattr(ours, f"lin{k}").weight)


def test_missing_vgg_offline_raises_the_weights_error_unchanged(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no other tool's cache to borrow from
    with pytest.raises(WeightsError) as direct:
        weight_path("tv-vgg16")
    with pytest.raises(WeightsError) as via_loader:
        load_lpips_vgg()
    assert type(via_loader.value) is MissingWeightsError
    assert str(via_loader.value) == str(direct.value)
    assert "vgg16-397923af.pth" in str(via_loader.value)


def test_bad_files_are_refused(oracle_and_files, tmp_path):
    _, vgg_path, lin_path = oracle_and_files
    vgg = torch.load(vgg_path, map_location="cpu", weights_only=True)
    del vgg["features.28.bias"]
    torch.save(vgg, tmp_path / "short.pth")
    with pytest.raises(CheckpointError, match=r"features\.28\.bias"):
        load_lpips_vgg(vgg_path=tmp_path / "short.pth", lin_path=lin_path)

    heads = torch.load(lin_path, map_location="cpu", weights_only=True)
    negative = dict(heads)
    negative["lin2.model.1.weight"] = -negative["lin2.model.1.weight"]
    torch.save(negative, tmp_path / "negative.pth")
    with pytest.raises(CheckpointError, match="head 2 has negative"):
        load_lpips_vgg(vgg_path=vgg_path, lin_path=tmp_path / "negative.pth")

    missing = {k: v for k, v in heads.items() if not k.startswith("lin4")}
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match="head 4"):
        load_lpips_vgg(vgg_path=vgg_path, lin_path=tmp_path / "missing.pth")

    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.pth"):
        load_lpips_vgg(vgg_path=vgg_path, lin_path=tmp_path / "garbage.pth")


def test_shape_errors_say_expected_and_got(ours):
    x = torch.zeros(1, 3, 32, 32)
    with pytest.raises(ValueError, match=r"same shape.*\(1, 3, 32, 32\).*\(1, 3, 32, 16\)"):
        ours(x, torch.zeros(1, 3, 32, 16))
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\].*\(1, 1, 32, 32\)"):
        ours.features(torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match=r"at least 16x16.*\(8, 8\)"):
        ours(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))
    f2 = ours.features(torch.zeros(2, 3, 32, 32))
    f3 = ours.features(torch.zeros(3, 3, 32, 32))
    with pytest.raises(ValueError, match="batch"):
        ours.distance(f2, f3)


def test_resize_to_compares_downsampled_images(oracle_and_files, ours):
    _, vgg_path, lin_path = oracle_and_files
    small = load_lpips_vgg(vgg_path=vgg_path, lin_path=lin_path, resize_to=16)
    x, y = _pair(2, 32, seed=6)
    with torch.no_grad():
        expected = ours(area_downsample(x, 16), area_downsample(y, 16))
        torch.testing.assert_close(small(x, y), expected)
        torch.testing.assert_close(
            small(x[:, :, :16, :16], y[:, :, :16, :16]), ours(x[:, :, :16, :16], y[:, :, :16, :16])
        )


def test_area_downsample_is_a_box_mean_and_never_upsamples():
    x = torch.randn(2, 3, 64, 48)
    out = area_downsample(x, 16)  # factor 4 on both sides
    expected = x.reshape(2, 3, 16, 4, 12, 4).mean(dim=(3, 5))
    assert out.shape == (2, 3, 16, 12)
    torch.testing.assert_close(out, expected)
    assert area_downsample(x, 64) is x
    assert area_downsample(x, 100) is x
    with pytest.raises(ValueError, match=r"\[N, C, H, W\].*\(3, 64, 48\)"):
        area_downsample(x[0], 16)
