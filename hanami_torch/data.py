"""Data sets for the examples, benchmarks and tests.

MNIST is read with torchvision from ``<root>/MNIST/raw/`` (the four uncompressed IDX files
``{train,t10k}-{images-idx3,labels-idx1}-ubyte``).  ``root`` defaults to :func:`data_dir`.
When the files are present nothing is written, so ``root`` may be a read-only folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

#: The files that must lie in ``<root>/MNIST/raw/``.
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def data_dir() -> Path:
    """The folder that holds the data sets: ``$HANAMI_DATA_DIR``, or ``./data`` when unset."""
    configured = os.environ.get("HANAMI_DATA_DIR", "").strip()
    return Path(configured).expanduser() if configured else Path.cwd() / "data"


def mnist_available(root: str | os.PathLike | None = None) -> bool:
    """True when all four MNIST files lie in ``<root>/MNIST/raw/`` (``root`` defaults to :func:`data_dir`)."""
    raw = Path(root if root is not None else data_dir()) / "MNIST" / "raw"
    return all((raw / name).is_file() for name in MNIST_FILES)


def load_mnist(
    train: bool, root: str | os.PathLike | None = None, download: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load the MNIST train (60,000 images) or test (10,000 images) set, in file order.

    Args:
        train: True for the training set, False for the test set.
        root: folder that contains ``MNIST/raw/``; defaults to :func:`data_dir`.
        download: fetch the files into ``root`` when they are missing.  Never writes when they exist.

    Returns:
        ``(pixels, labels)``: ``pixels`` is float32 ``[N, 784]`` holding the raw grey values
        0..255 (not normalised; Hanami takes raw inputs), row-major 28x28 per image;
        ``labels`` is int64 ``[N]`` with the digits 0..9.

    Raises:
        ImportError: torchvision is not installed.
        FileNotFoundError: the files are missing and could not be downloaded.
    """
    try:
        from torchvision.datasets import MNIST
    except ImportError as error:
        raise ImportError(
            "load_mnist needs torchvision: pip install torchvision==0.29.1 "
            "(the release that matches torch 2.14.1)"
        ) from error

    root = Path(root if root is not None else data_dir())
    try:
        dataset = MNIST(str(root), train=train, download=download)
    except (RuntimeError, OSError) as error:
        hint = (
            "the download failed (no network?)"
            if download
            else "download=False was given"
        )
        raise FileNotFoundError(
            f"MNIST not found in {root / 'MNIST' / 'raw'} and {hint}. Put the files "
            f"{', '.join(MNIST_FILES)} there, or point HANAMI_DATA_DIR at the folder that "
            f"contains MNIST/raw/. Cause: {error}"
        ) from error

    pixels = dataset.data.reshape(len(dataset.data), -1).to(torch.float32)
    labels = dataset.targets.to(torch.int64)
    return pixels, labels


def one_hot(labels: torch.Tensor, n_classes: int = 10) -> torch.Tensor:
    """Encode class indices as targets for ``learn_many``.

    Args:
        labels: integer tensor ``[N]`` with values in ``0..n_classes-1``.
        n_classes: number of classes (the number of output neurons).

    Returns:
        float32 ``[N, n_classes]``: 1.0 at each sample's class, 0.0 elsewhere.
    """
    if labels.dim() != 1:
        raise ValueError(f"labels must be 1-D [N], got shape {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise TypeError(f"labels must be an integer tensor, got {labels.dtype}; use labels.long()")
    if labels.numel() and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(
            f"labels must lie in 0..{n_classes - 1}, got {labels.min().item()}..{labels.max().item()}; "
            "pass a larger n_classes"
        )
    return torch.nn.functional.one_hot(labels.to(torch.int64), n_classes).to(torch.float32)
