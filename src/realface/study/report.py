"""``realface study report``: what the votes of a study say.

* win rate per method: the share of votes that picked it, with a Wilson score 95 % interval;
* pairwise preference: for methods ``a`` and ``b``, a vote that picked one of them while both were
  shown counts as a win of that one over the other; a two-sided exact binomial test against 50 %, and
  Bradley–Terry strengths fitted to all pairwise wins by the MM iteration of Hunter (2004);
* per participant: the share of each method in their picks (the paper's Fig. 6 shows these);
* agreement between participants: Fleiss' kappa over the items that two or more participants voted
  on (raters per item may differ, as in Fleiss' formula with per-item counts);
* the identity answers ("same person as the reference?") per picked method, when asked.

:func:`write_report` writes ``report.json``, the raw table ``votes.csv`` and the chart ``chart.png``
(drawn with Pillow).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from realface.errors import RealFaceError
from realface.study.create import Study
from realface.study.votes import Vote, VoteLog
from realface.utils.fs import atomic_path, atomic_write_text

__all__ = [
    "Z95",
    "binomial_test",
    "code_methods",
    "bradley_terry",
    "fleiss_kappa",
    "pairwise_wins",
    "study_report",
    "wilson_interval",
    "write_report",
]

Z95 = 1.959963984540054  # the standard normal's 97.5 % quantile
CSV_FIELDS = ("participant", "item", "key", "method", "position", "candidates", "identity", "time")


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion ``successes / n`` (``(0, 1)`` for ``n = 0``)."""
    if not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def binomial_test(k: int, n: int, p: float = 0.5) -> float:
    """Two-sided exact binomial test: the probability, under ``Binomial(n, p)``, of an outcome no more
    likely than ``k`` (1.0 for ``n = 0``)."""
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got {k} of {n}")
    if n == 0:
        return 1.0
    probs = [math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(n + 1)]
    limit = probs[k] * (1 + 1e-7)  # outcomes as likely as k, up to rounding, count too
    return min(1.0, sum(q for q in probs if q <= limit))


def pairwise_wins(
    votes: Sequence[Vote], methods: Sequence[str], codes: dict[str, str]
) -> dict[str, dict[str, int]]:
    """``wins[a][b]``: how often ``a`` was picked while ``b`` was shown too (``codes``: candidate
    code -> method, :func:`code_methods`)."""
    wins = {a: {b: 0 for b in methods if b != a} for a in methods}
    for v in votes:
        shown = {codes.get(c, "") for c in v.shown} - {""}
        for other in shown - {v.method}:
            if v.method in wins and other in wins[v.method]:
                wins[v.method][other] += 1
    return wins


def code_methods(study: Study) -> dict[str, str]:
    """Every candidate code of ``study`` -> its method."""
    return {code: m for it in study.items for code, m in it.candidates.items()}


def bradley_terry(
    wins: dict[str, dict[str, int]], iterations: int = 10_000, tol: float = 1e-12
) -> dict[str, float]:
    """Bradley–Terry strengths ``s`` (summing to 1; ``P(a beats b) = s_a / (s_a + s_b)``) by Hunter's
    MM iteration ``s_i <- W_i / sum_j n_ij / (s_i + s_j)``. A method that never won gets 0."""
    names = list(wins)
    s = dict.fromkeys(names, 1.0 / max(1, len(names)))
    total = {a: sum(wins[a].values()) for a in names}
    for _ in range(iterations):
        new = {}
        for a in names:
            denom = sum(
                (wins[a][b] + wins[b][a]) / (s[a] + s[b])
                for b in names
                if b != a and (wins[a][b] + wins[b][a]) and s[a] + s[b] > 0
            )
            new[a] = total[a] / denom if denom > 0 else 0.0
        norm = sum(new.values())
        if norm <= 0:
            return dict.fromkeys(names, 1.0 / max(1, len(names)))
        new = {a: v / norm for a, v in new.items()}
        change = max(abs(new[a] - s[a]) for a in names)
        s = new
        if change < tol:
            break
    return s


def fleiss_kappa(counts: Sequence[Sequence[int]]) -> float | None:
    """Fleiss' kappa of a table ``counts[item][category]`` (raters per item may differ; items with fewer
    than two raters are left out). None when no item has two raters or every vote is in one category."""
    rows = [list(r) for r in counts if sum(r) >= 2]
    if not rows:
        return None
    agreement = [(sum(c * c for c in r) - sum(r)) / (sum(r) * (sum(r) - 1)) for r in rows]
    p_bar = sum(agreement) / len(rows)
    total = sum(sum(r) for r in rows)
    shares = [sum(r[j] for r in rows) / total for j in range(len(rows[0]))]
    p_e = sum(p * p for p in shares)
    if p_e >= 1.0:
        return None
    return (p_bar - p_e) / (1 - p_e)


def study_report(study: Study, votes: Sequence[Vote] | None = None) -> dict[str, Any]:
    """The report of ``study`` (its votes file unless ``votes`` is given) as a JSON-ready dict."""
    if votes is None:
        votes = VoteLog(study).votes()
    codes = code_methods(study)
    methods = list(study.methods)
    n = len(votes)
    picked = Counter(v.method for v in votes)
    win_rates = {}
    for m in methods:
        lo, hi = wilson_interval(picked[m], n)
        win_rates[m] = {"wins": picked[m], "votes": n, "rate": picked[m] / n if n else None, "ci95": [lo, hi]}
    wins = pairwise_wins(votes, methods, codes)
    pairs = []
    for i, a in enumerate(methods):
        for b in methods[i + 1 :]:
            k, total = wins[a][b], wins[a][b] + wins[b][a]
            lo, hi = wilson_interval(k, total)
            pairs.append(
                {
                    "a": a,
                    "b": b,
                    "a_wins": k,
                    "b_wins": wins[b][a],
                    "a_rate": k / total if total else None,
                    "ci95": [lo, hi],
                    "p_value": binomial_test(k, total),
                }
            )
    participants: dict[str, dict[str, Any]] = {}
    for v in votes:
        entry = participants.setdefault(v.participant, {"votes": 0, "picks": dict.fromkeys(methods, 0)})
        entry["votes"] += 1
        entry["picks"][v.method] = entry["picks"].get(v.method, 0) + 1
    for entry in participants.values():
        entry["shares"] = {m: c / entry["votes"] for m, c in entry["picks"].items()}
    per_item: dict[str, Counter[str]] = {}
    for v in votes:
        per_item.setdefault(v.item, Counter())[v.method] += 1
    table = [[c[m] for m in methods] for c in per_item.values()]
    identity = {}
    for m in methods:
        answers = Counter(v.identity for v in votes if v.method == m and v.identity is not None)
        asked = sum(answers.values())
        if asked:
            lo, hi = wilson_interval(answers["yes"], asked)
            identity[m] = {
                "yes": answers["yes"],
                "answered": asked,
                "rate": answers["yes"] / asked,
                "ci95": [lo, hi],
            }
    return {
        "study": study.name,
        "methods": methods,
        "items": len(study.items),
        "participants": len(participants),
        "votes": n,
        "win_rates": win_rates,
        "pairwise": pairs,
        "bradley_terry": bradley_terry(wins),
        "per_participant": participants,
        "agreement": {
            "fleiss_kappa": fleiss_kappa(table),
            "items_with_two_or_more": sum(sum(r) >= 2 for r in table),
        },
        "identity": identity,
    }


def votes_csv(study: Study, votes: Sequence[Vote]) -> str:
    """The raw table: one row per vote (``position``: 0 is the leftmost candidate)."""
    keys = {it.id: it.key for it in study.items}
    codes = code_methods(study)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for v in votes:
        methods = [codes.get(c, "?") for c in v.shown]
        writer.writerow(
            [v.participant, v.item, keys.get(v.item, ""), v.method, v.shown.index(v.code) if v.code in v.shown else "",
             "|".join(methods), v.identity or "", f"{v.time:.3f}"]
        )  # fmt: skip
    return buf.getvalue()


def format_report(report: dict[str, Any]) -> str:
    """The report as text for the terminal."""
    lines = [
        f"study {report['study']!r}: {report['votes']} vote(s) by {report['participants']} participant(s) "
        f"on {report['items']} item(s)",
        "win rate (95 % Wilson interval):",
    ]
    for m, w in report["win_rates"].items():
        rate = "-" if w["rate"] is None else f"{100 * w['rate']:5.1f} %"
        lines.append(
            f"  {m:<16} {w['wins']:>5} / {w['votes']:<5} {rate}  [{100 * w['ci95'][0]:.1f}, {100 * w['ci95'][1]:.1f}]"
        )
    lines.append("pairwise (a over b, exact binomial test):")
    for p in report["pairwise"]:
        lines.append(f"  {p['a']} over {p['b']}: {p['a_wins']} - {p['b_wins']}, p = {p['p_value']:.4g}")
    lines.append(
        "Bradley-Terry strengths: " + ", ".join(f"{m} {s:.3f}" for m, s in report["bradley_terry"].items())
    )
    kappa = report["agreement"]["fleiss_kappa"]
    lines.append(
        f"agreement: Fleiss' kappa {'-' if kappa is None else f'{kappa:.3f}'} over "
        f"{report['agreement']['items_with_two_or_more']} item(s) with two or more votes"
    )
    for m, ident in report["identity"].items():
        lines.append(f"same person ({m} picked): {ident['yes']} / {ident['answered']} yes")
    return "\n".join(lines)


_COLOURS = [(37, 99, 235), (234, 88, 12), (22, 163, 74), (147, 51, 234), (220, 38, 38), (8, 145, 178)]


def draw_chart(report: dict[str, Any]) -> Image.Image:
    """Win rates with their intervals (left) and each participant's picks as stacked bars (right)."""
    methods = report["methods"]
    people = list(report["per_participant"].items())
    width, height = 900, 420
    im = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(im)
    font = ImageFont.load_default()
    top, bottom = 40, height - 70
    d.text(
        (20, 10),
        f"{report['study']}: win rate, 95 % interval ({report['votes']} votes)",
        fill="black",
        font=font,
    )
    left_w = 420
    x0, x1 = 50, left_w - 10
    for t in range(0, 101, 25):
        y = bottom - (bottom - top) * t / 100
        d.line([(x0, y), (x1, y)], fill=(225, 225, 225))
        d.text((10, y - 6), f"{t}%", fill="black", font=font)
    slot = (x1 - x0) / max(1, len(methods))
    for i, m in enumerate(methods):
        w = report["win_rates"][m]
        cx = x0 + slot * (i + 0.5)
        if w["rate"] is not None:
            y = bottom - (bottom - top) * w["rate"]
            d.rectangle([cx - slot * 0.3, y, cx + slot * 0.3, bottom], fill=_COLOURS[i % len(_COLOURS)])
            lo, hi = (bottom - (bottom - top) * v for v in w["ci95"])
            d.line([(cx, lo), (cx, hi)], fill="black", width=2)
            d.line([(cx - 6, lo), (cx + 6, lo)], fill="black", width=2)
            d.line([(cx - 6, hi), (cx + 6, hi)], fill="black", width=2)
        d.text((cx - slot * 0.4, bottom + 8), m[:18], fill="black", font=font)
    d.text((left_w + 20, 10), "picks per participant", fill="black", font=font)
    px0, px1 = left_w + 30, width - 20
    pslot = (px1 - px0) / max(1, len(people))
    for i, (_, entry) in enumerate(people):
        y = float(bottom)
        for j, m in enumerate(methods):
            share = entry["shares"].get(m, 0.0)
            h = (bottom - top) * share
            d.rectangle(
                [px0 + pslot * i + 1, y - h, px0 + pslot * (i + 1) - 1, y], fill=_COLOURS[j % len(_COLOURS)]
            )
            y -= h
    for j, m in enumerate(methods):  # legend
        x = px0 + 110 * j
        d.rectangle([x, height - 30, x + 12, height - 18], fill=_COLOURS[j % len(_COLOURS)])
        d.text((x + 16, height - 30), m[:14], fill="black", font=font)
    return im


def write_report(study: Study, out: str | os.PathLike | None = None) -> tuple[dict[str, Any], Path]:
    """Write ``report.json``, ``votes.csv`` and ``chart.png`` into ``out`` (default ``<study>/report``),
    each atomically; returns the report and the folder.

    Raises:
        RealFaceError: the study has no votes yet.
    """
    votes = VoteLog(study).votes()
    if not votes:
        raise RealFaceError(
            f"{study.votes_path}: no votes yet; run `realface study serve {study.root}` first"
        )
    report = study_report(study, votes)
    folder = Path(out) if out is not None else study.root / "report"
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "report.json", json.dumps(report, indent=1) + "\n")
    atomic_write_text(folder / "votes.csv", votes_csv(study, votes))
    with atomic_path(folder / "chart.png") as tmp:
        draw_chart(report).save(tmp, format="PNG")
    return report, folder
