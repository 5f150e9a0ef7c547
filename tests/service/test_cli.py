"""The ``hanami-torch`` command line against the test server."""

from __future__ import annotations

import json
import subprocess
import sys

from .helpers import PASSWORD


def test_cli_round_trip(server, make_member, tmp_path):
    member = make_member()
    env = {"HANAMI_URL": server.url, "HANAMI_TOKEN_FILE": str(tmp_path / "token"), "HANAMI_PASSWORD": PASSWORD,
           "PATH": "/usr/bin:/bin"}

    def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-m", "hanami_torch.client.cli", *args], env=env,
                              capture_output=True, text=True, timeout=60)
        assert not check or done.returncode == 0, done.stderr
        return done

    assert "role" in cli("login", member.user_id).stdout
    assert (tmp_path / "token").stat().st_mode & 0o777 == 0o600
    created = json.loads(cli("--json", "cluster", "create", "net", "--template", "table").stdout)
    assert created["n_inputs"] == 25
    table = cli("cluster", "list").stdout.splitlines()
    assert table[0].split()[:2] == ["ID", "NAME"] and created["id"] in table[1] and "(1-1 of 1)" in table[-1]
    saved = json.loads(cli("--json", "cluster", "save", created["id"], "--name", "cp").stdout)
    cli("checkpoint", "download", saved["id"], str(tmp_path / "cp.safetensors"))
    assert json.loads(cli("--json", "checkpoint", "upload", "copy", str(tmp_path / "cp.safetensors")).stdout)["synapses"] == 0
    missing = cli("cluster", "get", "00000000-0000-0000-0000-000000000000", check=False)
    assert missing.returncode == 1 and "404" in missing.stderr
    assert all(group in cli("--help").stdout for group in ("serve", "cluster", "dataset", "task", "checkpoint"))
    cli("logout")
    assert not (tmp_path / "token").exists()
    denied = cli("--json", "me", check=False)
    assert denied.returncode == 1 and json.loads(denied.stderr)["error"]["status"] == 401
