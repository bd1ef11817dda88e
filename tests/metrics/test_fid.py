"""FID: the Fréchet distance against independent formulas, folder and generator statistics with a
random-weight Inception in the real layout, the statistics cache, and `realface eval fid`."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import scipy.linalg

import realface.metrics.fid as fid_mod
from realface.errors import ConfigError, RealFaceError
from realface.metrics.fid import (
    FeatureStats,
    FIDConfig,
    GeneratorSamplingConfig,
    compute_fid,
    fid_metric_name,
    folder_stats,
    frechet_distance,
    frechet_distance_low_rank,
    load_stats,
    save_stats,
)
from realface.weights import cache_dir
from tests.conftest import data_file
from tests.metrics.conftest import smooth_images, write_folder
from tests.test_cli_apply import run_cli

CPU = FIDConfig(batch_size=8, device="cpu", progress=False)


class CountingExtractor:
    """A cheap stand-in for the Inception (8x8 average-pooled pixels, 192-d) that counts its calls."""

    identity = "counting-test-extractor"

    def __init__(self) -> None:
        self.images = 0

    def __call__(self, x):
        assert x.shape[1:] == (3, 299, 299)
        self.images += x.shape[0]
        return fid_mod.torch.nn.functional.adaptive_avg_pool2d(x, 8).flatten(1).numpy()  # [B, 192]


# ------------------------------------------------------------------------------------- Fréchet distance


def test_frechet_distance_matches_the_closed_form_for_diagonal_covariances():
    rng = np.random.default_rng(0)
    d = 32
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    v1, v2 = rng.uniform(0.1, 3.0, size=d), rng.uniform(0.1, 3.0, size=d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    got = frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2))
    assert got == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_matches_an_eigenvalue_formula_for_full_covariances():
    rng = np.random.default_rng(1)
    d = 24
    a, b = rng.normal(size=(d, 40)), rng.normal(size=(d, 40))
    s1, s2 = a @ a.T / 40, b @ b.T / 40
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    # tr((S1 S2)^½) = Σ sqrt(eig(S1^½ S2 S1^½)), a symmetric PSD matrix
    w, v = np.linalg.eigh(s1)
    r1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh(r1 @ s2 @ r1), 0, None)).sum()
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-8)


def test_low_rank_route_equals_the_covariance_formulas_for_small_sets():
    rng = np.random.default_rng(2)
    d = 40
    f1 = rng.normal(size=(6, d))
    f2 = rng.normal(size=(9, d)) * 1.5 + 0.3
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    mu1, mu2 = f1.mean(0), f2.mean(0)
    w, v = np.linalg.eigh(s1)
    r1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh(r1 @ s2 @ r1), 0, None)).sum()
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt
    got = frechet_distance_low_rank(f1, f2)
    assert got == pytest.approx(expected, rel=1e-6)
    # pytorch-fid's sqrtm on the rank-deficient product agrees up to its round-off
    assert got == pytest.approx(frechet_distance(mu1, s1, mu2, s2), rel=1e-3)
    assert abs(frechet_distance_low_rank(f1, f1.copy())) < 1e-9


def test_frechet_distance_retries_with_the_eps_offset_when_sqrtm_fails(monkeypatch):
    calls = []
    real = scipy.linalg.sqrtm

    def flaky(m):
        calls.append(m.copy())
        return np.full_like(m, np.nan) if len(calls) == 1 else real(m)

    monkeypatch.setattr(fid_mod.scipy.linalg, "sqrtm", flaky)
    v1, v2 = np.array([1.0, 4.0, 0.0]), np.array([4.0, 1.0, 0.0])
    got = frechet_distance(np.zeros(3), np.diag(v1), np.ones(3), np.diag(v2), eps=1e-6)
    assert len(calls) == 2
    np.testing.assert_allclose(calls[1], np.diag((v1 + 1e-6) * (v2 + 1e-6)))
    assert got == pytest.approx(3 + 1 + 1, abs=1e-5)


def test_frechet_distance_refuses_large_imaginary_parts_and_bad_shapes():
    with pytest.raises(RealFaceError, match="imaginary"):
        frechet_distance(np.zeros(2), np.diag([-1.0, 1.0]), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="mu"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))


def test_metric_names_follow_upstream():
    assert fid_metric_name(50000) == "fid50k_full"
    assert fid_metric_name(1234) == "fid1234_full"
    assert fid_metric_name(None) == "fid_full"


# --------------------------------------------------------------------------------------- image folders


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("fid")
    images = smooth_images(3, seed=0)
    a = write_folder(root / "a", images)
    same = write_folder(root / "same", images)
    brighter = write_folder(
        root / "brighter", [np.clip(im.astype(int) + 60, 0, 255).astype(np.uint8) for im in images]
    )
    return {"a": a, "same": same, "brighter": brighter}


def test_identical_sets_give_zero_and_a_brightness_shift_does_not(folders, extractor):
    same = compute_fid(folders["a"], folders["same"], config=CPU, extractor=extractor)
    shifted = compute_fid(folders["a"], folders["brighter"], config=CPU, extractor=extractor)
    assert (same.num_a, same.num_b) == (3, 3)
    assert abs(same.fid) < 1e-3
    assert shifted.fid > 1.0
    assert same.metric == shifted.metric == "fid_full"
    assert same.method == "low-rank"  # 3 images < 2048 features


def test_statistics_are_cached_by_content_and_recomputed_after_a_change(folders, tmp_path):
    counting = CountingExtractor()
    folder = shutil.copytree(folders["a"], tmp_path / "set")
    first, cached = folder_stats(folder, counting, CPU)
    assert (counting.images, cached) == (3, False)
    stored = list((cache_dir() / "stats").glob("*.npz"))  # in the realface cache, not next to the data
    assert len(stored) == 1 and not list(folder.rglob("*.npz"))
    again, cached = folder_stats(folder, counting, CPU)
    assert (counting.images, cached) == (3, True)
    np.testing.assert_array_equal(first.mu, again.mu)
    np.testing.assert_array_equal(first.sigma, again.sigma)
    np.testing.assert_array_equal(first.features, again.features)

    shutil.copy(folders["brighter"] / "img00.png", folder / "img99.png")  # a new file: a new key
    _, cached = folder_stats(folder, counting, CPU)
    assert (counting.images, cached) == (7, False)
    (folder / "img99.png").unlink()
    _, cached = folder_stats(folder, counting, CPU)  # back to the first listing: its entry again
    assert (counting.images, cached) == (7, True)
    nocache = FIDConfig(batch_size=8, device="cpu", use_cache=False, progress=False)
    _, cached = folder_stats(folder, counting, nocache)
    assert (counting.images, cached) == (10, False)


def test_stats_files_round_trip_and_never_unpickle(tmp_path):
    rng = np.random.default_rng(0)
    stats = FeatureStats(mu=rng.normal(size=5), sigma=np.eye(5), num=7, source="x")
    loaded = load_stats(save_stats(tmp_path / "s.npz", stats, key="abc"))
    np.testing.assert_array_equal(loaded.mu, stats.mu)
    np.testing.assert_array_equal(loaded.sigma, stats.sigma)
    assert loaded.num == 7
    evil = tmp_path / "evil.npz"
    np.savez(evil, mu=np.array([object()], dtype=object), sigma=np.eye(1))
    with pytest.raises(RealFaceError, match="evil.npz"):
        load_stats(evil)
    with pytest.raises(RealFaceError, match="mu"):
        np.savez(tmp_path / "nomu.npz", sigma=np.eye(2))
        load_stats(tmp_path / "nomu.npz")


def test_folder_errors_name_the_folder(tmp_path, extractor):
    with pytest.raises(ConfigError, match="empty"):
        (tmp_path / "empty").mkdir()
        folder_stats(tmp_path / "empty", extractor, CPU)
    one = write_folder(tmp_path / "one", smooth_images(1))
    with pytest.raises(ConfigError, match="one.*at least 2"):
        folder_stats(one, extractor, CPU)


# ------------------------------------------------------------------------------------------ generator


def test_generator_statistics_equal_those_of_its_images_written_to_a_folder(tmp_path):
    from PIL import Image

    from realface.checkpoints import load_generator
    from realface.sampling import SampleConfig, generate

    pkl = data_file("stylegan2-ada", "sg2ada_tiny64.pkl")
    G = load_generator(pkl)
    folder = tmp_path / "generated"
    folder.mkdir()
    for seed, img in generate(G, SampleConfig(seeds=(0, 1, 2, 3), noise_mode="const")):
        Image.fromarray(img).save(folder / f"seed{seed:04d}.png")
    extractor = CountingExtractor()
    sampling = GeneratorSamplingConfig(num=4, noise_mode="const")
    result = compute_fid(folder, network=pkl, sampling=sampling, config=CPU, extractor=extractor)
    assert result.metric == "fid4_full" and result.num_b == 4 and extractor.images == 8
    assert abs(result.fid) < 1e-3
    folder_s, _ = folder_stats(folder, extractor, CPU)
    gen_s, cached = fid_mod.generator_stats(pkl, sampling, extractor, CPU, fid_mod.torch.device("cpu"))
    assert cached and extractor.images == 8
    # equal up to a few uint8 roundings that flip between the batched and the one-by-one generator pass
    np.testing.assert_allclose(folder_s.features, gen_s.features, atol=1e-4)

    # random noise (the default) is seeded: two runs without the cache agree, and differ from const noise
    nocache = FIDConfig(batch_size=2, device="cpu", use_cache=False, progress=False)
    noisy = GeneratorSamplingConfig(num=2)
    s1, _ = fid_mod.generator_stats(pkl, noisy, extractor, nocache, fid_mod.torch.device("cpu"))
    s2, _ = fid_mod.generator_stats(pkl, noisy, extractor, nocache, fid_mod.torch.device("cpu"))
    np.testing.assert_array_equal(s1.mu, s2.mu)
    s3, _ = fid_mod.generator_stats(
        pkl,
        GeneratorSamplingConfig(num=2, noise_mode="const"),
        extractor,
        nocache,
        fid_mod.torch.device("cpu"),
    )
    assert np.abs(s1.mu - s3.mu).max() > 0


def test_sampling_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="at least 2"):
        GeneratorSamplingConfig(num=1)
    with pytest.raises(ConfigError, match="noise"):
        GeneratorSamplingConfig(noise_mode="loud")
    with pytest.raises(ConfigError, match="2\\*\\*32"):
        GeneratorSamplingConfig(num=10, seed0=2**32 - 5)


# ------------------------------------------------------------------------------------------------ CLI


def test_cli_fid_folders_and_generator(folders, random_inception_file, tmp_path, capsys):
    out_json, out_csv = tmp_path / "fid.json", tmp_path / "fid.csv"
    common = ["--inception", random_inception_file, "--device", "cpu", "--no-progress", "--batch", "4"]
    code = run_cli(
        "eval", "fid", folders["a"], folders["brighter"], *common, "--json", out_json, "--csv", out_csv
    )
    assert code == 0
    doc = json.loads(out_json.read_text())
    assert doc["metric"] == "fid_full" and doc["fid"] > 1.0 and (doc["num_a"], doc["num_b"]) == (3, 3)
    assert "pytorch-fid" in doc["protocol"]
    header, row = out_csv.read_text().splitlines()
    assert header.split(",")[:2] == ["metric", "fid"]
    assert float(row.split(",")[1]) == pytest.approx(doc["fid"])
    screen = capsys.readouterr().out
    assert "fid_full" in screen and f"{doc['fid']:.4f}" in screen

    pkl = data_file("stylegan2-ada", "sg2ada_tiny64.pkl")
    code = run_cli("eval", "fid", folders["a"], "--network", pkl, "--num", "2", *common, "--json", out_json)
    assert code == 0
    doc = json.loads(out_json.read_text())
    assert doc["metric"] == "fid2_full" and doc["num_b"] == 2 and doc["cached_a"] is True
    assert np.isfinite(doc["fid"]) and doc["fid"] > 0

    assert run_cli("eval", "fid", folders["a"], *common) == 1  # neither a second folder nor --network
    assert "exactly one" in capsys.readouterr().err
