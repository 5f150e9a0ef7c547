"""Load benchmark of the service: many WebSocket clients doing single-sample inference.

Starts ``hanami-torch serve`` on a free loopback port with a fresh ``HANAMI_HOME``, creates a
user, uploads the MNIST training set and trains the 784-400-10 cluster for one epoch as a task
(without MNIST: 2,000 steps of random images over direct IO), then opens ``--clients``
WebSockets that each send one test image after the other (binary frames, lock-step: one frame in
flight per socket) for ``--seconds``.  Meanwhile a REST client asks ``GET /v1/clusters/{id}``
every 50 ms, to show that the sockets do not starve the API.

    python benchmarks/service_load.py --json bench-results/service_load.json
    taskset -c 0 python benchmarks/service_load.py --seconds 10     # everything on one core

JSON written by ``--json`` (latencies in milliseconds)::

    {"clients", "seconds", "inferences", "inferences_per_second",
     "latency_ms": {"p50", "p99"}, "rest_latency_ms": {"p50", "p99"}, "rest_requests",
     "errors", "client_processes", "cpus", "machine"}

The clients run in ``--client-processes`` processes (default 1) beside the server, on the same
machine: the figure is what the whole machine does, client side included.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hanami_torch import templates  # noqa: E402
from hanami_torch.client import HanamiClient  # noqa: E402
from hanami_torch.data import data_dir, mnist_available  # noqa: E402

from _common import machine_description  # noqa: E402

ADMIN, PASSWORD = "admin", "benchmark-password"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(home: Path, port: int, extra: list[str]) -> subprocess.Popen:
    env = dict(os.environ, HANAMI_ADMIN_USER=ADMIN, HANAMI_ADMIN_PASSWORD=PASSWORD)
    process = subprocess.Popen([sys.executable, "-m", "hanami_torch.client.cli", "serve", "--port", str(port),
                                "--home", str(home), *extra], env=env,
                               stdout=open(home.parent / "server.log", "ab"), stderr=subprocess.STDOUT)
    for _ in range(600):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            if process.poll() is not None:
                raise SystemExit(f"the server exited: {(home.parent / 'server.log').read_text()}")
            time.sleep(0.1)
    raise SystemExit("the server did not start within 60 s")


def prepare(url: str) -> tuple[str, str, np.ndarray]:
    """A trained MNIST cluster; returns (token, cluster id, test images [N, 784] float32)."""
    admin = HanamiClient(url)
    admin.login(ADMIN, PASSWORD)
    admin.create_project("bench", "Benchmark")
    admin.create_user("loader", "Load generator", PASSWORD)
    admin.set_member("bench", "loader", "member")
    user = HanamiClient(url)
    user.login("loader", PASSWORD)
    cluster = user.create_cluster("mnist", templates.MNIST)
    if mnist_available():
        raw = data_dir() / "MNIST" / "raw"
        train = user.upload_mnist("train", raw / "train-images-idx3-ubyte", raw / "train-labels-idx1-ubyte")
        task = user.wait_task(user.create_task(cluster["id"], train["id"], "train")["id"], poll_s=0.2)
        print(f"trained one MNIST epoch: {task['state']}, "
              f"{user.get_cluster(cluster['id'])['stats']['synapses']} synapses", file=sys.stderr)
        images = np.fromfile(raw / "t10k-images-idx3-ubyte", dtype=np.uint8, offset=16).reshape(-1, 784)
        images = images[:1000].astype(np.float32)
    else:
        generator = np.random.default_rng(0)
        images = (generator.random((1000, 784)) * 255).astype(np.float32)

        async def learn():
            async with user.direct_io(cluster["id"]) as io:
                for index in range(2000):
                    target = [0.0] * 10
                    target[index % 10] = 1.0
                    await io.learn(images[index % 1000], target)

        asyncio.run(learn())
        print("MNIST not found: trained 2,000 random samples over direct IO", file=sys.stderr)
    return user.token, cluster["id"], images


async def run_clients(url: str, token: str, cluster_id: str, images: np.ndarray, clients: int, seconds: float,
                      offset: int) -> dict:
    import aiohttp

    frames = [struct.pack("<B3x", 1) + image.astype("<f4").tobytes() for image in images]
    ws_url = url.replace("http", "ws", 1) + f"/v1/clusters/{cluster_id}/io"
    latencies: list[float] = []
    errors = 0
    start_line = time.monotonic() + 1.0  # all sockets open before the clock starts
    stop_at = start_line + seconds

    async def one(number: int, session):
        nonlocal errors
        async with session.ws_connect(ws_url, headers={"Authorization": f"Bearer {token}"}) as ws:
            await asyncio.sleep(max(0.0, start_line - time.monotonic()))
            index = number * 37 + offset
            perf = time.perf_counter
            while time.monotonic() < stop_at:
                sent = perf()
                await ws.send_bytes(frames[index % len(frames)])
                reply = await ws.receive()
                latencies.append(perf() - sent)
                if not isinstance(reply.data, bytes) or reply.data[0] != 0:
                    errors += 1
                index += 1

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(one(number, session) for number in range(clients)))
    return {"latencies": latencies, "errors": errors}


def client_process(args: tuple, queue) -> None:
    queue.put(asyncio.run(run_clients(*args)))


def probe_rest(url: str, token: str, cluster_id: str, stop: threading.Event, latencies: list) -> None:
    client = HanamiClient(url, token)
    while not stop.is_set():
        started = time.perf_counter()
        client.get_cluster(cluster_id)
        latencies.append(time.perf_counter() - started)
        stop.wait(0.05)


def percentile_ms(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(np.array(values) * 1000, q)), 3) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=32, help="WebSocket clients (default 32)")
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of the load (default 20)")
    parser.add_argument("--client-processes", type=int, default=1, help="processes the clients are spread over")
    parser.add_argument("--server-args", default="", help="extra flags for 'hanami-torch serve'")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="hanami-load-") as folder:
        home, port = Path(folder) / "home", free_port()
        url = f"http://127.0.0.1:{port}"
        server = start_server(home, port, args.server_args.split())
        try:
            token, cluster_id, images = prepare(url)
            stop, rest = threading.Event(), []
            prober = threading.Thread(target=probe_rest, args=(url, token, cluster_id, stop, rest), daemon=True)
            prober.start()
            started = time.monotonic()
            per_process = [args.clients // args.client_processes + (i < args.clients % args.client_processes)
                           for i in range(args.client_processes)]
            if args.client_processes == 1:
                outcomes = [asyncio.run(run_clients(url, token, cluster_id, images, args.clients, args.seconds, 0))]
            else:
                context = multiprocessing.get_context("spawn")
                queue = context.Queue()
                workers = [context.Process(target=client_process, args=(
                    (url, token, cluster_id, images, count, args.seconds, 1000 * i), queue))
                    for i, count in enumerate(per_process)]
                for worker in workers:
                    worker.start()
                outcomes = [queue.get() for _ in workers]
                for worker in workers:
                    worker.join()
            elapsed = time.monotonic() - started - 1.0
            stop.set()
            prober.join()
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=60)
    latencies = [value for outcome in outcomes for value in outcome["latencies"]]
    results = {
        "clients": args.clients,
        "seconds": args.seconds,
        "inferences": len(latencies),
        "inferences_per_second": round(len(latencies) / args.seconds, 1),
        "latency_ms": {"p50": percentile_ms(latencies, 50), "p99": percentile_ms(latencies, 99)},
        "rest_latency_ms": {"p50": percentile_ms(rest, 50), "p99": percentile_ms(rest, 99)},
        "rest_requests": len(rest),
        "errors": sum(outcome["errors"] for outcome in outcomes),
        "client_processes": args.client_processes,
        "cpus": sorted(os.sched_getaffinity(0)),
        "wall_seconds": round(elapsed, 2),
        "machine": machine_description(),
    }
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
