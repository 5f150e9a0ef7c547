"""What the service tests share besides fixtures: the test server in a subprocess, user names
and passwords, CSV files, waiting for a condition the server reaches on its own, and answers
checked against the OpenAPI document."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from hanami_torch.client import HanamiClient

ADMIN, ADMIN_PASSWORD = "admin", "admin-password-1"
PASSWORD = "member-password-1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _die_with_parent() -> None:
    """In the server's process before it starts (Linux): SIGTERM when the test process ends, also
    when a test's timeout ends the whole session (pytest-timeout's "thread" method) before the
    fixtures could stop the server."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


class ServerProcess:
    """``hanami-torch serve`` in a subprocess, started and stopped by the tests."""

    def __init__(self, home: Path, *extra: str, secret: bytes | None = None):
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra = extra
        self.secret_file = None
        if secret is not None:
            self.secret_file = home.parent / f"secret-{uuid.uuid4().hex}"
            self.secret_file.write_bytes(secret)
        self.process: subprocess.Popen | None = None
        self.log = home.parent / f"server-{self.port}.log"

    def start(self) -> ServerProcess:
        env = dict(os.environ, HANAMI_ADMIN_USER=ADMIN, HANAMI_ADMIN_PASSWORD=ADMIN_PASSWORD)
        if self.secret_file:
            env["HANAMI_SECRET_FILE"] = str(self.secret_file)
        command = [sys.executable, "-m", "hanami_torch.client.cli", "serve", "--port", str(self.port),
                   "--home", str(self.home), *self.extra]
        self.process = subprocess.Popen(command, env=env, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
                                        preexec_fn=_die_with_parent)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"the server did not start:\n{self.log.read_text()}")

    def stop(self) -> int:
        if self.process is None:
            return 0
        self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.process = None
        return code

    def client(self, user: str | None = None, password: str | None = None, project: str | None = None) -> HanamiClient:
        client = HanamiClient(self.url)
        if user is not None:
            client.login(user, password, project)
        return client


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def write_csv(path, lines: int = 80) -> str:
    """A CSV series of ``lines`` rows with the TABLE template's column names; returns the path."""
    rows = ["test_input,test_output"] + [f"{(i * 7) % 13},{(i * 3) % 5}" for i in range(lines)]
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def wait_for(condition: Callable[[], object], what: str, poll_s: float = 0.02):
    """Waits until ``condition()`` returns something true, and returns it, for a state the server
    reaches on its own (a task that starts, a partial upload that is removed). There is no
    deadline here: the test's timeout (pytest-timeout, pyproject.toml) ends a wait that never
    ends, and the stack it prints shows ``what`` was awaited."""
    while True:
        value = condition()
        if value:
            return value
        time.sleep(poll_s)


# -- answers checked against the OpenAPI document ----------------------------------------------------

DATE_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")


@dataclass
class Answer:
    """One HTTP answer as it came: status, media type (without parameters) and body bytes."""

    status: int
    media_type: str
    data: bytes

    def json(self):
        return json.loads(self.data)


def send(client: HanamiClient, method: str, path: str, *, query: dict | None = None, json_body=None,
         body: bytes | None = None, headers: dict | None = None) -> Answer:
    """One request with ``client``'s token, whatever its status (the client raises on errors and
    hides the status of a success, which :func:`check_answer` needs)."""
    parts = urllib.parse.urlsplit(client.url)
    target = urllib.parse.quote(parts.path.rstrip("/") + path) + (
        "?" + urllib.parse.urlencode(query) if query else "")
    headers = dict(headers or {})
    if client.token:
        headers["Authorization"] = f"Bearer {client.token}"
    if json_body is not None:
        body = json.dumps(json_body).encode()
        headers["Content-Type"] = "application/json"
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        connection.request(method, target, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    media_type = (response.getheader("Content-Type") or "").split(";")[0].strip()
    return Answer(response.status, media_type, data)


def _has_type(value, type_: str) -> bool:
    return {
        "null": value is None,
        "boolean": isinstance(value, bool),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, (int, float)) and not isinstance(value, bool),
        "string": isinstance(value, str),
        "array": isinstance(value, list),
        "object": isinstance(value, dict),
    }[type_]


def conforms(value, schema: dict, components: dict, where: str = "body") -> list[str]:
    """What in ``value`` breaks ``schema`` (the JSON-schema words the document uses: $ref, type,
    enum, pattern, lengths, minimum/maximum, format date-time, items, properties, required,
    additionalProperties); an empty list when it fits. Written here, apart from the service's own
    validation, so that a shape the service gets wrong is not checked by the same mistake."""
    if "$ref" in schema:
        return conforms(value, components[schema["$ref"].rsplit("/", 1)[1]], components, where)
    types = schema.get("type")
    if types is not None:
        types = types if isinstance(types, list) else [types]
        if not any(_has_type(value, type_) for type_ in types):
            return [f"{where} is {type(value).__name__} {str(value)[:60]!r}, the document says {'|'.join(types)}"]
    if value is None:
        return []
    problems = []
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{where} is {value!r}, not one of {schema['enum']}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", len(value)):
            problems.append(f"{where} has {len(value)} characters, outside the document's lengths")
        if "pattern" in schema and not re.fullmatch(schema["pattern"], value):
            problems.append(f"{where} {value[:60]!r} does not match {schema['pattern']}")
        if schema.get("format") == "date-time" and not DATE_TIME.fullmatch(value):
            problems.append(f"{where} {value[:60]!r} is not a date-time")
    if _has_type(value, "number"):
        if "minimum" in schema and value < schema["minimum"] or "maximum" in schema and value > schema["maximum"]:
            problems.append(f"{where} is {value}, outside {schema.get('minimum')}..{schema.get('maximum')}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            problems += conforms(item, schema["items"], components, f"{where}[{index}]")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        problems += [f"{where} lacks {name!r}" for name in schema.get("required", []) if name not in value]
        if schema.get("additionalProperties", True) is False:
            problems += [f"{where} has {name!r}, which the document does not list" for name in value
                         if name not in properties]
        for name, item in value.items():
            if name in properties:
                problems += conforms(item, properties[name], components, f"{where}.{name}")
    return problems


def check_answer(document: dict, path: str, method: str, answer: Answer):
    """Fails unless ``answer`` is one the document declares for the operation: a declared status
    (a success must be *the* declared success), the declared media type, and a JSON body of the
    declared shape (errors: the Error shape); returns the decoded JSON body (None without one)."""
    operation = document["paths"][path][method.lower()]
    declared = operation["responses"].get(str(answer.status))
    where = f"{method.upper()} {path} -> {answer.status}"
    if answer.status >= 400:
        # 404 and 405 may answer any path (unknown ids fail their pattern only at the router)
        assert declared is not None or answer.status in (404, 405), f"{where}: status not in the document"
        declared = declared or operation["responses"]["500"]
    else:
        success = [status for status in operation["responses"] if int(status) < 400]
        assert declared is not None, f"{where}: the document declares success as {success}"
    content = declared.get("content")
    if not content:
        assert answer.data == b"", f"{where}: the document declares no body, got {answer.data[:80]!r}"
        return None
    assert answer.media_type in content, f"{where}: {answer.media_type!r} is not one of {list(content)}"
    if answer.media_type != "application/json":
        assert answer.data, f"{where}: an empty {answer.media_type} body"
        return answer.data
    body = answer.json()
    problems = conforms(body, content["application/json"]["schema"], document["components"]["schemas"])
    assert not problems, f"{where}: " + "; ".join(problems[:5])
    return body


def write_mnist(folder: Path, count: int, seed: int = 0) -> tuple[Path, Path]:
    """A small MNIST-shaped dataset as IDX files (28x28 images of random strokes, labels 0..9):
    ``(images, labels)`` paths in ``folder``."""
    import numpy as np

    generator = np.random.default_rng(seed)
    pixels = np.where(generator.random((count, 28 * 28)) < 0.2, generator.integers(1, 256, (count, 28 * 28)), 0)
    labels = generator.integers(0, 10, count)
    images, label_file = folder / f"images-{seed}-{count}.idx", folder / f"labels-{seed}-{count}.idx"
    images.write_bytes((2051).to_bytes(4, "big") + count.to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
                       + pixels.astype(np.uint8).tobytes())
    label_file.write_bytes((2049).to_bytes(4, "big") + count.to_bytes(4, "big") + labels.astype(np.uint8).tobytes())
    return images, label_file
