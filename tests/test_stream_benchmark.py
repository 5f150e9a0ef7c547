"""The stream benchmarks end to end, briefly: benchmarks/streams.py on short streams (the JSON shape
the stream issue fixes, every learner's figures, the broken-reading measurement) and
benchmarks/calls.py (per-sample calls against batched calls)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from support import require

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow  # a subprocess runs all learners on several streams
def test_stream_benchmark_writes_its_json(tmp_path):
    require("river", "the stream benchmark compares with River")
    out = tmp_path / "streams.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "streams.py"), "--samples", "400", "--streams",
         "sensors,sensors_broken,trump_approval", "--skip-vw", "--json", str(out), "--plot-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report) == {"streams", "machine", "threads", "broken_reading"}
    assert report["threads"] >= 1
    for name, metric in (("sensors", "accuracy"), ("sensors_broken", "accuracy"), ("trump_approval", "mae")):
        learners = report["streams"][name]
        assert set(learners) == {"hanami_torch", "river_linear", "river_tree"}
        for result in learners.values():
            assert result["metric"] == metric and result["samples_per_s"] > 0
            assert (0 <= result["value"] <= 100) if metric == "accuracy" else result["value"] >= 0
    assert report["streams"]["sensors"]["hanami_torch"]["value"] > 40, "four states: chance is 25 %"
    for inputs in ("adaptive", "raw"):
        broken = report["broken_reading"][inputs]
        assert set(broken["excess_synapses_later"]) == {"100", "1000", "5000"}
        assert broken["synapses"] > 0 and broken["samples"] >= 10002
    assert (tmp_path / "streams.png").read_bytes()[:4] == b"\x89PNG"


def test_calls_benchmark_writes_its_json(tmp_path):
    out = tmp_path / "calls.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "calls.py"), "--samples", "50", "--repeats", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(out.read_text())
    for key in ("learn_one_us", "learn_many_us_per_sample", "predict_one_us", "predict_many_us_per_sample"):
        assert report[key] > 0, key
    assert report["learn_ratio"] == pytest.approx(report["learn_one_us"] / report["learn_many_us_per_sample"])
    assert report["threads"] >= 1 and report["samples"] == 50
