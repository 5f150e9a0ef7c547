"""Counters for ``GET /metrics`` in the Prometheus text format (written by hand: no dependency)."""

from __future__ import annotations

import threading
from collections import defaultdict


class Metrics:
    """Request counts and latencies per operation and status, plus direct-IO counters."""

    def __init__(self):
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.sockets = 0
        self.frames = 0

    def observe(self, operation: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(operation, status)] += 1
            self.seconds[operation] += seconds
            self.calls[operation] += 1

    def text(self, service) -> str:
        lines = [
            "# HELP hanami_http_requests_total HTTP requests by operation and status.",
            "# TYPE hanami_http_requests_total counter",
        ]
        with self._lock:
            for (operation, status), count in sorted(self.requests.items()):
                lines.append(f'hanami_http_requests_total{{operation="{operation}",status="{status}"}} {count}')
            lines += ["# HELP hanami_http_request_seconds Time spent answering HTTP requests.",
                      "# TYPE hanami_http_request_seconds summary"]
            for operation in sorted(self.calls):
                lines.append(f'hanami_http_request_seconds_sum{{operation="{operation}"}} {self.seconds[operation]:.6f}')
                lines.append(f'hanami_http_request_seconds_count{{operation="{operation}"}} {self.calls[operation]}')
        counts = service.tasks.counts()
        lines += [
            "# HELP hanami_websockets_open Direct-IO sockets open now.", "# TYPE hanami_websockets_open gauge",
            f"hanami_websockets_open {self.sockets}",
            "# HELP hanami_directio_frames_total Direct-IO frames answered.",
            "# TYPE hanami_directio_frames_total counter", f"hanami_directio_frames_total {self.frames}",
            "# HELP hanami_directio_samples_total Samples run for direct IO.",
            "# TYPE hanami_directio_samples_total counter", f"hanami_directio_samples_total {service.direct_io.samples}",
            "# HELP hanami_clusters_loaded Clusters in memory.", "# TYPE hanami_clusters_loaded gauge",
            f"hanami_clusters_loaded {len(service.registry)}",
            "# HELP hanami_tasks_queued Tasks waiting for their cluster.", "# TYPE hanami_tasks_queued gauge",
            f"hanami_tasks_queued {counts['queued']}",
            "# HELP hanami_clusters_busy Clusters running a task.", "# TYPE hanami_clusters_busy gauge",
            f"hanami_clusters_busy {counts['busy_clusters']}",
        ]
        return "\n".join(lines) + "\n"
