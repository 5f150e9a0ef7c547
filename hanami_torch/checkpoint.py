"""Checkpoints of a :class:`~hanami_torch.HanamiCluster` as safetensors files (no pickle).

A checkpoint holds every layout and state tensor of the cluster under its own name, and metadata
(strings) with the format version, the package version, the template text, the seed, the
constructor options and a SHA-256 checksum over the tensors and all that metadata (so an edited
seed or learning rate is noticed as well as a flipped bit). ``load`` rebuilds the cluster from the
template and then replaces its tensors, checking every name, dtype and shape and then the network's
consistency (``HanamiCluster.validate_state``), so a foreign or damaged file raises a clear error
instead of giving a silently corrupted network.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import torch

from ._version import __version__
from .template import Template

FORMAT = "hanami_torch.cluster"
#: 2: the checksum covers the metadata too; files of format 1 (checksum over the tensors only) load
FORMAT_VERSION = 2


class CheckpointError(ValueError):
    """A file that is not a readable hanami_torch checkpoint."""


def save(cluster, path: str | os.PathLike, *, optimizer: torch.optim.Optimizer | None = None) -> None:
    """Writes ``cluster`` to ``path`` (a ``.safetensors`` file), atomically.

    With ``optimizer`` (for ``learning_rule="gradient"``), its state goes beside the checkpoint,
    to :func:`optimizer_path` ``(path)``; restore it with :func:`load_optimizer`.

    The file is written under a temporary name and renamed, so an interrupted save never leaves a
    half-written checkpoint where a good one was. The arena is packed first, except with
    ``learning_rule="gradient"``, whose synapses must keep their slots (optimizer state is kept per
    slot, so an optimizer's ``state_dict`` saved alongside stays valid).
    """
    from safetensors.torch import save_file

    from . import ops

    if cluster.learning_rule != "gradient":
        cluster.compact()
    names = ops.LAYOUT + ops.STATE + ops.CODES
    tensors = {name: getattr(cluster, name).detach().cpu().contiguous() for name in names}
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
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "package_version": __version__,
        "template": cluster.template.dumps(),
        "options": json.dumps(options),
    }
    metadata["sha256"] = checksum(tensors, metadata)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".partial")
    save_file(tensors, str(temporary), metadata=metadata)
    os.replace(temporary, path)
    if optimizer is not None:
        save_optimizer(optimizer, optimizer_path(path))


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the tensors' names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{list(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def checksum(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
    """The ``sha256`` entry of a checkpoint (format 2): SHA-256 over :func:`tensor_digest` and
    every other metadata entry (keys and values, in key order)."""
    digest = hashlib.sha256(tensor_digest(tensors).encode())
    digest.update(json.dumps({key: value for key, value in metadata.items() if key != "sha256"},
                             sort_keys=True).encode())
    return digest.hexdigest()


def load(path: str | os.PathLike):
    """Reads a checkpoint written by :func:`save` and returns the cluster."""
    from . import ops
    from .cluster import HanamiCluster

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    metadata, tensors = _read(path, FORMAT, FORMAT_VERSION, "cluster checkpoint")
    # Files written before value codes (docs/streams.md) hold none: their inputs took raw values.
    names = ops.LAYOUT + ops.STATE + (ops.CODES if "input_range" in tensors else ())
    try:
        options = json.loads(metadata["options"])
        template = Template.parse(metadata["template"])
        if "input_range" not in tensors:
            template = _with_raw_inputs(template)
        cluster = HanamiCluster(template, **options)
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path} has unusable metadata: {error}") from None

    for name in names:
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
        if name in ops.LAYOUT + ("input_encoding", "output_encoding") and not torch.equal(stored, current):
            raise CheckpointError(f"{path}: tensor {name!r} does not match the template and seed")
        cluster._replace(name, stored.clone())
    try:
        cluster.validate_state()
    except ValueError as error:
        raise CheckpointError(f"{path}: {error}") from None
    # last, because the checks above name the problem more precisely when they find one
    old = int(metadata["format_version"]) < 2  # format 1: the checksum covers the tensors only
    if metadata.get("sha256") != (tensor_digest(tensors) if old else checksum(tensors, metadata)):
        raise CheckpointError(
            f"{path} is damaged: its tensors or metadata do not match the checksum written with "
            "them; restore the file from a copy"
        )
    return cluster


def _with_raw_inputs(template: Template) -> Template:
    """``template`` with ``encoding: raw`` on every input brick that names no encoding."""
    bricks = tuple(
        dataclasses.replace(brick, encoding="raw") if brick.is_input and brick.encoding is None else brick
        for brick in template.bricks
    )
    return dataclasses.replace(template, bricks=bricks)


# ---- optimizer state --------------------------------------------------------------------------

OPTIMIZER_FORMAT = "hanami_torch.optimizer"
OPTIMIZER_FORMAT_VERSION = 1


def optimizer_path(path: str | os.PathLike) -> Path:
    """Where :func:`save` puts the optimizer state of the checkpoint ``path``:
    ``model.safetensors`` -> ``model.optimizer.safetensors``."""
    path = Path(path)
    stem = path.name[: -len(".safetensors")] if path.name.endswith(".safetensors") else path.name
    return path.with_name(stem + ".optimizer.safetensors")


def save_optimizer(optimizer: torch.optim.Optimizer, path: str | os.PathLike) -> None:
    """Writes ``optimizer.state_dict()`` to a safetensors file (no pickle), atomically.

    Tensors (moments, step counts) are stored as tensors; numbers, strings, booleans and lists
    (hyperparameters, parameter indices) as JSON in the metadata. Anything else is refused.
    """
    from safetensors.torch import save_file

    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    state_dict = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    values: dict[str, dict] = {}
    for index, entries in state_dict["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state/{index}/{key}"] = value.detach().cpu().contiguous()
            else:
                values.setdefault(str(index), {})[key] = _plain(value, f"state[{index}][{key!r}]")
    groups = []
    for number, group in enumerate(state_dict["param_groups"]):
        plain = {}
        for key, value in group.items():
            if isinstance(value, torch.Tensor):  # e.g. a tensor learning rate
                tensors[f"group/{number}/{key}"] = value.detach().cpu().contiguous()
            else:
                plain[key] = _plain(value, f"param_groups[{number}][{key!r}]")
        groups.append(plain)
    metadata = {
        "format": OPTIMIZER_FORMAT,
        "format_version": str(OPTIMIZER_FORMAT_VERSION),
        "package_version": __version__,
        "optimizer": type(optimizer).__name__,
        "state_values": json.dumps(values),
        "param_groups": json.dumps(groups),
    }
    metadata["sha256"] = _optimizer_digest(tensors, metadata)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".partial")
    save_file(tensors, str(temporary), metadata=metadata)
    os.replace(temporary, path)


def load_optimizer(optimizer: torch.optim.Optimizer, path: str | os.PathLike) -> None:
    """Restores into ``optimizer`` the state :func:`save_optimizer` (or ``save(..., optimizer=)``)
    wrote. ``path`` may be the optimizer file or the cluster checkpoint it belongs to. The
    optimizer must be of the same class and hold the same parameters (create it on the loaded
    cluster's parameters first)."""
    path = Path(path)
    if path.is_file() and not path.name.endswith(".optimizer.safetensors") and _format_of(path) == FORMAT:
        path = optimizer_path(path)  # a cluster checkpoint: its optimizer state lies beside it
    if not path.is_file():
        raise FileNotFoundError(f"no optimizer state at {path} (save it with hanami_torch.save(cluster, path, optimizer=...))")
    metadata, tensors = _read(path, OPTIMIZER_FORMAT, OPTIMIZER_FORMAT_VERSION, "optimizer state")
    if metadata.get("sha256") != _optimizer_digest(tensors, metadata):
        raise CheckpointError(f"{path} is damaged: its contents do not match the checksum written with them")
    if metadata.get("optimizer") != type(optimizer).__name__:
        raise CheckpointError(
            f"{path} holds the state of a {metadata.get('optimizer')} optimizer, not of a "
            f"{type(optimizer).__name__}: create the same kind of optimizer before loading"
        )
    try:
        values = json.loads(metadata["state_values"])
        groups = json.loads(metadata["param_groups"])
        state: dict[int, dict] = {}
        for index, entries in values.items():
            state.setdefault(int(index), {}).update(entries)
        for name, tensor in tensors.items():
            kind, number, key = name.split("/", 2)
            if kind == "state":
                state.setdefault(int(number), {})[key] = tensor
            elif kind == "group":
                groups[int(number)][key] = tensor
            else:
                raise ValueError(f"unexpected tensor {name!r}")
    except (KeyError, ValueError, IndexError, TypeError, AttributeError) as error:
        raise CheckpointError(f"{path} has unusable optimizer metadata: {error}") from None
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError, RuntimeError) as error:
        raise CheckpointError(
            f"{path} does not fit this optimizer ({error}); create it on the parameters of the "
            "cluster the state was saved with"
        ) from None


def _format_of(path: Path) -> str | None:
    """The ``format`` metadata of a safetensors file (its header only), or None."""
    from safetensors import SafetensorError
    from safetensors.torch import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return (handle.metadata() or {}).get("format")
    except (SafetensorError, OSError, ValueError):
        return None


def _read(path: Path, file_format: str, newest: int, what: str) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """Metadata and tensors of a safetensors file of ``file_format`` (version <= ``newest``), or
    CheckpointError naming the problem."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path} is not a readable safetensors file: {error}") from None
    if metadata.get("format") != file_format:
        raise CheckpointError(f"{path} is not a hanami_torch {what} (format {metadata.get('format')!r})")
    version = metadata.get("format_version", "")
    if not version.isdigit() or int(version) > newest:
        raise CheckpointError(
            f"{path} has {what} format {version!r}; this hanami_torch ({__version__}) reads "
            f"format <= {newest}: upgrade hanami_torch"
        )
    return metadata, tensors


def _plain(value, where: str):
    """``value`` as JSON-ready data, or TypeError naming where it came from."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(item, where) for item in value]
    raise TypeError(f"cannot store optimizer {where} of type {type(value).__name__} without pickle")


def _optimizer_digest(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
    digest = hashlib.sha256(tensor_digest(tensors).encode())
    for key in ("optimizer", "state_values", "param_groups"):
        digest.update(f"|{key}={metadata.get(key)}".encode())
    return digest.hexdigest()
