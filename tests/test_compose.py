"""examples/compose.py on a subset: a CNN front end and a gradient-rule Hanami head trained jointly
with Adam. 200 steps of 64 images typically give about 94 % on the first 2,000 test images."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "compose.py"
MIN_ACCURACY_PERCENT = 85.0


def load_example():
    spec = importlib.util.spec_from_file_location("compose_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # about half a minute on two cores
def test_cnn_with_hanami_head_learns_mnist(mnist_train, mnist_test):
    compose = load_example()
    torch.manual_seed(0)
    pixels, labels = mnist_train
    test_pixels, test_labels = mnist_test
    model = compose.ConvHanami(seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    subset = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))[: 200 * 64]
    loss = compose.train_epoch(model, optimizer, pixels[subset], labels[subset],
                               generator=torch.Generator().manual_seed(1))
    assert loss < 1.0
    accuracy = compose.accuracy(model, test_pixels[:2000], test_labels[:2000])
    assert accuracy >= MIN_ACCURACY_PERCENT, f"test accuracy {accuracy:.2f} % after 200 steps"
    head = model.head
    assert head.stats()["synapses"] > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.front.parameters())
