"""The Python examples of the docs run: every ```python block of a page, in order, in one namespace
(as the pages promise), from a temporary working folder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: pages whose Python blocks form one runnable session (service.md talks to a running server and
#: gpu.md needs a GPU: their blocks are fragments of a longer story)
PAGES = ["README.md", "docs/api.md", "docs/streams.md", "docs/concept.md", "docs/learning.md",
         "docs/template_format.md"]


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), re.S)


@pytest.mark.parametrize("page", PAGES)
def test_python_examples_run(page, tmp_path, monkeypatch, request):
    blocks = python_blocks(ROOT / page)
    assert blocks, f"{page} has no python block"
    if any("load_mnist" in block for block in blocks):
        request.getfixturevalue("mnist_train")  # skips (or fails in CI) without the data set
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    for number, block in enumerate(blocks, 1):
        try:
            exec(compile(block, f"{page} block {number}", "exec"), namespace)
        except Exception as error:  # name the block, keep the cause
            raise AssertionError(f"{page}, python block {number} failed: {error!r}") from error
