"""End to end: one online epoch on MNIST (60,000 samples, batch 1, file order, raw pixels), seed 0,
against the exact figures of tests/mnist_figures.py. Each test takes a few seconds with the C++ core.

(The original Hanami reports 93-94 % after the first epoch; both modes are in that range.)
"""

from __future__ import annotations

import pytest
from mnist_figures import ONE_EPOCH_SEED_0

from hanami_torch import HanamiCluster, templates
from hanami_torch.data import one_hot

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("mode", ["default", "compat"])
def test_one_epoch_gives_the_pinned_figures(mnist_train, mnist_test, mode):
    train_pixels, train_labels = mnist_train
    test_pixels, test_labels = mnist_test
    cluster = HanamiCluster(templates.MNIST, seed=0, compat=mode == "compat")
    cluster.learn_many(train_pixels, one_hot(train_labels), progress=False)
    outputs = cluster.predict_many(test_pixels, progress=False)
    assert outputs.shape == (len(test_labels), 10)
    stats = cluster.stats()
    measured = {"correct": int((outputs.argmax(1) == test_labels).sum()), "synapses": stats["synapses"],
                "sections": stats["sections"]}
    assert measured == ONE_EPOCH_SEED_0[mode], (
        f"{mode}: one epoch with seed 0 gave {measured} ({measured['correct'] / 100:.2f} %), expected "
        f"{ONE_EPOCH_SEED_0[mode]}; after a deliberate change update tests/mnist_figures.py"
    )
