"""The service's work, without HTTP: :class:`Service` has one method per operation.

Routes call these methods with the caller (a :class:`~.auth.Principal`) and already validated
arguments, and turn the returned dicts into JSON.  Tests can call them directly.  Every method
applies the visibility rule through the caller's scope, so a resource another member owns is
indistinguishable from one that does not exist (404).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import platform
import shutil
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from . import datasets
from .auth import Authenticator, LoginLimiter, Policy, Principal, hash_password, load_secret
from .clusters import ClusterRegistry, DirectIO, LiveCluster, check_template, close_sockets
from .config import Config
from .declarations import PASSWORD, USER_ID
from .errors import Conflict, Forbidden, NotFound, PayloadTooLarge, Unprocessable
from .store import Store, dumps
from .tasks import ENDED, TaskRunner


def _new_id() -> str:
    return str(uuid.uuid4())


class Service:
    """Owns the database, the live clusters, the worker pools and the files under ``home``."""

    def __init__(self, config: Config):
        self.config = config
        self.home = config.home
        for folder in ("clusters", "datasets", "checkpoints", "results", "tmp"):
            (self.home / folder).mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.home / "tmp")  # uploads that a stopped server left unfinished
        (self.home / "tmp").mkdir()
        if config.op_threads:
            torch.set_num_threads(config.op_threads)
        self.store = Store(self.home / "hanami.db")
        secret, self.secret_configured = load_secret(config.secret_file, self.home)
        limiter = LoginLimiter(config.login_failures_per_user, config.login_failures_per_address, config.login_window_s)
        try:
            self.auth = Authenticator(self.store, secret, config.token_lifetime_s, limiter)
        except ValueError as error:
            raise SystemExit(str(error)) from None
        self.policy = Policy.from_file(config.policy_file)
        self.task_pool = ThreadPoolExecutor(config.workers, thread_name_prefix="hanami-task")
        self.io_pool = ThreadPoolExecutor(config.io_threads, thread_name_prefix="hanami-io")
        self.registry = ClusterRegistry(self.home / "clusters", config.max_neurons)
        self.direct_io = DirectIO(self.io_pool)
        self._datasets: dict[str, datasets.Data] = {}
        self._datasets_lock = threading.Lock()
        self.tasks = TaskRunner(self.store, self.registry, self.task_pool, self.home, self._load_dataset,
                                chunk=config.task_chunk, on_error=self.log_error)
        self.started = time.time()
        self._bootstrap_admin()
        self.tasks.recover()
        self.registry.load_all(self.store.all_resources("clusters"), self.log_error)

    def close(self) -> None:
        self.tasks.stop()
        self.task_pool.shutdown(wait=True, cancel_futures=True)
        self.registry.save_dirty()
        self.io_pool.shutdown(wait=True, cancel_futures=True)
        self.store.close()

    def log_error(self, message: str, user_id: str | None = None, method: str = "-", path: str = "-") -> int:
        return self.store.log_error(user_id, method, path, message)

    async def off_loop(self, function, *args):
        """Runs a short blocking job (a save, a parse) in the IO pool."""
        return await asyncio.get_running_loop().run_in_executor(self.io_pool, function, *args)

    def _bootstrap_admin(self) -> None:
        if self.store.count_admins():
            return
        user, password = self.config.admin_user, self.config.admin_password
        if not user or not password:
            raise SystemExit(
                "the database has no admin yet: set HANAMI_ADMIN_USER and HANAMI_ADMIN_PASSWORD "
                "(8+ characters) for the first start"
            )
        USER_ID.check(user, "HANAMI_ADMIN_USER")
        PASSWORD.check(password, "HANAMI_ADMIN_PASSWORD")
        self.store.add_user(user, user, hash_password(password), True, None)

    # -- tokens ---------------------------------------------------------------------------------

    def login(self, user_id: str, password: str, project_id: str | None, address: str) -> dict:
        token, principal = self.auth.login(user_id, password, project_id, address)
        return {"token": token, "token_type": "Bearer", "expires_at": _iso(principal.expires_at),
                **self.me(principal)}

    def switch_project(self, principal: Principal, project_id: str | None) -> dict:
        token, switched = self.auth.switch(principal, project_id)
        return {"token": token, "token_type": "Bearer", "expires_at": _iso(switched.expires_at), **self.me(switched)}

    def logout(self, principal: Principal) -> None:
        self.auth.logout(principal)

    def me(self, principal: Principal) -> dict:
        memberships = self.store.memberships_of_user(principal.user_id)
        return {"user_id": principal.user_id, "name": principal.name, "is_admin": principal.is_admin,
                "project_id": principal.project_id, "role": principal.role,
                "projects": [{"project_id": m["project_id"], "role": m["role"]} for m in memberships]}

    # -- users ----------------------------------------------------------------------------------

    def create_user(self, principal: Principal, user_id: str, name: str, password: str, is_admin: bool) -> dict:
        return self._user_view(self.store.add_user(user_id, name, hash_password(password), is_admin, principal.user_id))

    def get_user(self, user_id: str) -> dict:
        return self._user_view(self.store.user(user_id))

    def list_users(self, limit: int, offset: int) -> dict:
        rows, total = self.store.users(limit, offset)
        return _page([self._user_view(row) for row in rows], total, limit, offset)

    def update_user(self, principal: Principal, user_id: str, name: str | None, password: str | None,
                    is_admin: bool | None) -> dict:
        user = self.store.user(user_id)
        if is_admin is False and user["is_admin"] and self.store.count_admins() == 1:
            raise Conflict("this is the last admin; make another user admin first")
        row = self.store.update_user(user_id, name=name, is_admin=None if is_admin is None else int(is_admin),
                                     password_hash=hash_password(password) if password is not None else None)
        self.auth.changed()
        return self._user_view(row)

    def delete_user(self, principal: Principal, user_id: str) -> None:
        if user_id == principal.user_id:
            raise Conflict("you cannot delete yourself; another admin can")
        self.store.user(user_id)
        for table in ("clusters", "datasets", "checkpoints", "results"):
            if self.store.count(table, owner_id=user_id):
                raise Conflict(f"user {user_id!r} still owns {table}; delete or hand them over first")
        self.store.delete_user(user_id)
        self.auth.changed()

    def _user_view(self, row: dict) -> dict:
        memberships = self.store.memberships_of_user(row["id"])
        return {"id": row["id"], "name": row["name"], "is_admin": bool(row["is_admin"]),
                "creator_id": row["creator_id"], "created_at": row["created_at"],
                "projects": [{"project_id": m["project_id"], "role": m["role"]} for m in memberships]}

    # -- projects and memberships ----------------------------------------------------------------

    def create_project(self, principal: Principal, project_id: str, name: str) -> dict:
        return _project_view(self.store.add_project(project_id, name, principal.user_id))

    def get_project(self, principal: Principal, project_id: str) -> dict:
        self._project_visible(principal, project_id)
        return _project_view(self.store.project(project_id))

    def list_projects(self, principal: Principal, limit: int, offset: int) -> dict:
        rows, total = self.store.projects(limit, offset, None if principal.is_admin else principal.user_id)
        return _page([_project_view(row) for row in rows], total, limit, offset)

    def delete_project(self, project_id: str) -> None:
        self.store.delete_project(project_id)
        self.auth.changed()

    def set_member(self, principal: Principal, project_id: str, user_id: str, role: str) -> dict:
        self._project_admin(principal, project_id)
        row = self.store.set_membership(user_id, project_id, role)
        self.auth.changed()
        return _member_view(row)

    def list_members(self, principal: Principal, project_id: str, limit: int, offset: int) -> dict:
        self._project_visible(principal, project_id)
        self.store.project(project_id)
        rows, total = self.store.memberships_of_project(project_id, limit, offset)
        return _page([_member_view(row) for row in rows], total, limit, offset)

    def remove_member(self, principal: Principal, project_id: str, user_id: str) -> None:
        self._project_admin(principal, project_id)
        self.store.delete_membership(user_id, project_id)
        self.auth.changed()

    def _project_visible(self, principal: Principal, project_id: str) -> None:
        if not principal.is_admin and self.store.find_membership(principal.user_id, project_id) is None:
            raise NotFound(f"no project {project_id!r} that you can see")

    def _project_admin(self, principal: Principal, project_id: str) -> None:
        if principal.is_admin:
            return
        if principal.role != "project_admin" or principal.project_id != project_id:
            raise Forbidden(f"only an admin or the project admin of {project_id!r} manages its members")

    # -- clusters -------------------------------------------------------------------------------

    async def create_cluster(self, principal: Principal, name: str, template: str | None, checkpoint_id: str | None,
                             seed: int) -> dict:
        project_id = _project_of(principal)
        if (template is None) == (checkpoint_id is None):
            raise Unprocessable("give either template (the template text) or checkpoint_id, not both")
        if checkpoint_id is not None:
            row = self.store.resource("checkpoints", checkpoint_id, principal.scope)
            module = await self.off_loop(self._load_checkpoint, row["id"])
        else:
            module = await self.off_loop(self.registry.build, template, seed)
        cluster_id = _new_id()
        row = self.store.add_resource("clusters", {
            "id": cluster_id, "name": name, "project_id": project_id, "owner_id": principal.user_id,
            "template": module.template.dumps(), "seed": module.seed,
            "n_inputs": module.n_inputs, "n_outputs": module.n_outputs})
        try:
            await self.off_loop(self.registry.add, cluster_id, module)
        except BaseException:
            self.store.delete_resource("clusters", cluster_id)
            raise
        return self._cluster_view(row)

    async def get_cluster(self, principal: Principal, cluster_id: str) -> dict:
        row = self.store.resource("clusters", cluster_id, principal.scope)
        live = self._live(cluster_id)
        stats = await self.off_loop(_stats, live)
        return {**self._cluster_view(row), "stats": stats}

    def list_clusters(self, principal: Principal, limit: int, offset: int) -> dict:
        rows, total = self.store.resources("clusters", principal.scope, limit, offset)
        return _page([self._cluster_view(row) for row in rows], total, limit, offset)

    async def delete_cluster(self, principal: Principal, cluster_id: str) -> None:
        self.store.resource("clusters", cluster_id, principal.scope)
        self.tasks.cancel_cluster(cluster_id)
        live = await self.off_loop(self.registry.remove, cluster_id)
        if live is not None:
            await close_sockets(live, 4404, b"the cluster was deleted")
        self.store.delete_resource("clusters", cluster_id)

    def cluster_for_io(self, principal: Principal, cluster_id: str) -> LiveCluster:
        self.store.resource("clusters", cluster_id, principal.scope)
        return self._live(cluster_id)

    def _live(self, cluster_id: str) -> LiveCluster:
        try:
            return self.registry.get(cluster_id)
        except KeyError:
            raise NotFound(f"cluster {cluster_id!r} is being deleted") from None

    def _cluster_view(self, row: dict) -> dict:
        return {key: row[key] for key in ("id", "name", "project_id", "owner_id", "created_at", "template", "seed",
                                          "n_inputs", "n_outputs")} | {"busy": self.tasks.active(row["id"])}

    # -- datasets -------------------------------------------------------------------------------

    async def upload_dataset(self, principal: Principal, name: str, kind: str, declared: dict[str, str], reader,
                             content_length: int | None) -> dict:
        project_id = _project_of(principal)
        limit = self.config.max_upload_bytes
        if content_length is not None and content_length > limit + 64 * 1024:
            raise PayloadTooLarge(f"the upload is larger than this server's limit of {limit} bytes (--max-upload-bytes)")
        dataset_id = _new_id()
        staging = self.home / "tmp" / dataset_id
        staging.mkdir()
        target = self.home / "datasets" / dataset_id
        try:
            received = await datasets.receive_parts(reader, kind, declared, staging, limit)
            meta = await self.off_loop(datasets.check_and_store, kind, received, target)
            size = sum((target / name).stat().st_size for name in os.listdir(target))
            digest = hashlib.sha256("".join(declared[part] for part in datasets.PARTS[kind]).encode()).hexdigest()
            row = self.store.add_resource("datasets", {
                "id": dataset_id, "name": name, "project_id": project_id, "owner_id": principal.user_id,
                "type": kind, "samples": meta["samples"], "inputs": meta["inputs"], "outputs": meta["outputs"],
                "columns": dumps(meta["columns"]), "size_bytes": size, "sha256": digest})
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return _dataset_view(row)

    def check_dataset_name(self, principal: Principal, name: str) -> None:
        """Fails early (before the body is read) when the name is taken."""
        if self.store.name_taken("datasets", name, _project_of(principal), principal.user_id):
            raise Conflict(f"you already have a dataset named {name!r} in this project; pick another name")

    def get_dataset(self, principal: Principal, dataset_id: str) -> dict:
        return _dataset_view(self.store.resource("datasets", dataset_id, principal.scope))

    def list_datasets(self, principal: Principal, limit: int, offset: int) -> dict:
        rows, total = self.store.resources("datasets", principal.scope, limit, offset)
        return _page([_dataset_view(row) for row in rows], total, limit, offset)

    def delete_dataset(self, principal: Principal, dataset_id: str) -> None:
        self.store.resource("datasets", dataset_id, principal.scope)
        for task in self.store.all_resources("tasks", dataset_id=dataset_id):
            if task["state"] not in ENDED:
                raise Conflict(f"task {task['id']} still uses this dataset; cancel it or wait for it")
        self.store.delete_resource("datasets", dataset_id)
        with self._datasets_lock:
            self._datasets.pop(dataset_id, None)
        shutil.rmtree(self.home / "datasets" / dataset_id, ignore_errors=True)

    def _load_dataset(self, dataset_id: str) -> datasets.Data:
        with self._datasets_lock:
            if dataset_id in self._datasets:
                return self._datasets[dataset_id]
        row = self.store.resource("datasets", dataset_id, None)
        data = datasets.load(row["type"], self.home / "datasets" / dataset_id, json.loads(row["columns"]))
        with self._datasets_lock:
            if len(self._datasets) >= 4:  # a few recent datasets stay parsed
                self._datasets.pop(next(iter(self._datasets)))
            self._datasets[dataset_id] = data
        return data

    # -- tasks ----------------------------------------------------------------------------------

    def create_task(self, principal: Principal, name: str, kind: str, cluster_id: str, dataset_id: str,
                    epochs: int) -> dict:
        project_id = _project_of(principal)
        cluster = self.store.resource("clusters", cluster_id, principal.scope)
        dataset = self.store.resource("datasets", dataset_id, principal.scope)
        if kind == "request" and epochs != 1:
            raise Unprocessable("a request task makes one pass; leave epochs at 1")
        if dataset["type"] == "mnist" and dataset["inputs"] != cluster["n_inputs"]:
            raise Unprocessable(
                f"the dataset has {dataset['inputs']} inputs per sample, the cluster {cluster['n_inputs']}; "
                "use a template whose input bricks add up to the dataset's width"
            )
        task_id = _new_id()
        row = self.store.add_resource("tasks", {
            "id": task_id, "name": name, "project_id": project_id, "owner_id": principal.user_id, "type": kind,
            "cluster_id": cluster_id, "dataset_id": dataset_id, "epochs": epochs, "state": "queued",
            "progress": 0.0, "samples_done": 0, "samples_total": 0})
        self.tasks.submit(task_id, cluster_id)
        return _task_view(row)

    def get_task(self, principal: Principal, task_id: str) -> dict:
        return _task_view(self.store.resource("tasks", task_id, principal.scope))

    def list_tasks(self, principal: Principal, cluster_id: str | None, state: str | None, limit: int,
                   offset: int) -> dict:
        if cluster_id is not None:
            self.store.resource("clusters", cluster_id, principal.scope)
        rows, total = self.store.resources("tasks", principal.scope, limit, offset, cluster_id=cluster_id, state=state)
        return _page([_task_view(row) for row in rows], total, limit, offset)

    def cancel_task(self, principal: Principal, task_id: str) -> dict:
        self.store.resource("tasks", task_id, principal.scope)
        if not self.tasks.cancel(task_id):
            raise Conflict("the task has ended already; nothing to cancel")
        return self.get_task(principal, task_id)

    def delete_task(self, principal: Principal, task_id: str) -> None:
        row = self.store.resource("tasks", task_id, principal.scope)
        if row["state"] not in ENDED:
            self.tasks.cancel(task_id)
        self.store.delete_resource("tasks", task_id)

    # -- results --------------------------------------------------------------------------------

    def get_result(self, principal: Principal, result_id: str) -> dict:
        return _result_view(self.store.resource("results", result_id, principal.scope))

    def list_results(self, principal: Principal, limit: int, offset: int) -> dict:
        rows, total = self.store.resources("results", principal.scope, limit, offset)
        return _page([_result_view(row) for row in rows], total, limit, offset)

    def result_data(self, principal: Principal, result_id: str, limit: int, offset: int) -> dict:
        row = self.store.resource("results", result_id, principal.scope)
        outputs = np.load(self._result_path(result_id), mmap_mode="r")[offset : offset + limit]
        return {"result_id": result_id, "offset": offset, "limit": limit, "total": row["samples"],
                "classes": [int(v) for v in outputs.argmax(1)] if outputs.shape[1] else [],
                "outputs": np.asarray(outputs).round(6).tolist()}

    async def accuracy(self, principal: Principal, result_id: str, dataset_id: str) -> dict:
        result = self.store.resource("results", result_id, principal.scope)
        dataset = self.store.resource("datasets", dataset_id, principal.scope)
        if dataset["type"] != "mnist":
            raise Unprocessable("accuracy needs a labelled (mnist) dataset")
        if dataset["samples"] != result["samples"]:
            raise Unprocessable(f"the result has {result['samples']} samples, the dataset {dataset['samples']}")

        def compute():
            outputs = np.load(self._result_path(result_id), mmap_mode="r")
            labels = self._load_dataset(dataset_id).labels.numpy()
            return int((np.asarray(outputs).argmax(1) == labels).sum())

        correct = await self.off_loop(compute)
        return {"result_id": result_id, "dataset_id": dataset_id, "correct": correct, "total": result["samples"],
                "accuracy": 100.0 * correct / max(1, result["samples"])}

    def delete_result(self, principal: Principal, result_id: str) -> None:
        self.store.resource("results", result_id, principal.scope)
        self.store.delete_resource("results", result_id)
        self._result_path(result_id).unlink(missing_ok=True)

    def _result_path(self, result_id: str) -> Path:
        return self.home / "results" / f"{result_id}.npy"

    # -- checkpoints ----------------------------------------------------------------------------

    async def save_checkpoint(self, principal: Principal, cluster_id: str, name: str) -> dict:
        project_id = _project_of(principal)
        self.store.resource("clusters", cluster_id, principal.scope)
        live = self._live(cluster_id)
        checkpoint_id = _new_id()
        path = self._checkpoint_path(checkpoint_id)

        def write():
            from .. import checkpoint

            with live.lock:
                checkpoint.save(live.module, path)
                return live.module.stats()["synapses"]

        synapses = await self.off_loop(write)
        return self._register_checkpoint(principal, project_id, checkpoint_id, name, cluster_id, synapses)

    async def restore_checkpoint(self, principal: Principal, cluster_id: str, checkpoint_id: str) -> dict:
        cluster = self.store.resource("clusters", cluster_id, principal.scope)
        self.store.resource("checkpoints", checkpoint_id, principal.scope)
        live = self._live(cluster_id)
        if self.tasks.active(cluster_id):
            raise Conflict("the cluster has a queued or running task; cancel it or wait for it to end")
        module = await self.off_loop(self._load_checkpoint, checkpoint_id)
        await self.off_loop(self.registry.replace, live, module)
        self.store.update_resource("clusters", cluster_id, template=module.template.dumps(), seed=module.seed,
                                   n_inputs=module.n_inputs, n_outputs=module.n_outputs)
        return await self.get_cluster(principal, cluster["id"])

    async def upload_checkpoint(self, principal: Principal, name: str, declared_sha256: str, content,
                                content_length: int | None) -> dict:
        project_id = _project_of(principal)
        limit = self.config.max_upload_bytes
        if content_length is not None and content_length > limit:
            raise PayloadTooLarge(f"the upload is larger than this server's limit of {limit} bytes (--max-upload-bytes)")
        checkpoint_id = _new_id()
        staging = self.home / "tmp" / f"{checkpoint_id}.safetensors"
        try:
            digest, size = hashlib.sha256(), 0
            with open(staging, "wb") as handle:
                async for chunk in content.iter_chunked(1 << 16):
                    size += len(chunk)
                    if size > limit:
                        raise PayloadTooLarge(f"the upload is larger than this server's limit of {limit} bytes")
                    digest.update(chunk)
                    handle.write(chunk)
            if digest.hexdigest() != declared_sha256:
                raise Unprocessable(f"the body has SHA-256 {digest.hexdigest()}, but {declared_sha256} was declared; "
                                    "upload again")
            module = await self.off_loop(self._load_checkpoint_file, staging)
            os.replace(staging, self._checkpoint_path(checkpoint_id))
            synapses = module.stats()["synapses"]
            return self._register_checkpoint(principal, project_id, checkpoint_id, name, None, synapses)
        finally:
            staging.unlink(missing_ok=True)

    def checkpoint_file(self, principal: Principal, checkpoint_id: str) -> tuple[Path, dict]:
        row = self.store.resource("checkpoints", checkpoint_id, principal.scope)
        return self._checkpoint_path(checkpoint_id), row

    def get_checkpoint(self, principal: Principal, checkpoint_id: str) -> dict:
        return _checkpoint_view(self.store.resource("checkpoints", checkpoint_id, principal.scope))

    def list_checkpoints(self, principal: Principal, cluster_id: str | None, limit: int, offset: int) -> dict:
        rows, total = self.store.resources("checkpoints", principal.scope, limit, offset, cluster_id=cluster_id)
        return _page([_checkpoint_view(row) for row in rows], total, limit, offset)

    def delete_checkpoint(self, principal: Principal, checkpoint_id: str) -> None:
        self.store.resource("checkpoints", checkpoint_id, principal.scope)
        self.store.delete_resource("checkpoints", checkpoint_id)
        self._checkpoint_path(checkpoint_id).unlink(missing_ok=True)

    def _register_checkpoint(self, principal, project_id, checkpoint_id, name, cluster_id, synapses) -> dict:
        path = self._checkpoint_path(checkpoint_id)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        try:
            row = self.store.add_resource("checkpoints", {
                "id": checkpoint_id, "name": name, "project_id": project_id, "owner_id": principal.user_id,
                "cluster_id": cluster_id, "size_bytes": path.stat().st_size, "sha256": digest,
                "synapses": int(synapses)})
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return _checkpoint_view(row)

    def _checkpoint_path(self, checkpoint_id: str) -> Path:
        return self.home / "checkpoints" / f"{checkpoint_id}.safetensors"

    def _load_checkpoint(self, checkpoint_id: str):
        return self._load_checkpoint_file(self._checkpoint_path(checkpoint_id))

    def _load_checkpoint_file(self, path: Path):
        """Loads a checkpoint, refusing one too large for this server before building it."""
        from safetensors import safe_open

        from .. import checkpoint

        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
        except Exception:  # the library raises several types for a damaged file
            raise Unprocessable("not a safetensors file; upload a checkpoint written by hanami_torch.save") from None
        check_template(metadata.get("template", ""), self.config.max_neurons)
        try:
            return checkpoint.load(path)
        except (checkpoint.CheckpointError, ValueError) as error:
            raise Unprocessable(f"the checkpoint is unusable: {str(error).replace(str(path), 'the file')}") from None

    # -- logs and system -------------------------------------------------------------------------

    def audit_log(self, principal: Principal, user_id: str | None, limit: int, offset: int) -> dict:
        if not principal.is_admin:
            if user_id not in (None, principal.user_id):
                raise Forbidden("only an admin reads other users' audit entries")
            user_id = principal.user_id
        rows, total = self.store.log_page("audit_log", limit, offset, user_id)
        return _page(rows, total, limit, offset)

    def error_log(self, user_id: str | None, limit: int, offset: int) -> dict:
        rows, total = self.store.log_page("error_log", limit, offset, user_id)
        return _page(rows, total, limit, offset)

    def system(self) -> dict:
        devices = [{"type": "cpu", "name": platform.processor() or platform.machine(), "count": os.cpu_count() or 1}]
        if torch.cuda.is_available():
            devices += [{"type": "cuda", "name": torch.cuda.get_device_name(i), "count": 1}
                        for i in range(torch.cuda.device_count())]
        return {"hostname": socket.gethostname(), "version": __version__, "python": platform.python_version(),
                "torch": torch.__version__, "uptime_s": round(time.time() - self.started, 3),
                "threads": {"task_workers": self.config.workers, "io_workers": self.config.io_threads,
                            "operator_threads": torch.get_num_threads()},
                "devices": devices, "clusters_loaded": len(self.registry), **self.tasks.counts()}


# -- views: what a client sees (never a server path) ---------------------------------------------

def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def _page(items: list, total: int, limit: int, offset: int) -> dict:
    return {"items": items, "total": total, "limit": limit, "offset": offset}


def _project_of(principal: Principal) -> str:
    if principal.project_id is None:
        raise Forbidden("this token has no project; log in with project_id to create resources")
    return principal.project_id


def _stats(live: LiveCluster) -> dict:
    with live.lock:
        stats = live.module.stats()
    return {key: (None if isinstance(value, float) and value != value else value) for key, value in stats.items()}


def _project_view(row: dict) -> dict:
    return {key: row[key] for key in ("id", "name", "creator_id", "created_at")}


def _member_view(row: dict) -> dict:
    return {key: row[key] for key in ("user_id", "project_id", "role", "created_at")}


_COMMON = ("id", "name", "project_id", "owner_id", "created_at")


def _dataset_view(row: dict) -> dict:
    return {key: row[key] for key in _COMMON + ("type", "samples", "inputs", "outputs", "size_bytes", "sha256")} | {
        "columns": json.loads(row["columns"])}


def _task_view(row: dict) -> dict:
    return {key: row[key] for key in _COMMON + ("type", "cluster_id", "dataset_id", "epochs", "state", "progress",
                                                "samples_done", "samples_total", "error", "started_at",
                                                "finished_at", "result_id")}


def _result_view(row: dict) -> dict:
    return {key: row[key] for key in _COMMON + ("task_id", "cluster_id", "dataset_id", "samples", "outputs")}


def _checkpoint_view(row: dict) -> dict:
    return {key: row[key] for key in _COMMON + ("cluster_id", "size_bytes", "sha256", "synapses")}

