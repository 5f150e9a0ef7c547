"""MNIST online benchmark: Hanami against a plain PyTorch MLP, both at batch size 1.

Hanami follows its own protocol: the 784->400->10 template (``hanami_torch.templates.MNIST`` unless
``--template``; ``--preset best`` uses 576 hidden neurons), the 60,000 training images in file order,
one sample per step, raw pixels 0..255.
Each epoch is one ``learn_many`` call timed with ``time.perf_counter()`` (no progress bar inside the
timed region), then the 10,000 test images are predicted and timed.

The baseline is what the same budget buys in plain PyTorch: an MLP 784-400(ReLU)-10 with default
initialisation, cross-entropy, SGD with learning rate 0.01, batch 1, file order, pixels scaled to
0..1, trained for one epoch by a Python loop of ``zero_grad(); backward(); step()``.

    python benchmarks/mnist_online.py --epochs 3 --json results.json

JSON written by ``--json`` (accuracies in percent, times in seconds)::

    {"hanami": {"epochs": [{"epoch", "train_seconds", "test_seconds", "test_accuracy",
                            "synapses", "bytes_per_synapse"}, ...],
                "peak_rss_mib"},
     "torch_mlp_batch1": {"train_seconds", "test_accuracy"} or null with --skip-mlp,
     "torch_threads", "machine", "compat", "seed",
     (with --seeds N: "epochs" holds the mean over the N seeds, "per_seed" each seed's rows)
     "speedup_vs_mlp": MLP epoch time / Hanami first-epoch time, or null with --skip-mlp}

``peak_rss_mib`` is read after the Hanami epochs, before the MLP runs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import nn

from hanami_torch import HanamiCluster, templates
from hanami_torch.data import data_dir, load_mnist, one_hot

# benchmarks/_common.py: importable because Python puts the script's folder on sys.path.
from _common import accuracy_percent, machine_description, peak_rss_mib, write_json

N_CLASSES = 10

#: HanamiCluster options and hidden neurons per preset (hanami_torch.templates.MNIST_PRESETS;
#: docs/learning.md explains the choice of "best")
PRESETS = {name: options for name, (_, options) in templates.MNIST_PRESETS.items()}
PRESET_HIDDEN = {name: hidden for name, (hidden, _) in templates.MNIST_PRESETS.items()}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=1, help="Hanami epochs (default 1); the MLP trains one")
    parser.add_argument("--compat", action="store_true", help="reproduce the original Hanami's behaviour")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="hanami",
                        help="constructor options: 'hanami' = Hanami's own rule (default), 'best' = the "
                             "best documented options (docs/learning.md)")
    parser.add_argument("--template", type=Path, default=None,
                        help="template file to use instead of the preset's templates.mnist(hidden) "
                             "(784 inputs, 10 outputs; 400 hidden for 'hanami' = templates.MNIST, 576 for 'best')")
    parser.add_argument("--seed", type=int, default=0, help="seed of Hanami's growth and the MLP's init (default 0)")
    parser.add_argument("--seeds", type=int, default=1,
                        help="train Hanami with this many seeds (seed, seed+1, ...) and report the mean "
                             "per epoch: one seed's accuracy varies by about +-0.4 points")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for both models")
    parser.add_argument("--skip-mlp", action="store_true", help="leave out the MLP baseline (quick runs)")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="folder that contains MNIST/raw/ (default $HANAMI_DATA_DIR or ./data)")
    parser.add_argument("--json", type=Path, default=None, help="write the results to this JSON file")
    return parser.parse_args()


def run_hanami(template, args, seed, train_pixels, train_targets, test_pixels, test_labels) -> list[dict]:
    cluster = HanamiCluster(template, seed=seed, compat=args.compat, **PRESETS[args.preset])
    epochs = []
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        cluster.learn_many(train_pixels, train_targets, progress=False)
        train_seconds = time.perf_counter() - start

        start = time.perf_counter()
        outputs = cluster.predict_many(test_pixels, progress=False)
        test_seconds = time.perf_counter() - start

        stats = cluster.stats()
        epochs.append({
            "epoch": epoch,
            "train_seconds": train_seconds,
            "test_seconds": test_seconds,
            "test_accuracy": accuracy_percent(outputs, test_labels),
            "synapses": int(stats["synapses"]),
            "bytes_per_synapse": float(stats["bytes_per_synapse"]),
        })
        print_epoch_row(epochs[-1])
    return epochs


def run_torch_mlp(seed, train_pixels, train_labels, test_pixels, test_labels) -> dict:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(784, 400), nn.ReLU(), nn.Linear(400, N_CLASSES))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_function = nn.CrossEntropyLoss()
    train_inputs = train_pixels / 255.0
    test_inputs = test_pixels / 255.0

    start = time.perf_counter()
    for index in range(len(train_inputs)):
        loss = loss_function(model(train_inputs[index:index + 1]), train_labels[index:index + 1])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    train_seconds = time.perf_counter() - start

    with torch.no_grad():
        accuracy = accuracy_percent(model(test_inputs), test_labels)
    return {"train_seconds": train_seconds, "test_accuracy": accuracy}


def mean_over_seeds(runs: list[list[dict]]) -> list[dict]:
    """Epoch rows averaged over seeds (the train time is the mean too; min and max are kept)."""
    rows = []
    for epoch_rows in zip(*runs):
        row = {"epoch": epoch_rows[0]["epoch"]}
        for key in ("train_seconds", "test_seconds", "test_accuracy", "synapses", "bytes_per_synapse"):
            values = [r[key] for r in epoch_rows]
            row[key] = sum(values) / len(values)
            if len(values) > 1 and key in ("train_seconds", "test_accuracy"):
                row[key + "_min"], row[key + "_max"] = min(values), max(values)
        row["synapses"] = int(round(row["synapses"]))
        rows.append(row)
    return rows


def print_epoch_row(row: dict) -> None:
    print(f"{row['epoch']:>5}  {row['train_seconds']:>9.2f}  {row['test_seconds']:>8.2f}  "
          f"{row['test_accuracy']:>10.2f}  {row['synapses']:>10,}  {row['bytes_per_synapse']:>13.1f}", flush=True)


def main() -> None:
    args = parse_args()
    if args.compat and "input_shape" in PRESETS[args.preset]:
        raise SystemExit(f"--preset {args.preset} uses receptive fields, which compat=True (Hanami's own "
                         "behaviour) does not have; use --preset hanami with --compat")
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    root = args.data_root if args.data_root is not None else data_dir()
    train_pixels, train_labels = load_mnist(train=True, root=root)
    test_pixels, test_labels = load_mnist(train=False, root=root)
    train_targets = one_hot(train_labels, N_CLASSES)
    hidden = PRESET_HIDDEN[args.preset]
    template = args.template.read_text() if args.template is not None else templates.mnist(hidden)
    template_name = str(args.template) if args.template is not None else f"templates.mnist({hidden}) (784-{hidden}-10)"

    machine = machine_description()
    print(f"machine: {machine}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"Hanami, {template_name}, batch 1, file order, raw pixels, seed {args.seed}, compat={args.compat}, "
          f"preset {args.preset} {PRESETS[args.preset]}")
    print(f"{'epoch':>5}  {'train [s]':>9}  {'test [s]':>8}  {'accuracy %':>10}  {'synapses':>10}  "
          f"{'bytes/synapse':>13}")
    per_seed = {}
    for seed in range(args.seed, args.seed + args.seeds):
        if args.seeds > 1:
            print(f"seed {seed}")
        per_seed[seed] = run_hanami(template, args, seed, train_pixels, train_targets, test_pixels, test_labels)
    hanami_epochs = mean_over_seeds(list(per_seed.values()))
    if args.seeds > 1:
        print(f"mean over {args.seeds} seeds")
        for row in hanami_epochs:
            print_epoch_row(row)
    hanami_peak_rss = peak_rss_mib()
    print(f"peak RSS after Hanami: {hanami_peak_rss:.0f} MiB")

    mlp = None
    speedup = None
    if not args.skip_mlp:
        print("PyTorch MLP 784-400-10, batch 1, SGD lr 0.01, pixels 0..1, one epoch ...", flush=True)
        mlp = run_torch_mlp(args.seed, train_pixels, train_labels, test_pixels, test_labels)
        speedup = mlp["train_seconds"] / hanami_epochs[0]["train_seconds"]
        print(f"MLP: train {mlp['train_seconds']:.2f} s, test accuracy {mlp['test_accuracy']:.2f} %")
        print(f"Hanami epoch 1 is {speedup:.1f}x as fast as the MLP epoch")

    results = {
        "hanami": {"epochs": hanami_epochs, "peak_rss_mib": hanami_peak_rss,
                   "seeds": list(per_seed), "per_seed": {str(k): v for k, v in per_seed.items()}},
        "torch_mlp_batch1": mlp,
        "torch_threads": torch.get_num_threads(),
        "machine": machine,
        "compat": args.compat,
        "preset": args.preset,
        "options": PRESETS[args.preset],
        "template": template_name,
        "seed": args.seed,
        "speedup_vs_mlp": speedup,
    }
    write_json(args.json, results)


if __name__ == "__main__":
    main()
