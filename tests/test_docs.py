"""The Python examples of the docs run: every ```python block of a page, in order, in one namespace
(as the pages promise), from a temporary working folder. What a ``print(...)`` line shows in its
trailing comment is what it must print: ``# True``, ``# 20 4``, ``# [[30], [40]]   explanation``
(the text before two spaces); ``...`` stands for any text, a whole number may be written without
its ``.0``, and a comment that starts with "about" or speaks of "then" describes rather than
quotes, so it is not compared."""

from __future__ import annotations

import builtins
import io
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: pages whose Python blocks form one runnable session (service.md talks to a running server and
#: gpu.md needs a GPU: their blocks are fragments of a longer story)
PAGES = ["README.md", "docs/api.md", "docs/streams.md", "docs/concept.md", "docs/learning.md",
         "docs/template_format.md"]
PRINT_WITH_COMMENT = re.compile(r"^\s*print\(.*\)\s+#\s?(?P<shown>.*)$")


def plain(text: str) -> str:
    """Whole numbers without their ``.0`` (10.0 -> 10), as the pages write them."""
    return re.sub(r"(?<![\d.])(\d+)\.0(?![\d])", r"\1", text)


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), re.S)


def promised_output(block: str) -> dict[int, re.Pattern]:
    """``{line number in the block: pattern of the printed text}`` for the quoting comments."""
    promised = {}
    for number, line in enumerate(block.splitlines(), 1):
        match = PRINT_WITH_COMMENT.match(line)
        if not match:
            continue
        shown = plain(re.split(r"\s{2,}", match["shown"].strip())[0])
        if shown.startswith("about") or " then " in f" {shown} ":
            continue
        promised[number] = re.compile(".*".join(re.escape(part) for part in shown.split("...")))
    return promised


def test_promised_output_parsing():
    block = 'print(a)   # True\nprint(b)  # [[1], [2]]     why\nprint(c)  # about 0.9\nprint(d)  # x: ...\n'
    assert {n: p.pattern for n, p in promised_output(block).items()} == {
        1: "True", 2: re.escape("[[1], [2]]"), 4: re.escape("x: ") + ".*"}
    assert plain("[10.0, 1020.5, 7.05, 3.0]") == "[10, 1020.5, 7.05, 3]"


@pytest.mark.parametrize("page", PAGES)
def test_python_examples_run_and_print_what_they_show(page, tmp_path, monkeypatch, request):
    blocks = python_blocks(ROOT / page)
    assert blocks, f"{page} has no python block"
    if any("load_mnist" in block for block in blocks):
        request.getfixturevalue("mnist_train")  # skips (or fails in CI) without the data set
    monkeypatch.chdir(tmp_path)
    printed: dict[tuple[str, int], list[str]] = {}

    def recording_print(*args, **kwargs):
        if kwargs.get("file") is None:
            caller = sys._getframe(1)
            text = io.StringIO()
            builtins.print(*args, **{**kwargs, "file": text})
            printed.setdefault((caller.f_code.co_filename, caller.f_lineno), []).append(text.getvalue().rstrip("\n"))
        builtins.print(*args, **kwargs)

    namespace: dict = {"__name__": "__docs__", "print": recording_print}
    checked = 0
    for number, block in enumerate(blocks, 1):
        name = f"{page} block {number}"
        try:
            exec(compile(block, name, "exec"), namespace)
        except Exception as error:  # name the block, keep the cause
            raise AssertionError(f"{name} failed: {error!r}") from error
        for line, pattern in promised_output(block).items():
            shown = printed.get((name, line))
            assert shown, f"{name}, line {line} printed nothing; it shows {pattern.pattern!r}"
            assert all(pattern.fullmatch(plain(text)) for text in shown), (
                f"{name}, line {line} printed {shown}, the page shows {pattern.pattern!r}")
            checked += 1
    if any(promised_output(block) for block in blocks):
        assert checked
