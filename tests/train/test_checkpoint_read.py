"""A broken training checkpoint is refused before anything is built, naming the broken file, and the
message offers the previous intact checkpoint of the run when there is one."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from safetensors.torch import load_file, save_file

from realface.errors import CheckpointError
from realface.train.checkpoint import read_checkpoint
from realface.train.loop import TrainConfig, Trainer, export_generator
from tests._hostile import networks_file


def checkpoint_cfg(setup, out) -> TrainConfig:
    return TrainConfig(
        data=setup["data"], real=setup["pkl"], out=str(out), kimg=0.016, batch=4, kimg_per_tick=0.008,
        snap=1, keep=3, workers=0, lpips_vgg=setup["vgg"], grid_size=4, seed=1,
    )  # fmt: skip


def make_run(setup, out):
    """A run folder with two real checkpoints (ckpt-000000004 and ckpt-000000008), no training steps."""
    t = Trainer(checkpoint_cfg(setup, out))
    for nimg in (4, 8):
        t.cur_nimg = nimg
        t.save_checkpoint()
    return out


@pytest.fixture(scope="module")
def pristine(setup, tmp_path_factory):
    return make_run(setup, tmp_path_factory.mktemp("ckpt") / "run")


def _json(edit):
    def corrupt(path):
        state = json.loads(path.read_text())
        edit(state)
        path.write_text(json.dumps(state))

    return corrupt


def _tensors(edit):
    def corrupt(path):
        t = load_file(str(path))
        edit(t)
        save_file(t, str(path))

    return corrupt


# (file in the newest checkpoint, corruption, text the message must contain)
CASES = {
    "json_invalid": ("state.json", lambda p: p.write_text('{"cur_nimg": 8,'), "is not valid JSON"),
    "json_empty": ("state.json", lambda p: p.write_text(""), "is empty"),
    "json_list": ("state.json", lambda p: p.write_text("[1, 2]"), "must hold a JSON object, got list"),
    "json_missing_key": ("state.json", _json(lambda s: s.pop("cur_nimg")), "lacks the key(s) cur_nimg"),
    "json_counter_text": (
        "state.json",
        _json(lambda s: s.update(batch_idx="2")),
        "batch_idx must be a non-negative",
    ),
    "json_opt_groups": ("state.json", _json(lambda s: s.update(opt_G=[])), "opt_G must be a non-empty list"),
    "json_deep": ("state.json", lambda p: p.write_text("[" * 5000 + "]" * 5000), "nested too deeply"),
    "json_loader_ref": (
        "state.json",
        _json(lambda s: s.update(loader={"perm": {"__tensor__": "loader/nope"}})),
        "missing from state.safetensors",
    ),
    "tensors_zero_bytes": ("state.safetensors", lambda p: p.write_bytes(b""), "is empty (0 bytes"),
    "tensors_truncated": (
        "state.safetensors",
        lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
        "truncated or corrupt",
    ),
    "tensors_no_rng": (
        "state.safetensors",
        _tensors(lambda t: t.pop("rng_cpu")),
        "lacks the tensor 'rng_cpu'",
    ),
    "tensors_rng_shape": (
        "state.safetensors",
        _tensors(lambda t: t.update(rng_cpu=t["rng_cpu"][:10].clone())),
        "rng_cpu must be",
    ),
    "networks_header": ("networks.safetensors", lambda p: networks_file(p, [1]), "'networks' header must be"),
    "networks_missing": ("networks.safetensors", lambda p: p.unlink(), None),
}


def test_broken_newest_checkpoint_names_the_file_and_offers_the_previous(pristine, setup, tmp_path):
    for case, (name, corrupt, message) in CASES.items():
        run = tmp_path / case
        shutil.copytree(pristine, run)
        newest = run / "checkpoints" / "ckpt-000000008"
        corrupt(newest / name)
        if message is None:  # an incomplete folder is not a checkpoint: the previous one is resumed
            assert Trainer(checkpoint_cfg(setup, run), resume=str(run)).cur_nimg == 4
            continue
        with pytest.raises(CheckpointError) as info:
            Trainer(checkpoint_cfg(setup, run), resume=str(run))
        text = str(info.value)
        assert text.startswith(f"{newest / name}: "), (case, text)
        assert message in text, (case, text)
        previous = run / "checkpoints" / "ckpt-000000004"
        assert "the previous intact checkpoint is ckpt-000000004; resume from it with" in text, (case, text)
        assert f"--resume {previous} --out {run}" in text, (case, text)
        assert "\n" not in text and len(text) < 1000, (case, text)
        with pytest.raises(CheckpointError, match=re.escape(message)):
            export_generator(run, tmp_path / f"{case}.safetensors")
        assert not (tmp_path / f"{case}.safetensors").exists()
    # The offered command works: the previous checkpoint resumes.
    run = tmp_path / "json_invalid"
    t = Trainer(checkpoint_cfg(setup, run), resume=str(run / "checkpoints" / "ckpt-000000004"))
    assert t.cur_nimg == 4


def test_no_previous_checkpoint_no_offer_and_the_intact_run_resumes(pristine, setup, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(pristine, run)
    for ckpt in ("ckpt-000000004", "ckpt-000000008"):
        (run / "checkpoints" / ckpt / "state.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(run / "checkpoints" / "ckpt-000000008")
    assert "is empty (0 bytes" in str(info.value) and "intact checkpoint" not in str(info.value)
    # Control: the untouched run resumes from its newest checkpoint.
    assert Trainer(checkpoint_cfg(setup, pristine), resume=str(pristine)).cur_nimg == 8


def test_checkpoint_of_another_architecture_is_refused(pristine, setup, tmp_path):
    from realface.checkpoints import save_networks
    from tests._helpers import tiny_discriminator, tiny_generator

    run = tmp_path / "run"
    shutil.copytree(pristine, run)
    newest = run / "checkpoints" / "ckpt-000000008"
    G = tiny_generator(32)
    save_networks({"G": G, "G_ema": G, "D": tiny_discriminator(32)}, newest / "networks.safetensors")
    with pytest.raises(CheckpointError, match="networks.safetensors: network G does not match this run's G"):
        Trainer(checkpoint_cfg(setup, run), resume=str(run))
