"""docs/service.md says what the service does: its Python and CLI examples name real client
methods and CLI commands with arguments they take, its route table lists every route, and its
Python blocks run against a server and print what they show. (tests/test_docs.py runs the pages
that need no server.)"""

from __future__ import annotations

import ast
import builtins
import inspect
import io
import re
import shlex
from pathlib import Path

import pytest

from hanami_torch import templates
from hanami_torch.client import HanamiClient
from hanami_torch.client.cli import build_parser
from hanami_torch.service.routes import ROUTES

PAGE = Path(__file__).resolve().parents[2] / "docs" / "service.md"
TEXT = PAGE.read_text()


def table_rows(header: str) -> list[list[str]]:
    """The cells of every row of the tables whose header row is ``header``."""
    rows, inside = [], False
    for line in TEXT.splitlines():
        if line.startswith(header):
            inside = True
        elif inside and line.startswith("| ---"):
            continue
        elif inside and line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
        else:
            inside = False
    return rows


def spans(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


EXAMPLES = table_rows("| Python | CLI |")
PYTHON = [code for row in EXAMPLES for code in spans(row[0])]
COMMANDS = ("serve", "login", "logout", "switch", "me", "system", "health", "openapi", "user", "project", "cluster",
            "dataset", "task", "result", "checkpoint", "log")
#: the commands of the CLI column (it also names flags and variables, as in "reads `HANAMI_PASSWORD`")
CLI = [code for row in EXAMPLES for code in spans(row[1]) if code.split()[0] in ("hanami-torch", *COMMANDS)]


def test_the_tables_were_found():
    assert len(EXAMPLES) >= 40 and len(PYTHON) >= 45 and len(CLI) >= 40


class Placeholder:
    """Any value an example's variables (``task["id"]``, ``net``) stand for."""

    def __getitem__(self, key):
        return "00000000-0000-0000-0000-000000000000"


@pytest.mark.parametrize("code", PYTHON)
def test_python_examples_call_client_methods_with_arguments_they_take(code):
    tree = ast.parse(code)
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)]
    checked = 0
    for call in calls:
        func = call.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in (
                "admin", "alice", "bob", "client"):
            method = getattr(HanamiClient, func.attr, None)
            assert callable(method), f"{code}: HanamiClient has no method {func.attr!r}"
        elif isinstance(func, ast.Name) and func.id == "HanamiClient":
            method = HanamiClient.__init__
        else:
            continue
        arguments = [Placeholder()] * len(call.args)
        keywords = {keyword.arg: Placeholder() for keyword in call.keywords}
        try:
            inspect.signature(method).bind(None, *arguments, **keywords)
        except TypeError as error:
            pytest.fail(f"{code}: {ast.unparse(call)} does not fit {func.attr if hasattr(func, 'attr') else 'HanamiClient'}"
                        f"{inspect.signature(method)}: {error}")
        checked += 1
    assert checked or code.startswith(("from ", "import ")), f"{code}: no client call found"


def _cli_arguments(code: str) -> list[str]:
    words = shlex.split(code.replace("...", "X"))
    if words[0] == "hanami-torch":
        words = words[1:]
    return ["00000000-0000-0000-0000-000000000000" if word == "ID" else word for word in words]


@pytest.mark.parametrize("code", CLI)
def test_cli_examples_parse(code):
    try:
        args = build_parser().parse_args(_cli_arguments(code))
    except SystemExit as error:
        pytest.fail(f"`{code}` does not parse (exit {error.code})")
    assert args.group


def _routes_in_the_table() -> set[tuple[str, str]]:
    found = set()
    for cell in (row[0] for row in table_rows("| route | operation |")):
        for span in spans(cell):
            methods, path = span.split(" ", 1)
            for method in methods.split("/"):
                found.add((method, re.sub(r"{\w+}", "{}", path)))
    return found


def test_the_route_table_lists_every_route():
    served = {(route.method, re.sub(r"{\w+}", "{}", route.path)) for route in ROUTES}
    assert _routes_in_the_table() == served


def test_the_python_blocks_run_against_a_server(server, admin, monkeypatch):
    """The page's story as far as its Python blocks go: alice logs in, creates the MNIST cluster
    of the cluster table, and teaches it a hand-drawn 5 over direct IO."""
    admin.create_project("vision", "Vision lab")
    admin.create_user("alice", "Alice", "her password")
    admin.set_member("vision", "alice", "member")
    blocks = re.findall(r"```python\n(.*?)```", TEXT, re.S)
    assert len(blocks) == 2
    printed: list[str] = []

    def recording_print(*args, **kwargs):
        text = io.StringIO()
        builtins.print(*args, **{**kwargs, "file": text})
        printed.append(text.getvalue().rstrip("\n"))

    namespace = {"HanamiClient": HanamiClient, "print": recording_print}
    exec(blocks[0].replace("http://127.0.0.1:11418", server.url), namespace)
    create = next(row[0] for row in EXAMPLES if "create_cluster(\"mnist\"" in row[0])
    for code in spans(create):  # the import, then the call
        exec(code, namespace)
    assert namespace["net"]["n_inputs"] == 784 and namespace["net"]["seed"] == 0
    exec(blocks[1], namespace)
    info = ast.literal_eval(printed[0])
    assert (info["n_inputs"], info["n_outputs"]) == (784, 10)
    shown = re.search(r"print\(asyncio\.run\(talk\(\)\)\)\s+#\s*(\S+)", blocks[1])[1]
    assert printed[-1] == shown == "5"
    assert templates.MNIST == namespace["templates"].MNIST
    namespace["alice"].delete_cluster(namespace["net"]["id"])
