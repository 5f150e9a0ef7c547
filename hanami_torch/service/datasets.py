"""Datasets: receiving uploads, checking and storing them, and turning them into samples.

Two kinds, as in Hanami:

* ``mnist``: a pair of IDX files (images ``idx3`` of unsigned bytes, labels ``idx1``), checked
  completely on arrival (magic numbers, counts, sizes, labels 0..9) and kept as they came.
* ``csv``: a table with a header row of column names and numeric cells (``true``/``false`` count
  as 1/0), stored as a float32 array.  A cluster reads it as a time series, Hanami's way: every
  input brick reads the column of its name through a window as wide as the brick, every output
  brick the column of its name (see :func:`samples`).

Uploads stream into a temporary folder while their SHA-256 and size are computed; only a
complete upload whose checksums match and whose content parses is moved into place.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import BadRequest, PayloadTooLarge, Unprocessable

#: The file parts of each dataset type, in the order of the multipart body.
PARTS = {"mnist": ("images", "labels"), "csv": ("table",)}
MAX_CSV_COLUMNS = 4096
_CHUNK = 1 << 16


@dataclass
class Data:
    """A dataset in memory: ``inputs`` float32 ``[N, width]`` (MNIST pixels) with int64
    ``labels`` ``[N]``, or a float32 ``table`` ``[lines, columns]`` with its ``columns``."""

    kind: str
    inputs: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    table: torch.Tensor | None = None
    columns: tuple[str, ...] = ()


async def receive_parts(reader, kind: str, declared: dict[str, str], folder: Path, limit: int) -> dict[str, Path]:
    """Streams the parts of a multipart body into ``folder``, checking each part's SHA-256
    against ``declared`` and the total size against ``limit``.  On any failure the caller
    removes ``folder``; nothing is kept."""
    wanted = PARTS[kind]
    received: dict[str, Path] = {}
    total = 0
    while True:
        try:
            part = await reader.next()
        except ValueError as error:
            raise BadRequest(f"the multipart body is malformed: {error}") from None
        if part is None:
            break
        name = part.name
        if name not in wanted:
            raise Unprocessable(f"unexpected part {name!r}; a {kind} dataset has the parts {', '.join(wanted)}")
        if name in received:
            raise Unprocessable(f"the part {name!r} appears twice")
        path = folder / name  # a fixed name from PARTS, never the client's file name
        digest = hashlib.sha256()
        with open(path, "wb") as handle:
            while True:
                chunk = await part.read_chunk(_CHUNK)
                if not chunk:
                    break
                total += len(chunk)
                if total > limit:
                    raise PayloadTooLarge(f"the upload is larger than this server's limit of {limit} bytes (--max-upload-bytes)")
                digest.update(chunk)
                handle.write(chunk)
        if not part.at_eof():
            raise BadRequest(f"the body ended inside the part {name!r}: the upload is truncated; send it again")
        if digest.hexdigest() != declared[name]:
            raise Unprocessable(
                f"the part {name!r} has SHA-256 {digest.hexdigest()}, but {declared[name]} was declared: "
                "the data changed on the way or the wrong file was sent; upload again"
            )
        received[name] = path
    missing = [name for name in wanted if name not in received]
    if missing:
        raise Unprocessable(f"the upload lacks the part(s) {', '.join(missing)}")
    return received


def check_and_store(kind: str, received: dict[str, Path], target: Path) -> dict:
    """Checks the content of a received upload and moves it to ``target`` (a new folder).
    Returns the metadata for the database: samples, inputs, outputs, columns."""
    if kind == "mnist":
        meta = _check_mnist(received["images"], received["labels"])
        target.mkdir(parents=True)
        shutil.move(received["images"], target / "images.idx")
        shutil.move(received["labels"], target / "labels.idx")
    else:
        table, columns = _parse_csv(received["table"])
        target.mkdir(parents=True)
        np.save(target / "table.npy", table)
        meta = {"samples": table.shape[0], "inputs": table.shape[1], "outputs": 0, "columns": list(columns)}
    return meta


def load(kind: str, folder: Path, columns: list[str]) -> Data:
    """Reads a stored dataset."""
    if kind == "mnist":
        images = (folder / "images.idx").read_bytes()
        labels = (folder / "labels.idx").read_bytes()
        count, rows, cols = (int.from_bytes(images[4 + 4 * i : 8 + 4 * i], "big") for i in range(3))
        pixels = np.frombuffer(images, dtype=np.uint8, offset=16).reshape(count, rows * cols)
        return Data("mnist", inputs=torch.from_numpy(pixels.astype(np.float32)),
                    labels=torch.from_numpy(np.frombuffer(labels, dtype=np.uint8, offset=8).astype(np.int64)))
    table = np.load(folder / "table.npy", allow_pickle=False)
    return Data("csv", table=torch.from_numpy(table), columns=tuple(columns))


def samples(data: Data, cluster, train: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The rows a task feeds to ``cluster``: inputs ``[N, n_inputs]`` and, for training,
    targets ``[N, n_outputs]``.  Raises ValueError when the dataset does not fit the cluster.

    MNIST: the pixels, and the one-hot labels as targets.  CSV (a time series): sample ``t``
    gives each input brick of width ``n`` the ``n`` values of its column up to and including
    line ``t``, and each output brick of width ``m`` the ``m`` values of its column ending at
    line ``t + 1`` (so the network learns to continue the series); ``t`` runs from
    ``w - 1`` to ``lines - 2``, where ``w`` is the widest brick.
    """
    template = cluster.template
    if data.kind == "mnist":
        if data.inputs.shape[1] != cluster.n_inputs:
            raise ValueError(f"the images have {data.inputs.shape[1]} pixels, the cluster {cluster.n_inputs} inputs")
        if not train:
            return data.inputs, None
        if cluster.n_outputs < 10:
            raise ValueError(f"MNIST has 10 classes; the cluster has only {cluster.n_outputs} outputs")
        targets = torch.nn.functional.one_hot(data.labels, cluster.n_outputs).to(torch.float32)
        return data.inputs, targets
    bricks = list(template.input_bricks) + (list(template.output_bricks) if train else [])
    missing = [brick.name for brick in bricks if brick.name not in data.columns]
    if missing:
        raise ValueError(
            f"the table has no column(s) {missing} for the cluster's bricks; its columns are {list(data.columns)}"
        )
    width = max(brick.number_of_neurons for brick in bricks)
    count = data.table.shape[0] - width
    if count < 1:
        raise ValueError(f"the table has {data.table.shape[0]} lines; the bricks need more than {width}")

    def windows(name: str, size: int, end_offset: int) -> torch.Tensor:
        column = data.table[:, data.columns.index(name)]
        first_end = width - 1 + end_offset  # the line the first window ends at
        return column.unfold(0, size, 1)[first_end - size + 1 : first_end - size + 1 + count]

    inputs = torch.cat([windows(b.name, b.number_of_neurons, 0) for b in template.input_bricks], dim=1)
    if not train:
        return inputs.contiguous(), None
    targets = torch.cat([windows(b.name, b.number_of_neurons, 1) for b in template.output_bricks], dim=1)
    return inputs.contiguous(), targets.contiguous()


def _check_mnist(images_path: Path, labels_path: Path) -> dict:
    with open(images_path, "rb") as handle:
        header = handle.read(16)
    with open(labels_path, "rb") as handle:
        label_header = handle.read(8)
    if len(header) < 16 or int.from_bytes(header[:4], "big") != 2051:
        raise Unprocessable("the images part is not an IDX image file (magic number 2051 expected)")
    if len(label_header) < 8 or int.from_bytes(label_header[:4], "big") != 2049:
        raise Unprocessable("the labels part is not an IDX label file (magic number 2049 expected)")
    count, rows, cols = (int.from_bytes(header[4 + 4 * i : 8 + 4 * i], "big") for i in range(3))
    label_count = int.from_bytes(label_header[4:8], "big")
    if count == 0 or rows * cols == 0:
        raise Unprocessable("the images file holds no images")
    if count != label_count:
        raise Unprocessable(f"{count} images but {label_count} labels")
    if images_path.stat().st_size != 16 + count * rows * cols:
        raise Unprocessable(
            f"the images file should be {16 + count * rows * cols} bytes for {count} images of "
            f"{rows}x{cols}, it is {images_path.stat().st_size}"
        )
    if labels_path.stat().st_size != 8 + count:
        raise Unprocessable(f"the labels file should be {8 + count} bytes, it is {labels_path.stat().st_size}")
    labels = np.fromfile(labels_path, dtype=np.uint8, offset=8)
    if labels.max() > 9:
        raise Unprocessable(f"labels must be digits 0..9, found {int(labels.max())}")
    return {"samples": count, "inputs": rows * cols, "outputs": 10, "columns": []}


def _parse_csv(path: Path) -> tuple[np.ndarray, tuple[str, ...]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise Unprocessable("the CSV is not UTF-8 text") from None
    rows = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    if len(rows) < 2:
        raise Unprocessable("the CSV needs a header row of column names and at least one row of values")
    columns = tuple(cell.strip() for cell in rows[0])
    if len(columns) > MAX_CSV_COLUMNS:
        raise Unprocessable(f"the CSV has {len(columns)} columns; at most {MAX_CSV_COLUMNS} are allowed")
    if len(set(columns)) != len(columns) or not all(columns):
        raise Unprocessable("the CSV header must name every column, each name once")
    table = np.empty((len(rows) - 1, len(columns)), dtype=np.float32)
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(columns):
            raise Unprocessable(f"CSV row {line} has {len(row)} cells, the header {len(columns)}")
        for column, cell in enumerate(row):
            table[line - 2, column] = _cell(cell, line, columns[column])
    return table, columns


def _cell(cell: str, line: int, column: str) -> float:
    text = cell.strip().lower()
    if text in ("true", "false"):
        return 1.0 if text == "true" else 0.0
    try:
        value = float(text)
    except ValueError:
        raise Unprocessable(f"CSV row {line}, column {column!r}: {cell[:40]!r} is not a number") from None
    if not math.isfinite(value):
        raise Unprocessable(f"CSV row {line}, column {column!r}: values must be finite")
    return value
