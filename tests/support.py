"""Skips that must not hide a broken setup.

Locally a test whose optional dependency (a package, the MNIST files) is missing is skipped with the
reason. In CI (``CI=true``, or ``HANAMI_REQUIRE_DATA=1`` as ``.ci/run`` sets) the same test fails
instead, so that a run cannot pass by skipping what ``make test`` installs. The only tests that
may skip everywhere are those that need a GPU (``tests/test_cuda.py`` and the like).
"""

from __future__ import annotations

import importlib
import os

import pytest


def strict() -> bool:
    """True in CI: a missing dependency is an error, not a reason to skip."""
    return os.environ.get("CI", "").lower() == "true" or os.environ.get("HANAMI_REQUIRE_DATA") == "1"


def missing(reason: str) -> None:
    """Skips the current test (or module) with ``reason``, or fails it in CI."""
    if strict():
        pytest.fail(f"{reason} (required in CI: CI=true or HANAMI_REQUIRE_DATA=1)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def require(module: str, reason: str):
    """``importlib.import_module(module)``, or :func:`missing` with ``reason``."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        missing(f"{reason} ({error})")
