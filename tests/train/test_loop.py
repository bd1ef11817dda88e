"""`realface train` on tiny real-architecture networks (CPU): losses, frozen layers, checkpoints,
exact resume, crash safety, identity losses, ADA and two-process training."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from realface.checkpoints import load_generator
from realface.errors import ConfigError
from realface.losses import IdentityLossConfig
from realface.train.loop import (
    TrainConfig,
    Trainer,
    export_generator,
    frozen_parameter_names,
    latest_checkpoint,
)

NO_IDENTITY = IdentityLossConfig(sketch_weight=0.0, color_weight=0.0)


def _cfg(setup, out, **kw):
    base = dict(
        data=setup["data"],
        real=setup["pkl"],
        out=str(out),
        kimg=0.016,
        batch=4,
        kimg_per_tick=0.008,
        snap=1,
        keep=2,
        workers=0,
        lpips_vgg=setup["vgg"],
        grid_size=4,
        seed=1,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_training_runs_with_all_losses_and_keeps_frozen_layers(setup, tmp_path):
    out = tmp_path / "run"
    t = Trainer(_cfg(setup, out))
    before = {k: v.clone() for k, v in t.G.state_dict().items()}
    t.run(progress=False)
    lines = [json.loads(x) for x in (out / "stats.jsonl").read_text().splitlines()]
    assert len(lines) == 2
    for key in (
        "Loss/G/loss",
        "Loss/G/sketch",
        "Loss/G/color",
        "Loss/D/loss",
        "Loss/r1_penalty",
        "Loss/pl_penalty",
    ):
        assert any(key in ln for ln in lines), key
        assert all(np.isfinite(ln[key]) for ln in lines if key in ln), key
    frozen = set(frozen_parameter_names(t.G))
    assert any(n.startswith("mapping.") for n in frozen) and any(".torgb." in n for n in frozen)
    after = t.G.state_dict()
    for k, v in before.items():
        if k in frozen or k.startswith("mapping."):  # frozen parameters and the mapping's w_avg
            assert torch.equal(after[k], v), f"frozen tensor {k} changed"
    trainable_changed = [
        k for k, _ in t.G.named_parameters() if k not in frozen and not torch.equal(after[k], before[k])
    ]
    assert len(trainable_changed) > 10
    for k in frozen:
        assert torch.equal(t.G_ema.state_dict()[k], before[k])
    ckpts = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert ckpts == ["ckpt-000000008", "ckpt-000000016"]  # keep=2
    assert (out / "training_options.json").is_file() and list(out.glob("fakes*.png"))
    g = export_generator(out, tmp_path / "G_rendering.safetensors")
    G_rend = load_generator(g)
    for k, v in G_rend.state_dict().items():
        assert torch.equal(v, t.G_ema.state_dict()[k])


def _state(t: Trainer) -> dict[str, torch.Tensor]:
    s = {f"G_ema.{k}": v for k, v in t.G_ema.state_dict().items()}
    s.update({f"D.{k}": v for k, v in t.D.state_dict().items()})
    s.update({f"G.{k}": v for k, v in t.G.state_dict().items()})
    s.update(t.state_tensors())
    s.pop("rng_cpu")  # the process's global RNG now, shared by both trainers: compared on disk below
    return s


def _saved(run) -> tuple[dict[str, torch.Tensor], dict]:
    """Every tensor of a run's latest checkpoint (networks and state) and its state.json."""
    from safetensors.torch import load_file

    ckpt = latest_checkpoint(run)
    tensors = {f"net.{k}": v for k, v in load_file(str(ckpt / "networks.safetensors")).items()}
    tensors.update({f"state.{k}": v for k, v in load_file(str(ckpt / "state.safetensors")).items()})
    state = json.loads((ckpt / "state.json").read_text())
    state["config"].pop("out")
    return tensors, state


def test_resume_equals_uninterrupted_training(setup, tmp_path):
    # Each run starts from a different global RNG state, as separate processes would.
    torch.manual_seed(11)
    full = Trainer(_cfg(setup, tmp_path / "full", kimg=0.032))
    full.run(progress=False)
    torch.manual_seed(22)
    half = Trainer(_cfg(setup, tmp_path / "resumed", kimg=0.016))
    half.run(progress=False)
    torch.manual_seed(33)
    resumed = Trainer(_cfg(setup, tmp_path / "resumed", kimg=0.032), resume=str(tmp_path / "resumed"))
    assert resumed.cur_nimg == 16 and resumed.batch_idx == 4
    resumed.run(progress=False)
    a, b = _state(full), _state(resumed)
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resume"
    (ta, sa), (tb, sb) = _saved(tmp_path / "full"), _saved(tmp_path / "resumed")
    assert "state.rng_cpu" in ta and set(ta) == set(tb)
    for k in ta:
        assert torch.equal(ta[k], tb[k]), f"saved {k} differs after resume"
    assert sa == sb


def test_crash_while_saving_keeps_the_previous_checkpoint(setup, tmp_path, monkeypatch):
    import realface.train.loop as loop

    out = tmp_path / "run"
    t = Trainer(_cfg(setup, out, kimg=0.008))
    t.run(progress=False)
    good = latest_checkpoint(out)
    real_save = loop.save_networks

    def crash(*args, **kwargs):
        real_save(*args, **kwargs)
        raise KeyboardInterrupt("killed while saving")

    monkeypatch.setattr(loop, "save_networks", crash)
    t2 = Trainer(_cfg(setup, out, kimg=0.016), resume=str(out))
    with pytest.raises(KeyboardInterrupt):
        t2.run(progress=False)
    assert latest_checkpoint(out) == good  # the half-written one is not taken
    assert [p.name for p in (out / "checkpoints").iterdir()] == [good.name]  # and is removed
    stale = out / "checkpoints" / ".rf-0123abcd.tmp"  # what a save killed with -9 leaves
    stale.mkdir()
    (stale / "networks.safetensors").write_bytes(b"half")
    monkeypatch.setattr(loop, "save_networks", real_save)
    t3 = Trainer(_cfg(setup, out, kimg=0.016), resume=str(out))
    t3.run(progress=False)
    assert not stale.exists()
    assert latest_checkpoint(out).name == "ckpt-000000016"


def test_identity_losses_keep_g_rendering_closer_to_g_real(setup, tmp_path):
    """Same run with and without λs, λc: on held-out latents G_rendering stays closer to G_real.

    Measured by the sketch loss (XDoG, as trained) and by the colour distance of the blurred,
    downsampled images in pixel space: with random VGG16 weights (the only ones available to the
    tests) LPIPS of blurred images is degenerate (~1e-7), so the colour term is checked directly on
    the quantity it constrains, the blurred colours.
    """
    from realface.losses import sketch_loss
    from realface.nn.blur import gaussian_blur
    from realface.nn.sketch import build_sketch_extractor

    common = dict(kimg=0.04, lr=0.01, ada=False, pl_weight=0.0, snap=100)
    with_id = Trainer(_cfg(setup, tmp_path / "with", **common))
    with_id.run(progress=False)
    without = Trainer(_cfg(setup, tmp_path / "without", identity=NO_IDENTITY, **common))
    without.run(progress=False)
    sketch = build_sketch_extractor("xdog")
    z = torch.from_numpy(np.random.RandomState(99).randn(8, with_id.G.z_dim)).float()  # held-out latents
    res = {}
    for name, t in (("with", with_id), ("without", without)):
        with torch.no_grad():
            ws = t.G_real.mapping(z, None)
            a = t.G_real.synthesis(ws, noise_mode="const")
            b = t.G_ema.synthesis(ws, noise_mode="const")
            colour = (gaussian_blur(a, 13, 10.0) - gaussian_blur(b, 13, 10.0)).square().mean()
            res[name] = (float(sketch_loss(a, b, sketch).mean()), float(colour))
    assert res["with"][0] < 0.9 * res["without"][0], res
    assert res["with"][1] < res["without"][1], res


def test_ada_p_rises_when_d_overfits(setup, tmp_path):
    # One training image, no mirroring, a fast D and a G that does not learn: D memorises the image,
    # E[sign(D(real))] exceeds the target 0.6 and the controller raises p by
    # batch*interval/(ada_kimg*1000) per adjustment.
    small = tmp_path / "one"
    small.mkdir()
    for name in sorted(os.listdir(setup["data"]))[:1]:
        (small / name).write_bytes((setup["root"] / "data" / name).read_bytes())
    cfg = _cfg(
        setup,
        tmp_path / "ada",
        data=str(small),
        xflip=False,
        kimg=0.192,
        ada_kimg=0.5,
        identity=NO_IDENTITY,
        pl_weight=0.0,
        gamma=0.0,
        d_lr=0.02,
        g_lr=1e-30,
        snap=100,
        kimg_per_tick=0.032,
    )
    t = Trainer(cfg)
    t.run(progress=False)
    lines = [json.loads(x) for x in (tmp_path / "ada" / "stats.jsonl").read_text().splitlines()]
    ps = [ln["Progress/augment"] for ln in lines]
    step = cfg.batch * cfg.ada_interval / (cfg.ada_kimg * 1000)
    assert ps[-1] >= 2 * step and ps[-1] > ps[0], (ps, [ln["Loss/scores/real"] for ln in lines])
    # p only ever moves in whole steps of the documented size.
    assert abs(ps[-1] / step - round(ps[-1] / step)) < 1e-4


def test_config_errors(setup, tmp_path):
    with pytest.raises(Exception, match="precision"):
        _cfg(setup, tmp_path, precision="fp8")
    with pytest.raises(ConfigError, match="kimg must be > 0") as e:
        _cfg(setup, tmp_path, kimg=0)
    assert e.value.field == "kimg"
    for name, value in (("workers", -1), ("style_mixing", 2.0), ("g_lr", 0.0)):
        with pytest.raises(ConfigError) as e:
            _cfg(setup, tmp_path, **{name: value})
        assert e.value.field == name and name in str(e.value)
    with pytest.raises(ConfigError) as e:
        _cfg(setup, tmp_path, identity=IdentityLossConfig(sketch_weight=-1.0))
    assert e.value.field == "sketch_weight" and "sketch_weight" in str(e.value)


def test_freeze_res_keeps_the_coarse_blocks_of_g_real(setup, tmp_path):
    t = Trainer(_cfg(setup, tmp_path / "run", freeze_res=8, kimg=0.008))
    frozen = set(frozen_parameter_names(t.G, 8))
    coarse = [n for n, _ in t.G.named_parameters() if n.startswith(("synthesis.b4.", "synthesis.b8."))]
    assert coarse and set(coarse) <= frozen and not set(frozen_parameter_names(t.G)) >= set(coarse)
    before = {k: v.clone() for k, v in t.G.state_dict().items()}
    t.run(progress=False)
    after = t.G.state_dict()
    for k in coarse:
        assert torch.equal(after[k], before[k]), f"frozen tensor {k} changed"
        assert torch.equal(t.G_ema.state_dict()[k], before[k])
    finer = [n for n, _ in t.G.named_parameters() if n not in frozen]
    assert finer and all(n.startswith(("synthesis.b16.", "synthesis.b32.", "synthesis.b64.")) for n in finer)
    assert any(not torch.equal(after[k], before[k]) for k in finer)
    assert json.loads((tmp_path / "run" / "training_options.json").read_text())["freeze_res"] == 8


def test_freeze_res_is_checked(setup, tmp_path):
    for bad in (-4, 2, 12):
        with pytest.raises(ConfigError, match="freeze_res must be 0 or a power of two >= 4"):
            _cfg(setup, tmp_path / "r", freeze_res=bad)
    with pytest.raises(ConfigError, match="freeze_res 64 freezes every synthesis block of a 64 px"):
        Trainer(_cfg(setup, tmp_path / "r", freeze_res=64))
