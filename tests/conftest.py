"""Shared fixtures: the MNIST train and test sets, loaded once per test session.

The tests that need MNIST skip when the files are not under ``hanami_torch.data.data_dir()``
(``$HANAMI_DATA_DIR`` or ``./data``) and cannot be downloaded.  With ``HANAMI_REQUIRE_DATA=1``
(set by ``.ci/run``) a missing data set fails those tests instead, so CI cannot pass by skipping.
"""

from __future__ import annotations

import os

import pytest

from hanami_torch.data import data_dir, load_mnist


def _load_or_skip(train: bool):
    pytest.importorskip("torchvision", reason="MNIST tests need torchvision: pip install torchvision==0.29.1")
    try:
        return load_mnist(train=train)
    except FileNotFoundError as error:
        message = f"MNIST not available under {data_dir()} and not downloadable: {error}"
        if os.environ.get("HANAMI_REQUIRE_DATA") == "1":
            pytest.fail(message + " (HANAMI_REQUIRE_DATA=1: set HANAMI_DATA_DIR to the folder holding MNIST/raw/)")
        pytest.skip(message)


@pytest.fixture(scope="session")
def mnist_train():
    """``(pixels float32 [60000, 784] raw 0..255, labels int64 [60000])`` in file order."""
    return _load_or_skip(train=True)


@pytest.fixture(scope="session")
def mnist_test():
    """``(pixels float32 [10000, 784] raw 0..255, labels int64 [10000])`` in file order."""
    return _load_or_skip(train=False)
