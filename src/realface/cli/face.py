"""`realface align` and `realface paste`: the face pipeline on files (registered on import)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import typer

from realface.cli import app
from realface.errors import ConfigError, FaceError, ImageError, RealFaceError
from realface.imageio import DEFAULT_MAX_PIXELS, format_for_path, load_image, save_image

logger = logging.getLogger(__name__)

_MAX_PIXELS_HELP = "Refuse images with more pixels than this (decompression-bomb guard)."


@app.command("align")
def align_command(
    images: list[Path] = typer.Argument(..., help="Input images (JPEG, PNG, WebP; 8/16-bit, gray, RGBA)."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Folder for aligned crops and their JSON."),
    size: int = typer.Option(1024, "--size", help="Aligned crop size: 256, 512 or 1024."),
    face_index: int | None = typer.Option(
        None, "--face-index", help="Only this face (0 = largest). Default: every face."
    ),
    min_face_size: int = typer.Option(48, "--min-face-size", help="Ignore faces smaller than this (px)."),
    upsample: int = typer.Option(1, "--upsample", help="dlib detector upsampling (finds smaller faces)."),
    cnn: bool = typer.Option(True, "--cnn/--no-cnn", help="Try dlib's CNN detector when HOG finds nothing."),
    exact: bool = typer.Option(
        False, "--exact", help="Official 4096-px warp route (slower; bit-exact with the FFHQ recipe)."
    ),
    max_pixels: int = typer.Option(DEFAULT_MAX_PIXELS, "--max-pixels", help=_MAX_PIXELS_HELP),
) -> None:
    """FFHQ-align faces: writes NAME_faceI.png and NAME_faceI.json (box, landmarks, transform)."""
    from realface.face import AlignConfig, DetectConfig, FaceMeta, align_face, find_faces

    try:
        align_cfg = AlignConfig(output_size=size, transform_size=4096 if exact else None)
        detect_cfg = DetectConfig(upsample=upsample, cnn_fallback=cnn, min_face_size=min_face_size)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    failures = []
    for path in images:
        try:
            image = load_image(path, max_pixels=max_pixels)
            faces = find_faces(image.rgb8(), detect_cfg, source=str(path))
            if face_index is not None and not 0 <= face_index < len(faces):
                raise FaceError(f"{path}: --face-index {face_index} requested but {len(faces)} face(s) found")
            indices = range(len(faces)) if face_index is None else [face_index]
            rgb = image.rgb8() if image.bit_depth == 8 else image.rgb_float()
            for i in indices:
                aligned = align_face(rgb, faces[i].landmarks_array, align_cfg)
                meta = FaceMeta(path.name, image.size, i, faces[i].with_alignment(aligned.alignment))
                stem = out_dir / f"{path.stem}_face{i}"
                save_image(_rgb_image(aligned.to_uint8(), stem.with_suffix(".png")), stem.with_suffix(".png"))
                meta.save(stem.with_suffix(".json"))
                logger.info(
                    "%s: face %d (%s, box %s) -> %s.png", path, i, faces[i].detector, faces[i].box, stem
                )
        except RealFaceError as exc:
            typer.echo(f"error: {exc}", err=True)
            failures.append(path)
    if failures:
        raise ImageError(f"{len(failures)} of {len(images)} image(s) failed: {', '.join(map(str, failures))}")


def _rgb_image(rgb8: np.ndarray, path: Path):
    from realface.imageio import LoadedImage

    return LoadedImage(path=path, format="PNG", pixels=rgb8)


@app.command("paste")
def paste_command(
    image_path: Path = typer.Option(..., "--image", help="The original image."),
    face_path: Path = typer.Option(..., "--face", help="The new aligned face (square RGB image)."),
    meta_path: Path = typer.Option(..., "--meta", help="JSON written by `realface align` for this face."),
    out: Path = typer.Option(..., "--out", "-o", help="Output image (same size, mode and format)."),
    mask: str = typer.Option("auto", "--mask", help="auto, landmarks or parsing (needs bisenet-79999)."),
    color_correct: bool = typer.Option(True, "--color-correct/--no-color-correct", help="Lab colour match."),
    max_pixels: int = typer.Option(DEFAULT_MAX_PIXELS, "--max-pixels", help=_MAX_PIXELS_HELP),
) -> None:
    """Paste a new aligned face back; pixels outside the face mask stay exactly as they were."""
    from realface.face import BlendConfig, FaceMeta, MaskConfig, build_mask, paste_face
    from realface.face.mask import parser_available

    try:
        mask_cfg = MaskConfig(kind=mask)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ConfigError(f"--mask: {exc}") from None
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
    pixels = paste_face(image.pixels, new.rgb_float(), alignment, face_mask, BlendConfig(color_correct))
    save_image(image.with_pixels(pixels), out, format=format_for_path(out) or image.format)
    logger.info("%s: face %d pasted -> %s", image_path, meta.face_index, out)
