"""Shared fixtures and settings of the test suite.

- ``mnist_train`` / ``mnist_test``: the MNIST train and test sets, loaded once per session. Without
  torchvision or without the files under ``hanami_torch.data.data_dir()`` (``$HANAMI_DATA_DIR`` or
  ``./data``, downloaded when missing and possible) the tests that use them skip; in CI
  (``CI=true`` or ``HANAMI_REQUIRE_DATA=1``, set by ``.ci/run``) they fail instead, so CI cannot
  pass by skipping (tests/support.py).
- Every test runs under pytest-timeout's limit (pyproject.toml); tests marked ``slow`` get
  ``SLOW_TIMEOUT_S`` unless they set their own ``@pytest.mark.timeout``.
"""

from __future__ import annotations

import pytest
from support import missing, require, strict

from hanami_torch.data import data_dir, load_mnist

#: the time limit of a test marked slow (the default limit is pyproject's `timeout`)
SLOW_TIMEOUT_S = 1200


def pytest_configure(config):
    if strict() and not config.pluginmanager.hasplugin("timeout"):
        raise pytest.UsageError("CI runs every test under a timeout: pip install pytest-timeout")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT_S))


def _load(train: bool):
    require("torchvision", "MNIST tests need torchvision: pip install torchvision==0.29.1")
    try:
        return load_mnist(train=train)
    except FileNotFoundError as error:
        missing(f"MNIST not available under {data_dir()} and not downloadable: {error}; set "
                "HANAMI_DATA_DIR to the folder holding MNIST/raw/")


@pytest.fixture(scope="session")
def mnist_train():
    """``(pixels float32 [60000, 784] raw 0..255, labels int64 [60000])`` in file order."""
    return _load(train=True)


@pytest.fixture(scope="session")
def mnist_test():
    """``(pixels float32 [10000, 784] raw 0..255, labels int64 [10000])`` in file order."""
    return _load(train=False)
