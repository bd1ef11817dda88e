"""The study's statistics against values worked out by hand, the votes file, and ``realface study report``."""

from __future__ import annotations

import csv
import io
import json
import math

import pytest
from PIL import Image

from realface.errors import ConfigError
from realface.study import CreateConfig, Study, VoteLog, create_study, study_report
from realface.study.report import binomial_test, bradley_terry, fleiss_kappa, wilson_interval
from realface.study.votes import candidate_order, item_order
from tests.robustness._cli import assert_refused, run_realface, snapshot
from tests.study._make import METHODS, make_methods

Z = 1.959963984540054


def test_wilson_interval_of_7_of_10_by_hand():
    n, p, z2 = 10, 0.7, Z * Z  # z^2 = 3.841459
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)  # (0.7 + 0.192073) / 1.384146 = 0.644490
    half = Z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)  # 0.342874 / 1.384146 = 0.247716
    lo, hi = wilson_interval(7, 10)
    assert lo == pytest.approx(centre - half, abs=1e-12) and hi == pytest.approx(centre + half, abs=1e-12)
    assert (lo, hi) == pytest.approx((0.39678, 0.89221), abs=1e-5)  # the tabulated Wilson interval for 7/10
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(0, 5)[0] == 0.0 and wilson_interval(5, 5)[1] == 1.0


def test_exact_binomial_test_by_hand():
    # 9 or more of 10 under p = 1/2: (C(10,9) + C(10,10)) / 2^10 = 11/1024; both tails: 22/1024.
    assert binomial_test(9, 10) == pytest.approx(22 / 1024, rel=1e-12)
    # 2 or fewer: (1 + 10 + 45) / 1024 each tail.
    assert binomial_test(2, 10) == pytest.approx(112 / 1024, rel=1e-12)
    assert binomial_test(5, 10) == pytest.approx(1.0)
    assert binomial_test(0, 0) == 1.0


def test_bradley_terry_two_methods_is_the_win_share():
    s = bradley_terry({"a": {"b": 3}, "b": {"a": 1}})
    assert s["a"] / (s["a"] + s["b"]) == pytest.approx(3 / 4, abs=1e-9)
    assert s["a"] + s["b"] == pytest.approx(1.0)


def test_bradley_terry_solves_the_likelihood_equations():
    wins = {"a": {"b": 6, "c": 4}, "b": {"a": 2, "c": 5}, "c": {"a": 1, "b": 3}}
    s = bradley_terry(wins)
    # At the maximum of the likelihood, each method's wins equal its expected wins:
    # W_i = sum_j n_ij * s_i / (s_i + s_j), with n_ij = w_ij + w_ji.
    for i in wins:
        expected = sum((wins[i][j] + wins[j][i]) * s[i] / (s[i] + s[j]) for j in wins if j != i)
        assert expected == pytest.approx(sum(wins[i].values()), abs=1e-6)
    assert s["a"] > s["b"] > s["c"]
    cycle = bradley_terry({"a": {"b": 2, "c": 1}, "b": {"a": 1, "c": 2}, "c": {"a": 2, "b": 1}})
    assert all(v == pytest.approx(1 / 3, abs=1e-9) for v in cycle.values())


def test_fleiss_kappa_by_hand():
    # Items [3, 0], [0, 3], [2, 1]: P_i = 1, 1, (4 + 1 - 3) / 6 = 1/3, mean 7/9; shares 5/9 and 4/9,
    # P_e = 25/81 + 16/81 = 41/81; kappa = (63/81 - 41/81) / (40/81) = 22/40.
    assert fleiss_kappa([[3, 0], [0, 3], [2, 1]]) == pytest.approx(22 / 40, abs=1e-12)
    assert fleiss_kappa([[1, 0], [0, 1]]) is None  # nobody else voted on any item
    assert fleiss_kappa([[2, 1], [1, 0]]) == pytest.approx(-0.5, abs=1e-12)  # one item: P=1/3, P_e=5/9


# Who picks what, per item index (0..3 in the manifest): z = zebra, q = quokka, n = narwhal.
PICKS = {"p1": "zzzz", "p2": "zzzq", "p3": "nnzz"}


@pytest.fixture
def study(tmp_path):
    folders = make_methods(tmp_path / "in")
    config = CreateConfig(
        name="report", methods=tuple(zip(METHODS, folders, strict=True)), crop="full", seed=11
    )
    return create_study(config, tmp_path / "s").study


def _vote_all(study: Study, picks=PICKS) -> VoteLog:
    log = VoteLog(study)
    names = {m[0]: m for m in METHODS}
    for participant, row in picks.items():
        for item in item_order(study, participant):  # in the participant's own order
            want = names[row[study.items.index(item)]]
            order = candidate_order(study, participant, item)
            position = [item.candidates[c] for c in order].index(want)
            log.record(participant, item.id, position)
    return log


def test_report_of_known_votes(study):
    _vote_all(study)
    again = VoteLog(study)  # read back from votes.jsonl
    assert len(again.votes()) == 12
    r = study_report(study)
    z, q, n = METHODS
    assert r["votes"] == 12 and r["participants"] == 3 and r["items"] == 4
    assert [r["win_rates"][m]["wins"] for m in METHODS] == [9, 1, 2]
    assert r["win_rates"][z]["rate"] == pytest.approx(9 / 12)
    # Wilson for 9/12 by the formula: centre (0.75 + z^2/24) / (1 + z^2/12), half width as above.
    p, z2 = 0.75, Z * Z
    centre = (p + z2 / 24) / (1 + z2 / 12)
    half = Z * math.sqrt(p * (1 - p) / 12 + z2 / 576) / (1 + z2 / 12)
    assert r["win_rates"][z]["ci95"] == pytest.approx([centre - half, centre + half], abs=1e-12)
    pair = next(x for x in r["pairwise"] if {x["a"], x["b"]} == {z, q})
    zq = (pair["a_wins"], pair["b_wins"]) if pair["a"] == z else (pair["b_wins"], pair["a_wins"])
    assert zq == (9, 1)  # every vote for zebra beats quokka (all three are shown), and one the other way
    assert pair["p_value"] == pytest.approx(22 / 1024, rel=1e-9)
    assert r["per_participant"]["p2"]["picks"] == {z: 3, q: 1, n: 0}
    assert r["per_participant"]["p3"]["shares"][n] == pytest.approx(0.5)
    # Per item [z, q, n]: [2,0,1], [2,0,1], [3,0,0], [2,1,0] -> P_i = 1/3, 1/3, 1, 1/3 (mean 1/2);
    # shares 9/12, 1/12, 2/12 -> P_e = 86/144; kappa = (72/144 - 86/144) / (58/144) = -14/58.
    assert r["agreement"]["fleiss_kappa"] == pytest.approx(-14 / 58, abs=1e-12)
    bt = r["bradley_terry"]
    assert bt[z] > bt[n] > bt[q] and sum(bt.values()) == pytest.approx(1.0)


def test_one_vote_per_item_per_participant_and_resume(study):
    log = VoteLog(study)
    first = item_order(study, "anna")[0]
    log.record("anna", first.id, 0)
    with pytest.raises(ConfigError, match="already has your vote"):
        log.record("anna", first.id, 1)
    with pytest.raises(ConfigError, match="participant code"):
        log.record("no spaces", first.id, 0)
    with pytest.raises(ConfigError, match="pick one of the 3"):
        log.record("anna", item_order(study, "anna")[1].id, 3)
    # A line cut off by a crash is skipped; the next vote starts on a line of its own.
    with open(study.votes_path, "ab") as f:
        f.write(b'{"participant": "anna", "item')
    resumed = VoteLog(study)
    assert resumed.done("anna") == {first.id}
    assert resumed.next_item("anna") == item_order(study, "anna")[1]
    resumed.record("anna", item_order(study, "anna")[1].id, 2)
    assert len(VoteLog(study).votes()) == 2
    # A file edited to hold two votes for one item: the first one counts.
    lines = study.votes_path.read_text().splitlines()
    study.votes_path.write_text(
        "\n".join([lines[0], lines[0].replace(lines[0][-5:], "9.0}"), *lines[1:]]) + "\n"
    )
    assert len(VoteLog(study).votes()) == 2


def test_orders_differ_between_participants_and_repeat_for_one(study):
    orders = {p: [i.id for i in item_order(study, p)] for p in ("a", "b", "c", "d", "e")}
    assert orders["a"] == [i.id for i in item_order(study, "a")]
    assert len({tuple(o) for o in orders.values()}) > 1
    item = study.items[0]
    sides = {tuple(candidate_order(study, p, item)) for p in ("a", "b", "c", "d", "e", "f", "g", "h")}
    assert len(sides) > 1


def test_cli_report_json_csv_and_chart(study):
    _vote_all(study)
    run = run_realface("study", "report", study.root, "--json")
    assert run.returncode == 0, run.stderr
    r = json.loads(run.stdout)
    assert [r["win_rates"][m]["wins"] for m in METHODS] == [9, 1, 2]
    assert json.loads((study.root / "report" / "report.json").read_text()) == r
    with Image.open(study.root / "report" / "chart.png") as chart:
        assert chart.format == "PNG" and chart.size == (900, 420)
    run = run_realface("study", "report", study.root, "--csv")
    rows = list(csv.DictReader(io.StringIO(run.stdout)))
    assert len(rows) == 12 and {r["participant"] for r in rows} == set(PICKS)
    for row in rows:
        assert row["method"] == row["candidates"].split("|")[int(row["position"])]
    text = run_realface("study", "report", study.root).stdout
    assert "zebramethod" in text and "Fleiss' kappa -0.241" in text


def test_cli_report_without_votes_is_refused(study):
    assert_refused(run_realface("study", "report", study.root), "votes.jsonl", snapshot(study.root))
