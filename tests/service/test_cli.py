"""The ``hanami-torch`` command line against the test server."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from hanami_torch import templates

from .helpers import PASSWORD, unique, write_csv, write_mnist


def run_cli(env: dict, *args: str, stdin: str | None = None, check: bool = True,
            timeout: float = 120) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "hanami_torch.client.cli", *args], env=env, input=stdin,
                          capture_output=True, text=True, timeout=timeout)
    assert not check or done.returncode == 0, done.stderr
    return done


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


def test_cli_password_stdin_uploads_and_waiting_tasks(server, admin, make_member, tmp_path):
    member = make_member()
    # no HANAMI_PASSWORD: the password comes from standard input
    env = {"HANAMI_URL": server.url, "HANAMI_TOKEN_FILE": str(tmp_path / "token"), "PATH": "/usr/bin:/bin"}

    def cli(*args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        return run_cli(env, *args, stdin=stdin, check=check)

    wrong = cli("--json", "login", member.user_id, "--password-stdin", stdin="not-the-password\n", check=False)
    assert wrong.returncode == 1 and json.loads(wrong.stderr)["error"]["status"] == 401
    assert not (tmp_path / "token").exists()
    logged_in = json.loads(cli("--json", "login", member.user_id, "--password-stdin", stdin=PASSWORD + "\n").stdout)
    assert (logged_in["user_id"], logged_in["project_id"]) == (member.user_id, member.project_id)

    # uploads
    series = json.loads(cli("--json", "dataset", "upload-csv", "series", write_csv(tmp_path / "s.csv", 60)).stdout)
    assert (series["type"], series["samples"], series["columns"]) == ("csv", 60, ["test_input", "test_output"])
    images, labels = write_mnist(tmp_path, 20, seed=2)
    digits = json.loads(cli("--json", "dataset", "upload-mnist", "digits", "--images", str(images),
                            "--labels", str(labels)).stdout)
    assert (digits["type"], digits["samples"], digits["inputs"], digits["outputs"]) == ("mnist", 20, 784, 10)
    assert {d["id"] for d in member.list_datasets()["items"]} == {series["id"], digits["id"]}

    # a cluster from a template file with a seed; tasks that the command waits for
    template = tmp_path / "digits.txt"
    template.write_text(templates.mnist(20))
    cluster = json.loads(cli("--json", "cluster", "create", "net", "--template", str(template), "--seed", "5").stdout)
    assert (cluster["seed"], cluster["n_inputs"], cluster["n_outputs"]) == (5, 784, 10)
    trained = cli("task", "create", "--cluster", cluster["id"], "--dataset", digits["id"], "--epochs", "2", "--wait")
    assert re.search(r"finished\s+100\.0 %", trained.stderr)  # the progress line
    assert re.search(r"^state\s+finished$", trained.stdout, re.M) and re.search(r"^samples_done\s+40$", trained.stdout, re.M)
    request = json.loads(cli("--json", "task", "create", "--cluster", cluster["id"], "--dataset", digits["id"],
                             "--type", "request", "--wait").stdout)
    assert request["state"] == "finished" and request["result_id"]
    assert member.get_task(request["id"])["state"] == "finished"  # --wait returned when it had ended
    accuracy = json.loads(cli("--json", "result", "accuracy", request["result_id"], "--dataset", digits["id"]).stdout)
    data = member.result_data(request["result_id"], limit=20)
    correct = sum(c == int(label) for c, label in zip(data["classes"], labels.read_bytes()[8:]))
    assert (accuracy["correct"], accuracy["total"]) == (correct, 20)

    # an admin changes the member's name and password, the new password read from standard input
    updated = run_cli({**env, "HANAMI_TOKEN": admin.token}, "--json", "user", "update", member.user_id, "--name",
                      "Renamed", "--password", "--password-stdin", stdin="a-new-password-9\n")
    assert json.loads(updated.stdout)["name"] == "Renamed"
    assert cli("login", member.user_id, "--password-stdin", stdin=PASSWORD + "\n", check=False).returncode == 1
    cli("login", member.user_id, "--password-stdin", stdin="a-new-password-9\n")
    assert json.loads(cli("--json", "me").stdout)["name"] == "Renamed"


def test_cli_serve_flags(tmp_path):
    help_text = run_cli({"PATH": "/usr/bin:/bin"}, "serve", "--help").stdout
    for flag in ("--host", "--port", "--home", "--secret-file", "--policy-file", "--workers", "--io-threads",
                 "--op-threads", "--max-upload-bytes", "--max-neurons", "--token-lifetime-s", "--ws-idle-timeout-s"):
        assert flag in help_text, flag
    bad = run_cli({"PATH": "/usr/bin:/bin"}, "serve", "--port", "not-a-port", check=False)
    assert bad.returncode == 2 and "--port" in bad.stderr
    # a bind beyond loopback without a secret of one's own is refused before anything is written
    home = tmp_path / "never"
    refused = run_cli({"PATH": "/usr/bin:/bin", "HANAMI_ADMIN_USER": "admin", "HANAMI_ADMIN_PASSWORD": PASSWORD},
                      "serve", "--host", "0.0.0.0", "--port", "1", "--home", str(home), check=False, timeout=60)
    assert refused.returncode != 0 and "refusing to listen on 0.0.0.0" in refused.stderr
    assert not home.exists()
