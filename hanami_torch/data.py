"""Data sets for the examples, benchmarks and tests.

MNIST is read with torchvision from ``<root>/MNIST/raw/`` (the four uncompressed IDX files
``{train,t10k}-{images-idx3,labels-idx1}-ubyte``).  ``root`` defaults to :func:`data_dir`.
When the files are present nothing is written, so ``root`` may be a read-only folder.

Streams: :class:`SlidingWindow` cuts a 1-D series (or a CSV column, :func:`read_csv_column`) into
the (input window, target window) pairs of Hanami's table tasks; see ``docs/streams.md``.
"""

from __future__ import annotations

import csv
import math
import numbers
import os
from collections import deque
from pathlib import Path

import numpy as np
import torch

#: The files that must lie in ``<root>/MNIST/raw/``.
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def data_dir() -> Path:
    """The folder that holds the data sets: ``$HANAMI_DATA_DIR``, or ``./data`` when unset."""
    configured = os.environ.get("HANAMI_DATA_DIR", "").strip()
    return Path(configured).expanduser() if configured else Path.cwd() / "data"


def mnist_available(root: str | os.PathLike | None = None) -> bool:
    """True when all four MNIST files lie in ``<root>/MNIST/raw/`` (``root`` defaults to :func:`data_dir`)."""
    raw = Path(root if root is not None else data_dir()) / "MNIST" / "raw"
    return all((raw / name).is_file() for name in MNIST_FILES)


def load_mnist(
    train: bool, root: str | os.PathLike | None = None, download: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load the MNIST train (60,000 images) or test (10,000 images) set, in file order.

    Args:
        train: True for the training set, False for the test set.
        root: folder that contains ``MNIST/raw/``; defaults to :func:`data_dir`.
        download: fetch the files into ``root`` when they are missing.  Never writes when they exist.

    Returns:
        ``(pixels, labels)``: ``pixels`` is float32 ``[N, 784]`` holding the raw grey values
        0..255 (not normalised; Hanami takes raw inputs), row-major 28x28 per image;
        ``labels`` is int64 ``[N]`` with the digits 0..9.

    Raises:
        ImportError: torchvision is not installed.
        FileNotFoundError: the files are missing and could not be downloaded.
    """
    try:
        from torchvision.datasets import MNIST
    except ImportError as error:
        raise ImportError(
            "load_mnist needs torchvision: pip install torchvision==0.29.1 "
            "(the release that matches torch 2.14.1)"
        ) from error

    root = Path(root if root is not None else data_dir())
    try:
        dataset = MNIST(str(root), train=train, download=download)
    except (RuntimeError, OSError) as error:
        hint = (
            "the download failed (no network?)"
            if download
            else "download=False was given"
        )
        raise FileNotFoundError(
            f"MNIST not found in {root / 'MNIST' / 'raw'} and {hint}. Put the files "
            f"{', '.join(MNIST_FILES)} there, or point HANAMI_DATA_DIR at the folder that "
            f"contains MNIST/raw/. Cause: {error}"
        ) from error

    pixels = dataset.data.reshape(len(dataset.data), -1).to(torch.float32)
    labels = dataset.targets.to(torch.int64)
    return pixels, labels


def one_hot(labels: torch.Tensor, n_classes: int = 10) -> torch.Tensor:
    """Encode class indices as targets for ``learn_many``.

    Args:
        labels: integer tensor ``[N]`` with values in ``0..n_classes-1``.
        n_classes: number of classes (the number of output neurons).

    Returns:
        float32 ``[N, n_classes]``: 1.0 at each sample's class, 0.0 elsewhere.
    """
    if labels.dim() != 1:
        raise ValueError(f"labels must be 1-D [N], got shape {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise TypeError(f"labels must be an integer tensor, got {labels.dtype}; use labels.long()")
    if labels.numel() and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(
            f"labels must lie in 0..{n_classes - 1}, got {labels.min().item()}..{labels.max().item()}; "
            "pass a larger n_classes"
        )
    return torch.nn.functional.one_hot(labels.to(torch.int64), n_classes).to(torch.float32)


# ---- streams: sliding windows over a series, Hanami's table tasks ---------------------------


class SlidingWindow:
    """(input window, target window) pairs over a 1-D series, by the rule of Hanami's table tasks.

    Hanami's table task (``table_train_forward_state.cpp``) reads, for cycle ``i``, with
    ``m = max(n_inputs, n_outputs)`` and ``off = i + m``::

        inputs  = series[off - n_inputs  : off]
        targets = targets[off - n_outputs : off]          # Hanami's output column

    and runs ``len(series) - n_inputs`` cycles. The target window therefore ends where the input
    window ends: with the same column for both it asks the network to repeat its own last inputs.
    ``horizon`` (not in Hanami) moves the target window ``horizon`` rows later, so ``horizon=1``
    with ``n_outputs=1`` is the next value and ``horizon=n_outputs`` the next ``n_outputs`` values::

        targets = targets[off - n_outputs + horizon : off + horizon]

    The number of windows of a series of ``L`` values:

    * ``horizon=0``, ``n_outputs <= n_inputs``: ``L - n_inputs``, Hanami's count (so, as in
      Hanami, the last value enters no window);
    * ``horizon=0``, ``n_outputs > n_inputs``: ``L - n_outputs + 1``, Hanami's cycles without its
      last ``n_outputs - n_inputs - 1``, which read past the end of the column;
    * ``horizon >= 1``: ``L - max(n_inputs, n_outputs) - horizon + 1``: the last target window
      ends with the last value.

    Args:
        series: the input column, 1-D: a tensor, a NumPy array or a list/tuple of numbers (held in
            memory), or any other iterable of numbers, read lazily as the windows are taken (it may
            be endless, such as a sensor generator).
        n_inputs: length of the input window (the cluster's ``n_inputs``), >= 1.
        n_outputs: length of the target window (the cluster's ``n_outputs``), >= 1.
        targets: the output column, as long as ``series`` (or an iterable read in step with it);
            defaults to ``series`` itself.
        horizon: how many rows later than Hanami's rule the target window lies, >= 0.

    Values are raw (no normalisation) and become float32; NaN, infinity and values beyond the
    float32 range raise ``ValueError`` naming the row (for a lazy series, when that row is read).

    Iterating yields ``(x, y)`` pairs, float32 ``[n_inputs]`` and ``[n_outputs]``;
    :meth:`chunks` yields ``([B, n_inputs], [B, n_outputs])`` blocks and :meth:`tensors` all
    windows at once. All three feed :meth:`HanamiCluster.learn_stream` or ``learn_many``.
    """

    def __init__(self, series, n_inputs: int, n_outputs: int = 1, *, targets=None, horizon: int = 0) -> None:
        for name, value, least in (("n_inputs", n_inputs, 1), ("n_outputs", n_outputs, 1), ("horizon", horizon, 0)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
                raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
        self.n_inputs, self.n_outputs, self.horizon = int(n_inputs), int(n_outputs), int(horizon)
        # rows from the first row a window reads to the last row that must exist for it; Hanami
        # wants one row more than its windows read when n_outputs <= n_inputs (see above)
        hanami_extra_row = self.horizon == 0 and self.n_outputs <= self.n_inputs
        self._span = max(self.n_inputs, self.n_outputs) + self.horizon + int(hanami_extra_row)
        self._lazy = not _is_sized_series(series)
        if targets is not None and _is_sized_series(targets) == self._lazy:
            raise ValueError(
                "series and targets must both be held in memory (tensor, array, list) or both be "
                "iterables read lazily; convert one of them"
            )
        if self._lazy:
            self._series, self._targets = series, targets
            return
        self._series = _as_column(series, "series")
        self._targets = self._series if targets is None else _as_column(targets, "targets")
        if self._targets.numel() != self._series.numel():
            raise ValueError(
                f"targets have {self._targets.numel()} values but series has {self._series.numel()}; "
                "the two columns must be equally long"
            )
        if self._series.numel() < self._span:
            raise ValueError(
                f"series has {self._series.numel()} values, but windows of {self.n_inputs} inputs and "
                f"{self.n_outputs} targets with horizon {self.horizon} need at least {self._span}; "
                "give a longer series or smaller windows"
            )

    @classmethod
    def from_csv(
        cls,
        path: str | os.PathLike,
        column: str | int,
        n_inputs: int,
        n_outputs: int = 1,
        *,
        target_column: str | int | None = None,
        horizon: int = 0,
        delimiter: str = ",",
    ) -> "SlidingWindow":
        """Windows over a column of a CSV file (with a header line), read with :func:`read_csv_column`.

        ``column`` is the input column (header name or 0-based index), ``target_column`` Hanami's
        output column (default: the same column). The other arguments are those of the class.
        """
        series = read_csv_column(path, column, delimiter=delimiter)
        targets = None if target_column is None else read_csv_column(path, target_column, delimiter=delimiter)
        return cls(series, n_inputs, n_outputs, targets=targets, horizon=horizon)

    def __len__(self) -> int:
        if self._lazy:
            raise TypeError("a SlidingWindow over a lazily read iterable has no length")
        return self._series.numel() - self._span + 1

    def __iter__(self):
        if not self._lazy:
            inputs, targets = self.tensors()
            yield from zip(inputs, targets)
            return
        m = max(self.n_inputs, self.n_outputs)
        first_input, first_target = m - self.n_inputs, m - self.n_outputs + self.horizon
        rows = deque(maxlen=self._span)  # (value, target) of the rows from off - m on
        for index, value, target in self._lazy_rows():
            rows.append((value, target))
            if len(rows) == self._span:
                values = [row[0] for row in rows]
                wanted = [row[1] for row in rows]
                yield (
                    torch.tensor(values[first_input : first_input + self.n_inputs], dtype=torch.float32),
                    torch.tensor(wanted[first_target : first_target + self.n_outputs], dtype=torch.float32),
                )

    def chunks(self, size: int = 1024):
        """Yields ``(inputs [B, n_inputs], targets [B, n_outputs])`` with ``B == size`` (the last
        chunk of a finite series may be shorter)."""
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
            raise ValueError(f"size must be an integer >= 1, got {size!r}")
        if not self._lazy:
            inputs, targets = self.tensors()
            for lo in range(0, inputs.shape[0], size):
                yield inputs[lo : lo + size], targets[lo : lo + size]
            return
        xs, ys = [], []
        for x, y in self:
            xs.append(x)
            ys.append(y)
            if len(xs) == size:
                yield torch.stack(xs), torch.stack(ys)
                xs, ys = [], []
        if xs:
            yield torch.stack(xs), torch.stack(ys)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All windows: float32 ``inputs [N, n_inputs]`` and ``targets [N, n_outputs]``, ``N = len(self)``.
        A lazily read iterable is read to its end (it must be finite)."""
        if self._lazy:
            pairs = list(self)
            if not pairs:
                raise ValueError(f"the series ended before the first window (it needs {self._span} values)")
            return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
        n = len(self)
        m = max(self.n_inputs, self.n_outputs)
        first_input, first_target = m - self.n_inputs, m - self.n_outputs + self.horizon
        inputs = self._series.unfold(0, self.n_inputs, 1)[first_input : first_input + n]
        targets = self._targets.unfold(0, self.n_outputs, 1)[first_target : first_target + n]
        return inputs.contiguous(), targets.contiguous()

    def __repr__(self) -> str:
        size = "lazy" if self._lazy else f"{len(self)} windows"
        return (
            f"SlidingWindow(n_inputs={self.n_inputs}, n_outputs={self.n_outputs}, "
            f"horizon={self.horizon}, {size})"
        )

    def _lazy_rows(self):
        """(row index, value, target value) of the lazily read columns, checked one by one. A
        generator can be read only once: a second pass over this window then yields nothing."""
        targets = None if self._targets is None else iter(self._targets)
        for index, value in enumerate(self._series):
            value = _finite_float32(value, f"series row {index}")
            if targets is None:
                target = value
            else:
                try:
                    target = next(targets)
                except StopIteration:
                    raise ValueError(f"targets ended at row {index}, before series; the columns must be equally long") from None
                target = _finite_float32(target, f"targets row {index}")
            yield index, value, target


def read_csv_column(path: str | os.PathLike, column: str | int, *, delimiter: str = ",") -> torch.Tensor:
    """One column of a CSV file with a header line, converted like Hanami's CSV upload.

    Hanami's conversion (``finalize_csv_dataset.cpp``), no normalisation: integers and floats as
    they are; ``true``/``false`` (any case) become 1/0; ``null`` or an empty cell repeats the
    previous row's value (0 in the first row). Hanami turns any other text silently into 0, and an
    empty cell too; here other text raises ``ValueError`` (naming line and column), and an empty
    cell counts as missing, like ``null``. NaN and infinity are refused as well. Blank lines are
    skipped.

    Args:
        path: the CSV file; its first line holds the column names.
        column: a column name from the header, or a 0-based column index.
        delimiter: the field separator.
    Returns:
        float32 ``[rows]``.
    """
    with open(path, newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path} is empty; a CSV file needs a header line with the column names")
        header = [name.strip() for name in header]
        if isinstance(column, bool) or not isinstance(column, (str, numbers.Integral)):
            raise ValueError(f"column must be a column name or a 0-based index, got {column!r}")
        if isinstance(column, str):
            if column not in header:
                raise ValueError(f"{path} has no column {column!r}; its columns are {header}")
            index = header.index(column)
        else:
            index = int(column)
            if not 0 <= index < len(header):
                raise ValueError(f"column index {index} is out of range: {path} has {len(header)} columns")
        values, previous = [], 0.0
        for row in reader:
            if not row or all(not cell.strip() for cell in row):
                continue
            line = reader.line_num
            if index >= len(row):
                raise ValueError(f"{path}, line {line}: the row has {len(row)} cells, column {header[index]!r} is missing")
            previous = _csv_value(row[index], previous, f"{path}, line {line}, column {header[index]!r}")
            values.append(previous)
    return torch.tensor(values, dtype=torch.float32)


def _csv_value(cell: str, previous: float, where: str) -> float:
    text = cell.strip()
    lowered = text.lower()
    if lowered in ("", "null"):
        return previous
    if lowered == "true":
        return 1.0
    if lowered == "false":
        return 0.0
    try:
        value = float(text)
    except ValueError:
        raise ValueError(
            f"{where}: cannot read {cell!r} as a number (Hanami's CSV cells are numbers, "
            "true/false or null); fix or blank that cell"
        ) from None
    return _finite_float32(value, where)


def _finite_float32(value, where: str) -> float:
    """``value`` as a float that is finite in float32, or a ValueError naming ``where``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where} is not a number: {value!r}") from None
    if not math.isfinite(number) or abs(number) > _FLOAT32_MAX:
        raise ValueError(f"{where} is {number!r}: every value must be finite in float32; drop or replace it")
    return number


_FLOAT32_MAX = float(torch.finfo(torch.float32).max)


def _is_sized_series(data) -> bool:
    return isinstance(data, (torch.Tensor, np.ndarray, list, tuple))


def _as_column(data, name: str) -> torch.Tensor:
    """A 1-D float32 tensor of finite values, or a ValueError."""
    if isinstance(data, np.ndarray):
        if data.dtype.kind not in "biuf":
            raise ValueError(f"{name} must hold real numbers, got a numpy array of {data.dtype}")
        data = torch.from_numpy(data)
    elif not isinstance(data, torch.Tensor):
        try:
            data = torch.as_tensor(data, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError) as error:
            raise ValueError(f"{name} must be a list of numbers: {error}") from None
    if data.is_complex():
        raise ValueError(f"{name} must hold real numbers, got {data.dtype}")
    if data.dim() != 1:
        raise ValueError(f"{name} must be 1-D (one value per row), got shape {list(data.shape)}")
    column = data.detach().cpu().to(torch.float32).contiguous()
    bad = (~torch.isfinite(column)).nonzero()
    if bad.numel():
        row = int(bad[0])
        raise ValueError(
            f"{name} row {row} is {float(data[row])!r}: every value must be finite in float32; "
            "drop or replace it"
        )
    return column
