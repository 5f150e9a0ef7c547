"""End to end: one online epoch on MNIST (60,000 samples, batch 1, file order, raw pixels).

The original Hanami reports 93-94 % after the first epoch; 92 % leaves room for seed-to-seed
spread while still catching a broken learning rule.  Each test takes a few seconds with the C++ core.
"""

from __future__ import annotations

from hanami_torch import HanamiCluster, templates
from hanami_torch.data import one_hot

MIN_ACCURACY_PERCENT = 92.0
# Expected size of a compat-mode network after one epoch, and the spread allowed around it.
COMPAT_SYNAPSES = 44_000
COMPAT_SYNAPSE_TOLERANCE = 0.15


def train_one_epoch_and_test(mnist_train, mnist_test, compat: bool):
    train_pixels, train_labels = mnist_train
    test_pixels, test_labels = mnist_test
    cluster = HanamiCluster(templates.MNIST, seed=0, compat=compat)
    cluster.learn_many(train_pixels, one_hot(train_labels), progress=False)
    outputs = cluster.predict_many(test_pixels, progress=False)
    assert outputs.shape == (len(test_labels), 10)
    accuracy = (outputs.argmax(1) == test_labels).float().mean().item() * 100
    return cluster, accuracy


def test_one_epoch_reaches_92_percent(mnist_train, mnist_test):
    cluster, accuracy = train_one_epoch_and_test(mnist_train, mnist_test, compat=False)
    assert accuracy >= MIN_ACCURACY_PERCENT, f"test accuracy {accuracy:.2f} % after one epoch"
    assert cluster.stats()["synapses"] > 0


def test_compat_one_epoch_accuracy_and_synapse_count(mnist_train, mnist_test):
    cluster, accuracy = train_one_epoch_and_test(mnist_train, mnist_test, compat=True)
    synapses = cluster.stats()["synapses"]
    assert accuracy >= MIN_ACCURACY_PERCENT, f"compat: test accuracy {accuracy:.2f} % after one epoch"
    low = COMPAT_SYNAPSES * (1 - COMPAT_SYNAPSE_TOLERANCE)
    high = COMPAT_SYNAPSES * (1 + COMPAT_SYNAPSE_TOLERANCE)
    assert low <= synapses <= high, f"compat: {synapses} synapses, expected {low:.0f}..{high:.0f}"
