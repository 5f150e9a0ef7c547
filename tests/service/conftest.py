"""Fixtures of the service tests: a real server in a subprocess on a free loopback port, and
logged-in clients. Without the service extra (aiohttp, PyJWT) the tests skip, and fail in CI
(tests/support.py): ``make test`` installs both."""

from __future__ import annotations

import pytest
from support import require

require("aiohttp", "the service tests need the service extra: pip install 'hanami_torch[service]'")
require("jwt", "the service tests need PyJWT: pip install 'hanami_torch[service]'")

from hanami_torch.client import HanamiClient  # noqa: E402

from .helpers import ADMIN, ADMIN_PASSWORD, PASSWORD, ServerProcess, unique  # noqa: E402


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
