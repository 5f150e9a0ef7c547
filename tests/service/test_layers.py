"""The layers under HTTP, tested without it: schema validation, storage and visibility, the
policy, passwords and tokens, dataset parsing and the CSV windows, the Service class; and that
the core package never imports the service."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
import torch

from hanami_torch import templates
from hanami_torch.service import Config, Service
from hanami_torch.service import datasets
from hanami_torch.service.auth import Policy, check_password, hash_password
from hanami_torch.service.errors import Conflict, Forbidden, NotFound, Unauthorized, Unprocessable
from hanami_torch.service.schema import Field, Schema
from hanami_torch.service.store import Scope, Store


def test_the_core_never_imports_the_service():
    code = "import sys, hanami_torch; hanami_torch.HanamiCluster; print('aiohttp' in sys.modules, 'jwt' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.split() == ["False", "False"]


def test_schema_validation_is_strict():
    schema = Schema("S", {"n": Field("integer", minimum=1, maximum=5), "name": Field("string", pattern="[a-z]+"),
                          "flag": Field("boolean").optional(False), "list": Field("array", items=Field("number"))
                          .optional()})
    assert schema.validate({"n": 2.0, "name": "ab"}) == {"n": 2, "name": "ab", "flag": False, "list": None}
    for bad in ({"n": True, "name": "a"}, {"n": 9, "name": "a"}, {"n": 1, "name": "A"}, {"n": 1},
                {"n": 1, "name": "a", "x": 1}, {"n": 1, "name": "a", "list": [1, "2"]}, [], {"n": 1.5, "name": "a"},
                {"n": 1, "name": "a", "flag": None}):
        with pytest.raises(Unprocessable):
            schema.validate(bad)
    query = Schema("Q", {"limit": Field("integer", minimum=1).optional(5)})
    assert query.validate_query({}) == {"limit": 5}
    with pytest.raises(Unprocessable):
        query.validate_query({"limit": "1e3"})


def test_store_scopes_and_sql_is_bound(tmp_path):
    store = Store(tmp_path / "db.sqlite")
    store.add_user("alice", "Alice", "h", False, None)
    store.add_project("p1", "P", None)
    with pytest.raises(Conflict):
        store.add_project("p1", "P", None)
    row = {"name": "x'); DROP TABLE users; --", "project_id": "p1", "owner_id": "alice", "template": "t", "seed": 0,
           "n_inputs": 1, "n_outputs": 1}
    store.add_resource("clusters", {"id": "c1", **row})
    with pytest.raises(Conflict):  # same name, same owner and project
        store.add_resource("clusters", {"id": "c2", **row})
    assert store.find_user("alice")  # the table survived the name
    owner = Scope("alice", "p1", "member")
    assert store.resource("clusters", "c1", owner)["name"] == row["name"]
    for scope in (Scope("bob", "p1", "member"), Scope("alice", "p2", "member"), Scope("bob", "p2", "project_admin"),
                  Scope("alice", None, "user")):
        with pytest.raises(NotFound):
            store.resource("clusters", "c1", scope)
    assert store.resource("clusters", "c1", Scope("bob", "p1", "project_admin"))
    assert store.resource("clusters", "c1", Scope("root", None, "admin"))
    with pytest.raises(Conflict):
        store.delete_project("p1")  # still holds a cluster
    store.close()
    assert Store(tmp_path / "db.sqlite").find_project("p1")  # reopens the versioned schema


def test_policy_defaults_to_deny():
    policy = Policy({"member": ["get_me"], "admin": ["*"]})
    assert policy.allows("member", "get_me") and not policy.allows("member", "list_users")
    assert policy.allows("admin", "anything") and not policy.allows("project_admin", "get_me")
    with pytest.raises(ValueError):
        Policy({"root": ["*"]})


def test_passwords_are_salted_scrypt():
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first != second and first.startswith("scrypt$")
    assert check_password("correct horse", first) and not check_password("wrong", first)
    assert not check_password("x", None) and not check_password("x", "garbage")


def test_csv_windows_follow_the_series(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("test_input,test_output,unused\n" + "".join(f"{i},{100 + i},TRUE\n" for i in range(40)))
    table, columns = datasets._parse_csv(path)
    data = datasets.Data("csv", table=torch.from_numpy(table), columns=columns)
    from hanami_torch import HanamiCluster

    cluster = HanamiCluster(templates.TABLE)  # input width 25, output width 5
    inputs, targets = datasets.samples(data, cluster, train=True)
    assert inputs.shape == (15, 25) and targets.shape == (15, 5)
    assert inputs[0].tolist() == list(range(25)) and targets[0].tolist() == [121, 122, 123, 124, 125]
    assert inputs[-1, -1] == 38 and targets[-1, -1] == 139
    for text in ("a\n", "a,b\n1\n", "a,a\n1,2\n", "a,b\n1,nan\n", "a,b\n1,zwei\n"):
        path.write_text(text)
        with pytest.raises(Unprocessable):
            datasets._parse_csv(path)


def test_mnist_files_are_checked(tmp_path):
    images, labels = tmp_path / "i", tmp_path / "l"
    images.write_bytes((2051).to_bytes(4, "big") + (2).to_bytes(4, "big") + (2).to_bytes(4, "big") * 2 + bytes(8))
    labels.write_bytes((2049).to_bytes(4, "big") + (2).to_bytes(4, "big") + bytes([3, 9]))
    assert datasets._check_mnist(images, labels)["samples"] == 2
    for broken in (bytes([3, 10]), bytes([3])):
        labels.write_bytes((2049).to_bytes(4, "big") + (2).to_bytes(4, "big") + broken)
        with pytest.raises(Unprocessable):
            datasets._check_mnist(images, labels)


def test_service_without_http(tmp_path):
    service = Service(Config(home=tmp_path, admin_user="root", admin_password="root-password", workers=1))
    try:
        admin = service.auth.check_token(service.login("root", "root-password", None, "test")["token"])
        service.create_project(admin, "lab", "Lab")
        service.create_user(admin, "ann", "Ann", "ann-password", False)
        with pytest.raises(Unauthorized):
            service.login("ann", "bad-password", None, "test")
        service.set_member(admin, "lab", "ann", "member")
        ann = service.auth.check_token(service.login("ann", "ann-password", None, "test")["token"])
        assert (ann.project_id, ann.role) == ("lab", "member")
        with pytest.raises(Forbidden):
            asyncio.run(service.create_cluster(admin, "x", templates.TABLE, None, 0))  # admin without a project
        cluster = asyncio.run(service.create_cluster(ann, "net", templates.TABLE, None, 0))
        live = service.cluster_for_io(ann, cluster["id"])

        async def one_step():
            return await service.direct_io.run(live, torch.full((25,), 3.0), torch.tensor([1.0, 0, 0, 0, 0]))

        assert asyncio.run(one_step()).shape == (5,)
        assert asyncio.run(service.get_cluster(ann, cluster["id"]))["stats"]["steps"] == 1
        with pytest.raises(Conflict):
            service.delete_user(admin, "root")
        service.logout(ann)
        with pytest.raises(Unauthorized):
            service.auth.check_token(service.login("ann", "ann-password", "nope", "test")["token"])
    finally:
        service.close()


def test_first_start_needs_an_admin(tmp_path, monkeypatch):
    monkeypatch.delenv("HANAMI_ADMIN_USER", raising=False)
    with pytest.raises(SystemExit, match="HANAMI_ADMIN_USER"):
        Service(Config(home=tmp_path, admin_user=None, admin_password=None))


def test_non_loopback_bind_needs_a_secret():
    with pytest.raises(SystemExit, match="HANAMI_SECRET_FILE"):
        Config(host="0.0.0.0").check_bind(secret_configured=False)
    Config(host="0.0.0.0").check_bind(secret_configured=True)
    Config(host="::1").check_bind(secret_configured=False)
