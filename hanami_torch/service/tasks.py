"""Background tasks: training and request (inference) passes over a dataset.

Each cluster has a FIFO queue; its tasks run one after the other, and the queues of different
clusters run at the same time in a pool of worker threads (the operators release the GIL while
they compute).  A task works in chunks of samples; between chunks it records its progress and
looks for a cancel, so a cancel takes effect within one chunk.

States: ``queued`` -> ``running`` -> ``finished`` | ``failed`` (with the reason) | ``cancelled``.
A server that stops while tasks wait marks them ``failed`` at its next start ("interrupted").
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import deque
from concurrent.futures import Executor
from pathlib import Path
from typing import Callable

import numpy as np

from . import datasets
from .clusters import ClusterRegistry
from .store import Store, now

log = logging.getLogger("hanami_torch.service")

ENDED = ("finished", "failed", "cancelled")


class Cancelled(Exception):
    pass


class Interrupted(Exception):
    pass


class TaskRunner:
    """Queues tasks per cluster and runs them in ``executor``."""

    def __init__(self, store: Store, registry: ClusterRegistry, executor: Executor, home: Path,
                 dataset_loader: Callable[[str], datasets.Data], chunk: int = 2000,
                 on_error: Callable[[str], None] | None = None):
        self.store = store
        self.registry = registry
        self.executor = executor
        self.home = home
        self.load_dataset = dataset_loader
        self.chunk = chunk
        self.on_error = on_error or (lambda message: None)
        self._queues: dict[str, deque] = {}
        self._busy: set[str] = set()
        self._cancelled: set[str] = set()
        self._lock = threading.Lock()
        self.stopping = False

    def stop(self) -> None:
        """Running tasks end after their current chunk, as failed ("interrupted")."""
        self.stopping = True

    def recover(self) -> None:
        """At start: tasks that were queued or running when the server stopped are failed."""
        for state in ("queued", "running"):
            for row in self.store.all_resources("tasks", state=state):
                self.store.update_resource("tasks", row["id"], state="failed", finished_at=now(),
                                           error="interrupted: the server stopped before the task ended")

    def submit(self, task_id: str, cluster_id: str) -> None:
        with self._lock:
            self._queues.setdefault(cluster_id, deque()).append(task_id)
            if cluster_id in self._busy:
                return
            self._busy.add(cluster_id)
        self.executor.submit(self._drain, cluster_id)

    def cancel(self, task_id: str) -> bool:
        """Cancels a queued or running task; False when it had ended already."""
        with self._lock:
            for queue in self._queues.values():
                if task_id in queue:
                    queue.remove(task_id)
                    self.store.update_resource("tasks", task_id, state="cancelled", finished_at=now())
                    return True
            row = self.store.resource("tasks", task_id, None)
            if row["state"] != "running":
                return False
            self._cancelled.add(task_id)
            return True

    def cancel_cluster(self, cluster_id: str) -> None:
        """Cancels every task of a cluster (it is being deleted or restored)."""
        for row in self.store.all_resources("tasks", cluster_id=cluster_id):
            if row["state"] not in ENDED:
                self.cancel(row["id"])

    def active(self, cluster_id: str) -> bool:
        with self._lock:
            return cluster_id in self._busy

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {"queued": sum(len(queue) for queue in self._queues.values()), "busy_clusters": len(self._busy)}

    # -- in the worker threads ------------------------------------------------------------------

    def _drain(self, cluster_id: str) -> None:
        while True:
            with self._lock:
                queue = self._queues.get(cluster_id)
                if not queue:
                    self._busy.discard(cluster_id)
                    self._queues.pop(cluster_id, None)
                    return
                task_id = queue.popleft()
            self._run(task_id)

    def _run(self, task_id: str) -> None:
        if self.stopping:
            return  # marked failed ("interrupted") at the next start
        try:
            task = self.store.resource("tasks", task_id, None)
        except Exception:  # deleted while queued
            return
        self.store.update_resource("tasks", task_id, state="running", started_at=now())
        try:
            outputs = self._work(task)
            if task["type"] == "request":
                self._store_result(task, outputs)
            self.store.update_resource("tasks", task_id, state="finished", progress=1.0, finished_at=now())
        except Cancelled:
            self.store.update_resource("tasks", task_id, state="cancelled", finished_at=now())
        except Interrupted:
            self.store.update_resource("tasks", task_id, state="failed", finished_at=now(),
                                       error="interrupted: the server stopped before the task ended")
        except (ValueError, OSError, KeyError) as error:
            self.store.update_resource("tasks", task_id, state="failed", finished_at=now(), error=str(error))
        except Exception as error:  # a bug: record it, keep the worker alive
            log.exception("task %s failed", task_id)
            self.on_error(f"task {task_id}: {type(error).__name__}: {error}")
            self.store.update_resource("tasks", task_id, state="failed", finished_at=now(),
                                       error=f"internal error ({type(error).__name__}); see the error log")
        finally:
            with self._lock:
                self._cancelled.discard(task_id)

    def _work(self, task: dict):
        try:
            live = self.registry.get(task["cluster_id"])
        except KeyError:
            raise ValueError("the cluster was deleted") from None
        train = task["type"] == "train"
        data = self.load_dataset(task["dataset_id"])
        inputs, targets = datasets.samples(data, live.module, train)
        count = inputs.shape[0]
        epochs = task["epochs"] if train else 1
        total = count * epochs
        self.store.update_resource("tasks", task["id"], samples_total=total)
        outputs = []
        done = 0
        for _ in range(epochs):
            for start in range(0, count, self.chunk):
                if task["id"] in self._cancelled or live.deleted:
                    raise Cancelled()
                if self.stopping:
                    raise Interrupted()
                end = min(start + self.chunk, count)
                with live.lock:
                    if train:
                        # the arena is packed once, by the checkpoint below, not after every chunk
                        live.module.learn_many(inputs[start:end], targets[start:end], compact=False)
                    else:
                        outputs.append(live.module.predict_many(inputs[start:end]).numpy())
                done += end - start
                self.store.update_resource("tasks", task["id"], samples_done=done, progress=done / total)
        if train:
            self.registry.save(live)
            return None
        return np.concatenate(outputs) if outputs else np.zeros((0, live.module.n_outputs), np.float32)

    def _store_result(self, task: dict, outputs: np.ndarray) -> None:
        if task["id"] in self._cancelled:
            raise Cancelled()
        result_id = str(uuid.uuid4())
        folder = self.home / "results"
        folder.mkdir(exist_ok=True)
        np.save(folder / f"{result_id}.npy", outputs.astype(np.float32))
        self.store.add_resource("results", {
            "id": result_id, "name": task["name"], "project_id": task["project_id"], "owner_id": task["owner_id"],
            "task_id": task["id"], "cluster_id": task["cluster_id"], "dataset_id": task["dataset_id"],
            "samples": int(outputs.shape[0]), "outputs": int(outputs.shape[1]),
        })
        self.store.update_resource("tasks", task["id"], result_id=result_id)
