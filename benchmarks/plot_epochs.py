"""Plots accuracy and synapses per epoch from ``benchmarks/mnist_online.py --json`` results.

Usage::

    python benchmarks/plot_epochs.py --out docs/figures/mnist_epochs.svg \\
        "hanami preset=bench-results/default.json" "compat=bench-results/compat.json"

Each argument is ``label=path``. The left panel shows test accuracy after every epoch (the mean
over seeds, with the range of the seeds as a band when the run used several), the right panel the
synapses; the batch-1 PyTorch MLP of each run (one epoch) is drawn as a dashed reference line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        epochs = data["hanami"]["epochs"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SystemExit(f"{path}: not a benchmarks/mnist_online.py JSON result ({error})") from None
    if not epochs:
        raise SystemExit(f"{path}: the result has no epochs")
    return data


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="label=path of a mnist_online.py JSON result")
    parser.add_argument("--out", required=True, help="image to write (.svg or .png)")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (acc_ax, syn_ax) = plt.subplots(1, 2, figsize=(10, 4))
    mlp_drawn = set()
    for run in args.runs:
        label, sep, path = run.rpartition("=")  # the label may contain "="
        if not sep:
            raise SystemExit(f"expected label=path, got {run!r}")
        data = read(Path(path))
        epochs = data["hanami"]["epochs"]
        x = [e["epoch"] for e in epochs]
        accuracy = [e["test_accuracy"] for e in epochs]
        line = acc_ax.plot(x, accuracy, marker="o", label=label)[0]
        if "test_accuracy_min" in epochs[0]:
            acc_ax.fill_between(
                x,
                [e["test_accuracy_min"] for e in epochs],
                [e["test_accuracy_max"] for e in epochs],
                color=line.get_color(),
                alpha=0.15,
            )
        syn_ax.plot(x, [e["synapses"] / 1000 for e in epochs], marker="o", label=label, color=line.get_color())
        mlp = data.get("torch_mlp_batch1") or {}
        if "test_accuracy" in mlp and round(mlp["test_accuracy"], 1) not in mlp_drawn:
            mlp_drawn.add(round(mlp["test_accuracy"], 1))
            acc_ax.axhline(mlp["test_accuracy"], linestyle="--", color="grey", linewidth=1)
            acc_ax.annotate(
                f"PyTorch MLP, batch 1, 1 epoch: {mlp['test_accuracy']:.1f} %",
                (0.98, mlp["test_accuracy"]),
                xycoords=("axes fraction", "data"),
                xytext=(0, 4),
                textcoords="offset points",
                ha="right",
                fontsize=8,
                color="grey",
            )
    acc_ax.set_xlabel("epoch (online, one sample per step)")
    acc_ax.set_ylabel("MNIST test accuracy (%)")
    acc_ax.grid(alpha=0.3)
    acc_ax.legend(fontsize=8, loc="lower right")
    syn_ax.set_xlabel("epoch")
    syn_ax.set_ylabel("synapses (thousands)")
    syn_ax.grid(alpha=0.3)
    syn_ax.set_ylim(bottom=0)
    for ax in (acc_ax, syn_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
