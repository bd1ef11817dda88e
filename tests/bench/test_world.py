"""The toy world builder (quick settings) and the shipped world."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from realface.bench.faces import params_from_z, render_photo
from realface.bench.world import WorldConfig, build_world, default_world_path, load_world
from realface.errors import CheckpointError, ConfigError
from realface.train.loop import frozen_parameter_names


@pytest.fixture(scope="module")
def quick_world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    build_world(out, WorldConfig.quick())
    return out


def test_quick_world_files_and_frozen_oracle(quick_world):
    w = load_world(quick_world)
    info = json.loads((quick_world / "toyworld.json").read_text())
    assert info["config"] == dataclasses.asdict(WorldConfig.quick())
    assert set(info["phases"]) == {"regress", "adversarial", "oracle", "regressor"}
    assert not (quick_world / "world_state.pt").exists()
    # The oracle shares G_real's W+ space: mapping and ToRGB identical, the rest fine-tuned.
    real, oracle = dict(w.G_real.named_parameters()), dict(w.G_oracle.named_parameters())
    frozen = set(frozen_parameter_names(w.G_real))
    assert frozen and all(torch.equal(real[n], oracle[n]) for n in frozen)
    assert any(not torch.equal(real[n], oracle[n]) for n in real if n not in frozen)
    z = torch.randn(2, w.G_real.z_dim)
    assert w.regressor(w.G_real(z, None)).shape == (2, 26)
    assert w.D(w.G_real(z, None), None).shape == (2, 1)


def test_world_resumes_and_refuses_other_settings(tmp_path):
    cfg = dataclasses.replace(
        WorldConfig.quick(), regress_kimg=0.04, adv_kimg=0, oracle_kimg=0, regressor_kimg=0.016
    )
    calls = []

    # Interrupt after the first regression step (a state file is written at every step here).
    def stop(phase, it, total, loss):
        calls.append((phase, it))
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_world(tmp_path / "a", cfg, progress=stop, checkpoint_seconds=0)
    assert (tmp_path / "a" / "world_state.pt").is_file()
    with pytest.raises(ConfigError, match="other settings"):
        build_world(tmp_path / "a", dataclasses.replace(cfg, seed=1))
    resumed = []
    build_world(tmp_path / "a", cfg, progress=lambda ph, it, tot, loss: resumed.append((ph, it)))
    assert resumed[0] == ("regress", 2)  # continued, not restarted
    build_world(tmp_path / "b", cfg)
    a = load_world(tmp_path / "a").G_real.state_dict()
    b = load_world(tmp_path / "b").G_real.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # the resumed world equals the uninterrupted one


def test_unreadable_or_foreign_world_state_is_refused_naming_it(tmp_path):
    out = tmp_path / "w"
    out.mkdir()
    state = out / "world_state.pt"
    state.write_bytes(b"\x80\x04not a torch file")
    with pytest.raises(CheckpointError, match=r"world_state\.pt: cannot read the toy-world state.*delete it"):
        build_world(out, WorldConfig.quick())
    torch.save({"G": {}}, state)  # readable, but not what the builder writes
    with pytest.raises(CheckpointError, match=r"world_state\.pt: not a toy-world state.*delete it"):
        build_world(out, WorldConfig.quick())


def test_missing_world_names_the_command(tmp_path):
    with pytest.raises(CheckpointError, match="realface bench world"):
        load_world(tmp_path)


def test_shipped_world_has_learned_the_photo_faces():
    w = load_world(default_world_path())  # fails (not skips) when the shipped files are missing
    res = WorldConfig().res  # the shipped world was made with the default settings
    assert w.G_real.img_resolution == res and w.info["config"]["res"] == res
    torch.manual_seed(0)
    z = torch.randn(16, w.G_real.z_dim)
    with torch.no_grad():
        img = w.G_real(z, None, noise_mode="const")
        target = render_photo(params_from_z(z), res)
        err = (img - target).abs().mean()
        other = (img - target.roll(1, 0)).abs().mean()  # the photo of another person
        p = params_from_z(z)
        p_err = w.regressor.identity_error(target, p).mean()
        p_other = w.regressor.identity_error(target, p.roll(1, 0)).mean()  # another person's parameters
    assert err < 0.6 * other, (float(err), float(other))
    assert p_err < 0.7 * p_other, (float(p_err), float(p_other))
