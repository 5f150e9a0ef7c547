"""A HanamiCluster as one layer of a larger PyTorch model: a small CNN front end and a Hanami head,
trained jointly on MNIST with a standard optimizer (Adam) and cross-entropy.

The head is a cluster with ``learning_rule="gradient"``: its synapse weights are an
``nn.Parameter``, its forward pass is differentiable (gradients reach the CNN through it), and in
training mode each forward call first grows the network for its batch. The CNN's 128 features
(ReLU, so never negative) feed the head's input brick; each feature opens 8 sections of synapses
(``input_fan_in=8``), each slot of which covers one interval of the feature's values and sends it
to one of the 10 output neurons: a learned, growing piecewise-linear read-out. New synapses start
small (``init_scale=0.001``), so that the untrained head's random slopes do not drown the gradient
the CNN gets through it. The outputs are sigmoids; their logits go into the cross-entropy. The
learning rate follows a cosine schedule over all epochs.

    python examples/compose.py                     # 2 epochs, prints the test accuracy per epoch
    python examples/compose.py --epochs 1 --threads 2

MNIST is read from $HANAMI_DATA_DIR (default ./data) and downloaded there when missing.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from hanami_torch import HanamiCluster
from hanami_torch.data import data_dir, load_mnist

#: the head: the CNN's features in, one output neuron per digit
HEAD_TEMPLATE = """version: 1
bricks:
    1,1,1
        input: features
        number_of_neurons: {features}
    2,1,1
        output: digits
        number_of_neurons: 10
"""

BATCH_SIZE = 64
#: MNIST's pixel mean and standard deviation (of the values scaled to 0..1)
MEAN, STD = 0.1307, 0.3081


class ConvHanami(nn.Module):
    """Two convolution layers, a linear layer to ``features`` ReLU features, and a Hanami head."""

    def __init__(self, *, features: int = 128, fan_in: int = 8, init_scale: float = 0.001, seed: int = 0) -> None:
        super().__init__()
        self.front = nn.Sequential(
            nn.Conv2d(1, 16, 5), nn.ReLU(), nn.MaxPool2d(2),   # 16 x 12 x 12
            nn.Conv2d(16, 32, 5), nn.ReLU(), nn.MaxPool2d(2),  # 32 x 4 x 4
            nn.Flatten(), nn.Linear(512, features), nn.ReLU(),
        )
        self.head = HanamiCluster(
            HEAD_TEMPLATE.format(features=features),
            seed=seed,
            learning_rule="gradient",
            input_fan_in=fan_in,
            init_scale=init_scale,
        )

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """``[B, 784]`` raw pixels 0..255 to ``[B, 10]`` logits."""
        images = (pixels.reshape(-1, 1, 28, 28) / 255 - MEAN) / STD
        outputs = self.head(self.front(images))  # sigmoids in (0, 1), 0 where nothing arrived
        return torch.logit(outputs, eps=1e-6)


def train_epoch(model: ConvHanami, optimizer, pixels, labels, *, batch_size: int = 64, scheduler=None,
                generator=None, progress: bool = False) -> float:
    """One pass over ``pixels`` in random order (``scheduler.step()`` after every batch, if given);
    returns the mean training loss."""
    model.train()
    order = torch.randperm(len(labels), generator=generator)
    batches = range(0, len(order), batch_size)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="train", unit="batch")
    total = 0.0
    for start in batches:
        index = order[start : start + batch_size]
        loss = F.cross_entropy(model(pixels[index]), labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total += loss.item() * len(index)
        if progress:
            batches.set_postfix(loss=f"{loss.item():.3f}", synapses=f"{model.head.stats()['synapses']:,}",
                                refresh=False)
    return total / len(order)


@torch.no_grad()
def accuracy(model: ConvHanami, pixels, labels, *, batch_size: int = 1000) -> float:
    """Test accuracy in percent (eval mode: nothing grows)."""
    model.eval()
    correct = 0
    for start in range(0, len(labels), batch_size):
        logits = model(pixels[start : start + batch_size])
        correct += int((logits.argmax(1) == labels[start : start + batch_size]).sum())
    return 100.0 * correct / len(labels)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=2, help="passes over the training set (default 2)")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="folder that contains MNIST/raw/ (default $HANAMI_DATA_DIR or ./data)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the CNN's initial weights, the batch "
                        "order and the head's growth (default 0)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch and the Hanami ops")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.epochs < 1:
        raise SystemExit("--epochs must be at least 1")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)

    root = args.data_root if args.data_root is not None else data_dir()
    train_pixels, train_labels = load_mnist(train=True, root=root)
    test_pixels, test_labels = load_mnist(train=False, root=root)
    print(f"MNIST from {root}: {len(train_labels)} training and {len(test_labels)} test images, "
          f"{torch.get_num_threads()} threads")

    model = ConvHanami(seed=args.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    steps = args.epochs * math.ceil(len(train_labels) / BATCH_SIZE)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / steps)))
    print(model)

    started = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        loss = train_epoch(model, optimizer, train_pixels, train_labels, batch_size=BATCH_SIZE, scheduler=scheduler,
                           generator=generator, progress=True)
        percent = accuracy(model, test_pixels, test_labels)
        print(f"epoch {epoch}: loss {loss:.4f}, test accuracy {percent:.2f} %, "
              f"{model.head.stats()['synapses']:,} synapses, {time.perf_counter() - started:.0f} s so far")


if __name__ == "__main__":
    main()
