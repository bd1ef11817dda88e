"""Fine-tuning ``G_rendering`` from the StyleGAN2-ADA FFHQ generator (``realface train``).

:mod:`realface.train.dataset`: aligned training images and the infinite, resumable batch stream.
"""

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
    "DatasetError",
    "ImageDataset",
    "InfiniteLoader",
    "InfiniteSampler",
    "SkippedFile",
    "make_loader",
    "to_model_range",
]
