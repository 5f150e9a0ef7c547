"""A machine watched by eight raw sensors, learned online from the first reading.

The stream comes from ``hanami_torch.simulate.machine_states``: temperature in K, pressure in Pa,
vibration in g, current, speed, humidity, voltage and a signed flow (typical values from about
5e-3 to 1e5), a machine that switches between four states (normal, overheating, bearing wear,
blockage), slow drifts, and 0.1 % of readings broken (a million times too large). Halfway
through, one more broken reading is injected: the pressure sensor reports 1e11 Pa.

One network, written as a user would write it, learns two things at once, one sample at a time,
predicting each sample before it learns it (prequential):

* ``state``: which state the machine is in (4 outputs, one-hot targets), reported as running
  accuracy;
* ``change``: how much each sensor's next reading will differ from the current one (8 outputs
  with ``encoding: adaptive``: targets in the sensors' own units, of unknown range). The forecast
  of the next reading is the current reading plus the predicted change, and the script compares
  its error with repeating the last reading (persistence), in raw units per sensor.

The readings go in raw: the input brick's default encoding learns each sensor's range online
(docs/streams.md). A control run without the injected reading measures what it did to the
network: the synapses it made and how many more synapses the network has N samples later.

    python examples/sensor_stream.py                  # plot in docs/figures/sensor_stream.png
    python examples/sensor_stream.py --samples 50000 --plot /tmp/sensors.png
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from hanami_torch import HanamiCluster
from hanami_torch.simulate import SENSORS, STATES, machine_states

TEMPLATE = """version: 1
settings:
    enable_reduction: true
bricks:
    1,1,1
        input: sensors
        number_of_neurons: 8
    2,1,1
        number_of_neurons: 200
    3,1,1
        output: state
        number_of_neurons: 4
    3,2,1
        output: change
        number_of_neurons: 8
        encoding: adaptive
"""

INJECTED_SENSOR = 1  # pressure
INJECTED_FACTOR = 1e6
LATER = (100, 1000, 5000)  # samples after the injected reading at which the synapses are compared


def stream(samples: int, seed: int, inject: bool):
    """Readings float32 ``[samples, 8]`` (raw units), states ``[samples]``, the index of the injected
    broken reading, and the next readings ``[samples, 8]`` (the forecast's truth)."""
    sim = machine_states(samples + 1, seed=seed, broken_fraction=0.001)
    readings = sim.readings.copy()
    at = samples // 2
    if inject:
        readings[at, INJECTED_SENSOR] *= INJECTED_FACTOR
    readings = torch.from_numpy(readings).float()
    return readings[:-1], torch.from_numpy(sim.states[:-1]), at, readings[1:]


def template(inputs: str = "adaptive") -> str:
    """TEMPLATE with the input brick's encoding: "adaptive" (the default) or "raw" (Hanami's)."""
    if inputs not in ("adaptive", "raw"):
        raise ValueError(f"inputs must be 'adaptive' or 'raw', got {inputs!r}")
    return TEMPLATE.replace("input: sensors", f"input: sensors\n        encoding: {inputs}")


def run(samples: int, seed: int, inject: bool, *, inputs: str = "adaptive", progress: bool = True) -> dict:
    """Learns the stream prequentially and returns the online outputs and the synapse counts."""
    x, states, at, upcoming = stream(samples, seed, inject)
    targets = torch.cat([torch.nn.functional.one_hot(states, len(STATES)).float(), upcoming - x], 1)
    cluster = HanamiCluster(template(inputs), seed=seed)
    marks = sorted({at, at + 1, *(at + 1 + n for n in LATER if at + 1 + n <= samples), samples})
    outputs, synapses, done = [], {}, 0
    start = time.perf_counter()
    bar = tqdm(total=samples, desc="injected" if inject else "control", unit="sample", disable=not progress)
    for mark in marks:  # learn up to each mark, then count the synapses
        outputs.append(cluster.learn_many(x[done:mark], targets[done:mark], compact=False))
        synapses[mark] = cluster.stats()["synapses"]
        bar.update(mark - done)
        done = mark
    bar.close()
    seconds = time.perf_counter() - start
    out = cluster.split_outputs(torch.cat(outputs))
    return {
        "readings": x,
        "upcoming": upcoming,
        "states": states,
        "at": at,
        "predicted_state": out["state"].argmax(1),
        "forecast": x + out["change"],
        "synapses": synapses,
        "seconds": seconds,
    }


def figures(samples: int = 20000, seed: int = 0, *, inputs: str = "adaptive", progress: bool = True) -> dict:
    """The run with the injected reading, its control run, and the figures the script prints
    (``inputs="raw"``: the same with Hanami's raw inputs, for comparison)."""
    hit = run(samples, seed, inject=True, inputs=inputs, progress=progress)
    control = run(samples, seed, inject=False, inputs=inputs, progress=progress)
    at, scored = hit["at"], slice(samples // 2, None)  # forecasts scored on the second half
    clean = ~_broken(hit["readings"]) & ~_broken(hit["upcoming"])  # broken readings cannot be forecast
    clean[at] = clean[at - 1] = False  # the injected reading, as input and as the truth
    right = (hit["predicted_state"] == hit["states"]).float()
    forecast_error = (hit["forecast"] - hit["upcoming"]).abs()
    persistence_error = (hit["readings"] - hit["upcoming"]).abs()
    per_sensor = []
    for s, (name, unit, _typical, noise) in enumerate(SENSORS):
        keep = clean[scored, s]
        per_sensor.append({
            "sensor": name,
            "unit": unit,
            "noise": noise,
            "forecast": float(forecast_error[scored, s][keep].mean()),
            "persistence": float(persistence_error[scored, s][keep].mean()),
        })
    noise = torch.tensor([s[3] for s in SENSORS])
    keep = clean[scored]
    widths = lambda error: float((error[scored] / noise)[keep].mean())  # noqa: E731 - units-free mean
    return {
        "samples": samples,
        "at": at,
        "injected_value": float(hit["readings"][at, INJECTED_SENSOR]),
        "accuracy": float(right.mean()) * 100,
        "accuracy_second_half": float(right[scored].mean()) * 100,
        "control_accuracy": float((control["predicted_state"] == control["states"]).float().mean()) * 100,
        "per_sensor": per_sensor,
        "forecast_widths": widths(forecast_error),
        "persistence_widths": widths(persistence_error),
        # synapses the injected reading made (its own step), and the excess over the control run later
        "made_by_injected": (hit["synapses"][at + 1] - hit["synapses"][at])
        - (control["synapses"][at + 1] - control["synapses"][at]),
        "excess_later": {
            n: hit["synapses"][at + 1 + n] - control["synapses"][at + 1 + n] for n in LATER if at + 1 + n in hit["synapses"]
        },
        "synapses": hit["synapses"][samples],
        "control_synapses": control["synapses"][samples],
        "seconds": hit["seconds"] + control["seconds"],
        "runs": (hit, control),
    }


def _broken(readings: torch.Tensor) -> torch.Tensor:
    typical = torch.tensor([s[2] for s in SENSORS]).abs() + torch.tensor([s[3] for s in SENSORS]) * 20
    return readings.abs() > typical * 100


def rolling(values: torch.Tensor, width: int = 500) -> torch.Tensor:
    kernel = torch.full((1, 1, width), 1.0 / width, dtype=torch.float64)
    return torch.nn.functional.conv1d(values.double().view(1, 1, -1), kernel).view(-1)


def plot(f: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hit, control = f["runs"]
    at = f["at"]
    fig, (top, middle) = plt.subplots(2, 1, figsize=(8, 6), dpi=80)
    width = 500
    for run, label, color in ((control, "without the injected reading", "0.6"), (hit, "with it", "C0")):
        right = (run["predicted_state"] == run["states"]).float()
        top.plot(np.arange(width - 1, len(right)), 100 * rolling(right, width).numpy(), color=color, lw=1, label=label)
    top.axvline(at, color="C3", lw=1, ls="--")
    top.text(at + 100, 30, f"sample {at:,}: pressure reads {f['injected_value']:.1e} Pa", color="C3", fontsize=8)
    top.set_ylim(0, 100)
    top.set_ylabel("accuracy (%)")
    top.set_title(f"machine state, running accuracy over {width} samples (each predicted before it is learned)", fontsize=10)
    top.legend(loc="lower right", fontsize=8)

    s, lo, hi = INJECTED_SENSOR, at - 150, at + 150  # the pressure around the injected reading
    rows = np.arange(lo, hi) + 1  # the sample each forecast is for
    truth, forecast = hit["upcoming"][lo:hi, s].numpy(), hit["forecast"][lo:hi, s].numpy()
    normal = truth[np.abs(truth) < 1e8]
    middle.plot(rows, truth, color="0.6", lw=1, label="reading (Pa)")
    middle.plot(rows, forecast, color="C0", lw=1, label="forecast one sample ahead")
    middle.set_ylim(normal.min() - 1500, normal.max() + 1500)  # broken readings lie far off the scale
    for i in range(lo, hi):
        if int(hit["states"][i]) == 3:  # blockage raises the pressure
            middle.axvspan(i + 0.5, i + 1.5, color="C1", alpha=0.12, lw=0)
    middle.axvline(at, color="C3", lw=1, ls="--")
    p = f["per_sensor"][s]
    middle.set_title(
        f"pressure (shaded: blockage); mean error {p['forecast']:.0f} Pa, repeating the last reading {p['persistence']:.0f} Pa",
        fontsize=10,
    )
    middle.set_xlabel("sample")
    middle.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=20000, help="samples to stream (default 20,000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulator and of the network")
    parser.add_argument("--inputs", choices=("adaptive", "raw"), default="adaptive",
                        help="the input brick's encoding (default adaptive; raw: Hanami's raw values, for comparison)")
    parser.add_argument("--plot", type=Path, default=Path("docs/figures/sensor_stream.png"),
                        help="where to save the plot, a .png file (default docs/figures/sensor_stream.png)")
    parser.add_argument("--no-plot", action="store_true", help="do not draw the plot")
    args = parser.parse_args()
    if not args.no_plot and args.plot.suffix.lower() != ".png":
        parser.error(f"--plot must name a .png file, got '{args.plot}'")
    if args.samples < 2 * max(LATER) + 2:
        parser.error(f"--samples must be at least {2 * max(LATER) + 2}")

    f = figures(args.samples, args.seed, inputs=args.inputs)
    print(f"{f['samples']:,} samples of {len(SENSORS)} raw sensors, {args.inputs} inputs, two runs in {f['seconds']:.1f} s, "
          f"{torch.get_num_threads()} threads")
    print(f"machine state, prequential accuracy: {f['accuracy']:.2f} % "
          f"(second half {f['accuracy_second_half']:.2f} %; run without the injected reading {f['control_accuracy']:.2f} %)")
    print("forecast of the next reading, mean absolute error over the second half (raw units):")
    print(f"  {'sensor':12} {'unit':5} {'network':>10} {'repeat last':>12}")
    for row in f["per_sensor"]:
        print(f"  {row['sensor']:12} {row['unit']:5} {row['forecast']:10.4g} {row['persistence']:12.4g}")
    print(f"  in noise widths, all sensors: network {f['forecast_widths']:.3f}, "
          f"repeating the last reading {f['persistence_widths']:.3f}")
    print(f"injected at sample {f['at']:,}: pressure {f['injected_value']:.3e} Pa (x{INJECTED_FACTOR:.0e})")
    print(f"  synapses it made: {f['made_by_injected']}; synapses more than the run without it, "
          + ", ".join(f"{n:,} samples later: {d}" for n, d in f["excess_later"].items()))
    print(f"synapses at the end: {f['synapses']:,} (run without the injected reading: {f['control_synapses']:,})")
    if not args.no_plot:
        plot(f, args.plot)
        print(f"plot saved to {args.plot} ({args.plot.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
