"""Online learning from a raw sensor stream, and a reading a million times too large.

A synthetic sensor (two sines, a slow drift and noise, raw readings of about 1,800..4,800 in units
the network is never told) feeds a Hanami cluster online through ``SlidingWindow`` and
``HanamiCluster.learn_stream``: each window of 25 raw readings predicts the next 5 readings, with
Hanami's table template (25 -> 128 -> 128 -> 5) and default settings. Halfway through, one reading
is multiplied by 1,000,000 and streaming goes on. The script prints the online prediction error of
the next reading before the outlier, after it has left the input window, and the same figures for
a control run over the same stream without the outlier, and saves a plot.

    python examples/sensor_stream.py                      # plot in docs/figures/sensor_stream.png
    python examples/sensor_stream.py --samples 60000 --plot /tmp/sensor.png

Inputs stay raw: the 25 readings go into the network unchanged, the outlier included. Only the
targets must be mapped, because Hanami's outputs are sigmoids in 0..1: ``TargetScale`` maps a
reading to 0.1..0.9 with a minimum and maximum it learns online (a reading more than one range
width outside the range is not learnt into it, so the outlier cannot stretch it; targets outside
0..1 are clipped). A prediction is mapped back to sensor units with the scale of its time.
"""

from __future__ import annotations

import argparse
import itertools
import math
import time
from pathlib import Path

import torch

from hanami_torch import HanamiCluster, templates
from hanami_torch.data import SlidingWindow

WINDOW = 25  # inputs of templates.TABLE
AHEAD = 5  # outputs of templates.TABLE: the next 5 readings
OUTLIER_FACTOR = 1e6


def sensor(seed: int = 0, drift_per_sample: float = 0.02):
    """An endless stream of raw readings: two sines (periods 250 and 47 samples), a slow upward
    drift and Gaussian noise (sd 15), around 3,000 units."""
    generator = torch.Generator().manual_seed(seed)
    for step in itertools.count():
        noise = torch.randn(256, generator=generator, dtype=torch.float64).tolist()
        for k, e in enumerate(noise):
            t = step * 256 + k
            yield (
                3000.0
                + 900.0 * math.sin(2 * math.pi * t / 250)
                + 300.0 * math.sin(2 * math.pi * t / 47 + 1.0)
                + drift_per_sample * t
                + 15.0 * e
            )


def with_outlier(readings, index: int | None, factor: float = OUTLIER_FACTOR):
    """The same readings, with reading number ``index`` multiplied by ``factor``."""
    for i, value in enumerate(readings):
        yield value * factor if i == index else value


class TargetScale:
    """Maps raw readings to targets in 0.1..0.9 by a running minimum and maximum.

    The range follows the readings; after ``warmup`` readings, a reading further than one range
    width outside the range is taken for an outlier and leaves the range alone. ``lows`` and
    ``spans`` keep the scale each target was made with, to map predictions back to sensor units.
    """

    def __init__(self, warmup: int = 200) -> None:
        self.warmup, self.seen, self.outliers = warmup, 0, 0
        self.low, self.high = math.inf, -math.inf
        self.lows: list[float] = []
        self.spans: list[float] = []

    def __call__(self, reading: float) -> float:
        span = self.high - self.low
        if self.seen >= self.warmup and not self.low - span <= reading <= self.high + span:
            self.outliers += 1
        else:
            self.low, self.high = min(self.low, reading), max(self.high, reading)
        self.seen += 1
        span = max(self.high - self.low, 1e-6)
        self.lows.append(self.low)
        self.spans.append(span)
        return min(max(0.1 + 0.8 * (reading - self.low) / span, 0.0), 1.0)

    def to_units(self, target: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Targets (or outputs) back in sensor units, with the scale of the readings ``rows``."""
        low = torch.tensor(self.lows, dtype=torch.float64)[rows]
        span = torch.tensor(self.spans, dtype=torch.float64)[rows]
        return low + (target.to(torch.float64) - 0.1) / 0.8 * span


def stream_run(samples: int, outlier_at: int | None, *, seed: int = 0, chunk_size: int = 1024) -> dict:
    """Streams ``samples`` windows into a fresh ``templates.TABLE`` cluster and returns the raw
    readings, the online predictions of the next reading (sensor units, as predicted before that
    window was learnt) and the cluster's size at the end.

    Window ``i`` holds readings ``i .. i+24`` and predicts ``i+25 .. i+29``; the outlier is reading
    number ``outlier_at`` (None: no outlier).
    """
    recorded: list[float] = []

    def record(values):
        for value in values:
            recorded.append(value)
            yield value

    # an endless stream: the readings go raw into the input windows and, scaled, into the targets
    readings, to_scale = itertools.tee(record(with_outlier(sensor(seed), outlier_at)))
    scale = TargetScale()
    windows = SlidingWindow(readings, WINDOW, AHEAD, targets=map(scale, to_scale), horizon=AHEAD)
    cluster = HanamiCluster(templates.TABLE, seed=seed)
    outputs = []
    start = time.perf_counter()
    summary = cluster.learn_stream(
        itertools.islice(windows, samples), chunk_size=chunk_size, on_chunk=lambda out, _y: outputs.append(out[:, 0])
    )
    seconds = time.perf_counter() - start
    rows = torch.arange(summary["samples"]) + WINDOW  # the reading each window predicts first
    predicted = scale.to_units(torch.cat(outputs), rows)
    return {
        "readings": torch.tensor(recorded, dtype=torch.float64),
        "predicted": predicted,
        "rows": rows,
        "seconds": seconds,
        "samples": summary["samples"],
        "synapses": cluster.stats()["synapses"],
        "outliers_rejected": scale.outliers,
    }


def outlier_figures(samples: int = 30000, *, seed: int = 0, measure: int | None = None) -> dict:
    """Runs the stream with an outlier halfway through and a control run without it.

    Error = mean absolute difference between the predicted and the actual next reading (sensor
    units), over ``measure`` windows (default: a tenth of the run, at most 3,000) whose target
    lies before the outlier ("before"), and over as many windows that start after it ("after":
    the outlier has left the input window), in both runs. Returns these errors, the ratio
    after / before, the error of repeating the last reading (persistence) and both runs.
    """
    outlier_at = samples // 2
    measure = measure or min(3000, samples // 10)
    if measure < 100 or outlier_at - WINDOW - AHEAD - measure < 0 or outlier_at + 1 + measure > samples:
        raise ValueError(f"{samples} samples are too few for error windows of {measure}; use at least 2,000")
    hit, control = stream_run(samples, outlier_at, seed=seed), stream_run(samples, None, seed=seed)

    def error(run, lo, hi):
        actual = run["readings"][run["rows"][lo:hi]]
        return float((run["predicted"][lo:hi] - actual).abs().mean())

    # window i holds readings i .. i+24 and learns i+25 .. i+29: the windows before
    # outlier_at - 29 never met the outlier, those after outlier_at no longer hold it
    last_clean = outlier_at - WINDOW - AHEAD + 1
    before = (last_clean - measure, last_clean)
    after = (outlier_at + 1, outlier_at + 1 + measure)
    normal = control["readings"]
    persistence = float((normal[WINDOW:] - normal[WINDOW - 1 : -1]).abs().mean())
    # windows outlier_at - 24 .. outlier_at hold the outlier among their inputs (their targets are normal)
    holding = (outlier_at - WINDOW + 1, outlier_at + 1)
    figures = {
        "samples": samples,
        "outlier_at": outlier_at,
        "outlier_value": float(hit["readings"][outlier_at]),
        "before": error(hit, *before),
        "after": error(hit, *after),
        "holding": error(hit, *holding),
        "control_holding": error(control, *holding),
        "control_before": error(control, *before),
        "control_after": error(control, *after),
        "persistence": persistence,
        "mean_predictor": float((normal - normal.mean()).abs().mean()),
        "synapses": hit["synapses"],
        "control_synapses": control["synapses"],
        "seconds": hit["seconds"] + control["seconds"],
        "before_window": before,
        "after_window": after,
        "runs": (hit, control),
    }
    figures["ratio"] = figures["after"] / figures["before"]
    return figures


def plot(figures: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hit, control = figures["runs"]
    k = figures["outlier_at"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), dpi=80, gridspec_kw={"height_ratios": [1, 1]})

    lo, hi = k - 400, k + 400
    window = slice(lo - WINDOW, hi - WINDOW)  # windows whose predicted reading lies in lo..hi
    top.plot(hit["rows"][window], hit["readings"][hit["rows"][window]], color="0.6", lw=1, label="reading (raw units)")
    top.plot(hit["rows"][window], hit["predicted"][window], color="C0", lw=1, label="predicted before learning it")
    normal_range = control["readings"][lo:hi]
    top.set_ylim(float(normal_range.min()) - 300, float(normal_range.max()) + 300)
    top.axvline(k, color="C3", lw=1, ls="--")
    top.text(k - 8, float(normal_range.max()) + 120,
             f"reading {k:,} = {figures['outlier_value']:.1e}, far above this scale",
             color="C3", fontsize=8, ha="right")
    top.set_title("online prediction of the next reading around the outlier")
    top.legend(loc="lower left", fontsize=8)

    def rolling(run, width=500):
        actual = run["readings"][run["rows"]]
        err = (run["predicted"] - actual).abs()
        normal = err < 1e6  # leaves out the window that predicts the outlier itself
        kernel = torch.ones(1, 1, width, dtype=torch.float64)
        total = torch.nn.functional.conv1d(torch.where(normal, err, 0.0).view(1, 1, -1), kernel)
        count = torch.nn.functional.conv1d(normal.to(torch.float64).view(1, 1, -1), kernel)
        return (total / count).view(-1), run["rows"][width - 1 :]

    err, rows = rolling(control)
    bottom.plot(rows, err, color="0.5", lw=1, label="without the outlier")
    err, rows = rolling(hit)
    bottom.plot(rows, err, color="C0", lw=1, label="with the outlier")
    bottom.axhline(figures["persistence"], color="C2", lw=1, ls=":", label="repeat the last reading")
    bottom.axvline(k, color="C3", lw=1, ls="--")
    for (a, b), name in ((figures["before_window"], "before"), (figures["after_window"], "after")):
        bottom.axvspan(a + WINDOW, b + WINDOW, color="C1", alpha=0.15)
        bottom.text((a + b) / 2 + WINDOW, 5, name, ha="center", fontsize=8)
    bottom.set_ylim(0, max(float(err.max()) * 1.2, figures["persistence"] * 2))
    bottom.set_xlabel("reading")
    bottom.set_ylabel("error (raw units)")
    bottom.set_title(
        f"rolling mean absolute error (500 readings): {figures['before']:.0f} before, "
        f"{figures['after']:.0f} after (x{figures['ratio']:.2f})"
    )
    bottom.legend(loc="upper left", fontsize=8, ncol=3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=30000, help="windows to stream (default 30,000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sensor noise and of the network")
    parser.add_argument("--plot", type=Path, default=Path("docs/figures/sensor_stream.png"),
                        help="where to save the plot (default docs/figures/sensor_stream.png)")
    args = parser.parse_args()

    f = outlier_figures(args.samples, seed=args.seed)
    print(f"{f['samples']:,} windows of {WINDOW} raw readings -> next {AHEAD} readings, "
          f"templates.TABLE, two runs in {f['seconds']:.1f} s")
    print(f"outlier: reading {f['outlier_at']:,} = {f['outlier_value']:.3e} (x{OUTLIER_FACTOR:.0e})")
    print("mean absolute error of the predicted next reading (raw units), over "
          f"{f['after_window'][1] - f['after_window'][0]:,} windows:")
    print(f"  before the outlier   {f['before']:6.1f}   (control run without it: {f['control_before']:.1f})")
    print(f"  outlier in the input {f['holding']:6.1f}   (control run without it: {f['control_holding']:.1f}; "
          f"the {WINDOW} windows that hold it)")
    print(f"  after the outlier    {f['after']:6.1f}   (control run without it: {f['control_after']:.1f})")
    print(f"  after / before       {f['ratio']:6.2f}")
    print(f"  for scale: repeating the last reading {f['persistence']:.1f}, "
          f"predicting the mean {f['mean_predictor']:.1f}")
    print(f"synapses at the end: {f['synapses']:,} (control run {f['control_synapses']:,})")
    if args.plot:
        plot(f, args.plot)
        print(f"plot saved to {args.plot} ({args.plot.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
