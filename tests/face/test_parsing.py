"""BiSeNet face parsing: key-for-key checkpoint layout (reference/weights.md §4), random weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from realface.errors import CheckpointError
from realface.face.mask import FaceParser
from realface.nn.parsing import BiSeNet, load_bisenet, preprocess

# Modules and shapes of 79999_iter.pth as documented (zllrunning/face-parsing.PyTorch, facexlib).
EXPECTED_SHAPES = {
    "cp.resnet.conv1.weight": (64, 3, 7, 7),
    "cp.resnet.bn1.running_var": (64,),
    "cp.resnet.layer1.0.conv1.weight": (64, 64, 3, 3),
    "cp.resnet.layer2.0.downsample.0.weight": (128, 64, 1, 1),
    "cp.resnet.layer2.0.downsample.1.bias": (128,),
    "cp.resnet.layer4.1.conv2.weight": (512, 512, 3, 3),
    "cp.arm16.conv.conv.weight": (128, 256, 3, 3),
    "cp.arm16.conv.bn.weight": (128,),
    "cp.arm16.conv_atten.weight": (128, 128, 1, 1),
    "cp.arm16.bn_atten.running_mean": (128,),
    "cp.arm32.conv.conv.weight": (128, 512, 3, 3),
    "cp.conv_head32.conv.weight": (128, 128, 3, 3),
    "cp.conv_head16.bn.bias": (128,),
    "cp.conv_avg.conv.weight": (128, 512, 1, 1),
    "ffm.convblk.conv.weight": (256, 256, 1, 1),
    "ffm.conv1.weight": (64, 256, 1, 1),
    "ffm.conv2.weight": (256, 64, 1, 1),
    "conv_out.conv.conv.weight": (256, 256, 3, 3),
    "conv_out.conv_out.weight": (19, 256, 1, 1),
    "conv_out16.conv.conv.weight": (64, 128, 3, 3),
    "conv_out16.conv_out.weight": (19, 64, 1, 1),
    "conv_out32.conv_out.weight": (19, 64, 1, 1),
}
MODULE_PREFIXES = {
    "cp.resnet.conv1", "cp.resnet.bn1", "cp.resnet.layer1", "cp.resnet.layer2", "cp.resnet.layer3",
    "cp.resnet.layer4", "cp.arm16", "cp.arm32", "cp.conv_head32", "cp.conv_head16", "cp.conv_avg",
    "ffm.convblk", "ffm.conv1", "ffm.conv2", "conv_out.conv", "conv_out.conv_out", "conv_out16.conv",
    "conv_out16.conv_out", "conv_out32.conv", "conv_out32.conv_out",
}  # fmt: skip
CHECKPOINT_BYTES = 53_289_463  # size of 79999_iter.pth (reference/weights.md §0)


def _prefix(key: str) -> str:
    parts = key.split(".")
    return ".".join(parts[:3]) if parts[0] == "cp" and parts[1] == "resnet" else ".".join(parts[:2])


@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    net = BiSeNet(19)
    for m in net.modules():  # non-trivial BatchNorm statistics so that every tensor matters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    path = tmp_path_factory.mktemp("bisenet") / "79999_iter.pth"
    torch.save(net.state_dict(), path)
    return path, net.eval()


def test_state_dict_layout_matches_the_official_checkpoint():
    sd = BiSeNet(19).state_dict()
    for key, shape in EXPECTED_SHAPES.items():
        assert tuple(sd[key].shape) == shape, key
    assert {_prefix(k) for k in sd} == MODULE_PREFIXES
    assert not any(k.startswith("sp.") for k in sd)  # the spatial path is not in the checkpoint
    tensor_bytes = sum(v.numel() * v.element_size() for v in sd.values())
    assert CHECKPOINT_BYTES - 64 * 1024 < tensor_bytes < CHECKPOINT_BYTES  # the rest is zip/pickle framing


def test_load_key_for_key_and_forward(random_checkpoint):
    path, net = random_checkpoint
    loaded = load_bisenet(path)
    ref_sd, got_sd = net.state_dict(), loaded.state_dict()
    assert ref_sd.keys() == got_sd.keys()
    assert all(torch.equal(ref_sd[k], got_sd[k]) for k in ref_sd)
    x = preprocess(torch.rand(1, 3, 96, 96), size=128)
    assert x.shape == (1, 3, 128, 128)
    outs = loaded(x)
    assert [tuple(o.shape) for o in outs] == [(1, 19, 128, 128)] * 3
    torch.testing.assert_close(outs[0], net(x)[0])
    assert torch.isfinite(outs[0]).all() and outs[0].std() > 0


def test_checkpoint_without_batch_counters_loads(random_checkpoint, tmp_path):
    path, _ = random_checkpoint
    sd = {k: v for k, v in torch.load(path, weights_only=True).items() if "num_batches" not in k}
    torch.save(sd, tmp_path / "old.pth")
    assert isinstance(load_bisenet(tmp_path / "old.pth"), BiSeNet)


def test_wrong_checkpoints_are_refused(random_checkpoint, tmp_path):
    path, _ = random_checkpoint
    sd = torch.load(path, weights_only=True)
    sd["conv_out.conv_out.weight"] = torch.zeros(18, 256, 1, 1)
    torch.save(sd, tmp_path / "wrong.pth")
    with pytest.raises(CheckpointError, match=r"conv_out\.conv_out\.weight \(18, 256, 1, 1\)"):
        load_bisenet(tmp_path / "wrong.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pth"):
        load_bisenet(tmp_path / "junk.pth")


def test_every_parameter_receives_a_gradient():
    torch.manual_seed(1)
    net = BiSeNet(19).train()
    out, out16, out32 = net(torch.randn(2, 3, 64, 64))
    (out.square().mean() + out16.square().mean() + out32.square().mean()).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_face_parser_returns_labels(random_checkpoint):
    path, _ = random_checkpoint
    parser = FaceParser(path)
    labels = parser(np.random.default_rng(0).random((256, 256, 3), dtype=np.float32))
    assert labels.shape == (512, 512) and labels.dtype == np.uint8 and labels.max() < 19
    np.testing.assert_array_equal(
        labels, parser(np.random.default_rng(0).random((256, 256, 3), dtype=np.float32))
    )
