"""The face pipeline: detection, landmarks, FFHQ alignment, masks and paste-back (no GAN code).

Coordinates everywhere: ``(x, y)`` pixels with pixel centres at integer coordinates; transforms are
named after their frames (``aligned_from_image`` maps image pixels to aligned-crop pixels).
"""

from realface.face.align import AlignConfig, AlignedFace, Alignment, align_face, ffhq_quad
from realface.face.blend import BlendConfig, paste_face
from realface.face.detect import DetectConfig, Detection, Face, detect_faces, find_faces
from realface.face.mask import FaceMask, MaskConfig, build_mask, make_mask
from realface.face.meta import FaceMeta

__all__ = [
    "AlignConfig",
    "AlignedFace",
    "Alignment",
    "BlendConfig",
    "DetectConfig",
    "Detection",
    "Face",
    "FaceMask",
    "FaceMeta",
    "MaskConfig",
    "align_face",
    "build_mask",
    "detect_faces",
    "ffhq_quad",
    "find_faces",
    "make_mask",
    "paste_face",
]
