"""Fine-tuning ``G_rendering`` from the StyleGAN2-ADA FFHQ generator (``realface train``).

:mod:`realface.train.dataset`: aligned training images and the infinite, resumable batch stream.
:mod:`realface.train.augment`: the 'bgc' ADA augmentation pipe and its adaptive strength.
"""

from realface.train.augment import AdaConfig, AdaptiveP, AugmentConfig, AugmentPipe
from realface.train.dataset import (
    DatasetError,
    ImageDataset,
    InfiniteLoader,
    InfiniteSampler,
    SkippedFile,
    make_loader,
    to_model_range,
)

__all__ = [
    "AdaConfig",
    "AdaptiveP",
    "AugmentConfig",
    "AugmentPipe",
    "DatasetError",
    "ImageDataset",
    "InfiniteLoader",
    "InfiniteSampler",
    "SkippedFile",
    "make_loader",
    "to_model_range",
]
