"""`realface align` and `realface paste`: the face pipeline on files (registered on import)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import typer

from realface.cli import app
from realface.cli.common import (
    COLOR_CORRECT_OPT,
    DETECTOR_OPT,
    MASK_OPT,
    MAX_PIXELS_HELP,
    MIN_FACE_OPT,
    THRESHOLD_OPT,
    config_option,
    make_config,
    mask_config,
)
from realface.errors import FaceError, ImageError, RealFaceError
from realface.face import AlignConfig, DetectConfig
from realface.imageio import (
    DEFAULT_MAX_PIXELS,
    LoadedImage,
    check_max_pixels,
    format_for_path,
    load_image,
    save_image,
)

logger = logging.getLogger(__name__)

_MAX_PIXELS_OPT = typer.Option(DEFAULT_MAX_PIXELS, "--max-pixels", help=MAX_PIXELS_HELP)


@app.command("align")
def align_command(
    images: list[Path] = typer.Argument(..., help="Input images (JPEG, PNG, WebP; 8/16-bit, gray, RGBA)."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Folder for aligned crops and their JSON."),
    size: int = config_option(
        AlignConfig, "output_size", "--size", help="Aligned crop size: 256, 512 or 1024."
    ),
    face_index: int | None = typer.Option(
        None, "--face-index", help="Only this face (0 = largest). Default: every face."
    ),
    detector: str = DETECTOR_OPT,
    threshold: float | None = THRESHOLD_OPT,
    min_face_size: int = MIN_FACE_OPT,
    upsample: int = config_option(
        DetectConfig,
        "upsample",
        "--upsample",
        help="dlib detector upsampling (hog, cnn; finds smaller faces).",
    ),
    cnn: bool = config_option(
        DetectConfig,
        "cnn_fallback",
        "--cnn/--no-cnn",
        help="With --detector hog: try dlib's CNN detector when HOG finds nothing.",
    ),
    exact: bool = typer.Option(
        False, "--exact", help="Official 4096-px warp route (slower; bit-exact with the FFHQ recipe)."
    ),
    max_pixels: int = _MAX_PIXELS_OPT,
) -> None:
    """FFHQ-align faces: writes NAME_faceI.png and NAME_faceI.json (box, landmarks, transform).

    A rerun replaces the crops and JSON files that `align` wrote before (recognised by the JSON beside
    each crop, which names the source image and face); it never overwrites an input or another file.
    """
    check_max_pixels(max_pixels)
    align_cfg = make_config(AlignConfig, output_size=size, transform_size=4096 if exact else None)
    detect_cfg = make_config(
        DetectConfig,
        detector=detector,
        threshold=threshold,
        upsample=upsample,
        cnn_fallback=cnn,
        min_face_size=min_face_size,
    )
    inputs = {_resolved(p) for p in images}
    written: dict[Path, Path] = {}  # output file (resolved) -> the input it was written for
    failures: list[tuple[Path, RealFaceError]] = []
    for path in images:
        try:
            _align_one(path, out_dir, align_cfg, detect_cfg, face_index, max_pixels, inputs, written)
        except RealFaceError as exc:
            if len(images) == 1:
                raise  # the one error line is this image's own message
            logger.error("%s", exc)
            failures.append((path, exc))
    if len(failures) == 1:
        raise ImageError(f"1 of {len(images)} images failed: {failures[0][1]}")
    if failures:
        names = ", ".join(str(p) for p, _ in failures)
        raise ImageError(f"{len(failures)} of {len(images)} images failed (reasons above): {names}")


def _resolved(path: Path) -> Path:
    return path.resolve() if path.exists() else path.absolute()


def _align_one(
    path: Path,
    out_dir: Path,
    align_cfg: AlignConfig,
    detect_cfg: DetectConfig,
    face_index: int | None,
    max_pixels: int,
    inputs: set[Path],
    written: dict[Path, Path],
) -> None:
    """Align the faces of one image; every output path is checked before anything is written."""
    from realface.face import FaceMeta, align_face, find_faces

    image = load_image(path, max_pixels=max_pixels)
    faces = find_faces(image.rgb8(), detect_cfg, source=str(path))
    if face_index is not None and not 0 <= face_index < len(faces):
        raise FaceError(f"{path}: --face-index {face_index} requested but {len(faces)} face(s) found")
    indices = range(len(faces)) if face_index is None else [face_index]
    stems = {i: out_dir / f"{path.stem}_face{i}" for i in indices}
    for i, stem in stems.items():
        _check_replaceable(stem, path, i, inputs, written)
    rgb = image.rgb8() if image.bit_depth == 8 else image.rgb_float()
    for i, stem in stems.items():
        aligned = align_face(rgb, faces[i].landmarks_array, align_cfg)
        meta = FaceMeta(path.name, image.size, i, faces[i].with_alignment(aligned.alignment))
        # The JSON first: a crop whose run was interrupted is then still recognised as ours.
        meta.save(stem.with_suffix(".json"))
        crop = LoadedImage(path=path, format="PNG", pixels=aligned.to_uint8())
        save_image(crop, stem.with_suffix(".png"))
        for suffix in (".json", ".png"):
            written[_resolved(stem.with_suffix(suffix))] = path
        logger.info("%s: face %d (%s, box %s) -> %s.png", path, i, faces[i].detector, faces[i].box, stem)


def _check_replaceable(
    stem: Path, source: Path, index: int, inputs: set[Path], written: dict[Path, Path]
) -> None:
    """Refuse to write ``stem``.png/.json over an input, over another input's output of this run, or
    over a file that is not an earlier output of `align` for the same image and face."""
    meta_path = stem.with_suffix(".json")
    ours = None
    for dest in (stem.with_suffix(".png"), meta_path):
        key = _resolved(dest)
        if key in inputs:
            raise ImageError(f"{dest}: refusing to overwrite the input image; choose another --out folder")
        if key in written:
            raise ImageError(
                f"{dest}: already written for {written[key]} in this run; {source} has the same name "
                "(align images with the same name into different --out folders)"
            )
        if not dest.exists():
            continue
        if ours is None:
            ours = _written_by_align(meta_path, source, index)
        if not ours:
            raise ImageError(
                f"{dest}: exists and is not an earlier output of `realface align` for face {index} of "
                f"{source.name} (no matching {meta_path.name} beside it); move it or choose another --out"
            )


def _written_by_align(meta_path: Path, source: Path, index: int) -> bool:
    """True when ``meta_path`` is a valid alignment JSON for face ``index`` of an image named like ``source``."""
    from realface.face import FaceMeta

    if not meta_path.is_file():
        return False
    try:
        meta = FaceMeta.load(meta_path)
    except FaceError:
        return False
    return meta.image == source.name and meta.face_index == index


@app.command("paste")
def paste_command(
    image_path: Path = typer.Option(..., "--image", help="The original image."),
    face_path: Path = typer.Option(..., "--face", help="The new aligned face (square RGB image)."),
    meta_path: Path = typer.Option(..., "--meta", help="JSON written by `realface align` for this face."),
    out: Path = typer.Option(..., "--out", "-o", help="Output image (same size, mode and format)."),
    mask: str = MASK_OPT,
    color_correct: bool = COLOR_CORRECT_OPT,
    max_pixels: int = _MAX_PIXELS_OPT,
) -> None:
    """Paste a new aligned face back; pixels outside the face mask stay exactly as they were."""
    from realface.face import BlendConfig, FaceMeta, build_mask, paste_face
    from realface.face.mask import parser_available

    check_max_pixels(max_pixels)
    mask_cfg = mask_config(mask)
    for name, given in (("--image", image_path), ("--face", face_path), ("--meta", meta_path)):
        if out.exists() and given.exists() and out.resolve() == given.resolve():
            raise ImageError(
                f"{out}: refusing to overwrite the input {name} file; choose another output path"
            )
    image = load_image(image_path, max_pixels=max_pixels)
    new = load_image(face_path, max_pixels=max_pixels)
    meta = FaceMeta.load(meta_path)
    if tuple(meta.image_size) != image.size:
        raise FaceError(
            f"{meta_path}: made for a {meta.image_size[0]}x{meta.image_size[1]} image ({meta.image}), "
            f"but {image_path} is {image.width}x{image.height}"
        )
    if new.width != new.height or new.width < 64:
        raise ImageError(f"{face_path}: an aligned face must be square and at least 64 px; got {new.size}")
    face, alignment = meta.face, meta.face.alignment
    assert alignment is not None
    if mask_cfg.kind == "auto":
        mask_cfg = dataclasses.replace(mask_cfg, kind="parsing" if parser_available() else "landmarks")
    rgb = None
    if mask_cfg.kind == "parsing":
        rgb = image.rgb8() if image.bit_depth == 8 else image.rgb_float()
    face_mask = build_mask(rgb, face.landmarks_array, alignment, mask_cfg)
    pixels = paste_face(
        image.pixels,
        new.rgb_float(),
        alignment,
        face_mask,
        make_config(BlendConfig, color_correct=color_correct),
    )
    save_image(image.with_pixels(pixels), out, format=format_for_path(out) or image.format)
    logger.info("%s: face %d pasted -> %s", image_path, meta.face_index, out)
