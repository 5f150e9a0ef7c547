"""Per-sample calls against batched calls: what one ``learn_one`` / ``predict_one`` costs beside
the per-sample time of ``learn_many`` / ``predict_many`` on the same network, in the same run.

The network is the small stream network of the sensor use case: 8 raw sensors -> 200 hidden -> 4
machine states (``hanami_torch.simulate.machine_states``, seed 0), grown on 2,000 samples first.
Each figure is the median over ``--repeats`` timed rounds of ``--samples`` samples (the per-sample
calls learn on: every round continues the stream where the last one ended, and the batched call
learns the same number of new samples).

    python benchmarks/calls.py --json bench-results/calls.json

JSON written by ``--json`` (microseconds)::

    {"learn_one_us", "learn_many_us_per_sample", "predict_one_us", "predict_many_us_per_sample",
     "learn_ratio", "predict_ratio", "samples", "repeats", "machine", "threads"}

``learn_ratio`` = learn_one_us / learn_many_us_per_sample (the goal of the engine issue: <= 2).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from hanami_torch import HanamiCluster
from hanami_torch.simulate import machine_states

from _common import machine_description, write_json

TEMPLATE = """version: 1
bricks:
    1,1,1
        input: sensors
        number_of_neurons: 8
    2,1,1
        number_of_neurons: 200
    3,1,1
        output: state
        number_of_neurons: 4
"""
WARM_UP = 2000


def measure(samples: int = 1000, repeats: int = 5, seed: int = 0) -> dict:
    total = WARM_UP + 2 * samples * repeats
    stream = machine_states(total, seed=seed)
    x = torch.tensor(stream.readings, dtype=torch.float32)
    y = torch.nn.functional.one_hot(torch.tensor(stream.states), 4).float()
    cluster = HanamiCluster(TEMPLATE, seed=seed)
    cluster.learn_many(x[:WARM_UP], y[:WARM_UP])
    times = {"learn_one": [], "learn_many": [], "predict_one": [], "predict_many": []}
    start = WARM_UP
    for _ in range(repeats):
        rows = slice(start, start + samples)
        xs, ys = x[rows], y[rows]
        began = time.perf_counter()
        for i in range(samples):
            cluster.predict_one(xs[i])
        times["predict_one"].append(time.perf_counter() - began)
        began = time.perf_counter()
        cluster.predict_many(xs)
        times["predict_many"].append(time.perf_counter() - began)
        began = time.perf_counter()
        for i in range(samples):
            cluster.learn_one(xs[i], ys[i])
        times["learn_one"].append(time.perf_counter() - began)
        rows = slice(start + samples, start + 2 * samples)
        began = time.perf_counter()
        cluster.learn_many(x[rows], y[rows], compact=False)  # learn_one does not compact either
        times["learn_many"].append(time.perf_counter() - began)
        start += 2 * samples
    us = {name: statistics.median(values) / samples * 1e6 for name, values in times.items()}
    return {
        "learn_one_us": us["learn_one"],
        "learn_many_us_per_sample": us["learn_many"],
        "predict_one_us": us["predict_one"],
        "predict_many_us_per_sample": us["predict_many"],
        "learn_ratio": us["learn_one"] / us["learn_many"],
        "predict_ratio": us["predict_one"] / us["predict_many"],
        "samples": samples,
        "repeats": repeats,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=1000, help="samples per timed round (default 1,000)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds; the median is reported (default 5)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--json", type=Path, default=None, help="write the figures to this JSON file")
    args = parser.parse_args()
    if args.samples < 1 or args.repeats < 1:
        parser.error("--samples and --repeats must be positive")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    figures = measure(args.samples, args.repeats)
    figures["machine"] = machine_description()
    figures["threads"] = torch.get_num_threads()
    print(f"machine: {figures['machine']}; {figures['threads']} threads")
    print(f"learn_one    {figures['learn_one_us']:8.1f} us per call   learn_many   "
          f"{figures['learn_many_us_per_sample']:6.1f} us per sample   ratio {figures['learn_ratio']:.1f}")
    print(f"predict_one  {figures['predict_one_us']:8.1f} us per call   predict_many "
          f"{figures['predict_many_us_per_sample']:6.1f} us per sample   ratio {figures['predict_ratio']:.1f}")
    write_json(args.json, figures)


if __name__ == "__main__":
    main()
