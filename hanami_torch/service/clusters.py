"""The live networks: one :class:`~hanami_torch.HanamiCluster` per cluster row, kept in memory,
checkpointed to ``HANAMI_HOME/clusters/<id>.safetensors`` and reloaded when the server starts.

Every use of a network (a chunk of a task, a batch of direct-IO samples, a save) holds the
cluster's lock, so tasks and sockets can share a cluster safely; they interleave chunk by chunk.

Direct IO goes through :class:`DirectIO`: samples from all sockets of a cluster queue up and run
as one ``predict_many`` call in a worker thread (samples still run one after the other inside the
operator, so the answers are those of sequential calls), which keeps the event loop free and
amortises the per-call overhead when many clients talk to one network.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..template import Template, TemplateError
from .errors import Unprocessable

log = logging.getLogger("hanami_torch.service")


def check_template(text: str, max_neurons: int) -> Template:
    """Parses template text, refusing networks larger than the server allows (422)."""
    try:
        template = Template.parse(text)
    except TemplateError as error:
        raise Unprocessable(f"the template does not parse: {error}") from None
    total = sum(brick.number_of_neurons for brick in template.bricks)
    if total > max_neurons:
        raise Unprocessable(
            f"the template has {total} neurons; this server allows at most {max_neurons} (--max-neurons)"
        )
    return template


@dataclass(eq=False)
class LiveCluster:
    """A network in memory and what guards it."""

    id: str
    module: object  # HanamiCluster
    lock: threading.Lock = field(default_factory=threading.Lock)
    dirty: bool = False
    deleted: bool = False
    sockets: set = field(default_factory=set)
    #: socket -> the task closing it from elsewhere (its handler waits for it before it returns)
    closers: dict = field(default_factory=dict)
    # direct IO queue (see DirectIO)
    pending: list = field(default_factory=list)
    draining: bool = False
    io_lock: threading.Lock = field(default_factory=threading.Lock)


class ClusterRegistry:
    """Creates, finds, saves, restores and forgets live clusters.  Thread-safe."""

    def __init__(self, folder: Path, max_neurons: int):
        self.folder = folder
        self.max_neurons = max_neurons
        self.folder.mkdir(parents=True, exist_ok=True)
        self._live: dict[str, LiveCluster] = {}
        self._lock = threading.Lock()

    def path(self, cluster_id: str) -> Path:
        return self.folder / f"{cluster_id}.safetensors"

    def __len__(self) -> int:
        return len(self._live)

    def all(self) -> list[LiveCluster]:
        with self._lock:
            return list(self._live.values())

    def get(self, cluster_id: str) -> LiveCluster:
        with self._lock:
            return self._live[cluster_id]

    def build(self, template_text: str, seed: int):
        """A new network from template text (422 when the text is unusable)."""
        from ..cluster import HanamiCluster

        template = check_template(template_text, self.max_neurons)
        try:
            return HanamiCluster(template, seed=seed)
        except ValueError as error:
            raise Unprocessable(f"the template cannot be built: {error}") from None

    def add(self, cluster_id: str, module) -> LiveCluster:
        live = LiveCluster(cluster_id, module)
        self.save(live)
        with self._lock:
            self._live[cluster_id] = live
        return live

    def save(self, live: LiveCluster) -> None:
        """Writes the network to its file (atomic: a temporary file and a rename)."""
        from .. import checkpoint

        with live.lock:
            if live.deleted:
                return
            live.dirty = False
            checkpoint.save(live.module, self.path(live.id))

    def save_dirty(self) -> int:
        """Saves every network changed by direct-IO training since its last save."""
        with self._lock:
            dirty = [live for live in self._live.values() if live.dirty]
        for live in dirty:
            self.save(live)
        return len(dirty)

    def replace(self, live: LiveCluster, module) -> None:
        """Puts another network (a restored checkpoint) in place of the cluster's current one."""
        with live.lock:
            live.module = module
        self.save(live)

    def remove(self, cluster_id: str) -> LiveCluster | None:
        with self._lock:
            live = self._live.pop(cluster_id, None)
        if live is not None:
            with live.lock:
                live.deleted = True
        self.path(cluster_id).unlink(missing_ok=True)
        return live

    def load_all(self, rows: list[dict], on_error) -> None:
        """Loads the networks of the stored cluster rows at start.  A missing or damaged file is
        reported through ``on_error`` and the network rebuilt empty from its template."""
        from .. import checkpoint

        for row in rows:
            try:
                module = checkpoint.load(self.path(row["id"]))
            except (OSError, ValueError) as error:
                on_error(f"cluster {row['id']}: its state could not be loaded ({error}); rebuilt it untrained")
                module = self.build(row["template"], row["seed"])
            with self._lock:
                self._live[row["id"]] = LiveCluster(row["id"], module)
        for live in list(self._live.values()):
            if not self.path(live.id).exists():
                self.save(live)


async def close_sockets(live: LiveCluster, code: int, message: bytes, wait: bool = False) -> None:
    """Starts closing every direct-IO socket of a cluster with ``code``.  Each socket's handler
    waits for its close handshake before it returns; the caller waits too only with ``wait``
    (a client may be blocked on the very request that deletes its cluster)."""
    closers = []
    for socket in list(live.sockets):
        closers.append(asyncio.ensure_future(socket.close(code=code, message=message)))
        live.closers[socket] = closers[-1]
    if wait and closers:
        await asyncio.wait(closers, timeout=15)


class DirectIO:
    """Runs single samples of direct-IO sockets, batched per cluster, off the event loop."""

    def __init__(self, executor: Executor):
        self.executor = executor
        self.samples = 0

    async def run(self, live: LiveCluster, inputs: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        """The outputs ``[n_outputs]`` for ``inputs`` ``[n_inputs]``; with ``targets`` it is one
        training step and the outputs are those before the update."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with live.io_lock:
            live.pending.append((inputs, targets, future, loop))
            start = not live.draining
            live.draining = True
        if start:
            # start the batch after the loop has read every frame that arrived with this one
            loop.call_soon(self.executor.submit, self._drain, live)
        return await future

    def _drain(self, live: LiveCluster) -> None:
        """Runs what is pending as one batch, answers it, and hands the next batch back to the
        event loop, which starts it once it has read the frames that arrived meanwhile."""
        with live.io_lock:
            batch, live.pending = live.pending, []
        answers = self._compute(live, batch) if batch else []
        by_loop: dict = {}
        for (_, _, future, loop), answer in zip(batch, answers):
            by_loop.setdefault(loop, []).append((future, answer))
        with live.io_lock:
            live.draining = bool(live.pending)
            next_loop = live.pending[0][3] if live.pending else None
        for loop, pairs in by_loop.items():
            loop.call_soon_threadsafe(_resolve, pairs)
        if next_loop is not None:
            next_loop.call_soon_threadsafe(self.executor.submit, self._drain, live)

    def _compute(self, live: LiveCluster, batch: list) -> list:
        """Runs the batch in order: consecutive predictions as one call, training steps one by one."""
        answers: list = []
        index = 0
        with live.lock:
            module = live.module
            while index < len(batch):
                if live.deleted:
                    answers.append(Unprocessable("the cluster was deleted"))
                    index += 1
                    continue
                inputs, targets = batch[index][0], batch[index][1]
                if targets is not None:
                    answers.append(_guarded(module.learn_many, inputs.unsqueeze(0), targets.unsqueeze(0)))
                    live.dirty = True
                    index += 1
                    continue
                end = index
                while end < len(batch) and batch[end][1] is None:
                    end += 1
                try:
                    answers.extend(module.predict_many(torch.stack([item[0] for item in batch[index:end]])))
                except ValueError:
                    # a sample the network refuses: answer each one on its own
                    answers.extend(_guarded(module.predict_many, item[0].unsqueeze(0)) for item in batch[index:end])
                index = end
        self.samples += len(batch)
        return answers


def _guarded(method, *args):
    try:
        return method(*args)[0]
    except ValueError as error:
        return Unprocessable(str(error))


def _resolve(pairs: list) -> None:
    for future, answer in pairs:
        if future.cancelled():
            continue
        if isinstance(answer, Exception):
            future.set_exception(answer)
        else:
            future.set_result(answer)
