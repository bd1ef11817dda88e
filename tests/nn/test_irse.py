"""IR backbones (CurricularFace IR-101): the published key layout, gradients, flip-TTA, strict loading."""

from __future__ import annotations

import re

import pytest
import torch
from safetensors.torch import save_file

from realface.errors import CheckpointError
from realface.nn.irse import IR101_UNITS, IRBackbone, embed_flip, load_ir101, preprocess

TINY = (1, 2, 1, 1)


def _tiny(seed: int = 0) -> IRBackbone:
    torch.manual_seed(seed)
    net = IRBackbone(TINY)
    with torch.no_grad():  # non-trivial running statistics, so that a wrong copy would show
        for m in net.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def _faces(n: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.rand([n, 3, 112, 112], generator=torch.Generator().manual_seed(seed))


def test_ir101_keys_and_shapes_are_the_published_layout():
    # reference/weights.md §6: input_layer.{0 conv[64,3,3,3],1 BN,2 PReLU}, body.{0..48}.res_layer.{0 BN,1 conv,
    # 2 PReLU,3 conv,4 BN}, body.i.shortcut_layer.{0,1} when in != out, output_layer.{0 BN2d(512),
    # 3 Linear[512,25088], 4 BN1d affine=False}.
    with torch.device("meta"):
        sd = IRBackbone().state_dict()
    assert IR101_UNITS == (3, 13, 30, 3)
    assert sd["input_layer.0.weight"].shape == (64, 3, 3, 3)
    assert sd["input_layer.1.weight"].shape == (64,) and sd["input_layer.2.weight"].shape == (64,)
    bodies = {int(m.group(1)) for k in sd if (m := re.match(r"body\.(\d+)\.", k))}
    assert bodies == set(range(49))
    shortcut_convs = sorted(int(k.split(".")[1]) for k in sd if k.endswith("shortcut_layer.0.weight"))
    assert shortcut_convs == [3, 16, 46]  # the first unit of stages 2, 3 and 4 (64→128, 128→256, 256→512)
    assert sd["body.3.shortcut_layer.0.weight"].shape == (128, 64, 1, 1)
    assert sd["body.46.shortcut_layer.1.running_var"].shape == (512,)
    for k, (cin, depth) in {0: (64, 64), 3: (64, 128), 16: (128, 256), 48: (512, 512)}.items():
        assert sd[f"body.{k}.res_layer.0.weight"].shape == (cin,)
        assert sd[f"body.{k}.res_layer.1.weight"].shape == (depth, cin, 3, 3)
        assert sd[f"body.{k}.res_layer.2.weight"].shape == (depth,)
        assert sd[f"body.{k}.res_layer.3.weight"].shape == (depth, depth, 3, 3)
        assert sd[f"body.{k}.res_layer.4.running_mean"].shape == (depth,)
    assert sd["output_layer.0.weight"].shape == (512,)
    assert sd["output_layer.3.weight"].shape == (512, 25088) and sd["output_layer.3.bias"].shape == (512,)
    assert {k for k in sd if k.startswith("output_layer.4.")} == {
        "output_layer.4.running_mean",
        "output_layer.4.running_var",
        "output_layer.4.num_batches_tracked",
    }
    assert not any(k.startswith("body.0.shortcut_layer") for k in sd)  # 64→64: no parameters


def test_forward_shape_checks_and_every_parameter_gets_a_gradient():
    net = _tiny().train()
    out = net(preprocess(_faces(3)))
    assert out.shape == (3, 512) and torch.isfinite(out).all()
    out.square().sum().backward()
    no_grad = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == []
    with pytest.raises(ValueError, match=r"\[N, 3, 112, 112\].*\(1, 3, 96, 96\)"):
        net(torch.zeros(1, 3, 96, 96))
    with pytest.raises(ValueError, match="4 stages"):
        IRBackbone((3, 13, 30))


def test_flip_tta_is_l2_normalised_and_mirror_symmetric():
    net = _tiny()
    x = preprocess(_faces(2))
    with torch.no_grad():
        e = embed_flip(net, x)
        mirrored = embed_flip(net, torch.flip(x, dims=[3]))
        plain = torch.nn.functional.normalize(net(x), dim=1)
    assert e.shape == (2, 512)
    torch.testing.assert_close(e.norm(dim=1), torch.ones(2))
    torch.testing.assert_close(mirrored, e, atol=1e-5, rtol=0)
    assert not torch.allclose(plain, e, atol=1e-3)  # the mirror image does contribute


def test_pth_and_safetensors_round_trip(tmp_path):
    net = _tiny(seed=3)
    x = preprocess(_faces(2))
    with torch.no_grad():
        want = net(x)
    pth = tmp_path / "CurricularFace_Backbone.pth"
    torch.save(net.state_dict(), pth)
    st = tmp_path / "backbone.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, st)
    prefixed = tmp_path / "dataparallel.pth"
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, prefixed)
    for path in (pth, st, prefixed):
        loaded = load_ir101(path, units=TINY)
        assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), want, atol=0, rtol=0)


def test_strict_keys_and_shapes_refusals_name_the_file(tmp_path):
    sd = _tiny().state_dict()
    missing = dict(sd)
    del missing["body.2.res_layer.1.weight"]
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(
        CheckpointError, match=r"missing\.pth: not a CurricularFace IR .*body\.2\.res_layer\.1\.weight"
    ):
        load_ir101(tmp_path / "missing.pth", units=TINY)
    extra = dict(sd, **{"head.kernel": torch.zeros(512, 10)})
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(CheckpointError, match=r"extra\.pth: .*unexpected \['head\.kernel'\]"):
        load_ir101(tmp_path / "extra.pth", units=TINY)
    wrong = dict(sd, **{"output_layer.3.bias": torch.zeros(256)})
    torch.save(wrong, tmp_path / "wrong.pth")
    with pytest.raises(CheckpointError, match=r"wrong\.pth: .*output_layer\.3\.bias \(256,\) != \(512,\)"):
        load_ir101(tmp_path / "wrong.pth", units=TINY)
    # an IR-101 checkpoint is refused by a smaller architecture, and the reverse
    with pytest.raises(CheckpointError, match=r"missing\.pth: not a CurricularFace IR-101"):
        load_ir101(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"junk\.pth: cannot read the CurricularFace IR-101 weights"):
        load_ir101(tmp_path / "junk.pth")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match=r"list\.pth: expected a state dict"):
        load_ir101(tmp_path / "list.pth")
