"""What the service tests share besides fixtures: the test server in a subprocess, user names
and passwords, CSV files, and waiting for a condition the server reaches on its own."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
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
