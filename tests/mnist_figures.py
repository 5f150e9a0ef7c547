"""The exact results of one online MNIST epoch with seed 0 (templates.MNIST: 784 -> 400 -> 10,
batch 1, file order, raw pixels, test set in file order), in one place.

The run is deterministic: the same figures with any number of threads and however the samples are
split into calls (tests/test_reference.py, tests/test_rules.py, tests/test_batch.py). So the tests
assert them exactly, and any change to the learning rule, the growth, the random streams or the
input handling fails them loudly (a learning rate twice too large changes every figure here). A
deliberate change updates the figures of the mode it changes, here and nowhere else.
"""

#: mode -> test-set digits right (of 10,000), synapses and sections after the epoch
ONE_EPOCH_SEED_0 = {
    "default": {"correct": 9372, "synapses": 55_839, "sections": 1_627},
    "compat": {"correct": 9300, "synapses": 43_875, "sections": 1_117},
}
