"""Server settings, from command-line flags and environment variables (flags win)."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_PORT = 11418


@dataclass
class Config:
    """Everything the server can be told.  Sizes in bytes, times in seconds."""

    home: Path = field(default_factory=lambda: Path(os.environ.get("HANAMI_HOME", "~/.hanami")).expanduser())
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    secret_file: str | None = field(default_factory=lambda: os.environ.get("HANAMI_SECRET_FILE") or None)
    admin_user: str | None = field(default_factory=lambda: os.environ.get("HANAMI_ADMIN_USER") or None)
    admin_password: str | None = field(default_factory=lambda: os.environ.get("HANAMI_ADMIN_PASSWORD") or None)
    policy_file: str | None = None
    token_lifetime_s: float = 3600.0
    #: worker threads for tasks (the queues of different clusters run in parallel)
    workers: int = field(default_factory=lambda: max(1, os.cpu_count() or 1))
    #: threads for direct IO and other short jobs (saves, stats, uploads' parsing)
    io_threads: int = 2
    #: operator threads per call (torch.set_num_threads); None leaves torch's default
    op_threads: int | None = None
    max_upload_bytes: int = 1 << 30
    max_body_bytes: int = 1 << 20
    max_neurons: int = 1_000_000
    task_chunk: int = 2000
    ws_idle_timeout_s: float = 300.0
    save_interval_s: float = 30.0
    login_failures_per_user: int = 5
    login_failures_per_address: int = 20
    login_window_s: float = 60.0

    def check_bind(self, secret_configured: bool) -> None:
        """Refuses to listen beyond this machine unless a secret was configured on purpose."""
        if not is_loopback(self.host) and not secret_configured:
            raise SystemExit(
                f"refusing to listen on {self.host}: outside 127.0.0.1/::1 the server needs a token secret "
                "of your own; write 32+ random bytes to a file and set HANAMI_SECRET_FILE (or --secret-file), "
                "and put TLS in front of it"
            )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
