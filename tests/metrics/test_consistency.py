"""Identity consistency of two generators on shared latents (`realface eval consistency`): dlib's real
face-recognition model on a tiny StyleGAN2-ADA, the toy-world protocol on the shipped world, FID of the
rendering generator, and refused inputs."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from PIL import Image

from realface.checkpoints import load_generator, save_networks
from realface.errors import ConfigError
from realface.metrics import METRICS
from realface.metrics.consistency import (
    ConsistencyConfig,
    check_shared_space,
    identity_consistency,
)
from realface.metrics.identity import DLIB_SAME_PERSON, DlibFaceEmbedder
from tests.conftest import data_file
from tests.metrics.conftest import smooth_images, write_folder
from tests.robustness._cli import assert_refused, run_realface, snapshot
from tests.test_cli_apply import run_cli


def _perturbed(G: torch.nn.Module, scale: float, seed: int = 0) -> torch.nn.Module:
    """A copy of ``G`` whose synthesis weights carry relative Gaussian noise of ``scale``; mapping untouched."""
    G2 = copy.deepcopy(G)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in G2.synthesis.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale * (p.std() if p.numel() > 1 else 1.0))
    return G2


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    return load_generator(data_file("stylegan2-ada", "sg2ada_tiny64.pkl"))


@pytest.fixture(scope="module")
def embedder() -> DlibFaceEmbedder:
    return DlibFaceEmbedder()


CFG = ConsistencyConfig(num=4, batch_size=2, progress=False)


# ---------------------------------------------------------------------------------------- the embedder


def test_aligned_chip_finds_the_face_where_ffhq_alignment_puts_it(embedder):
    """Without detection, the aligned path embeds an FFHQ-aligned face as dlib's detected path does."""

    def rgb(*parts: str) -> np.ndarray:
        return np.asarray(Image.open(data_file(*parts)).convert("RGB"))

    detected = embedder.embed(rgb("images", "astronaut.png"))
    other = embedder.embed(rgb("images", "replicant_face_00000.jpg"))
    aligned = embedder.embed_aligned(rgb("align", "astronaut_aligned_256.png"))
    assert np.linalg.norm(aligned - detected) < 0.2  # observed 0.05
    assert np.linalg.norm(aligned - other) > DLIB_SAME_PERSON  # observed 0.67
    # any image has an aligned embedding (a generator's output need not look like a face)
    assert embedder.embed_aligned(np.full((64, 64, 3), 90, np.uint8)).shape == (128,)


# ------------------------------------------------------------------------------------- the library


def test_identical_generators_are_consistent_and_perturbed_ones_less_so(tiny, embedder):
    same = identity_consistency(tiny, copy.deepcopy(tiny), CFG, embedder)
    assert same["cosine"]["mean"] == pytest.approx(1.0, abs=1e-9)
    assert same["distance"]["mean"] == pytest.approx(0.0, abs=1e-9)
    assert same["same_person_rate"] == 1.0 and same["mapping_shared"] is True
    assert same["metric"] in METRICS and METRICS[same["metric"]].module == "realface.metrics.consistency"
    assert same["per_sample"]["seed"] == [0, 1, 2, 3] and len(same["per_sample"]["cosine"]) == 4

    weak = identity_consistency(tiny, _perturbed(tiny, 0.05), CFG, embedder)
    strong = identity_consistency(tiny, _perturbed(tiny, 1.0), CFG, embedder)
    assert weak["mapping_shared"] is True
    assert all(d > 0 for d in weak["per_sample"]["distance"])
    assert strong["distance"]["mean"] > weak["distance"]["mean"] > 0
    assert strong["cosine"]["mean"] < weak["cosine"]["mean"] < 1
    lo, hi = strong["distance"]["ci95"]
    assert lo <= strong["distance"]["mean"] <= hi
    # the per-pair values are the embeddings' distances of the two decodes of the same latent
    from realface.sampling import to_uint8, z_from_seed

    G2 = _perturbed(tiny, 1.0)
    with torch.no_grad():
        ws = tiny.mapping(z_from_seed(2, tiny.z_dim), None)  # [1, num_ws, w_dim]
        a, b = (to_uint8(G.synthesis(ws, noise_mode="const"))[0] for G in (tiny, G2))
    expected = np.linalg.norm(embedder.embed_aligned(a) - embedder.embed_aligned(b))
    assert strong["per_sample"]["distance"][2] == pytest.approx(expected, rel=1e-9)


def test_truncation_moves_the_latents_and_a_different_architecture_is_refused(tiny, embedder):
    G2 = _perturbed(tiny, 1.0)
    full = identity_consistency(tiny, G2, CFG, embedder)
    trunc = identity_consistency(
        tiny, G2, ConsistencyConfig(num=4, truncation_psi=0.0, progress=False), embedder
    )
    # psi 0: every latent becomes w_avg, so all pairs are the same pair
    assert len(set(np.round(trunc["per_sample"]["distance"], 9))) == 1
    assert trunc["per_sample"]["distance"] != full["per_sample"]["distance"]
    other = copy.deepcopy(tiny)
    other.num_ws = tiny.num_ws + 1
    with pytest.raises(ConfigError, match="num_ws"):
        check_shared_space(tiny, other)


def test_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="at least 2") as exc:
        ConsistencyConfig(num=0)
    assert exc.value.field == "num"
    with pytest.raises(ConfigError, match="noise_mode"):
        ConsistencyConfig(noise_mode="loud")
    with pytest.raises(ConfigError, match="no identity embedder is built on it"):
        ConsistencyConfig(embedder="bisenet-79999")
    assert ConsistencyConfig(embedder="curricularface").embedder == "curricularface"
    with pytest.raises(ConfigError, match="unknown embedder"):
        ConsistencyConfig(embedder="nobody")
    with pytest.raises(ConfigError, match="2\\*\\*32"):
        ConsistencyConfig(num=10, seed0=2**32 - 5)


# ------------------------------------------------------------------------------------------ the CLI


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny):
    d = tmp_path_factory.mktemp("consistency")
    pkl = data_file("stylegan2-ada", "sg2ada_tiny64.pkl")
    perturbed = save_networks({"G_ema": _perturbed(tiny, 1.0)}, d / "perturbed.safetensors")
    ref = write_folder(d / "ref", smooth_images(3, size=64))
    return {"real": pkl, "perturbed": perturbed, "ref": ref, "dir": d}


def test_cli_embedder_path_writes_table_and_json_with_fid(files, random_inception_file, tmp_path, capsys):
    out = tmp_path / "report.json"
    args = ["eval", "consistency", "--real", files["real"], "--num", "4", "--batch", "2", "--no-progress"]
    fid = ["--fid-ref", files["ref"], "--inception", random_inception_file, "--device", "cpu"]
    assert run_cli(*args, "--rendering", files["perturbed"], *fid, "-o", out) == 0
    doc = json.loads(out.read_text())
    assert doc["mode"] == "embedder" and doc["embedder"] == "dlib" and doc["num"] == 4
    assert 0 < doc["distance"]["mean"] and doc["cosine"]["mean"] < 1 and doc["mapping_shared"] is True
    assert doc["fid"]["metric"] == "fid4_full" and doc["fid"]["num_b"] == 4 and doc["fid"]["fid"] > 0
    screen = capsys.readouterr().out
    assert f"{doc['cosine']['mean']:.4f}" in screen and "fid4_full" in screen and f"wrote {out}" in screen

    # the same network as both generators: similarity 1, distance 0 (the JSON file is replaced atomically)
    assert run_cli(*args, "--rendering", files["real"], "--json", out) == 0
    doc = json.loads(out.read_text())
    assert doc["cosine"]["mean"] == pytest.approx(1.0, abs=1e-9) and doc["distance"]["mean"] == 0.0
    assert doc["fid"] is None and doc["same_person_rate"] == 1.0
    assert not [p for p in tmp_path.iterdir() if p.name != out.name]  # no temporary file left


def test_cli_toy_world_path(tmp_path, capsys):
    from realface.bench.world import load_world

    world = load_world()
    same = save_networks({"G_ema": world.G_real}, tmp_path / "same.safetensors")
    worse = save_networks({"G_ema": _perturbed(world.G_real, 0.5)}, tmp_path / "worse.safetensors")
    docs = {}
    for name, net in (("same", same), ("worse", worse)):
        out = tmp_path / f"{name}.json"
        args = ["eval", "consistency", "--world", "default", "--rendering", net, "--num", "8", "-o", out]
        assert run_cli(*args) == 0
        docs[name] = json.loads(out.read_text())
    assert docs["same"]["mode"] == "world" and docs["same"]["num"] == 8
    assert docs["same"]["protocol"].startswith("toy-consistency")
    assert docs["same"]["param_error"]["mean"] == 0.0
    assert docs["same"]["param_error_truth"] == docs["same"]["param_error_real_truth"]
    assert docs["worse"]["param_error"]["mean"] > 0.01 + docs["same"]["param_error"]["mean"]
    assert "param_error" in capsys.readouterr().out


def test_cli_refuses_bad_inputs(files, tmp_path):
    out = tmp_path / "report.json"
    inputs = snapshot(files["real"], files["perturbed"], files["ref"])
    base = ["eval", "consistency", "--real", files["real"], "--rendering", files["perturbed"], "-o", out]
    missing = tmp_path / "missing.pkl"
    cases = [
        (["eval", "consistency", "--real", files["real"], "--rendering", missing, "-o", out], missing.name),
        ([*base, "--num", "0"], "--num"),
        ([*base, "--fid-ref", tmp_path / "no_ref"], "no_ref"),
        ([*base, "--embedder", "nobody"], "nobody"),
        (
            [
                "eval",
                "consistency",
                "--real",
                files["real"],
                "--rendering",
                files["perturbed"],
                "-o",
                tmp_path / "no_dir" / "r.json",
            ],
            "no_dir",
        ),
        ([*base[:-2], "-o", files["perturbed"]], "overwrite an input"),
        ([*base, "--world", "default"], "--real"),
    ]
    for args, name in cases:
        assert_refused(run_realface(*args), name, inputs, outputs=[out])


def test_curricularface_embedder_on_shared_latents(tiny, tmp_path):
    from realface.metrics.identity import CurricularFaceEmbedder
    from realface.nn.irse import IRBackbone

    units = (1, 1, 1, 1)
    torch.manual_seed(0)
    torch.save(IRBackbone(units).state_dict(), tmp_path / "ir.pth")
    emb = CurricularFaceEmbedder(path=tmp_path / "ir.pth", units=units)
    cfg = ConsistencyConfig(num=3, batch_size=2, progress=False, embedder="curricularface")
    same = identity_consistency(tiny, copy.deepcopy(tiny), cfg, emb)
    assert same["metric"] == "identity_consistency_curricularface" and same["metric"] in METRICS
    assert same["cosine"]["mean"] == pytest.approx(1.0, abs=1e-9)
    other = identity_consistency(tiny, _perturbed(tiny, 1.0), cfg, emb)
    assert other["cosine"]["mean"] < 1 and other["distance"]["mean"] > 0


def test_cli_curricularface_without_its_weights_is_refused(files, tmp_path):
    home = tmp_path / "home"
    args = ["eval", "consistency", "--real", files["real"], "--rendering", files["real"], "--num", "2"]
    before = snapshot(files["dir"], files["real"])
    out = tmp_path / "report.json"
    run = run_realface(*args, "--embedder", "curricularface", "-o", out, env={"REALFACE_HOME": str(home)})
    assert_refused(run, "curricularface", inputs=before, outputs=[out])


def test_cli_dry_run_reports_the_plan_without_loading_or_writing(tmp_path, capsys):
    real = data_file("stylegan2-ada", "sg2ada_tiny64.pkl")
    missing = tmp_path / "G_rendering.safetensors"
    before = {str(p) for p in tmp_path.rglob("*")}
    args = ["eval", "consistency", "--real", real, "--rendering", missing, "--num", "8", "--seed", "3"]
    assert run_cli(*args, "-o", tmp_path / "c.json", "--fid-ref", tmp_path, "--dry-run") == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["real"] == {"given": str(real), "kind": "file", "path": str(real)}
    assert plan["rendering"]["status"] == "not present yet"
    assert (plan["num"], plan["seeds"], plan["out"]) == (8, "3-10", str(tmp_path / "c.json"))
    assert plan["metrics"][:2] == ["cosine", "distance"] and plan["protocol"].startswith(
        "identity-consistency"
    )
    model = plan["identity_model"]
    assert model["embedder"] == "dlib" and set(model["weights"]) == {"dlib-lm5", "dlib-frec"}
    assert (
        plan["fid"]["protocol"].startswith("realface-fid/")
        and plan["fid"]["inception"]["id"] == "fid-inception"
    )
    assert {str(p) for p in tmp_path.rglob("*")} == before

    assert run_cli("eval", "consistency", "--real", "sg2ada-ffhq1024", "--rendering", real,
                   "--embedder", "curricularface", "--dry-run") == 0  # fmt: skip
    plan = json.loads(capsys.readouterr().out)
    assert plan["real"]["kind"] == "weights id" and plan["real"]["status"] == "missing"
    assert plan["identity_model"]["weights"]["curricularface"].startswith("missing: ")
    assert plan["identity_model"]["available"] is False and plan["out"] is None


def test_cli_dry_run_still_refuses_bad_options(tmp_path, capsys):
    real = data_file("stylegan2-ada", "sg2ada_tiny64.pkl")
    base = ["eval", "consistency", "--rendering", real, "--dry-run"]
    cases = [
        ([*base, "--real", real, "--num", "1"], "num must be at least 2"),
        ([*base, "--real", real, "--world", "default"], "--real: not used with --world"),
        ([*base, "--real", real, "-o", tmp_path / "no_dir" / "r.json"], "no_dir"),
        ([*base, "--real", real, "-o", real], "overwrite an input"),
    ]
    for args, message in cases:
        assert run_cli(*args) == 1, args
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1 and err.startswith("error:") and message in err, err
    assert not any(tmp_path.iterdir())
