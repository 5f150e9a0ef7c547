"""Checkpoints of a :class:`~hanami_torch.HanamiCluster` as safetensors files (no pickle).

A checkpoint holds every layout and state tensor of the cluster under its own name, and metadata
(strings) with the format version, the package version, the template text, the seed, the
constructor options and a SHA-256 checksum of the tensors. ``load`` rebuilds the cluster from the template and then replaces its tensors,
checking every name, dtype and shape, so a foreign or damaged file raises a clear error instead of
giving a silently corrupted network.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from ._version import __version__

FORMAT = "hanami_torch.cluster"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A file that is not a readable hanami_torch checkpoint."""


def save(cluster, path: str | os.PathLike) -> None:
    """Writes ``cluster`` to ``path`` (a ``.safetensors`` file), atomically.

    The file is written under a temporary name and renamed, so an interrupted save never leaves a
    half-written checkpoint where a good one was. The arena is packed first, except with
    ``learning_rule="gradient"``, whose synapses must keep their slots (optimizer state is kept per
    slot, so an optimizer's ``state_dict`` saved alongside stays valid).
    """
    from safetensors.torch import save_file

    from . import ops

    if cluster.learning_rule != "gradient":
        cluster.compact()
    tensors = {name: getattr(cluster, name).detach().contiguous() for name in ops.LAYOUT + ops.STATE}
    options = {
        "seed": cluster.seed,
        "compat": cluster.compat,
        "learning_rate": cluster.learning_rate,
        "init_scale": cluster.init_scale,
        "optimizer": cluster.optimizer,
        "input_fan_in": cluster.input_fan_in,
    }
    if cluster.learning_rule != "hanami":  # older files have no key: Hanami's rule
        options["learning_rule"] = cluster.learning_rule
    if cluster.input_shape is not None:  # receptive fields (older files have neither key)
        options["input_shape"] = list(cluster.input_shape)
        options["field_radius"] = cluster.field_radius
    metadata = {
        "sha256": tensor_digest(tensors),
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "package_version": __version__,
        "template": cluster.template.dumps(),
        "options": json.dumps(options),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".partial")
    save_file(tensors, str(temporary), metadata=metadata)
    os.replace(temporary, path)


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the tensors' names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].contiguous()
        digest.update(f"{name}|{tensor.dtype}|{list(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def load(path: str | os.PathLike):
    """Reads a checkpoint written by :func:`save` and returns the cluster."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    from . import ops
    from .cluster import HanamiCluster

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path} is not a readable safetensors file: {error}") from None
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a hanami_torch cluster checkpoint (format {metadata.get('format')!r})")
    version = metadata.get("format_version", "")
    if not version.isdigit() or int(version) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {version!r}; this hanami_torch ({__version__}) reads "
            f"format <= {FORMAT_VERSION}: upgrade hanami_torch"
        )
    try:
        options = json.loads(metadata["options"])
        cluster = HanamiCluster(metadata["template"], **options)
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path} has unusable metadata: {error}") from None

    for name in ops.LAYOUT + ops.STATE:
        if name not in tensors:
            raise CheckpointError(f"{path} lacks the tensor {name!r}")
        current, stored = getattr(cluster, name), tensors[name]
        if stored.dtype != current.dtype:
            raise CheckpointError(f"{path}: tensor {name!r} is {stored.dtype}, expected {current.dtype}")
        grows = name.startswith("syn_")
        if stored.dim() != current.dim() or (not grows and stored.shape != current.shape):
            raise CheckpointError(
                f"{path}: tensor {name!r} has shape {list(stored.shape)}, expected {list(current.shape)}"
            )
        if name in ops.LAYOUT and not torch.equal(stored, current):
            raise CheckpointError(f"{path}: tensor {name!r} does not match the template and seed")
        cluster._replace(name, stored.clone())
    try:
        cluster.validate_state()
    except ValueError as error:
        raise CheckpointError(f"{path}: {error}") from None
    # last, because the checks above name the problem more precisely when they find one
    if metadata.get("sha256") != tensor_digest(tensors):
        raise CheckpointError(
            f"{path} is damaged: its tensors do not match the checksum written with them; restore "
            "the file from a copy"
        )
    return cluster
