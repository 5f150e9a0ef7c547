"""Train a Hanami cluster on MNIST online, one sample at a time, and save it.

The Hanami protocol: the 784->400->10 template, the 60,000 training images in file order, one
sample per step, raw pixel values 0..255 (no normalisation).  After each epoch the script prints the
training time, the test accuracy and the number of synapses the network has grown; at the end it
saves a checkpoint.  (The epoch time includes the progress bar; benchmarks/mnist_online.py times
training without it.)

    python examples/mnist.py                       # one epoch, checkpoints/mnist.safetensors
    python examples/mnist.py --epochs 3 --compat   # behave like the original Hanami
    python examples/mnist.py --preset best         # the best settings found (docs/learning.md)

MNIST is read from $HANAMI_DATA_DIR (default ./data) and downloaded there when missing.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import hanami_torch
from hanami_torch import HanamiCluster, templates
from hanami_torch.data import data_dir, load_mnist, one_hot


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=1, help="passes over the training set (default 1)")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="folder that contains MNIST/raw/ (default $HANAMI_DATA_DIR or ./data)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the network's growth (default 0)")
    parser.add_argument("--compat", action="store_true", help="reproduce the original Hanami's behaviour")
    parser.add_argument("--preset", choices=sorted(templates.MNIST_PRESETS), default="hanami",
                        help="hanami: Hanami's own network and rule (default); best: 784 -> 576 -> 10 with "
                             "Adagrad and receptive fields, about 97 %% after one epoch (not with --compat)")
    parser.add_argument("--save", type=Path, default=Path("checkpoints/mnist.safetensors"),
                        help="checkpoint to write at the end (default checkpoints/mnist.safetensors)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch and the Hanami ops")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    if args.compat and args.preset != "hanami":
        raise SystemExit("--compat reproduces Hanami itself: use it with --preset hanami")

    root = args.data_root if args.data_root is not None else data_dir()
    train_pixels, train_labels = load_mnist(train=True, root=root)
    test_pixels, test_labels = load_mnist(train=False, root=root)
    train_targets = one_hot(train_labels)
    print(f"MNIST from {root}: {len(train_labels)} training and {len(test_labels)} test images")

    text, options = templates.mnist_preset(args.preset)
    cluster = HanamiCluster(text, seed=args.seed, compat=args.compat, **options)
    hidden = templates.MNIST_PRESETS[args.preset][0]
    print(f"template: MNIST (784 -> {hidden} -> 10), preset {args.preset}, seed {args.seed}, "
          f"compat={args.compat}, {torch.get_num_threads()} threads")

    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        cluster.learn_many(train_pixels, train_targets, progress=True)
        train_seconds = time.perf_counter() - start

        outputs = cluster.predict_many(test_pixels, progress=True)
        accuracy = (outputs.argmax(1) == test_labels).float().mean().item() * 100
        synapses = cluster.stats()["synapses"]
        print(f"epoch {epoch}: train {train_seconds:.2f} s, test accuracy {accuracy:.2f} %, "
              f"{synapses:,} synapses")

    args.save.parent.mkdir(parents=True, exist_ok=True)
    hanami_torch.save(cluster, args.save)
    print(f"checkpoint saved to {args.save}")


if __name__ == "__main__":
    main()
