"""Python client of the hanami_torch service: :class:`HanamiClient` (synchronous, standard
library only) for every REST endpoint, and :class:`DirectIO` (asyncio, needs aiohttp) for the
WebSocket that predicts and trains single samples.

    client = HanamiClient("http://127.0.0.1:11418")
    client.login("alice", "secret-password")
    cluster = client.create_cluster("mnist", template=hanami_torch.templates.MNIST)

Every failed request raises a :class:`HanamiError` subclass that carries the status, the error
code and the server's message.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import secrets
import struct
import time
import urllib.parse
from pathlib import Path
from typing import Any, Callable, Iterator

__all__ = [
    "HanamiClient", "DirectIO", "HanamiError", "BadRequestError", "UnauthorizedError", "ForbiddenError",
    "NotFoundError", "ConflictError", "PayloadTooLargeError", "UnprocessableError", "TooManyRequestsError",
    "ServerError",
]

DEFAULT_URL = "http://127.0.0.1:11418"


class HanamiError(Exception):
    """A request the server refused: ``status`` (HTTP), ``code`` and ``message`` from the body."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class BadRequestError(HanamiError): """400"""
class UnauthorizedError(HanamiError): """401"""
class ForbiddenError(HanamiError): """403"""
class NotFoundError(HanamiError): """404"""
class ConflictError(HanamiError): """409"""
class PayloadTooLargeError(HanamiError): """413"""
class UnprocessableError(HanamiError): """422"""
class TooManyRequestsError(HanamiError): """429"""
class ServerError(HanamiError): """5xx"""


_ERRORS = {400: BadRequestError, 401: UnauthorizedError, 403: ForbiddenError, 404: NotFoundError,
           409: ConflictError, 413: PayloadTooLargeError, 422: UnprocessableError, 429: TooManyRequestsError}


def _error(status: int, body: bytes) -> HanamiError:
    try:
        detail = json.loads(body)["error"]
        code, message = detail["code"], detail["message"]
    except (ValueError, KeyError, TypeError):
        code, message = "http_error", body[:200].decode("utf-8", "replace")
    return _ERRORS.get(status, ServerError if status >= 500 else HanamiError)(status, code, message)


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class HanamiClient:
    """A session with one server.  Keeps one HTTP connection open; not thread-safe (use one
    client per thread).  ``token`` may be given, or set by :meth:`login`."""

    def __init__(self, url: str = DEFAULT_URL, token: str | None = None, timeout: float = 60.0):
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"url must look like http://host:port, got {url!r}")
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._parsed = parsed
        self._connection: http.client.HTTPConnection | None = None

    # -- plumbing -------------------------------------------------------------------------------

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is None:
            kind = http.client.HTTPSConnection if self._parsed.scheme == "https" else http.client.HTTPConnection
            self._connection = kind(self._parsed.hostname, self._parsed.port, timeout=self.timeout)
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def __enter__(self) -> HanamiClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def request(self, method: str, path: str, *, json_body: Any = None, query: dict | None = None,
                body=None, headers: dict | None = None, raw: bool = False):
        """One request; returns the decoded JSON (``None`` for 204), or the raw bytes with ``raw``."""
        query = {k: ("true" if v is True else "false" if v is False else v) for k, v in (query or {}).items()
                 if v is not None}
        target = urllib.parse.quote(self._parsed.path.rstrip("/") + path) + (
            "?" + urllib.parse.urlencode(query) if query else "")
        headers = dict(headers or {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in range(2):
            connection = self._connect()
            try:
                connection.request(method, target, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # the server closed a kept-alive connection: reconnect once (bodies that are
                # streams cannot be sent again)
                self.close()
                if attempt or not (body is None or isinstance(body, bytes)):
                    raise
        if response.status >= 400:
            raise _error(response.status, data)
        if raw:
            return data
        if response.status == 204 or not data:
            return None
        return json.loads(data)

    def pages(self, method: Callable[..., dict], *args, page_size: int = 200, **kwargs) -> Iterator[dict]:
        """Every item of a list method, page after page: ``client.pages(client.list_clusters)``."""
        offset = 0
        while True:
            page = method(*args, limit=page_size, offset=offset, **kwargs)
            yield from page["items"]
            offset += len(page["items"])
            if not page["items"] or offset >= page["total"]:
                return

    # -- tokens ---------------------------------------------------------------------------------

    def login(self, user_id: str, password: str, project_id: str | None = None) -> dict:
        """Logs in and keeps the token for the next requests.  Returns the token and the user."""
        reply = self.request("POST", "/v1/token",
                             json_body={"user_id": user_id, "password": password, "project_id": project_id}
                             if project_id else {"user_id": user_id, "password": password})
        self.token = reply["token"]
        return reply

    def switch_project(self, project_id: str | None) -> dict:
        """Swaps the token for one in another of your projects (admins: ``None`` for none)."""
        reply = self.request("PUT", "/v1/token", json_body={"project_id": project_id})
        self.token = reply["token"]
        return reply

    def logout(self) -> None:
        """Revokes the token on the server."""
        self.request("DELETE", "/v1/token")
        self.token = None

    def me(self) -> dict:
        return self.request("GET", "/v1/me")

    # -- users ----------------------------------------------------------------------------------

    def create_user(self, user_id: str, name: str, password: str, is_admin: bool = False) -> dict:
        return self.request("POST", "/v1/users", json_body={"id": user_id, "name": name, "password": password,
                                                             "is_admin": is_admin})

    def get_user(self, user_id: str) -> dict:
        return self.request("GET", f"/v1/users/{user_id}")

    def list_users(self, limit: int = 50, offset: int = 0) -> dict:
        return self.request("GET", "/v1/users", query={"limit": limit, "offset": offset})

    def update_user(self, user_id: str, *, name: str | None = None, password: str | None = None,
                    is_admin: bool | None = None) -> dict:
        changes = {key: value for key, value in (("name", name), ("password", password), ("is_admin", is_admin))
                   if value is not None}
        return self.request("PATCH", f"/v1/users/{user_id}", json_body=changes)

    def delete_user(self, user_id: str) -> None:
        self.request("DELETE", f"/v1/users/{user_id}")

    # -- projects -------------------------------------------------------------------------------

    def create_project(self, project_id: str, name: str) -> dict:
        return self.request("POST", "/v1/projects", json_body={"id": project_id, "name": name})

    def get_project(self, project_id: str) -> dict:
        return self.request("GET", f"/v1/projects/{project_id}")

    def list_projects(self, limit: int = 50, offset: int = 0) -> dict:
        return self.request("GET", "/v1/projects", query={"limit": limit, "offset": offset})

    def delete_project(self, project_id: str) -> None:
        self.request("DELETE", f"/v1/projects/{project_id}")

    def set_member(self, project_id: str, user_id: str, role: str = "member") -> dict:
        """Adds a user to a project (or changes their role): ``member`` or ``project_admin``."""
        return self.request("PUT", f"/v1/projects/{project_id}/members/{user_id}", json_body={"role": role})

    def list_members(self, project_id: str, limit: int = 50, offset: int = 0) -> dict:
        return self.request("GET", f"/v1/projects/{project_id}/members", query={"limit": limit, "offset": offset})

    def remove_member(self, project_id: str, user_id: str) -> None:
        self.request("DELETE", f"/v1/projects/{project_id}/members/{user_id}")

    # -- clusters -------------------------------------------------------------------------------

    def create_cluster(self, name: str, template: str | None = None, *, checkpoint_id: str | None = None,
                       seed: int = 0) -> dict:
        """A cluster from template text, or from a checkpoint (``checkpoint_id``)."""
        body = {"name": name, "seed": seed}
        if template is not None:
            body["template"] = template
        if checkpoint_id is not None:
            body["checkpoint_id"] = checkpoint_id
        return self.request("POST", "/v1/clusters", json_body=body)

    def get_cluster(self, cluster_id: str) -> dict:
        """The cluster with live ``stats`` (synapses, sections, bytes, steps)."""
        return self.request("GET", f"/v1/clusters/{cluster_id}")

    def list_clusters(self, limit: int = 50, offset: int = 0) -> dict:
        return self.request("GET", "/v1/clusters", query={"limit": limit, "offset": offset})

    def delete_cluster(self, cluster_id: str) -> None:
        self.request("DELETE", f"/v1/clusters/{cluster_id}")

    # -- datasets -------------------------------------------------------------------------------

    def upload_mnist(self, name: str, images: str | os.PathLike, labels: str | os.PathLike) -> dict:
        """Uploads a pair of IDX files (e.g. ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``)."""
        return self._upload_dataset(name, "mnist", {"images": Path(images), "labels": Path(labels)})

    def upload_csv(self, name: str, table: str | os.PathLike) -> dict:
        """Uploads a CSV table: a header row of column names, then numeric rows."""
        return self._upload_dataset(name, "csv", {"table": Path(table)})

    def _upload_dataset(self, name: str, kind: str, files: dict[str, Path]) -> dict:
        boundary = "hanami-" + secrets.token_hex(12)
        query = {"name": name, "type": kind}
        pieces: list = []
        for part, path in files.items():
            query[f"{part}_sha256"] = sha256_file(path)
            pieces.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{part}\"; "
                          f"filename=\"{part}\"\r\nContent-Type: application/octet-stream\r\n\r\n".encode())
            pieces.append(path)
            pieces.append(b"\r\n")
        pieces.append(f"--{boundary}--\r\n".encode())
        length = sum(piece.stat().st_size if isinstance(piece, Path) else len(piece) for piece in pieces)

        def stream():
            for piece in pieces:
                if isinstance(piece, Path):
                    with open(piece, "rb") as handle:
                        yield from iter(lambda: handle.read(1 << 20), b"")
                else:
                    yield piece

        return self.request("POST", "/v1/datasets", query=query, body=stream(), headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}", "Content-Length": str(length)})

    def get_dataset(self, dataset_id: str) -> dict:
        return self.request("GET", f"/v1/datasets/{dataset_id}")

    def list_datasets(self, limit: int = 50, offset: int = 0) -> dict:
        return self.request("GET", "/v1/datasets", query={"limit": limit, "offset": offset})

    def delete_dataset(self, dataset_id: str) -> None:
        self.request("DELETE", f"/v1/datasets/{dataset_id}")

    # -- tasks ----------------------------------------------------------------------------------

    def create_task(self, cluster_id: str, dataset_id: str, type: str = "train", *, epochs: int = 1,
                    name: str = "task") -> dict:
        """Queues a ``train`` or ``request`` task; returns it in state ``queued``."""
        return self.request("POST", "/v1/tasks", json_body={"name": name, "type": type, "cluster_id": cluster_id,
                                                             "dataset_id": dataset_id, "epochs": epochs})

    def get_task(self, task_id: str) -> dict:
        return self.request("GET", f"/v1/tasks/{task_id}")

    def list_tasks(self, cluster_id: str | None = None, state: str | None = None, limit: int = 50,
                   offset: int = 0) -> dict:
        return self.request("GET", "/v1/tasks", query={"cluster_id": cluster_id, "state": state, "limit": limit,
                                                        "offset": offset})

    def cancel_task(self, task_id: str) -> dict:
        return self.request("POST", f"/v1/tasks/{task_id}/cancel")

    def delete_task(self, task_id: str) -> None:
        self.request("DELETE", f"/v1/tasks/{task_id}")

    def wait_task(self, task_id: str, *, poll_s: float = 0.5, timeout_s: float | None = None,
                  on_progress: Callable[[dict], None] | None = None) -> dict:
        """Polls until the task ends (finished, failed or cancelled) and returns it."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            task = self.get_task(task_id)
            if on_progress is not None:
                on_progress(task)
            if task["state"] in ("finished", "failed", "cancelled"):
                return task
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"task {task_id} is still {task['state']} after {timeout_s} s")
            time.sleep(poll_s)

    # -- results --------------------------------------------------------------------------------

    def get_result(self, result_id: str) -> dict:
        return self.request("GET", f"/v1/results/{result_id}")

    def list_results(self, limit: int = 50, offset: int = 0) -> dict:
        return self.request("GET", "/v1/results", query={"limit": limit, "offset": offset})

    def result_data(self, result_id: str, limit: int = 50, offset: int = 0) -> dict:
        """A page of the outputs and their arg-max ``classes``."""
        return self.request("GET", f"/v1/results/{result_id}/data", query={"limit": limit, "offset": offset})

    def accuracy(self, result_id: str, dataset_id: str) -> dict:
        """``{"accuracy": percent, "correct", "total", ...}`` against a labelled (mnist) dataset."""
        return self.request("GET", f"/v1/results/{result_id}/accuracy", query={"dataset_id": dataset_id})

    def delete_result(self, result_id: str) -> None:
        self.request("DELETE", f"/v1/results/{result_id}")

    # -- checkpoints ----------------------------------------------------------------------------

    def save_checkpoint(self, cluster_id: str, name: str) -> dict:
        return self.request("POST", f"/v1/clusters/{cluster_id}/checkpoints", json_body={"name": name})

    def restore_checkpoint(self, cluster_id: str, checkpoint_id: str) -> dict:
        """Replaces the cluster's network by the checkpoint's; returns the cluster."""
        return self.request("POST", f"/v1/clusters/{cluster_id}/restore", json_body={"checkpoint_id": checkpoint_id})

    def get_checkpoint(self, checkpoint_id: str) -> dict:
        return self.request("GET", f"/v1/checkpoints/{checkpoint_id}")

    def list_checkpoints(self, cluster_id: str | None = None, limit: int = 50, offset: int = 0) -> dict:
        return self.request("GET", "/v1/checkpoints", query={"cluster_id": cluster_id, "limit": limit,
                                                              "offset": offset})

    def download_checkpoint(self, checkpoint_id: str, path: str | os.PathLike) -> Path:
        """Writes the checkpoint's ``.safetensors`` file to ``path`` (load it with hanami_torch.load)."""
        data = self.request("GET", f"/v1/checkpoints/{checkpoint_id}/file", raw=True)
        path = Path(path)
        path.write_bytes(data)
        return path

    def upload_checkpoint(self, name: str, path: str | os.PathLike) -> dict:
        """Uploads a file written by ``hanami_torch.save``."""
        path = Path(path)
        with open(path, "rb") as handle:
            return self.request("POST", "/v1/checkpoints", query={"name": name, "sha256": sha256_file(path)},
                                body=handle, headers={"Content-Type": "application/octet-stream",
                                                      "Content-Length": str(path.stat().st_size)})

    def delete_checkpoint(self, checkpoint_id: str) -> None:
        self.request("DELETE", f"/v1/checkpoints/{checkpoint_id}")

    # -- logs and system ------------------------------------------------------------------------

    def audit_log(self, user_id: str | None = None, limit: int = 50, offset: int = 0) -> dict:
        return self.request("GET", "/v1/audit", query={"user_id": user_id, "limit": limit, "offset": offset})

    def error_log(self, user_id: str | None = None, limit: int = 50, offset: int = 0) -> dict:
        return self.request("GET", "/v1/errors", query={"user_id": user_id, "limit": limit, "offset": offset})

    def system(self) -> dict:
        return self.request("GET", "/v1/system")

    def health(self) -> dict:
        return self.request("GET", "/healthz")

    def metrics(self) -> str:
        return self.request("GET", "/metrics", raw=True).decode()

    def openapi(self) -> dict:
        return self.request("GET", "/openapi.json")

    # -- direct IO ------------------------------------------------------------------------------

    def direct_io(self, cluster_id: str) -> DirectIO:
        """An async context manager for the cluster's WebSocket::

            async with client.direct_io(cluster_id) as io:
                outputs = await io.predict(pixels)
        """
        if not self.token:
            raise UnauthorizedError(401, "unauthorized", "log in first")
        ws_url = self.url.replace("http", "ws", 1) + f"/v1/clusters/{cluster_id}/io"
        return DirectIO(ws_url, self.token)


class DirectIO:
    """One direct-IO WebSocket (asyncio).  Frames are binary float32 by default; ``binary=False``
    uses JSON frames.  One request is in flight at a time per socket (the protocol is lock-step);
    open several sockets for parallel clients."""

    def __init__(self, url: str, token: str, binary: bool = True):
        self.url, self.token, self.binary = url, token, binary
        self._session = None
        self._socket = None
        self._lock = None

    async def __aenter__(self) -> DirectIO:
        import asyncio

        import aiohttp

        self._lock = asyncio.Lock()
        self._session = aiohttp.ClientSession()
        try:
            self._socket = await self._session.ws_connect(
                self.url, headers={"Authorization": f"Bearer {self.token}"}, max_msg_size=16 * 1024 * 1024)
        except aiohttp.WSServerHandshakeError as error:
            await self._session.close()
            raise _ERRORS.get(error.status, HanamiError)(error.status, "handshake_refused", error.message) from None
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        if self._socket is not None:
            await self._socket.close()
        if self._session is not None:
            await self._session.close()

    async def info(self) -> dict:
        """The cluster's widths and bricks: ``n_inputs``, ``n_outputs``, ``input_bricks``, ``output_bricks``."""
        return await self._json({"op": "info"})

    async def predict(self, inputs) -> list[float]:
        """The outputs for one sample (``n_inputs`` numbers, or a dict by brick name)."""
        if self.binary and not isinstance(inputs, dict):
            return await self._binary(1, inputs)
        return (await self._json({"op": "predict", "inputs": _plain(inputs)}))["outputs"]

    async def learn(self, inputs, targets) -> list[float]:
        """One training step; returns the outputs from before the update."""
        if self.binary and not isinstance(inputs, dict) and not isinstance(targets, dict):
            return await self._binary(2, list(_plain(inputs)) + list(_plain(targets)))
        frame = {"op": "learn", "inputs": _plain(inputs), "targets": _plain(targets)}
        return (await self._json(frame))["outputs"]

    async def _binary(self, op: int, values) -> list[float]:
        values = _plain(values)
        payload = struct.pack("<B3x", op) + struct.pack(f"<{len(values)}f", *values)
        async with self._lock:
            await self._socket.send_bytes(payload)
            reply = await self._receive()
        data = reply.data
        if not isinstance(data, bytes):
            raise HanamiError(0, "protocol", f"expected a binary answer, got {data!r:.200}")
        if data[0] != 0:
            raise _frame_error(json.loads(data[4:]))
        return list(struct.unpack(f"<{(len(data) - 4) // 4}f", data[4:]))

    async def _json(self, frame: dict) -> dict:
        async with self._lock:
            await self._socket.send_str(json.dumps(frame))
            reply = await self._receive()
        answer = json.loads(reply.data)
        if "error" in answer:
            raise _frame_error(answer)
        return answer

    async def _receive(self):
        import aiohttp

        reply = await self._socket.receive()
        if reply.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
            code = self._socket.close_code
            raise HanamiError(401 if code == 4401 else 404 if code == 4404 else 0, "closed",
                              f"the server closed the socket (code {code})")
        if reply.type == aiohttp.WSMsgType.ERROR:
            raise HanamiError(0, "socket_error", str(reply.data))
        return reply


_CODES = {"bad_request": 400, "unauthorized": 401, "forbidden": 403, "not_found": 404, "unprocessable": 422}


def _frame_error(answer: dict) -> HanamiError:
    """The exception for an error answer on the socket (the same shape as HTTP errors)."""
    detail = answer["error"]
    status = _CODES.get(detail["code"], 0)
    return _ERRORS.get(status, HanamiError)(status, detail["code"], detail["message"])


def _plain(values):
    """Lists of floats from tensors, arrays or sequences (dicts by brick name stay dicts)."""
    if isinstance(values, dict):
        return {name: _plain(part) for name, part in values.items()}
    if hasattr(values, "tolist"):
        values = values.tolist()
    return [float(v) for v in values]
