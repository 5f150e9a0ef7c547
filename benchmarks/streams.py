"""Stream benchmark: hanami_torch against River and Vowpal Wabbit, prequential, one pass, batch 1.

Every learner sees every stream once, in stream order, one sample at a time: it predicts the
sample, the prediction is scored, then it learns the sample (prequential or "test-then-train"
evaluation, what ``river.evaluate.progressive_val_score`` does). All learners run in the same
process on the same data; features are raw (only the River learners scale them, in their
pipeline).

Streams (``--samples N`` cuts each to its first N samples):

    sensors          hanami_torch.simulate.machine_states(20000, seed=0): 8 raw sensors (1e-3..1e5,
                     one signed), 4 machine states in segments of 20..200 samples; accuracy
    sensors_broken   the same with 0.1 % of readings multiplied by 10^6 (broken_fraction=0.001)
    agrawal          river.datasets.synth.Agrawal(classification_function=0, seed=42), 20,000
                     samples, raw (salaries ~1e4..1.5e5, category codes as integers); accuracy
    agrawal_drift    ConceptDriftStream: Agrawal function 0 drifting to function 2 in the middle
                     (sample 10,000, width 1,000; with --samples N at N/2, width N/20), 20,000
                     samples; accuracy
    phishing         river.datasets.Phishing (1,250 samples, bundled with River); accuracy
    bananas          river.datasets.Bananas (5,300 samples, bundled); accuracy
    trump_approval   river.datasets.TrumpApproval (1,001 samples, bundled), a regression; MAE

Learners (the JSON keys):

    hanami_torch   hanami_torch.river.HanamiClassifier(max_classes=K) / HanamiRegressor(): the
                   defaults a new user gets (200 hidden neurons, seed 0), told the number of
                   classes K that the stream declares, as Vowpal Wabbit is (--oaa K)
    river_linear   StandardScaler | LogisticRegression (binary), StandardScaler |
                   OneVsRestClassifier(LogisticRegression) (multiclass: 80.0 % / 44.5 % on sensors /
                   sensors_broken against 79.1 % / 32.2 % for SoftmaxRegression, and faster),
                   StandardScaler | LinearRegression (regression); River's defaults
    river_tree     HoeffdingTreeClassifier with River's defaults, HoeffdingAdaptiveTreeClassifier(seed=0)
                   on agrawal_drift (the tree River makes for drift); StandardScaler |
                   HoeffdingTreeRegressor for regression (its leaves hold linear models, which
                   diverge on raw dates of ~7e5: MAE ~5e8 without the scaler)
    vw             Vowpal Wabbit (pip package vowpalwabbit) with its defaults (adaptive, normalised
                   updates): --oaa K (multiclass), --loss_function logistic (binary), squared loss
                   (regression), --quiet; predict each example, then learn it

``samples_per_s`` is the number of samples over the wall time of the prequential loop (one
predict and one learn per sample, the scoring included, data already in memory as River dicts).

    python benchmarks/streams.py --json bench-results/streams.json
    python benchmarks/streams.py --samples 2000 --streams sensors,phishing --skip-vw

JSON written by ``--json`` (accuracy in percent)::

    {"streams": {NAME: {LEARNER: {"metric": "accuracy" | "mae", "value", "samples_per_s"}
                                 or {"skipped": reason}}},
     "machine": str, "threads": int,
     "broken_reading": {"adaptive" | "raw": {"samples", "injected_at", "synapses_made",
                        "excess_synapses_later": {"100", "1000", "5000"}, "synapses",
                        "accuracy", "accuracy_without_it"}}}

``broken_reading`` (leave it out with ``--skip-broken-reading``) is what one pressure reading 10^6
times too large does to the network of examples/sensor_stream.py (reduction on), with adaptive and
with raw inputs: the synapses made in its own step, and how many more synapses the network holds
than the same run without that reading 100, 1,000 and 5,000 samples later.

The figure (``--plot-dir``, default docs/figures) shows the rolling accuracy or MAE over each
stream for every learner: ``streams.png`` (dotted: the share of the most frequent class; dashed:
the middle of the drift).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from river import linear_model, multiclass, preprocessing, tree
from river import datasets as river_datasets
from river.datasets import synth

from hanami_torch.river import HanamiClassifier, HanamiRegressor
from hanami_torch.simulate import machine_states

# benchmarks/_common.py: importable because Python puts the script's folder on sys.path.
from _common import machine_description, write_json

LEARNERS = ("hanami_torch", "river_linear", "river_tree", "vw")
SYNTH_SAMPLES = 20_000


@dataclass
class Stream:
    name: str
    task: str  # "binary", "multiclass" or "regression"
    data: list  # [(x: dict, y)]
    classes: list  # sorted labels (classification), [] for regression

    @property
    def metric(self) -> str:
        return "mae" if self.task == "regression" else "accuracy"


def _sensors(n: int, broken_fraction: float) -> list:
    stream = machine_states(n, seed=0, broken_fraction=broken_fraction)
    names = stream.sensor_names
    return [(dict(zip(names, row.tolist())), int(state)) for row, state in zip(stream.readings, stream.states)]


def _agrawal_drift(n: int) -> list:
    # the drift sits in the middle of the stream, also of one cut by --samples
    drifting = synth.ConceptDriftStream(
        stream=synth.Agrawal(classification_function=0, seed=42),
        drift_stream=synth.Agrawal(classification_function=2, seed=43),
        position=n // 2, width=max(1, min(1000, n // 20)), seed=44,
    )
    return list(drifting.take(n))


#: name -> (task, loader(n) -> [(x, y)], full length)
STREAMS = {
    "sensors": ("multiclass", lambda n: _sensors(n, 0.0), SYNTH_SAMPLES),
    "sensors_broken": ("multiclass", lambda n: _sensors(n, 0.001), SYNTH_SAMPLES),
    "agrawal": ("binary", lambda n: list(synth.Agrawal(classification_function=0, seed=42).take(n)), SYNTH_SAMPLES),
    "agrawal_drift": ("binary", _agrawal_drift, SYNTH_SAMPLES),
    "phishing": ("binary", lambda n: list(river_datasets.Phishing().take(n)), 1250),
    "bananas": ("binary", lambda n: list(river_datasets.Bananas().take(n)), 5300),
    "trump_approval": ("regression", lambda n: list(river_datasets.TrumpApproval().take(n)), 1001),
}


def load_stream(name: str, samples: int | None) -> Stream:
    task, loader, length = STREAMS[name]
    data = loader(min(samples, length) if samples else length)
    classes = [] if task == "regression" else sorted({y for _, y in data})
    return Stream(name, task, data, classes)


# ---- learners ---------------------------------------------------------------------------------


class VowpalWabbit:
    """Vowpal Wabbit behind River's predict_one / learn_one, on VW's text format. The example text
    of a sample is built once, in predict_one, and reused by the learn_one that follows."""

    def __init__(self, stream: Stream):
        import vowpalwabbit

        self.task = stream.task
        if stream.task == "multiclass":
            arguments = f"--oaa {len(stream.classes)} --quiet"
        elif stream.task == "binary":
            arguments = "--loss_function logistic --quiet"
        else:
            arguments = "--quiet"
        self.workspace = vowpalwabbit.Workspace(arguments)
        self.classes = stream.classes
        # oaa labels are 1..K; logistic labels -1 / +1 (the first sorted class is -1)
        self.label = {c: str(i + 1) for i, c in enumerate(stream.classes)}
        if stream.task == "binary":
            self.label = {stream.classes[0]: "-1", stream.classes[-1]: "1"}
        self._names: dict = {}
        self._last = (None, "")

    def _features(self, x: dict) -> str:
        if self._last[0] is x:
            return self._last[1]
        names = self._names
        parts = []
        for key, value in x.items():
            name = names.get(key)
            if name is None:  # VW's text format reserves blanks, ':' and '|'
                name = names[key] = str(key).replace(" ", "_").replace(":", "_").replace("|", "_")
            parts.append(f"{name}:{float(value)!r}")
        text = "| " + " ".join(parts)
        self._last = (x, text)
        return text

    def predict_one(self, x: dict):
        score = self.workspace.predict(self._features(x))
        if self.task == "multiclass":
            return self.classes[int(score) - 1]
        if self.task == "binary":
            return self.classes[-1] if score > 0 else self.classes[0]
        return float(score)

    def learn_one(self, x: dict, y) -> None:
        label = self.label[y] if self.task != "regression" else repr(float(y))
        self.workspace.learn(f"{label} {self._features(x)}")


def make_learner(name: str, stream: Stream):
    """A fresh learner for ``stream``; raises ``LearnerUnavailable`` with the reason when it cannot run."""
    task = stream.task
    if name == "hanami_torch":
        if task == "regression":
            return HanamiRegressor()
        # the number of classes the stream declares, as Vowpal Wabbit gets it (--oaa K)
        return HanamiClassifier(max_classes=len(stream.classes))
    if name == "river_linear":
        if task == "binary":
            return preprocessing.StandardScaler() | linear_model.LogisticRegression()
        if task == "multiclass":
            return preprocessing.StandardScaler() | multiclass.OneVsRestClassifier(linear_model.LogisticRegression())
        return preprocessing.StandardScaler() | linear_model.LinearRegression()
    if name == "river_tree":
        if task == "regression":
            return preprocessing.StandardScaler() | tree.HoeffdingTreeRegressor()
        if stream.name == "agrawal_drift":
            return tree.HoeffdingAdaptiveTreeClassifier(seed=0)
        return tree.HoeffdingTreeClassifier()
    if name == "vw":
        try:
            return VowpalWabbit(stream)
        except ImportError as error:
            raise LearnerUnavailable(f"vowpalwabbit cannot be imported ({error}); pip install vowpalwabbit") from None
    raise ValueError(f"unknown learner {name!r}; choose from {LEARNERS}")


class LearnerUnavailable(Exception):
    """A learner that cannot run here; the message goes into the JSON as ``{"skipped": ...}``."""


# ---- evaluation -------------------------------------------------------------------------------


def prequential(model, stream: Stream, label: str) -> tuple[float, float, np.ndarray]:
    """Predict, score, learn, sample by sample. Returns (accuracy % or MAE, samples per second,
    per-sample score: 1/0 correct or the absolute error)."""
    data = stream.data
    scores = np.empty(len(data))
    regression = stream.task == "regression"
    bar = tqdm(data, desc=label, unit=" samples", leave=False, mininterval=0.5, disable=None)  # no bar in logs
    start = time.perf_counter()
    for index, (x, y) in enumerate(bar):
        prediction = model.predict_one(x)
        if regression:
            scores[index] = abs(y - (prediction if prediction is not None else 0.0))
        else:
            scores[index] = prediction == y
        model.learn_one(x, y)
    seconds = time.perf_counter() - start
    bar.close()
    value = scores.mean() if regression else scores.mean() * 100
    return float(value), len(data) / seconds, scores


def rolling(scores: np.ndarray, window: int) -> np.ndarray:
    """Mean over the last ``window`` samples (fewer at the start)."""
    sums = np.cumsum(scores)
    counts = np.minimum(np.arange(1, len(scores) + 1), window)
    shifted = np.concatenate([np.zeros(window), sums])[: len(scores)]
    return (sums - shifted) / counts


def window_for(n: int) -> int:
    return max(20, min(500, n // 10))


def plot(curves: dict, streams: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(curves)
    columns = 2 if len(names) > 1 else 1
    rows = math.ceil(len(names) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(6.5 * columns, 3.0 * rows), squeeze=False)
    colors = {"hanami_torch": "tab:red", "river_linear": "tab:blue", "river_tree": "tab:green", "vw": "tab:purple"}
    for axis, name in zip(axes.flat, names):
        stream = streams[name]
        window = window_for(len(stream.data))
        for learner, scores in curves[name].items():
            values = rolling(scores, window) * (1 if stream.task == "regression" else 100)
            step = max(1, len(values) // 2000)  # a rolling mean loses nothing at 2,000 points; the file stays small
            samples = np.arange(1, len(values) + 1)
            axis.plot(samples[::step], values[::step], label=learner, color=colors[learner], linewidth=1.2)
        metric = "MAE" if stream.task == "regression" else "accuracy %"
        axis.set_title(f"{name}: rolling {metric} over {window} samples", fontsize=10)
        axis.set_xlabel("sample", fontsize=9)
        axis.set_ylabel(metric, fontsize=9)
        axis.tick_params(labelsize=8)
        axis.grid(alpha=0.3)
        if stream.task == "regression":
            axis.set_yscale("log")  # the first errors are in the target's whole range
        else:  # dotted: always predicting the most frequent class
            labels = [y for _, y in stream.data]
            majority = max(labels.count(c) for c in stream.classes) / len(labels) * 100
            axis.axhline(majority, color="grey", linestyle=":", linewidth=1)
        if name == "agrawal_drift":
            axis.axvline(len(stream.data) // 2, color="black", linestyle="--", linewidth=0.8)
    for axis in list(axes.flat)[len(names):]:
        axis.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize=9, frameon=False)
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.35 / rows / 3.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    print(f"plot saved to {path} ({path.stat().st_size // 1024} KB)")


def print_table(results: dict) -> None:
    header = f"{'stream':<16} {'metric':<9}" + "".join(f"{name:>24}" for name in LEARNERS)
    print(header)
    print("-" * len(header))
    for stream, learners in results.items():
        metric = next((r["metric"] for r in learners.values() if "metric" in r), "")
        cells = []
        for name in LEARNERS:
            result = learners.get(name)
            if result is None:
                cells.append(f"{'-':>24}")
            elif "skipped" in result:
                cells.append(f"{'skipped':>24}")
            else:
                cells.append(f"{result['value']:>9.2f} {result['samples_per_s']:>8,.0f}/s".rjust(24))
        print(f"{stream:<16} {metric:<9}" + "".join(cells))
    print("(value: accuracy % or MAE; then samples per second of the prequential loop)")


def broken_reading(samples: int | None) -> dict:
    """What one reading 10^6 times too large does to a network with reduction on
    (examples/sensor_stream.py: the sensor stream learned with and without one injected reading),
    with adaptive inputs (the default) and with Hanami's raw inputs: the synapses it made in its own
    step, the synapses more than the run without it 100, 1,000 and 5,000 samples later, and the
    prequential state accuracy of both runs."""
    path = Path(__file__).resolve().parent.parent / "examples" / "sensor_stream.py"
    spec = importlib.util.spec_from_file_location("sensor_stream", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    samples = max(samples or 20000, 2 * max(example.LATER) + 2)
    result = {}
    for inputs in ("adaptive", "raw"):
        f = example.figures(samples, 0, inputs=inputs, progress=False)
        result[inputs] = {
            "samples": samples,
            "injected_at": f["at"],
            "synapses_made": f["made_by_injected"],
            "excess_synapses_later": {str(n): d for n, d in f["excess_later"].items()},
            "synapses": f["synapses"],
            "accuracy": f["accuracy"],
            "accuracy_without_it": f["control_accuracy"],
        }
        later = ", ".join(f"{n} later {d:+d}" for n, d in f["excess_later"].items())
        print(f"broken reading, {inputs} inputs: made {f['made_by_injected']} synapses; {later} "
              f"(of {f['synapses']:,}); accuracy {f['accuracy']:.2f} % (without it {f['control_accuracy']:.2f} %)")
    return result


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, default=None, help="write the results to this JSON file")
    parser.add_argument("--samples", type=int, default=None, help="cut every stream to its first N samples (quick runs)")
    parser.add_argument("--streams", default=None,
                        help=f"comma-separated streams to run (default all: {','.join(STREAMS)})")
    parser.add_argument("--learners", default=None,
                        help=f"comma-separated learners to run (default all: {','.join(LEARNERS)})")
    parser.add_argument("--skip-vw", action="store_true", help="leave out Vowpal Wabbit")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for hanami_torch")
    parser.add_argument("--plot-dir", type=Path, default=Path("docs/figures"),
                        help="folder for streams.png (default docs/figures)")
    parser.add_argument("--no-plot", action="store_true", help="do not write the figure")
    parser.add_argument("--skip-broken-reading", action="store_true",
                        help="leave out the broken-reading measurement (examples/sensor_stream.py, four runs)")
    args = parser.parse_args()
    if args.samples is not None and args.samples < 1:
        parser.error("--samples must be a positive integer")
    for option, known in (("streams", STREAMS), ("learners", LEARNERS)):
        chosen = getattr(args, option)
        chosen = list(known) if chosen is None else [s.strip() for s in chosen.split(",") if s.strip()]
        unknown = [s for s in chosen if s not in known]
        if unknown:
            parser.error(f"unknown {option} {unknown}; choose from {','.join(known)}")
        setattr(args, option, chosen)
    if args.skip_vw and "vw" in args.learners:
        args.learners.remove("vw")
    return args


def main() -> None:
    args = parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    machine = machine_description()
    print(f"machine: {machine}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    results, curves, streams = {}, {}, {}
    for name in args.streams:
        stream = load_stream(name, args.samples)
        streams[name] = stream
        results[name], curves[name] = {}, {}
        for learner in args.learners:
            try:
                model = make_learner(learner, stream)
            except LearnerUnavailable as reason:
                results[name][learner] = {"skipped": str(reason)}
                print(f"{name} / {learner}: skipped: {reason}")
                continue
            value, speed, scores = prequential(model, stream, f"{name} / {learner}")
            results[name][learner] = {"metric": stream.metric, "value": value, "samples_per_s": speed}
            curves[name][learner] = scores
            unit = "" if stream.metric == "mae" else " %"
            print(f"{name} / {learner}: {stream.metric} {value:.2f}{unit}, {speed:,.0f} samples/s", flush=True)
    print()
    print_table(results)
    if not args.no_plot:
        plot(curves, streams, args.plot_dir / "streams.png")
    report = {"streams": results, "machine": machine, "threads": torch.get_num_threads()}
    if not args.skip_broken_reading:
        report["broken_reading"] = broken_reading(args.samples)
    write_json(args.json, report)


if __name__ == "__main__":
    main()
