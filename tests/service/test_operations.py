"""What the service reports about itself and about its users: health, Prometheus metrics, the
system page, the audit log, user updates, and a cluster's seed and training, compared with a
local HanamiCluster (a small MNIST-shaped dataset, so this runs without the MNIST files)."""

from __future__ import annotations

import os
import platform
import re
import socket

import numpy as np
import pytest
import torch

import hanami_torch
from hanami_torch import HanamiCluster, templates
from hanami_torch.client import NotFoundError, UnauthorizedError, UnprocessableError

from .helpers import PASSWORD, unique, write_mnist

SAMPLE = re.compile(r'^(?P<name>[a-z_]+)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$')


def metrics(server) -> dict[tuple[str, str], float]:
    """``{(name, labels): value}`` of the Prometheus text, each line checked for the format."""
    text = server.client().metrics()  # no token needed
    samples, typed = {}, set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if line.startswith("# HELP "):
            continue
        match = SAMPLE.match(line)
        assert match, f"not a Prometheus sample line: {line!r}"
        assert re.sub(r"_(sum|count)$", "", match["name"]) in typed, f"{match['name']} has no # TYPE line before it"
        samples[(match["name"], match["labels"] or "")] = float(match["value"])
    return samples


def test_health_needs_no_token(server):
    assert server.client().health() == {"status": "ok"}


def test_metrics_count_each_request_by_operation_and_status(server, admin, make_member):
    member = make_member()
    missing = "00000000-0000-0000-0000-000000000000"
    before = metrics(server)
    for _ in range(3):
        member.me()
    with pytest.raises(NotFoundError):
        member.get_cluster(missing)
    cluster = member.create_cluster("counted", templates.TABLE)
    after = metrics(server)

    def delta(name, labels=""):
        return after.get((name, labels), 0) - before.get((name, labels), 0)

    assert delta("hanami_http_requests_total", 'operation="get_me",status="200"') == 3
    assert delta("hanami_http_requests_total", 'operation="get_cluster",status="404"') == 1
    assert delta("hanami_http_requests_total", 'operation="create_cluster",status="201"') == 1
    assert delta("hanami_http_request_seconds_count", 'operation="get_me"') == 3
    assert delta("hanami_http_request_seconds_sum", 'operation="get_me"') > 0
    assert delta("hanami_clusters_loaded") == 1
    assert after[("hanami_clusters_loaded", "")] == admin.system()["clusters_loaded"]
    member.delete_cluster(cluster["id"])
    assert metrics(server)[("hanami_clusters_loaded", "")] == after[("hanami_clusters_loaded", "")] - 1


def test_system_reports_this_server(admin, make_member):
    system = admin.system()
    assert (system["version"], system["torch"], system["python"]) == (
        hanami_torch.__version__, torch.__version__, platform.python_version())
    assert system["hostname"] == socket.gethostname()
    # the session's server runs with the defaults: a task worker per CPU, two IO threads
    assert system["threads"]["task_workers"] == max(1, os.cpu_count() or 1)
    assert system["threads"]["io_workers"] == 2
    assert system["devices"][0] == {"type": "cpu", "name": system["devices"][0]["name"], "count": os.cpu_count()}
    assert len(system["devices"]) == 1 + (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    assert system["queued"] >= 0 and system["busy_clusters"] >= 0 and system["uptime_s"] > 0
    member = make_member()
    cluster = member.create_cluster("one more", templates.TABLE)
    assert admin.system()["clusters_loaded"] == system["clusters_loaded"] + 1
    member.delete_cluster(cluster["id"])
    assert admin.system()["clusters_loaded"] == system["clusters_loaded"]


def test_audit_log_records_each_changing_request_with_its_status(admin, make_member):
    member = make_member()
    cluster = member.create_cluster("audited", templates.TABLE)  # 201
    member.get_cluster(cluster["id"])  # a GET changes nothing: not recorded
    missing = "00000000-0000-0000-0000-000000000000"
    with pytest.raises(NotFoundError):
        member.delete_cluster(missing)  # 404
    with pytest.raises(UnprocessableError):
        member.request("POST", "/v1/clusters", json_body={"name": "x", "template": "x", "checkpoint_id": missing})
    member.delete_cluster(cluster["id"])  # 204
    expected = [("DELETE", f"/v1/clusters/{cluster['id']}", 204), ("POST", "/v1/clusters", 422),
                ("DELETE", f"/v1/clusters/{missing}", 404), ("POST", "/v1/clusters", 201)]

    own = member.audit_log()
    assert own["total"] == 4  # the member's own entries only: their login is not a change of theirs
    assert [(e["method"], e["path"], e["status"]) for e in own["items"]] == expected  # newest first
    assert {e["user_id"] for e in own["items"]} == {member.user_id}
    ids = [e["id"] for e in own["items"]]
    assert ids == sorted(ids, reverse=True)
    assert member.audit_log(limit=2, offset=1)["items"] == own["items"][1:3]
    assert admin.audit_log(user_id=member.user_id)["items"] == own["items"]
    # nothing changed since: the newest entries of all are the member's
    assert admin.audit_log(limit=4)["items"] == own["items"]


def test_user_updates_take_effect_at_once(server, admin):
    user = unique("renamed")
    admin.create_user(user, "Old Name", PASSWORD)
    client = server.client(user, PASSWORD)
    assert admin.update_user(user, name="New Name")["name"] == "New Name"
    assert admin.get_user(user)["name"] == "New Name" and client.me()["name"] == "New Name"
    unchanged = admin.update_user(user)  # no field: nothing changes
    assert (unchanged["name"], unchanged["is_admin"]) == ("New Name", False)

    new_password = "another-password-2"
    assert admin.update_user(user, password=new_password)["id"] == user
    with pytest.raises(UnauthorizedError):
        server.client(user, PASSWORD)
    assert server.client(user, new_password).me()["name"] == "New Name"
    with pytest.raises(UnprocessableError):
        admin.update_user(user, password="short")
    with pytest.raises(NotFoundError):
        admin.update_user(unique("nobody"), name="x")
    admin.delete_user(user)


def test_cluster_seed_training_and_accuracy_equal_the_library(make_member, tmp_path):
    """The seed given at create builds the network a local HanamiCluster builds with that seed;
    a train task, a request task and the accuracy then give what the library gives."""
    member = make_member()
    images, labels = write_mnist(tmp_path, 40, seed=1)
    dataset = member.upload_mnist("digits", images, labels)
    template = templates.mnist(64)
    cluster = member.create_cluster("seeded", template, seed=7)
    assert cluster["seed"] == 7 and member.get_cluster(cluster["id"])["seed"] == 7

    task = member.wait_task(member.create_task(cluster["id"], dataset["id"], "train", epochs=2)["id"], poll_s=0.05)
    assert task["state"] == "finished", task["error"]
    request = member.wait_task(member.create_task(cluster["id"], dataset["id"], "request")["id"], poll_s=0.05)
    assert request["state"] == "finished", request["error"]

    pixels = torch.from_numpy(np.frombuffer(images.read_bytes(), np.uint8, offset=16).reshape(40, 784).astype(np.float32))
    digits = torch.from_numpy(np.frombuffer(labels.read_bytes(), np.uint8, offset=8).astype(np.int64))
    targets = torch.nn.functional.one_hot(digits, 10).float()
    local, other_seed = HanamiCluster(template, seed=7), HanamiCluster(template, seed=0)
    for network in (local, other_seed):
        for _ in range(2):
            network.learn_many(pixels, targets)
    outputs = local.predict_many(pixels)
    assert not torch.equal(other_seed.predict_many(pixels), outputs)  # the seed makes a difference here

    stats = member.get_cluster(cluster["id"])["stats"]
    assert (stats["synapses"], stats["sections"], stats["steps"]) == (
        local.stats()["synapses"], local.stats()["sections"], local.stats()["steps"])
    data = member.result_data(request["result_id"], limit=40)
    assert data["outputs"] == outputs.numpy().round(6).tolist()
    assert data["classes"] == outputs.argmax(1).tolist()
    correct = int((outputs.argmax(1) == digits).sum())
    accuracy = member.accuracy(request["result_id"], dataset["id"])
    assert (accuracy["correct"], accuracy["total"]) == (correct, 40)
    assert accuracy["accuracy"] == pytest.approx(100 * correct / 40)
