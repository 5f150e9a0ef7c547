"""Fixtures of the service tests: a real server in a subprocess on a free loopback port, and
logged-in clients.  The tests skip when the service extra (aiohttp, PyJWT) is missing."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytest.importorskip("aiohttp", reason="the service tests need the service extra: pip install 'hanami_torch[service]'")
pytest.importorskip("jwt", reason="the service tests need PyJWT: pip install 'hanami_torch[service]'")

from hanami_torch.client import HanamiClient  # noqa: E402

ADMIN, ADMIN_PASSWORD = "admin", "admin-password-1"
PASSWORD = "member-password-1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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
        self.process = subprocess.Popen(command, env=env, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
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


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """One server for the session's tests; short socket timeout so idle sockets can be tested."""
    home = tmp_path_factory.mktemp("hanami_home")
    process = ServerProcess(home, "--ws-idle-timeout-s", "3", "--max-upload-bytes", str(64 << 20)).start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def admin(server) -> HanamiClient:
    return server.client(ADMIN, ADMIN_PASSWORD)


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@pytest.fixture
def make_member(server, admin):
    """``make_member(project_id=None, role="member")`` -> a logged-in client of a new user in a
    (new, unless given) project."""

    def make(project_id: str | None = None, role: str = "member") -> HanamiClient:
        if project_id is None:
            project_id = unique("proj")
            admin.create_project(project_id, "a project")
        user_id = unique("user")
        admin.create_user(user_id, "A User", PASSWORD)
        admin.set_member(project_id, user_id, role)
        client = server.client(user_id, PASSWORD)
        client.user_id, client.project_id = user_id, project_id
        return client

    return make
