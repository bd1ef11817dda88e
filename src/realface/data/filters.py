"""Quality measures of an aligned face: sharpness, head pose from landmarks, perceptual hash.

All three are pure numpy/scipy functions of an aligned crop or of the 68 dlib landmarks; the
thresholds that turn them into verdicts live in :class:`realface.data.build.BuildConfig`.

* :func:`sharpness` is the variance of the 3×3 Laplacian of the crop's grey levels, measured on
  the central face region of the crop resampled to :data:`SHARPNESS_SIZE` pixels, so one threshold
  serves every ``--size`` (an aligned crop of any size shows the same part of the head).
* :func:`estimate_pose` turns landmark ratios into approximate yaw and pitch angles with a simple
  rigid-head model (documented there); it is an estimate good to roughly ±10°, enough to reject
  profiles and strongly tilted heads, not a pose regressor.
* :func:`phash` is the 64-bit DCT perceptual hash: grey 32×32, 2-D DCT-II, the 8×8 lowest
  frequencies compared with their median. Near-identical images (re-encodes, rescales, small
  crops) are a few bits apart; different faces, even FFHQ-aligned ones, are tens of bits apart.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from PIL import Image
from scipy.fft import dctn

__all__ = [
    "SHARPNESS_SIZE",
    "Pose",
    "estimate_pose",
    "hamming",
    "phash",
    "sharpness",
]

SHARPNESS_SIZE = 256
"""Side (pixels) of the copy of the aligned crop on which :func:`sharpness` is measured."""

# The part of an FFHQ-aligned crop that the face occupies: eyes at about 0.38 of the height, mouth
# at about 0.66, cheeks inside the middle half. Measuring there leaves out hair and background,
# whose texture says nothing about whether the face itself is in focus.
_FACE_REGION = (0.25, 0.25, 0.75, 0.80)  # (left, top, right, bottom) as fractions of the side

# Rigid-head constants of estimate_pose (fractions measured on frontal faces of the 68-point layout).
_NOSE_DEPTH_OVER_HALF_WIDTH = 1.0  # nose tip ahead of the ear-to-ear axis ~ half the jaw width
_FRONTAL_NOSE_RATIO = 0.36  # (nose tip − eye line) / (chin − eye line) of a frontal face
_NOSE_DEPTH_OVER_EYE_CHIN = 0.30  # nose tip ahead of the eye–chin plane / eye-to-chin distance


def _grey(rgb8: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma ``[H, W]`` float64 in 0..255 of a uint8 RGB image ``[H, W, 3]``."""
    if rgb8.ndim != 3 or rgb8.shape[2] != 3 or rgb8.dtype != np.uint8:
        raise ValueError(f"expected a uint8 RGB image [H, W, 3]; got {rgb8.shape} {rgb8.dtype}")
    return rgb8.astype(np.float64) @ np.array([0.299, 0.587, 0.114])  # [H, W]


def sharpness(aligned_rgb8: np.ndarray) -> float:
    """Variance of the Laplacian of an aligned face's central region (higher is sharper).

    Args:
        aligned_rgb8: an FFHQ-aligned crop ``[N, N, 3]`` uint8, any ``N``.

    Returns:
        ``var(L)`` where ``L`` is the 4-neighbour Laplacian ``[[0,1,0],[1,-4,1],[0,1,0]]`` of the
        grey levels (0..255) of the crop resampled (Lanczos) to :data:`SHARPNESS_SIZE` pixels,
        restricted to the face region (:data:`_FACE_REGION`). Sharp photos and renders measure in
        the hundreds; a face upsampled from a small source or out of focus measures below 30.
    """
    h, w = aligned_rgb8.shape[:2]
    if h != w:
        raise ValueError(f"expected a square aligned crop; got {w}x{h}")
    img = aligned_rgb8
    if h != SHARPNESS_SIZE:
        img = np.asarray(
            Image.fromarray(aligned_rgb8).resize((SHARPNESS_SIZE,) * 2, Image.Resampling.LANCZOS)
        )
    grey = _grey(img)  # [S, S]
    l, t, r, b = (round(f * SHARPNESS_SIZE) for f in _FACE_REGION)
    g = grey[t - 1 : b + 1, l - 1 : r + 1]  # [h+2, w+2] one pixel of context on each side
    lap = g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4.0 * g[1:-1, 1:-1]  # [h, w]
    return float(lap.var())


@dataclasses.dataclass(frozen=True)
class Pose:
    """Approximate head pose in degrees (see :func:`estimate_pose`).

    Attributes:
        yaw: turn left/right; positive when the nose points towards the image's right.
        pitch: nod; positive when the head tilts down (nose towards the chin).
        roll: in-plane rotation of the eye line, positive clockwise in image coordinates.
    """

    yaw: float
    pitch: float
    roll: float


def estimate_pose(landmarks: np.ndarray) -> Pose:
    """Approximate yaw, pitch and roll from 68 dlib landmarks.

    The landmarks are first rotated so that the eye line is horizontal (removing roll). Then:

    * **yaw**: the nose tip (point 30) sits ``d·sin(yaw)`` from the midpoint of the jaw ends
      (points 0 and 16), whose half-distance is ``R·cos(yaw)``. With ``d ≈ R`` (the nose tip is
      about as far in front of the ear-to-ear axis as half the face is wide),
      ``yaw = atan(offset / half_width)``.
    * **pitch**: the nose tip's height between the eye line and the chin (point 8) is a fixed
      fraction ``r0 ≈ 0.36`` of that distance on a frontal face; nodding by ``p`` moves the
      protruding tip by ``d·sin(p)`` against ``L·cos(p)``, so ``pitch = atan((r − r0) / (d/L))``
      with ``d/L ≈ 0.30``.

    Args:
        landmarks: ``[68, 2]`` ``(x, y)`` image pixels (dlib 68-point layout).

    Returns:
        :class:`Pose` in degrees. Expect errors of around ten degrees: the constants are those of
        an average head, and dlib places occluded jaw points by prior shape near profile.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"landmarks must have shape (68, 2); got {lm.shape}")
    eye_l = lm[36:42].mean(axis=0)  # [2]
    eye_r = lm[42:48].mean(axis=0)  # [2]
    dx, dy = eye_r - eye_l
    roll = math.atan2(dy, dx)
    c, s = math.cos(-roll), math.sin(-roll)
    face_from_image = np.array([[c, -s], [s, c]])  # rotation that levels the eye line
    p = (lm - (eye_l + eye_r) / 2) @ face_from_image.T  # [68, 2] eye midpoint at the origin
    jaw_mid_x = (p[0, 0] + p[16, 0]) / 2
    half_width = max(abs(p[16, 0] - p[0, 0]) / 2, 1e-6)
    yaw = math.atan((p[30, 0] - jaw_mid_x) / (half_width * _NOSE_DEPTH_OVER_HALF_WIDTH))
    chin = max(p[8, 1], 1e-6)
    ratio = p[30, 1] / chin
    pitch = math.atan((ratio - _FRONTAL_NOSE_RATIO) / _NOSE_DEPTH_OVER_EYE_CHIN)
    return Pose(yaw=math.degrees(yaw), pitch=math.degrees(pitch), roll=math.degrees(roll))


def phash(rgb8: np.ndarray) -> int:
    """64-bit DCT perceptual hash of an image ``[H, W, 3]`` uint8.

    Grey levels resampled (Lanczos) to 32×32, orthonormal 2-D DCT-II, the 8×8 block of lowest
    frequencies; bit ``i`` (row-major over that block) is set when coefficient ``i`` exceeds the
    block's median. Compare two hashes with :func:`hamming`.
    """
    grey = _grey(rgb8)
    small = np.asarray(
        Image.fromarray(grey.astype(np.float32), mode="F").resize((32, 32), Image.Resampling.LANCZOS)
    )
    low = dctn(small.astype(np.float64), type=2, norm="ortho")[:8, :8]  # [8, 8]
    bits = (low > np.median(low)).ravel()  # [64]
    return int(sum(1 << i for i, bit in enumerate(bits) if bit))


def hamming(a: int, b: int) -> int:
    """Number of differing bits of two 64-bit hashes."""
    return (a ^ b).bit_count()
