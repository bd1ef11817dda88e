"""``benchmarks/gpu_check.py --cpu-smoke`` runs every section on tiny models on the CPU.

Its cost is bounded by the CPU time of the whole process tree (under 60 s), which does not depend on
how loaded the machine is; the wall-clock limit only catches a hang.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import realface
from tests.benchmarks._load import ROOT

SECTIONS = {"tests", "invert", "train", "ddp", "apply"}


def test_cpu_smoke_runs_every_section_and_writes_the_report(tmp_path):
    out = tmp_path / "report.json"
    src = Path(realface.__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(src), str(ROOT)]))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--cpu-smoke", "--out", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["smoke"] is True and report["device"] == "cpu"
    sections = report["sections"]
    assert set(sections) == SECTIONS
    for name, sec in sections.items():
        assert sec["status"] == "ok", (name, sec)
        assert sec["parts"], f"section {name} ran nothing: {sec['skipped']}"
    tests = sections["tests"]["parts"][0]
    assert tests["mode"] == "collect-only" and tests["rc"] in (0, 5)  # 5: the selection matched nothing
    inv = sections["invert"]["parts"]
    assert inv[0]["mode"] == "fp32" and inv[0]["s_per_face_500"] > 0
    assert all(p["lpips_vs_fp32"] >= 0 and p["mse_vs_fp32"] >= 0 for p in inv if p["mode"] != "fp32")
    assert all(p["img_s"] > 0 and p["peak_gib"] > 0 for p in sections["train"]["parts"])
    ddp = sections["ddp"]["parts"][0]
    assert (ddp["backend"], ddp["world"], ddp["max_weight_diff"]) == ("gloo", 2, 0.0)
    apply = sections["apply"]["parts"][0]
    assert apply["rc"] == 0 and "replicant_face_00000.jpg" in apply["files"]
    assert "== done in" in proc.stdout
    assert cpu_s < 60, f"the smoke run took {cpu_s:.0f} s of CPU time (limit 60 s)"
