"""The FID Inception: key layout of the pytorch-fid weight file, loading, and the forward pass against
torchvision's Inception-v3 blocks with the FID pooling changes."""

from __future__ import annotations

import types

import pytest
import torch
import torch.nn.functional as F

from realface.errors import CheckpointError
from realface.nn.inception import FIDInception3, load_fid_inception
from tests.metrics.conftest import random_inception_state, torchvision_fid_layout


def test_state_dict_matches_torchvision_inception_v3_1008_key_for_key():
    ours = {k: tuple(v.shape) for k, v in FIDInception3().state_dict().items()}
    theirs = torchvision_fid_layout()
    assert sorted(ours) == sorted(theirs)
    assert ours == theirs
    assert ours["fc.weight"] == (1008, 2048)
    assert "Mixed_7c.branch_pool.conv.weight" in ours


def test_random_weights_in_the_real_layout_load_exactly(random_inception_file):
    model = load_fid_inception("cpu", random_inception_file)
    state = torch.load(random_inception_file, weights_only=True)
    loaded = model.state_dict()
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key
    assert not any(p.requires_grad for p in model.parameters())
    assert not model.training


def test_loading_refuses_other_layouts_naming_the_file(tmp_path):
    state = random_inception_state()
    del state["Mixed_6b.branch7x7_2.conv.weight"]
    bad = tmp_path / "missing.pth"
    torch.save(state, bad)
    with pytest.raises(CheckpointError, match="missing.pth.*Mixed_6b.branch7x7_2.conv.weight"):
        load_fid_inception("cpu", bad)

    state = random_inception_state()
    state["fc.weight"] = torch.zeros(1000, 2048)  # torchvision's ImageNet head, not the FID file's
    imagenet = tmp_path / "imagenet.pth"
    torch.save(state, imagenet)
    with pytest.raises(CheckpointError, match="imagenet.pth.*fc.weight"):
        load_fid_inception("cpu", imagenet)

    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pth"):
        load_fid_inception("cpu", junk)


def _torchvision_fid_reference(state: dict[str, torch.Tensor], monkeypatch) -> tuple[torch.nn.Module, list]:
    """torchvision's Inception-v3 with the FID pooling: its blocks' 3x3 average pools stop counting the
    padding, and the last block (Mixed_7c) pools with a max instead. Returns the net and a list that
    receives its pool3 output."""
    import torchvision
    import torchvision.models.inception as tv_inception

    net = torchvision.models.inception_v3(
        weights=None, aux_logits=False, num_classes=1008, init_weights=False
    )
    net.load_state_dict(state, strict=False)  # num_batches_tracked stay at their defaults
    net.eval()
    in_last_block = [False]

    def avg_pool2d(x, kernel_size, stride=None, padding=0, **_):
        assert (kernel_size, stride, padding) == (3, 1, 1)
        if in_last_block[0]:
            return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)

    shim = types.SimpleNamespace(**{n: getattr(F, n) for n in dir(F) if not n.startswith("__")})
    shim.avg_pool2d = avg_pool2d
    monkeypatch.setattr(tv_inception, "F", shim)
    net.Mixed_7c.register_forward_pre_hook(lambda *_: in_last_block.__setitem__(0, True))
    net.Mixed_7c.register_forward_hook(lambda *_: in_last_block.__setitem__(0, False))
    pool3: list[torch.Tensor] = []
    net.avgpool.register_forward_hook(lambda _m, _i, out: pool3.append(out.flatten(1)))
    return net, pool3


def test_pool3_features_equal_torchvision_with_fid_pooling(monkeypatch):
    state = random_inception_state(seed=1)
    ours = FIDInception3()
    ours.load_state_dict(state, strict=False)
    ours.eval()
    torch.manual_seed(0)
    images = torch.rand(1, 3, 64, 80)  # [0, 1], not square: the resize is part of the protocol
    x = F.interpolate(images, size=(299, 299), mode="bilinear", align_corners=False) * 2 - 1
    with torch.no_grad():
        import torchvision

        # torchvision without the FID changes, to show that they matter
        plain = torchvision.models.inception_v3(
            weights=None, aux_logits=False, num_classes=1008, init_weights=False
        ).eval()
        plain.load_state_dict(state, strict=False)
        plain_feats: list[torch.Tensor] = []
        plain.avgpool.register_forward_hook(lambda _m, _i, out: plain_feats.append(out.flatten(1)))
        plain(x)
        ref_net, ref_feats = _torchvision_fid_reference(state, monkeypatch)
        ref_net(x)
        feats = ours(images)  # [1, 2048]
    assert feats.shape == (1, 2048)
    torch.testing.assert_close(feats, ref_feats[0], rtol=1e-4, atol=1e-5)
    assert (feats - plain_feats[0]).abs().max() > 1e-3


def test_preprocess_is_bilinear_299_then_minus_one_to_one():
    images = torch.zeros(1, 3, 10, 10)
    images[..., 5:, :] = 1.0
    x = FIDInception3.preprocess(images)
    assert x.shape == (1, 3, 299, 299)
    assert x.min() == -1 and x.max() == 1
    expected = F.interpolate(images, size=(299, 299), mode="bilinear", align_corners=False) * 2 - 1
    assert torch.equal(x, expected)
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        FIDInception3.preprocess(torch.zeros(1, 4, 10, 10))
    with pytest.raises(ValueError, match="299"):
        FIDInception3().trunk(torch.zeros(1, 3, 64, 64))
