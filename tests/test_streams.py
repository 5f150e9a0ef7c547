"""Streams: SlidingWindow (Hanami's table rule), CSV columns, HanamiCluster.learn_stream, and the
outlier robustness of examples/sensor_stream.py."""

from __future__ import annotations

import importlib.util
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from hanami_torch import HanamiCluster, templates
from hanami_torch.data import SlidingWindow, read_csv_column
from networks import assert_same_buffers, snapshot

ROOT = Path(__file__).resolve().parents[1]


def hanami_table_cycles(inputs, outputs, n_in, n_out):
    """A transcription of Hanami's table task: tableTask runs `lines - nIn` cycles, and
    TableTrainForward_State takes, with off = cycle + max(nIn, nOut), in[off - nIn .. off) and
    out[off - nOut .. off). Stops where Hanami would read past the end of the column."""
    cycles = []
    for cycle in range(len(inputs) - n_in):
        off = cycle + max(n_in, n_out)
        if off > len(inputs):
            break
        cycles.append((inputs[off - n_in : off], outputs[off - n_out : off]))
    return cycles


# ---- SlidingWindow ---------------------------------------------------------------------------


def test_windows_by_hand():
    series = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    x, y = SlidingWindow(series, 3, 1).tensors()
    assert x.dtype == y.dtype == torch.float32
    assert x.tolist() == [[1, 2, 3], [2, 3, 4], [3, 4, 5], [4, 5, 6], [5, 6, 7], [6, 7, 8], [7, 8, 9]]
    assert y.tolist() == [[3], [4], [5], [6], [7], [8], [9]]  # Hanami: the target ends with the inputs
    x, y = SlidingWindow(series, 3, 2).tensors()
    assert x[0].tolist() == [1, 2, 3] and y[0].tolist() == [2, 3] and len(x) == 7
    x, y = SlidingWindow(series, 2, 3).tensors()  # more outputs than inputs: off starts at 3
    assert x[0].tolist() == [2, 3] and y[0].tolist() == [1, 2, 3]
    assert x[-1].tolist() == [9, 10] and y[-1].tolist() == [8, 9, 10] and len(x) == 8
    x, y = SlidingWindow(series, 3, 1, horizon=1).tensors()  # the next value
    assert x[0].tolist() == [1, 2, 3] and y[0].tolist() == [4]
    assert x[-1].tolist() == [7, 8, 9] and y[-1].tolist() == [10] and len(x) == 7
    x, y = SlidingWindow(series, 3, 2, horizon=2).tensors()  # the next two values
    assert x.tolist()[-1] == [6, 7, 8] and y.tolist()[-1] == [9, 10] and len(x) == 6
    x, y = SlidingWindow(series, 3, 2, horizon=5).tensors()
    assert x.tolist() == [[1, 2, 3], [2, 3, 4], [3, 4, 5]] and y.tolist() == [[7, 8], [8, 9], [9, 10]]


@pytest.mark.parametrize("n_in, n_out", [(1, 1), (3, 1), (3, 3), (5, 2), (2, 5), (25, 5)])
def test_windows_follow_hanamis_table_task(n_in, n_out):
    inputs = (torch.arange(40, dtype=torch.float32) * 3 + 1).tolist()
    outputs = (torch.arange(40, dtype=torch.float32) / 40).tolist()
    expected = hanami_table_cycles(inputs, outputs, n_in, n_out)
    window = SlidingWindow(inputs, n_in, n_out, targets=outputs)
    assert len(window) == len(expected)
    if n_out <= n_in:
        assert len(window) == len(inputs) - n_in  # Hanami's numberOfCycles
    else:  # Hanami's cycles that stay inside the column
        assert len(window) == len(inputs) - n_out + 1
    for (x, y), (hx, hy) in zip(window, expected):
        assert x.tolist() == hx and y.tolist() == pytest.approx(hy)


@pytest.mark.parametrize("n_in, n_out, horizon", [(3, 1, 0), (2, 4, 0), (4, 2, 1), (25, 5, 5), (3, 2, 7)])
def test_lazy_series_gives_the_same_windows(n_in, n_out, horizon):
    series = np.random.default_rng(0).uniform(1e3, 5e3, 60)
    targets = np.random.default_rng(1).uniform(0, 1, 60)
    eager = SlidingWindow(series, n_in, n_out, targets=targets, horizon=horizon)
    lazy = SlidingWindow(iter(series.tolist()), n_in, n_out, targets=(t for t in targets), horizon=horizon)
    x, y = eager.tensors()
    lx, ly = lazy.tensors()
    assert torch.equal(x, lx) and torch.equal(y, ly)
    assert x.shape == (len(eager), n_in) and y.shape == (len(eager), n_out)
    for size in (1, 7, 1000):
        chunks = list(SlidingWindow(series, n_in, n_out, targets=targets, horizon=horizon).chunks(size))
        lazy_chunks = list(SlidingWindow(iter(series), n_in, n_out, targets=iter(targets), horizon=horizon).chunks(size))
        assert all(len(c[0]) == size for c in chunks[:-1])
        assert torch.equal(torch.cat([c[0] for c in chunks]), x) and torch.equal(torch.cat([c[1] for c in chunks]), y)
        assert torch.equal(torch.cat([c[0] for c in lazy_chunks]), x) and torch.equal(torch.cat([c[1] for c in lazy_chunks]), y)


def test_window_accepts_tensors_arrays_and_lists_and_an_endless_stream():
    values = [1000.0, 2500.5, 4000.0, 1e-3, 3.0, 7.0]
    for series in (values, tuple(values), np.array(values), torch.tensor(values, dtype=torch.float64)):
        x, y = SlidingWindow(series, 2, 1, horizon=1).tensors()
        assert x.tolist() == [[1000.0, 2500.5], [2500.5, 4000.0], [4000.0, pytest.approx(1e-3)], [pytest.approx(1e-3), 3.0]]
        assert y[:, 0].tolist() == [4000.0, pytest.approx(1e-3), 3.0, 7.0]
    endless = SlidingWindow((float(i) for i in itertools.count()), 4, 2, horizon=2)
    first = list(itertools.islice(endless, 3))
    assert [x.tolist() for x, _ in first] == [[0, 1, 2, 3], [1, 2, 3, 4], [2, 3, 4, 5]]
    assert [y.tolist() for _, y in first] == [[4, 5], [5, 6], [6, 7]]
    assert "lazy" in repr(endless) and "3 windows" in repr(SlidingWindow(values, 3, 1))
    with pytest.raises(TypeError, match="no length"):
        len(endless)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(series=[1, 2, 3], n_inputs=0), "n_inputs must be an integer >= 1"),
        (dict(series=[1, 2, 3], n_inputs=True), "n_inputs"),
        (dict(series=[1, 2, 3], n_inputs=2, n_outputs=1.0), "n_outputs"),
        (dict(series=[1, 2, 3], n_inputs=1, horizon=-1), "horizon must be an integer >= 0"),
        (dict(series=[1, 2, 3], n_inputs=3), "series has 3 values.* need at least 4"),
        (dict(series=[1, 2, 3, 4, 5], n_inputs=2, n_outputs=1, horizon=4), "need at least 6"),
        (dict(series=[[1, 2], [3, 4]], n_inputs=1), "must be 1-D"),
        (dict(series=[1, 2, float("nan"), 4], n_inputs=1), "series row 2 is nan"),
        (dict(series=np.array([1, np.inf, 3]), n_inputs=1), "series row 1 is inf"),
        (dict(series=[1.0, 1e39, 2.0], n_inputs=1), "row 1 .* finite in float32"),
        (dict(series=["a", "b"], n_inputs=1), "list of numbers"),
        (dict(series=np.array(["a", "b"]), n_inputs=1), "real numbers"),
        (dict(series=torch.tensor([1 + 1j, 2]), n_inputs=1), "real numbers"),
        (dict(series=[1, 2, 3, 4], n_inputs=1, targets=[1, 2, 3]), "targets have 3 values but series has 4"),
        (dict(series=[1, 2, 3, 4], n_inputs=1, targets=[1, float("nan"), 3, 4]), "targets row 1"),
        (dict(series=[1, 2, 3, 4], n_inputs=1, targets=iter([1, 2, 3, 4])), "both be held in memory"),
    ],
)
def test_window_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SlidingWindow(**kwargs)


def test_lazy_window_errors_name_the_row():
    with pytest.raises(ValueError, match="series row 3 is nan"):
        list(SlidingWindow(iter([1.0, 2.0, 3.0, float("nan"), 5.0]), 2, 1))
    with pytest.raises(ValueError, match="series row 1 is not a number"):
        list(SlidingWindow(iter([1.0, "x"]), 2, 1))
    with pytest.raises(ValueError, match="targets ended at row 2"):
        list(SlidingWindow(iter([1.0, 2.0, 3.0, 4.0]), 1, 1, targets=iter([0.0, 1.0])))
    with pytest.raises(ValueError, match="ended before the first window"):
        SlidingWindow(iter([1.0, 2.0]), 2, 1).tensors()
    with pytest.raises(ValueError, match="size must be"):
        next(SlidingWindow([1, 2, 3], 1).chunks(0))


# ---- CSV -------------------------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_csv_conversion_like_hanami(tmp_path):
    path = write(
        tmp_path / "sensor.csv",
        "time, test_input ,flag,test_output\n"
        "0,null,true,0.5\n"  # null in the first row: 0 (Hanami's previous row starts at zeros)
        "1,1200,false,0.25\n"
        "2,,TRUE,null\n"  # empty and null repeat the previous row
        "\n"  # blank lines are skipped
        "3,1.5e3,False,NULL\n"
        "4,-7,True,1\n"
        "5, 2500.25 ,false,\n",
    )
    assert read_csv_column(path, "test_input").tolist() == [0.0, 1200.0, 1200.0, 1500.0, -7.0, 2500.25]
    assert read_csv_column(path, 2).tolist() == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    assert read_csv_column(path, "test_output").tolist() == [0.5, 0.25, 0.25, 0.25, 1.0, 1.0]
    assert read_csv_column(path, "test_input").dtype == torch.float32
    window = SlidingWindow.from_csv(path, "test_input", 2, 1, target_column="test_output")
    x, y = window.tensors()
    assert x.tolist() == [[0, 1200], [1200, 1200], [1200, 1500], [1500, -7]]
    assert y[:, 0].tolist() == [0.25, 0.25, 0.25, 1.0]
    x, y = SlidingWindow.from_csv(path, "time", 3, 1, horizon=1).tensors()
    assert x.tolist() == [[0, 1, 2], [1, 2, 3], [2, 3, 4]] and y[:, 0].tolist() == [3, 4, 5]


def test_csv_with_another_delimiter(tmp_path):
    path = write(tmp_path / "semicolon.csv", "a;b\n1;2\n3;4\n5;6\n")
    assert read_csv_column(path, "b", delimiter=";").tolist() == [2, 4, 6]


@pytest.mark.parametrize(
    "text, column, match",
    [
        ("", "a", "is empty"),
        ("a,b\n1,2\n", "c", r"has no column 'c'; its columns are \['a', 'b'\]"),
        ("a,b\n1,2\n", 2, "column index 2 is out of range"),
        ("a,b\n1,2\n", 1.0, "column must be"),
        ("a,b\n1,2\n3\n", "b", "line 3: the row has 1 cells, column 'b' is missing"),
        ("a,b\n1,2\n3,high\n", "b", r"line 3, column 'b': cannot read 'high' as a number"),
        ("a,b\n1,nan\n", "b", "line 2, column 'b' is nan"),
        ("a,b\n1,inf\n", "b", "finite"),
        ("a,b\n1,1e40\n", "b", "finite in float32"),
    ],
)
def test_csv_errors(tmp_path, text, column, match):
    path = write(tmp_path / "bad.csv", text)
    with pytest.raises(ValueError, match=match):
        read_csv_column(path, column)


# ---- learn_stream ----------------------------------------------------------------------------


def sensor_windows(n=1500, seed=0):
    """Raw readings (about 1,800..4,200) as 25-input windows, targets the next 5 readings scaled
    to 0..1."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n + 29, dtype=torch.float64)
    raw = (3000 + 1000 * torch.sin(t / 30) + 20 * torch.randn(n + 29, generator=g, dtype=torch.float64)).float()
    x, y = SlidingWindow(raw, 25, 5, horizon=5).tensors()
    return x, (y - 1500) / 3000


buffers = snapshot


@pytest.fixture(scope="module")
def reference():
    x, y = sensor_windows()
    cluster = HanamiCluster(templates.TABLE, seed=3)
    outputs = cluster.learn_many(x, y)
    return x, y, outputs, buffers(cluster)


@pytest.mark.parametrize("chunk_size", [1024, 100, 7, 1, 1499, 5000])
def test_learn_stream_of_samples_equals_learn_many(reference, chunk_size):
    x, y, outputs, expected = reference
    cluster = HanamiCluster(templates.TABLE, seed=3)
    seen = []
    summary = cluster.learn_stream(zip(x, y), chunk_size=chunk_size, on_chunk=lambda out, tgt: seen.append((out, tgt)))
    assert_same_buffers(buffers(cluster), expected)
    assert summary["samples"] == len(x) and summary["chunks"] == math.ceil(len(x) / chunk_size)
    assert torch.equal(torch.cat([out for out, _ in seen]), outputs)
    assert torch.equal(torch.cat([tgt for _, tgt in seen]), y)
    per_chunk = [float((outputs[lo : lo + chunk_size] - y[lo : lo + chunk_size]).abs().mean()) for lo in range(0, len(x), chunk_size)]
    assert summary["chunk_mae"] == per_chunk


@pytest.mark.parametrize("item_rows, chunk_size", [(37, 50), (37, 37), (200, 64), (1, 10)])
def test_learn_stream_of_chunks_equals_learn_many(reference, item_rows, chunk_size):
    x, y, outputs, expected = reference
    items = ((x[lo : lo + item_rows], y[lo : lo + item_rows]) for lo in range(0, len(x), item_rows))
    cluster = HanamiCluster(templates.TABLE, seed=3)
    summary = cluster.learn_stream(items, chunk_size=chunk_size)
    assert_same_buffers(buffers(cluster), expected)
    assert summary["samples"] == len(x) and summary["chunks"] == math.ceil(len(x) / chunk_size)


def test_learn_stream_takes_arrays_lists_mixed_items_and_brick_dicts(reference):
    x, y, _outputs, expected = reference
    items = []
    for lo in range(0, len(x), 100):
        if lo % 300 == 0:
            items.append((x[lo : lo + 100].numpy(), y[lo : lo + 100].tolist()))  # a chunk
        elif lo % 300 == 100:
            items.extend((row.tolist(), target.numpy()) for row, target in zip(x[lo : lo + 100], y[lo : lo + 100]))
        else:
            items.append(({"test_input": x[lo : lo + 100]}, {"test_output": y[lo : lo + 100]}))
    cluster = HanamiCluster(templates.TABLE, seed=3)
    summary = cluster.learn_stream(iter(items), chunk_size=256)
    assert summary["samples"] == len(x)
    assert_same_buffers(buffers(cluster), expected)


def test_learn_stream_from_sliding_windows_and_an_endless_source():
    g = torch.Generator().manual_seed(0)
    raw = (3000 + 1000 * torch.sin(torch.arange(600) / 30) + 20 * torch.randn(600, generator=g)).float()
    scaled = (raw - 1500) / 3000
    x, y = SlidingWindow(raw, 25, 5, targets=scaled, horizon=5).tensors()
    expected = HanamiCluster(templates.TABLE, seed=1)
    expected.learn_many(x[:500], y[:500])
    # an endless source, read lazily and bounded with islice
    endless = itertools.chain(raw.tolist(), itertools.repeat(1.0))
    targets = itertools.chain(scaled.tolist(), itertools.repeat(0.0))
    windows = SlidingWindow(endless, 25, 5, targets=targets, horizon=5)
    cluster = HanamiCluster(templates.TABLE, seed=1)
    summary = cluster.learn_stream(itertools.islice(windows, 500), chunk_size=128)
    assert summary["samples"] == 500 and summary["chunks"] == 4
    assert_same_buffers(buffers(cluster), buffers(expected))
    # the same windows, in chunks
    cluster = HanamiCluster(templates.TABLE, seed=1)
    cluster.learn_stream(SlidingWindow(raw[:529], 25, 5, targets=scaled[:529], horizon=5).chunks(64))
    assert_same_buffers(buffers(cluster), buffers(expected))


def test_learn_stream_of_nothing_and_progress(reference, capsys):
    cluster = HanamiCluster(templates.TABLE, seed=3)
    before = buffers(cluster)
    assert cluster.learn_stream(iter(())) == {"samples": 0, "chunks": 0, "chunk_mae": []}
    assert_same_buffers(buffers(cluster), before)
    x, y, _outputs, expected = reference
    summary = cluster.learn_stream(list(zip(x, y)), chunk_size=500, progress=True)
    assert summary["chunks"] == 3
    assert_same_buffers(buffers(cluster), expected)


def test_learn_stream_errors():
    cluster = HanamiCluster(templates.TABLE, seed=0)
    x, y = torch.full((4, 25), 100.0), torch.full((4, 5), 0.5)
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="chunk_size"):
            cluster.learn_stream(zip(x, y), chunk_size=bad)
    with pytest.raises(ValueError, match="stream item 0 must be a pair"):
        cluster.learn_stream([x[0]])
    with pytest.raises(ValueError, match=r"stream item 1: inputs must be shaped \[25\] or \[samples, 25\], got \[24\]"):
        cluster.learn_stream([(x[0], y[0]), (x[0, :24], y[0])])
    with pytest.raises(ValueError, match="stream item 0: inputs must hold real numbers, got torch.bool"):
        cluster.learn_stream([(x > 0, y)])
    with pytest.raises(ValueError, match="stream item 0: targets must be a tensor"):
        cluster.learn_stream([(x[0], ["a"] * 5)])
    with pytest.raises(ValueError, match="stream item 0: inputs have 4 rows but targets have 3"):
        cluster.learn_stream([(x, y[:3])])
    with pytest.raises(ValueError, match="targets must be shaped"):
        cluster.learn_stream([(x[0], torch.zeros(2, 2, 5))])
    nan_row = x.clone()
    nan_row[2, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        cluster.learn_stream([(nan_row, y)])
    with pytest.raises(ValueError, match="unknown brick"):
        cluster.learn_stream([({"pixels": x}, y)])
    assert cluster.stats()["steps"] == 0, "nothing may be learned from a stream that failed in its first chunk"


# ---- the sensor example ----------------------------------------------------------------------


def load_example():
    spec = importlib.util.spec_from_file_location("sensor_stream", ROOT / "examples" / "sensor_stream.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def sensor_figures():
    return load_example().figures(6000, seed=0, progress=False)


def test_sensor_example_learns_raw_readings_and_shrugs_off_a_broken_one(sensor_figures):
    f = sensor_figures
    assert f["injected_value"] > 1e10, "the raw reading a million times too large went in"
    assert f["accuracy"] > 80, f"four states, chance is 25 %: {f['accuracy']}"
    assert abs(f["accuracy"] - f["control_accuracy"]) < 1, "one broken reading may not cost a point"
    # the forecast beats repeating the last reading, in every sensor's noise widths together
    assert f["forecast_widths"] < 0.97 * f["persistence_widths"], f
    # the broken reading is clipped by its code: it makes no more synapses than a normal sample
    assert 0 <= f["made_by_injected"] <= 5, f
    assert all(abs(d) <= 0.02 * f["synapses"] for d in f["excess_later"].values()), f


def test_sensor_example_plot(tmp_path, sensor_figures):
    pytest.importorskip("matplotlib")
    path = tmp_path / "sensor.png"
    load_example().plot(sensor_figures, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size < 150_000
