"""Face detection on apparel-sized images: found / missed / false positives, seconds and peak memory.

Usage: ``python benchmarks/bench_detect.py [--quick] [--detector blazeface] [--threshold T] [--json OUT]``

A generated case set: 4000×6000 canvases (``--quick``: 1000×1500), plain (a soft gradient) or busy
(stripes, noise, text prints, logos and round badges, some with two dots and a mouth), carrying
faces cut from the fixtures (``tests/data/images/astronaut.png``, a photo; ``examples/avatar.jpg``,
a rendered avatar) at 50–300 px (the side of dlib's HOG box of that face), plain or

- mirrored; rotated 30° either way; darkened to 35 %; side-lit (a light falloff from 120 % to 25 %
  across the face);
- turned: no licensed 3/4-view render was found, so a stand-in turns the frontal faces by 30° and
  45° (a 3/4 view) of yaw with a cylindrical warp: the head as a vertical cylinder one face box in
  radius, each column at angle ``phi`` moved to angle ``phi + yaw`` (the near cheek widens, the far
  one narrows, the nose moves towards the far side); hair and background outside the cylinder stay;

plus a busy canvas with no face, the astronaut photo with its mission patch (on which dlib's HOG
finds a second "face"), mission patches alone, and a busy canvas whose badges include smileys
(cartoon faces, kept apart: to BlazeFace a smiley is a face, see the README). Faces are found with
``min_face_size`` 40 (``--min-face``): BlazeFace's box of a face whose HOG box is 50 px is 45–48 px. A detection is a hit when its centre lies inside
a true face box and its side is 0.5–2 times that box's; any other detection is a false positive.

Each case runs in a fresh process (spawned) so that its peak resident memory (``ru_maxrss``) is its
own: ``rss_before`` is measured after the canvas is built, ``peak`` after :func:`find_faces`
(detection and 68 landmarks). Seconds: :func:`find_faces`'s wall time; CPU seconds: the process's
CPU time for it (all threads), which a busy machine does not inflate.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
SOURCES = {
    "astronaut": (DATA / "images" / "astronaut.png", DATA / "align" / "astronaut_landmarks.json"),
    "avatar": (ROOT / "examples" / "avatar.jpg", DATA / "align" / "replicant_face_00000_landmarks.json"),
}
PATCH_BOX = (126, 335, 215, 425)  # the mission patch on astronaut.png (where dlib's HOG finds a "face")


@dataclass(frozen=True)
class Placed:
    source: str
    size: int  # face box side in pixels
    effect: str = "none"  # none, mirror, rot+30, rot-30, dark, sidelit, yaw30, yaw45


@dataclass(frozen=True)
class Case:
    name: str
    background: str  # plain or busy
    faces: tuple[Placed, ...] = ()
    astronaut_photo: int = 0  # > 0: the whole astronaut photo with its patch, face box of this side
    patches: tuple[int, ...] = ()  # mission patches alone, of these sides
    smileys: bool = False  # busy canvas: also smiley badges (cartoon faces)
    notes: str = ""
    extra: dict = field(default_factory=dict)


def cases(quick: bool) -> list[Case]:
    both = ("astronaut", "avatar")
    if quick:
        return [
            Case("plain", "plain", tuple(Placed(s, n) for s, n in zip(both, (60, 120), strict=True))),
            Case("busy", "busy", tuple(Placed(s, n) for s, n in zip(both, (80, 150), strict=True))),
            Case("rotated30", "busy", (Placed("astronaut", 100, "rot+30"), Placed("avatar", 120, "rot-30"))),
            Case(
                "dark_sidelit", "busy", (Placed("astronaut", 100, "dark"), Placed("avatar", 120, "sidelit"))
            ),
            Case("turned", "busy", (Placed("astronaut", 150, "yaw30"), Placed("avatar", 150, "yaw45"))),
            Case("no_face", "busy"),
            Case("astronaut_patch", "busy", astronaut_photo=150),
            Case("smiley_prints", "busy", smileys=True),
        ]
    return [
        Case("plain_small", "plain", tuple(Placed(s, n) for s, n in zip(both * 2, (50, 70, 100, 130), strict=True))),
        Case("plain_large", "plain", (Placed("astronaut", 300), Placed("avatar", 300), Placed("avatar", 200))),
        Case("busy_mixed", "busy", tuple(Placed(s, n) for s, n in zip(both * 3, (50, 80, 120, 160, 220, 300), strict=True))),
        Case("mirrored", "busy", (Placed("astronaut", 60, "mirror"), Placed("avatar", 150, "mirror"), Placed("astronaut", 250, "mirror"))),
        Case("rotated30", "busy", (Placed("astronaut", 100, "rot+30"), Placed("avatar", 150, "rot-30"), Placed("avatar", 250, "rot+30"), Placed("astronaut", 200, "rot-30"))),
        Case("darkened", "busy", (Placed("astronaut", 80, "dark"), Placed("avatar", 200, "dark"))),
        Case("side_lit", "busy", (Placed("astronaut", 90, "sidelit"), Placed("avatar", 220, "sidelit"))),
        Case("turned_30", "busy", (Placed("astronaut", 150, "yaw30"), Placed("avatar", 300, "yaw30"), Placed("avatar", 100, "yaw30"))),
        Case("turned_45", "busy", (Placed("astronaut", 150, "yaw45"), Placed("avatar", 300, "yaw45"), Placed("astronaut", 300, "yaw45"))),
        Case("no_face", "busy"),
        Case("astronaut_patch", "busy", astronaut_photo=250),
        Case("patches_only", "plain", patches=(100, 200, 300)),
        Case("smiley_prints", "busy", smileys=True),
    ]  # fmt: skip


# --- canvases ----------------------------------------------------------------------------------------


def plain_canvas(w: int, h: int, rng: np.random.Generator) -> Image.Image:
    c0, c1 = rng.integers(60, 200, 3), rng.integers(60, 200, 3)
    t = np.linspace(0.0, 1.0, 64)[:, None, None]  # [64, 1, 1]
    small = (c0 * (1 - t) + c1 * t).repeat(64, axis=1)  # [64, 64, 3]
    return Image.fromarray(small.astype(np.uint8)).resize((w, h), Image.Resampling.BILINEAR)


def busy_canvas(w: int, h: int, rng: np.random.Generator, smileys: bool = False) -> Image.Image:
    """Garment-like clutter: coloured patches, stripes, fine noise, text prints, star logos and ring
    badges; with ``smileys``, a third of the badges are smileys (two dots and a mouth)."""
    small = rng.integers(30, 230, (h // 200 + 2, w // 200 + 2, 3)).astype(np.uint8)
    img = Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(img)
    for _ in range(40):  # stripes and checks
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        col = tuple(int(v) for v in rng.integers(0, 256, 3))
        pitch = int(rng.integers(6, 40))
        for k in range(int(rng.integers(5, 30))):
            draw.rectangle(
                [x, y + k * pitch * 2, x + int(rng.integers(200, 900)), y + k * pitch * 2 + pitch], fill=col
            )
    font = ImageFont.load_default(size=int(min(w, h) / 25))
    for _ in range(25):  # text prints
        x, y = int(rng.integers(0, w - 200)), int(rng.integers(0, h - 100))
        text = "".join(rng.choice(list("REALFACE 2026 SPORT CLUB NYC LOGO"), int(rng.integers(4, 12))))
        draw.text((x, y), text, fill=tuple(int(v) for v in rng.integers(0, 256, 3)), font=font)
    for _ in range(30):  # badges: rings, some with two "eyes" and a "mouth"; star logos
        r = int(rng.integers(25, 160))
        x, y = int(rng.integers(r, w - r)), int(rng.integers(r, h - r))
        fg = tuple(int(v) for v in rng.integers(0, 256, 3))
        bg = tuple(int(v) for v in rng.integers(0, 256, 3))
        kind = int(rng.choice((0, 1, 2) if smileys else (0, 2)))
        if kind < 2:
            draw.ellipse([x - r, y - r, x + r, y + r], fill=bg, outline=fg, width=max(2, r // 8))
        if kind == 1:  # a smiley badge
            e = max(2, r // 6)
            for ex in (x - r // 3, x + r // 3):
                draw.ellipse([ex - e, y - r // 4 - e, ex + e, y - r // 4 + e], fill=fg)
            draw.arc(
                [x - r // 2, y - r // 4, x + r // 2, y + r // 2], 20, 160, fill=fg, width=max(2, r // 10)
            )
        if kind == 2:  # a star logo
            pts = [
                (
                    x + r * math.cos(a) * (1 if i % 2 == 0 else 0.45),
                    y + r * math.sin(a) * (1 if i % 2 == 0 else 0.45),
                )
                for i, a in enumerate(np.linspace(-math.pi / 2, 1.5 * math.pi, 11)[:-1])
            ]
            draw.polygon(pts, fill=fg)
    noise = rng.integers(-12, 13, (h // 4, w // 4, 1), dtype=np.int16)  # fine fabric texture
    arr = np.asarray(img).astype(np.int16)
    arr += np.repeat(np.repeat(noise, 4, 0), 4, 1)[:h, :w]
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


# --- faces -------------------------------------------------------------------------------------------


def _load_source(name: str) -> tuple[Image.Image, np.ndarray]:
    image, record = SOURCES[name]
    return Image.open(image).convert("RGB"), np.array(json.loads(record.read_text())["face_box"], float)


def _cylinder_yaw(a: np.ndarray, cx: float, radius: float, degrees: float) -> np.ndarray:
    """Turn a frontal head in ``a`` [h, w, 3] about a vertical axis through column ``cx``, the head being a
    vertical cylinder of ``radius`` pixels: the column at angle ``phi`` moves to ``cx + radius · sin(phi
    + yaw)``. Columns outside the cylinder are left as they are."""
    w = a.shape[1]
    x = np.arange(w, dtype=np.float64)
    inside = np.abs(x - cx) < radius
    phi = np.arcsin(np.clip((x - cx) / radius, -1.0, 1.0)) - math.radians(degrees)
    src = np.where(inside & (np.abs(phi) < math.pi / 2), cx + radius * np.sin(phi), x)  # source column
    src = np.clip(src, 0, w - 1)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, w - 1)
    t = (src - i0)[None, :, None]
    return a[:, i0] * (1 - t) + a[:, i1] * t  # [h, w, 3]


def face_patch(p: Placed) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float, float]]:
    """RGB [s, s, 3], alpha [s, s] and the true face box (x0, y0, x1, y1) in patch pixels."""
    img, box = _load_source(p.source)
    side = box[2] - box[0] + 1
    centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    half = 1.5 * side  # the patch spans three face boxes: hair, ears, neck
    scale = p.size / side
    out_side = int(round(2 * half * scale))
    crop = img.crop(tuple(int(round(v)) for v in (*(centre - half), *(centre + half))))
    crop = crop.resize((out_side, out_side), Image.Resampling.LANCZOS)
    a = np.asarray(crop, dtype=np.float64)  # [s, s, 3]
    c = out_side / 2
    yy, xx = np.mgrid[:out_side, :out_side]
    alpha = np.clip((1.0 - np.hypot((xx - c) / (1.05 * c), (yy - c) / (1.2 * c))) * 8, 0, 1)  # soft ellipse
    fb = [c - p.size / 2, c - p.size / 2, c + p.size / 2, c + p.size / 2]
    if p.effect == "mirror":
        a = a[:, ::-1]
    elif p.effect in ("rot+30", "rot-30"):
        angle = 30 if p.effect == "rot+30" else -30
        a = np.asarray(
            Image.fromarray(a.astype(np.uint8)).rotate(angle, Image.Resampling.BICUBIC), np.float64
        )
        alpha = np.asarray(Image.fromarray((alpha * 255).astype(np.uint8)).rotate(angle), np.float64) / 255
    elif p.effect == "dark":
        a = a * 0.35
    elif p.effect == "sidelit":
        a = a * np.linspace(1.2, 0.25, out_side)[None, :, None]
    elif p.effect in ("yaw30", "yaw45"):
        degrees = 30 if p.effect == "yaw30" else 45
        radius = 1.0 * p.size
        a = _cylinder_yaw(a, c, radius, degrees)
        # the face box follows its centre and edges through the warp
        edges = [
            c + radius * math.sin(math.asin(max(-1, min(1, (v - c) / radius))) + math.radians(degrees))
            for v in fb[0::2]
        ]
        fb = [min(edges), fb[1], max(edges), fb[3]]
    return np.clip(a, 0, 255), alpha, tuple(fb)  # type: ignore[return-value]


def paste(canvas: np.ndarray, rgb: np.ndarray, alpha: np.ndarray, x: int, y: int) -> None:
    h, w = alpha.shape
    region = canvas[y : y + h, x : x + w].astype(np.float64)
    canvas[y : y + h, x : x + w] = np.rint(region * (1 - alpha[..., None]) + rgb * alpha[..., None]).astype(
        np.uint8
    )


def build(
    case: Case, w: int, h: int, seed: int
) -> tuple[np.ndarray, list[tuple[float, float, float, float]]]:
    """The case's canvas and its true face boxes (x0, y0, x1, y1)."""
    rng = np.random.default_rng(seed)
    if case.background == "plain":
        canvas = np.array(plain_canvas(w, h, rng))
    else:
        canvas = np.array(busy_canvas(w, h, rng, case.smileys))
    truth: list[tuple[float, float, float, float]] = []
    items: list[tuple[np.ndarray, np.ndarray, tuple | None]] = []
    for p in case.faces:
        items.append(face_patch(p))
    astro = Image.open(SOURCES["astronaut"][0]).convert("RGB")
    if case.astronaut_photo:
        scale = case.astronaut_photo / 91  # dlib's face box on astronaut.png: (175, 76)-(265, 166)
        side = round(512 * scale)
        a = np.asarray(astro.resize((side, side), Image.Resampling.LANCZOS), np.float64)
        fb = tuple(v * scale for v in (175, 76, 266, 167))
        items.append((a, np.ones(a.shape[:2]), fb))
    for side in case.patches:
        scale = side / (PATCH_BOX[2] - PATCH_BOX[0] + 1)
        crop = astro.crop((PATCH_BOX[0] - 30, PATCH_BOX[1] - 30, PATCH_BOX[2] + 30, PATCH_BOX[3] + 30))
        crop = crop.resize((round(crop.width * scale), round(crop.height * scale)), Image.Resampling.LANCZOS)
        items.append((np.asarray(crop, np.float64), np.ones((crop.height, crop.width)), None))
    # place items at random where they overlap nothing placed before
    placed: list[tuple[int, int, int, int]] = []
    for rgb, alpha, fb in items:
        ph, pw = alpha.shape
        for _ in range(500):
            x, y = int(rng.integers(0, max(1, w - pw))), int(rng.integers(0, max(1, h - ph)))
            if all(x + pw <= a or a + c <= x or y + ph <= b or b + d <= y for a, b, c, d in placed):
                break
        else:
            raise ValueError(f"case {case.name}: no room for a {pw}x{ph} patch on {w}x{h}")
        placed.append((x, y, pw, ph))
        paste(canvas, rgb, alpha, x, y)
        if fb is not None:
            truth.append((fb[0] + x, fb[1] + y, fb[2] + x, fb[3] + y))
    return canvas, truth


def score(boxes: list[tuple[int, int, int, int]], truth: list[tuple[float, ...]]) -> tuple[int, int, int]:
    """(found, missed, false positives)."""
    hit = [False] * len(truth)
    false = 0
    for left, top, right, bottom in boxes:
        cx, cy, side = (left + right) / 2, (top + bottom) / 2, right - left + 1
        match = [
            i
            for i, (x0, y0, x1, y1) in enumerate(truth)
            if x0 <= cx <= x1 and y0 <= cy <= y1 and 0.5 <= side / (x1 - x0) <= 2.0
        ]
        if match:
            hit[match[0]] = True
        else:
            false += 1
    return sum(hit), len(truth) - sum(hit), false


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_case(
    case: Case,
    w: int,
    h: int,
    seed: int,
    detector: str,
    threshold: float | None,
    min_face: int,
    threads: int,
    out,
) -> None:
    import logging

    import torch

    from realface.errors import FaceError
    from realface.face import DetectConfig, find_faces

    logging.basicConfig(level=logging.INFO, format="    %(message)s", stream=sys.stderr)
    if threads:
        torch.set_num_threads(threads)
    canvas, truth = build(case, w, h, seed)
    config = DetectConfig(detector=detector, threshold=threshold, min_face_size=min_face)

    def find(img: np.ndarray) -> list:
        try:
            return find_faces(img, config, source="canvas")
        except FaceError:
            return []

    # load the models untimed: BlazeFace, the 68-point predictor and, through the second stage, dlib's
    # HOG and CNN detectors
    from realface.face.detect import Detection, dlib_confirms

    find(np.asarray(Image.open(SOURCES["astronaut"][0]).convert("RGB")))
    dlib_confirms(np.zeros((300, 300, 3), np.uint8), Detection((100, 100, 199, 199), 0.7, "blazeface"))
    before = _rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    faces = find(canvas)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    found, missed, false = score([f.box for f in faces], truth)
    out.put(
        {
            "case": case.name,
            "faces": len(truth),
            "found": found,
            "missed": missed,
            "false_positives": false,
            "seconds": round(seconds, 2),
            "cpu_seconds": round(cpu, 2),
            "rss_before_mb": round(before),
            "peak_rss_mb": round(_rss_mb()),
            "scores": [round(f.score, 3) for f in faces],
            "false_boxes": [list(f.box) for f in faces if score([f.box], truth)[2]],
        }
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1000x1500 canvases, fewer cases")
    p.add_argument("--detector", default="blazeface", choices=("blazeface", "hog", "cnn"))
    p.add_argument("--threshold", type=float, default=None)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument(
        "--min-face", type=int, default=40, help="min_face_size (50 px faces come out at 45-48 px boxes)"
    )
    p.add_argument("--only", nargs="*", help="run only these cases")
    p.add_argument("--json", type=Path, help="write the rows here")
    args = p.parse_args(argv)
    w, h = (1000, 1500) if args.quick else (4000, 6000)
    ctx = mp.get_context("spawn")
    rows = []
    t_all = time.perf_counter()
    for i, case in enumerate(cases(args.quick)):
        if args.only and case.name not in args.only:
            continue
        q = ctx.Queue()
        proc = ctx.Process(
            target=run_case,
            args=(case, w, h, 1000 + i, args.detector, args.threshold, args.min_face, args.threads, q),
        )
        proc.start()
        row = q.get()
        proc.join()
        rows.append(row)
        print(json.dumps(row), flush=True)
    wall = time.perf_counter() - t_all
    print(f"\n{args.detector}, {w}x{h} ({w * h / 1e6:.0f} MP), wall {wall:.0f} s\n")
    print("| case | faces | found | missed | false pos. | seconds | CPU seconds | peak RSS (MB) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['case']} | {r['faces']} | {r['found']} | {r['missed']} | {r['false_positives']} | "
            f"{r['seconds']} | {r['cpu_seconds']} | {r['peak_rss_mb']} |"
        )
    if args.json:
        args.json.write_text(
            json.dumps({"detector": args.detector, "size": [w, h], "wall_s": wall, "rows": rows}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
