"""Helpers shared by the benchmark scripts (run them as scripts: ``python benchmarks/<name>.py``)."""

from __future__ import annotations

import json
import os
import platform
import resource
import sys

import torch


def cpu_model() -> str:
    """The processor's model name (from /proc/cpuinfo on Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description() -> str:
    """One line naming the OS, the processor and the number of logical CPUs."""
    processor = cpu_model()
    return f"{platform.platform()}, {processor}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def accuracy_percent(outputs: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of rows of ``outputs [N, classes]`` whose largest entry is at ``labels [N]``, in percent."""
    return (outputs.argmax(1) == labels).float().mean().item() * 100


def write_json(path, results: dict) -> None:
    """Writes a benchmark's results as indented JSON (creating the folder) and says where."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results written to {path}")
