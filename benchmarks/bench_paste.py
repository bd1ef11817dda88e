"""Paste-back speed: a 1024-px aligned face into a large image, and the same face into a small one.

Usage: ``python benchmarks/bench_paste.py [--size 4096] [--small 1536] [--repeat 5] [--threads N]``

The face (the astronaut fixture, scaled so that its FFHQ quad is ~1024 px) is placed on a noise
canvas of each size; the landmarks come from the alignment fixture, so dlib is not timed. Timed:
building the landmark mask and :func:`realface.face.paste_face` with colour correction, in place
(``out=pixels``) and into a copy. The in-place time should not depend on the canvas size.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from realface.face import AlignConfig, BlendConfig, MaskConfig, align_face, build_mask, paste_face

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"


def make_scene(canvas: int, quad_px: float = 1024.0) -> tuple[np.ndarray, np.ndarray]:
    rec = json.loads((DATA / "align" / "astronaut_landmarks.json").read_text())
    scale = quad_px / rec["qsize"]
    face = Image.open(DATA / "images" / "astronaut.png").convert("RGB")
    side = round(512 * scale)
    big = np.asarray(face.resize((side, side), Image.BICUBIC))  # [side, side, 3]
    landmarks = (np.array(rec["landmarks_68"]) + 0.5) * (side / 512) - 0.5  # [68, 2]
    pixels = np.random.default_rng(0).integers(0, 256, (canvas, canvas, 3), dtype=np.uint8)
    if side <= canvas:  # the whole scaled photo in the middle of a noise canvas
        off = (canvas - side) // 2
        pixels[off : off + side, off : off + side] = big
        landmarks = landmarks + off
    else:  # a window of the scaled photo centred on the face
        centre = np.array(rec["quad_tl_bl_br_tr"]).mean(0) * (side / 512)
        x0, y0 = (int(np.clip(c - canvas / 2, 0, side - canvas)) for c in centre)
        pixels[:] = big[y0 : y0 + canvas, x0 : x0 + canvas]
        landmarks = landmarks - [x0, y0]
    return pixels, landmarks


def bench(canvas: int, repeat: int) -> dict:
    pixels, landmarks = make_scene(canvas)
    aligned = align_face(pixels, landmarks, AlignConfig(1024))
    new_face = aligned.image[:, ::-1].copy()  # a different face: the mirror image

    def once(in_place: bool) -> float:
        target = pixels.copy() if in_place else pixels
        t0 = time.perf_counter()
        mask = build_mask(None, landmarks, aligned.alignment, MaskConfig(kind="landmarks"))
        paste_face(
            target, new_face, aligned.alignment, mask, BlendConfig(True), out=target if in_place else None
        )
        return time.perf_counter() - t0

    once(True)  # warm-up (first calls of torch/scipy kernels)
    return {
        "canvas": canvas,
        "in_place_s": statistics.median(once(True) for _ in range(repeat)),
        "copy_s": statistics.median(once(False) for _ in range(repeat)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--small", type=int, default=1536)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}")
    for canvas in (args.size, args.small):
        r = bench(canvas, args.repeat)
        print(
            f"{r['canvas']}x{r['canvas']} image, 1024 face: paste in place {r['in_place_s']:.3f} s, "
            f"into a copy {r['copy_s']:.3f} s (median of {args.repeat})"
        )


if __name__ == "__main__":
    main()
