"""Security of the service: visibility of every resource type, token life and death, upload
rejections that leave nothing behind, strict validation, no path traversal, rate limits."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.client
import json
import socket
import time

import jwt
import pytest

from hanami_torch import templates
from hanami_torch.client import (BadRequestError, ForbiddenError, HanamiClient, HanamiError, NotFoundError,
                                 PayloadTooLargeError, TooManyRequestsError, UnauthorizedError, UnprocessableError)

from .helpers import ADMIN, PASSWORD, unique, wait_for, write_csv


@pytest.fixture
def owned(make_member, tmp_path):
    """A member with one resource of every type, and a second member of the same project."""
    owner = make_member()
    cluster = owner.create_cluster("table", templates.TABLE)
    dataset = owner.upload_csv("series", write_csv(tmp_path / "series.csv"))
    task = owner.wait_task(owner.create_task(cluster["id"], dataset["id"], "request")["id"], poll_s=0.05, timeout_s=60)
    assert task["state"] == "finished", task["error"]
    checkpoint = owner.save_checkpoint(cluster["id"], "cp")
    resources = {"cluster": cluster, "dataset": dataset, "task": task, "checkpoint": checkpoint,
                 "result": owner.get_result(task["result_id"])}
    return owner, resources


def _reads(client: HanamiClient, kind: str, resource_id: str):
    return {"cluster": client.get_cluster, "dataset": client.get_dataset, "task": client.get_task,
            "result": client.get_result, "checkpoint": client.get_checkpoint}[kind](resource_id)


def _deletes(client: HanamiClient, kind: str, resource_id: str):
    return {"cluster": client.delete_cluster, "dataset": client.delete_dataset, "task": client.delete_task,
            "result": client.delete_result, "checkpoint": client.delete_checkpoint}[kind](resource_id)


def _lists(client: HanamiClient, kind: str):
    method = {"cluster": client.list_clusters, "dataset": client.list_datasets, "task": client.list_tasks,
              "result": client.list_results, "checkpoint": client.list_checkpoints}[kind]
    return {item["id"] for item in client.pages(method)}


@pytest.mark.parametrize("where", ["same project", "other project"])
def test_members_cannot_see_or_touch_others_resources(owned, make_member, where):
    owner, resources = owned
    other = make_member(owner.project_id if where == "same project" else None)
    for kind, resource in resources.items():
        with pytest.raises(NotFoundError):
            _reads(other, kind, resource["id"])
        with pytest.raises(NotFoundError):
            _deletes(other, kind, resource["id"])
        assert resource["id"] not in _lists(other, kind)
        assert _reads(owner, kind, resource["id"])["id"] == resource["id"]  # still there
    cluster, dataset = resources["cluster"]["id"], resources["dataset"]["id"]
    with pytest.raises(NotFoundError):
        other.create_task(cluster, dataset, "train")
    mine = other.create_cluster("mine", templates.TABLE)
    with pytest.raises(NotFoundError):
        other.create_task(mine["id"], dataset, "train")
    with pytest.raises(NotFoundError):
        other.restore_checkpoint(mine["id"], resources["checkpoint"]["id"])
    with pytest.raises(NotFoundError):
        other.create_cluster("copy", checkpoint_id=resources["checkpoint"]["id"])
    with pytest.raises(NotFoundError):
        other.download_checkpoint(resources["checkpoint"]["id"], "/dev/null")
    with pytest.raises(NotFoundError):
        other.result_data(resources["result"]["id"])
    with pytest.raises(NotFoundError):
        other.accuracy(resources["result"]["id"], dataset)
    with pytest.raises(NotFoundError):
        other.list_tasks(cluster_id=cluster)
    with pytest.raises(NotFoundError):
        asyncio.run(_open_socket(other, cluster))


def test_project_admin_sees_the_project_only(owned, make_member):
    owner, resources = owned
    boss = make_member(owner.project_id, role="project_admin")
    stranger_boss = make_member(role="project_admin")
    for kind, resource in resources.items():
        assert _reads(boss, kind, resource["id"])["id"] == resource["id"]
        assert resource["id"] in _lists(boss, kind)
        with pytest.raises(NotFoundError):
            _reads(stranger_boss, kind, resource["id"])
    assert owner.user_id in [m["user_id"] for m in boss.list_members(owner.project_id)["items"]]
    with pytest.raises(ForbiddenError):
        stranger_boss.set_member(owner.project_id, stranger_boss.user_id, "member")
    with pytest.raises(NotFoundError):
        stranger_boss.list_members(owner.project_id)


async def _open_socket(client, cluster_id):
    async with client.direct_io(cluster_id):
        pass


def test_members_cannot_use_admin_endpoints(make_member):
    member = make_member()
    for call in (lambda: member.create_user(unique("u"), "x", PASSWORD), member.list_users,
                 lambda: member.get_user(member.user_id), lambda: member.delete_user(ADMIN),
                 lambda: member.create_project(unique("p"), "x"), lambda: member.delete_project(member.project_id),
                 lambda: member.set_member(member.project_id, member.user_id, "project_admin"),
                 member.error_log, member.system, lambda: member.audit_log(user_id=ADMIN)):
        with pytest.raises(ForbiddenError):
            call()
    assert member.me()["role"] == "member"


def test_deleted_demoted_or_removed_users_lose_access_at_once(server, admin, make_member):
    member = make_member()
    member.list_clusters()
    admin.delete_user(member.user_id)
    with pytest.raises(UnauthorizedError):
        member.list_clusters()

    user = unique("boss")
    admin.create_user(user, "Boss", PASSWORD, is_admin=True)
    boss = server.client(user, PASSWORD)
    boss.list_users()
    admin.update_user(user, is_admin=False)
    with pytest.raises((ForbiddenError, UnauthorizedError)):
        boss.list_users()

    member = make_member()
    admin.remove_member(member.project_id, member.user_id)
    with pytest.raises(UnauthorizedError):
        member.list_clusters()


def test_logout_revokes_the_token(make_member):
    member = make_member()
    token = member.token
    member.logout()
    member.token = token
    with pytest.raises(UnauthorizedError):
        member.me()


def _token(claims: dict, key: bytes, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


def test_expired_forged_and_unsigned_tokens_are_rejected(server):
    secret = (server.home / "token_secret").read_bytes().strip()
    now = int(time.time())
    good = {"sub": ADMIN, "pid": None, "iat": now, "exp": now + 600, "jti": "t1"}
    assert HanamiClient(server.url, _token(good, secret)).me()["user_id"] == ADMIN  # the recipe is right

    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "JWT"}).encode()).rstrip(b"=")
    payload = base64.urlsafe_b64encode(json.dumps(good).encode()).rstrip(b"=")
    unsigned = (header + b"." + payload + b".").decode()
    bad_tokens = {
        "expired": _token({**good, "iat": now - 7200, "exp": now - 3600}, secret),
        "forged": _token(good, b"x" * 64),
        "alg none": unsigned,
        "HS512": _token(good, secret * 2, "HS512"),
        "no jti": _token({k: v for k, v in good.items() if k != "jti"}, secret),
        "unknown user": _token({**good, "sub": "ghost"}, secret),
        "garbage": "not.a.token",
    }
    for name, token in bad_tokens.items():
        with pytest.raises(UnauthorizedError):
            HanamiClient(server.url, token).me()
    for header_value in ("", "Basic abc", "Bearer", "bearer  "):
        with pytest.raises(UnauthorizedError):
            HanamiClient(server.url).request("GET", "/v1/me", headers={"Authorization": header_value})


def test_login_is_rate_limited(server, admin):
    user = unique("victim")
    admin.create_user(user, "Victim", PASSWORD)
    client = server.client()
    for _ in range(5):
        with pytest.raises(UnauthorizedError):
            client.login(user, "wrong-password")
    with pytest.raises(TooManyRequestsError):
        client.login(user, PASSWORD)  # even the right password waits now


def _leftovers(server) -> tuple:
    return (sorted(p.name for p in (server.home / "tmp").iterdir()),
            sorted(p.name for p in (server.home / "datasets").iterdir()))


def test_bad_uploads_are_rejected_and_leave_nothing_behind(server, make_member, tmp_path):
    member = make_member()
    csv_path = write_csv(tmp_path / "t.csv")
    before = _leftovers(server)
    good_sha = hashlib.sha256(open(csv_path, "rb").read()).hexdigest()
    body = (b"--B\r\nContent-Disposition: form-data; name=\"table\"; filename=\"../../etc/x\"\r\n\r\n"
            + open(csv_path, "rb").read() + b"\r\n--B--\r\n")
    headers = {"Content-Type": "multipart/form-data; boundary=B"}

    def upload(query: dict, data: bytes = body, extra: dict | None = None):
        return member.request("POST", "/v1/datasets", query={"name": "t", "type": "csv", **query}, body=data,
                              headers={**headers, **(extra or {})})

    with pytest.raises(UnprocessableError, match="SHA-256"):
        upload({"table_sha256": "0" * 64})
    with pytest.raises(UnprocessableError):
        upload({})  # no checksum declared
    with pytest.raises(UnprocessableError):
        upload({"table_sha256": good_sha, "images_sha256": good_sha})
    with pytest.raises(PayloadTooLargeError):
        upload({"table_sha256": good_sha}, extra={"Content-Length": str(1 << 40)}, data=b"")
    with pytest.raises(BadRequestError):
        upload({"table_sha256": good_sha}, data=b"--B\r\nContent-Disposition: form-data; name=\"table\"\r\n\r\nabc")
    with pytest.raises(UnprocessableError):  # not a CSV of numbers
        bad = b"a,b\n1,x\n"
        upload({"table_sha256": hashlib.sha256(bad).hexdigest()},
               data=b"--B\r\nContent-Disposition: form-data; name=\"table\"\r\n\r\n" + bad + b"\r\n--B--\r\n")
    # larger than the server's limit (64 MiB), streamed without a length
    chunk = b"0" * (1 << 20)
    stream = [b"--B\r\nContent-Disposition: form-data; name=\"table\"\r\n\r\n"] + [chunk] * 70 + [b"\r\n--B--\r\n"]
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    connection.request("POST", f"/v1/datasets?name=big&type=csv&table_sha256={good_sha}", body=iter(stream),
                       headers={**headers, "Authorization": f"Bearer {member.token}"}, encode_chunked=True)
    assert connection.getresponse().status == 413
    connection.close()
    # truncated: the client promises more than it sends and hangs up
    raw = socket.create_connection(("127.0.0.1", server.port))
    raw.sendall((f"POST /v1/datasets?name=cut&type=csv&table_sha256={good_sha} HTTP/1.1\r\nHost: x\r\n"
                 f"Authorization: Bearer {member.token}\r\nContent-Type: multipart/form-data; boundary=B\r\n"
                 f"Content-Length: {len(body) + 5000}\r\n\r\n").encode() + body[:-20])
    wait_for(lambda: _leftovers(server) != before, "the server to receive the truncated upload")
    raw.close()
    wait_for(lambda: _leftovers(server) == before, "the server to remove the truncated upload")
    assert member.list_datasets()["total"] == 0
    # and the right upload still works; the part's file name is not used on disk
    assert member.upload_csv("t", csv_path)["samples"] == 80
    assert not any(".." in path.name or path.name == "x" for path in server.home.rglob("*"))


def test_checkpoint_uploads_are_checked(server, make_member, tmp_path):
    member = make_member()
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(UnprocessableError):
        member.upload_checkpoint("junk", junk)
    with pytest.raises(UnprocessableError, match="SHA-256"):
        member.request("POST", "/v1/checkpoints", query={"name": "x", "sha256": "1" * 64}, body=b"abc",
                       headers={"Content-Type": "application/octet-stream"})
    cluster = member.create_cluster("c", templates.TABLE)
    saved = member.save_checkpoint(cluster["id"], "cp")
    path = member.download_checkpoint(saved["id"], tmp_path / "cp.safetensors")
    uploaded = member.upload_checkpoint("copy", path)
    assert uploaded["sha256"] == saved["sha256"] and uploaded["cluster_id"] is None
    assert member.create_cluster("from upload", checkpoint_id=uploaded["id"])["n_inputs"] == 25
    assert list((server.home / "tmp").iterdir()) == []


def test_malformed_requests_give_400_or_422(make_member):
    member = make_member()
    json_header = {"Content-Type": "application/json"}
    cases = [
        (b"{not json", json_header, BadRequestError),
        (b'{"name": "x", "template": NaN}', json_header, BadRequestError),
        (b'{"name": "x"}', {"Content-Type": "text/plain"}, BadRequestError),
        (b"[1, 2]", json_header, UnprocessableError),
        (b'{"name": 5, "template": "x"}', json_header, UnprocessableError),
        (b'{"name": "x", "template": "x", "colour": "red"}', json_header, UnprocessableError),
        (b'{"name": "x", "seed": true, "template": "x"}', json_header, UnprocessableError),
        (b'{"name": "x", "seed": -1, "template": "x"}', json_header, UnprocessableError),
        (b'{"name": "x", "template": "version: 1\\nbricks: nonsense"}', json_header, UnprocessableError),
        (b'{"name": "x"}', json_header, UnprocessableError),
        (b"\xff\xfe", json_header, BadRequestError),
    ]
    for body, headers, error in cases:
        with pytest.raises(error):
            member.request("POST", "/v1/clusters", body=body, headers=headers)
    with pytest.raises(UnprocessableError):
        member.request("GET", "/v1/clusters", query={"limit": "many"})
    with pytest.raises(UnprocessableError):
        member.request("GET", "/v1/clusters", query={"limit": 0})
    with pytest.raises(UnprocessableError):
        member.request("GET", "/v1/clusters", query={"sort": "name"})
    with pytest.raises(UnprocessableError):
        member.create_cluster("huge", "version: 1\nbricks:\n" + "".join(
            f"    {i},1,1\n        {'input: a' if i == 1 else 'output: b' if i == 9 else ''}\n"
            f"        number_of_neurons: 200000\n" for i in range(1, 10)).replace("        \n", ""))


@pytest.mark.parametrize("path", [
    "/v1/datasets/..%2F..%2Fetc%2Fpasswd", "/v1/datasets/../../etc/passwd", "/v1/checkpoints/%2e%2e/file",
    "/v1/users/..%2Fadmin", "/v1/projects/a%00b", "/v1/clusters/" + "0" * 5000,
])
def test_path_traversal_is_impossible(admin, path):
    with pytest.raises(HanamiError) as caught:
        admin.request("GET", path)
    assert caught.value.status in (404, 422)


def test_names_never_reach_the_file_system(server, make_member, tmp_path):
    member = make_member()
    dataset = member.upload_csv("../../../../tmp/evil", write_csv(tmp_path / "e.csv"))
    assert dataset["name"] == "../../../../tmp/evil"
    assert (server.home / "datasets" / dataset["id"]).is_dir()
    assert not any("evil" in path.name for path in server.home.parent.rglob("*"))


def test_no_cookies_no_cors(server, admin):
    connection = http.client.HTTPConnection("127.0.0.1", server.port)
    connection.request("POST", "/v1/token", body=json.dumps({"user_id": "nobody", "password": "x"}),
                       headers={"Content-Type": "application/json", "Origin": "https://evil.example"})
    response = connection.getresponse()
    response.read()
    assert response.getheader("Set-Cookie") is None and response.getheader("Access-Control-Allow-Origin") is None
    connection.request("OPTIONS", "/v1/clusters", headers={"Origin": "https://evil.example",
                                                           "Access-Control-Request-Method": "DELETE"})
    response = connection.getresponse()
    assert response.status == 405 and json.loads(response.read())["error"]["code"] == "method_not_allowed"


def test_unknown_paths_and_methods_use_the_error_shape(admin):
    for method, path, status in (("GET", "/v2/nothing", 404), ("PUT", "/v1/clusters", 405),
                                 ("GET", "/dashboard/index.html", 404)):
        with pytest.raises(HanamiError) as caught:
            admin.request(method, path)
        assert caught.value.status == status and caught.value.code


def test_switching_project_changes_what_a_member_sees(admin, make_member):
    member = make_member()
    mine = member.create_cluster("first", templates.TABLE)
    second = unique("proj")
    admin.create_project(second, "Second")
    with pytest.raises(ForbiddenError):
        member.switch_project(second)
    admin.set_member(second, member.user_id, "member")
    assert member.switch_project(second)["project_id"] == second
    with pytest.raises(NotFoundError):
        member.get_cluster(mine["id"])
    assert member.list_clusters()["total"] == 0
    member.switch_project(member.project_id)
    assert member.get_cluster(mine["id"])["id"] == mine["id"]
    with pytest.raises(NotFoundError):
        member.switch_project(unique("nowhere"))
