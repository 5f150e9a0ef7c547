"""Batches: learn_many(batch_size=B) sums the weight steps of B samples per synapse.

The growth is the online one; the weight updates of each batch are computed with the weights of
its start and applied once at its end. B = 1 must be online learning bit for bit, and every B must
match the pure-Python reference bit for bit, also when the arena grows in the middle of a batch.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hanami_torch import HanamiCluster, ops, templates
from hanami_torch import cluster as cluster_module
from hanami_torch.reference import ReferenceCluster, cluster_structure
from networks import LINE_OPTIONS, line_cluster, line_with, random_samples


#: the option sets these tests run (tests/networks.py)
OPTIONS = {name: LINE_OPTIONS[name] for name in (
    "sgd", "compat", "adagrad", "reduction", "compat-reduction", "adagrad-reduction", "spiking",
)}
make = line_cluster


WARM_UP = 60


def grown(option: str, seed: int, data_seed: int):
    """A cluster that learned WARM_UP samples online, and the rows to learn next: 90, or with
    reduction 170 (reductions at steps 100 and 200). With reduction every counter is set to 1
    first, so that the reduction at step 100 deletes the synapses not useful since then (from
    their start value, deletion would take 500 steps)."""
    cluster = make(option, seed=seed)
    reduction = OPTIONS[option][0]
    x, y = random_samples(cluster, WARM_UP + (170 if reduction else 90), ramp=True, seed=data_seed)
    cluster.learn_many(x[:WARM_UP], y[:WARM_UP])
    if reduction:
        cluster.syn_counter.fill_(1)
    return cluster, x[WARM_UP:], y[WARM_UP:]


def learn_through_sums(cluster, x, y, batch_size):
    """learn_many's loop, but always through the engine's summing path (a pending tensor is passed
    even for batch_size 1), with the arena grown and the call resumed like HanamiCluster._train."""
    out = torch.empty_like(y)
    pending = torch.zeros(cluster.syn_weight.numel())
    start = 0
    while start < x.shape[0]:
        cluster._sync_threads()
        ops.train_(cluster._layout(), cluster._state(), cluster.config, x, y, out, start, pending, batch_size)
        done = int(cluster.counters[ops.COUNTER_PROCESSED])
        if done < x.shape[0]:
            pending = cluster._resize_arena(2 * cluster.syn_weight.numel(), pending)
        start = done
    return out


def assert_same(a: HanamiCluster, b: HanamiCluster) -> None:
    assert cluster_structure(a) == cluster_structure(b)


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_batch_size_one_is_online_learning(option):
    """Batches of one, both the plain path of learn_many (one call over all rows) and the engine's
    summing path (a pending tensor, from a 64-slot arena that grows), grow and learn exactly what
    the Python reference learns with its online step, row by row (not through its batches)."""
    many, x, y = grown(option, seed=3, data_seed=1)
    ref = ReferenceCluster.from_cluster(many)
    expected = np.asarray([ref.train_step(a, b) for a, b in zip(x.tolist(), y.tolist())], dtype=np.float32)

    out_many = many.learn_many(x, y, batch_size=1)
    summed, _, _ = grown(option, seed=3, data_seed=1)
    summed._resize_arena(64)  # small: the summing path also meets arena growth (doubling from 64)
    out_summed = learn_through_sums(summed, x, y, batch_size=1)

    for out, cluster in ((out_many, many), (out_summed, summed)):
        np.testing.assert_array_equal(out.numpy(), expected)
        assert cluster_structure(cluster) == ref.structure()
    assert ref.synapses > 100


@pytest.mark.parametrize(
    "option, batch_size",
    [("sgd", 4), ("sgd", 17), ("compat", 8), ("adagrad", 5), ("reduction", 6), ("compat-reduction", 9),
     ("adagrad-reduction", 16), ("spiking", 3)],
)
def test_batches_match_reference(option, batch_size):
    cluster, x, y = grown(option, seed=5, data_seed=2)
    ref = ReferenceCluster.from_cluster(cluster)
    expected = np.asarray(ref.train_many(x.tolist(), y.tolist(), batch_size=batch_size), dtype=np.float32)
    got = cluster.learn_many(x, y, batch_size=batch_size)
    np.testing.assert_array_equal(got.numpy(), expected)
    assert cluster_structure(cluster) == ref.structure()
    # batches really change the result: online learning ends elsewhere
    online, _, _ = grown(option, seed=5, data_seed=2)
    online.learn_many(x, y)
    assert cluster_structure(online)["sections"] != ref.structure()["sections"]


@pytest.mark.parametrize("option", ["sgd", "compat-reduction", "adagrad-reduction"])
def test_arena_growth_in_the_middle_of_a_batch(option, monkeypatch):
    """A tiny arena makes train_ stop and resume inside batches; the sums of the unfinished batch
    travel with the arena and the result equals the reference's."""
    batch_size = 7
    cluster = make(option, seed=8)
    x, y = random_samples(cluster, 170, ramp=True, seed=3)
    ref = ReferenceCluster.from_cluster(cluster)
    expected = np.asarray(ref.train_many(x.tolist(), y.tolist(), batch_size=batch_size), dtype=np.float32)

    roomy = make(option, seed=8)
    out_roomy = roomy.learn_many(x, y, batch_size=batch_size, compact=False)

    starts = []
    train = ops.train_

    def recording(*args):
        starts.append(args[6])
        return train(*args)

    monkeypatch.setattr(ops, "train_", recording)
    monkeypatch.setattr(cluster_module, "INITIAL_ARENA_SLOTS", 16)  # the arena doubles from 16 slots
    cluster._resize_arena(16)
    got = cluster.learn_many(x, y, batch_size=batch_size, compact=False)
    resumed = [start for start in starts if start % batch_size]
    assert len(resumed) >= 3, f"too few calls resumed inside a batch: {starts}"

    np.testing.assert_array_equal(got.numpy(), expected)
    assert torch.equal(got, out_roomy)
    assert cluster_structure(cluster) == ref.structure()
    assert_same(cluster, roomy)


@pytest.mark.parametrize("option", ["sgd", "adagrad"])
def test_one_batch_of_the_whole_set(option):
    """batch_size = all rows: the forward passes all see the initial weights (new synapses aside),
    and the weights move once at the end; a larger batch_size gives the same."""
    cluster = make(option, seed=4)
    x, y = random_samples(cluster, 60, ramp=True, seed=4)
    ref = ReferenceCluster.from_cluster(cluster)
    expected = np.asarray(ref.train_many(x.tolist(), y.tolist(), batch_size=60), dtype=np.float32)
    got = cluster.learn_many(x, y, batch_size=60)
    np.testing.assert_array_equal(got.numpy(), expected)
    assert cluster_structure(cluster) == ref.structure()
    larger = make(option, seed=4)
    assert torch.equal(larger.learn_many(x, y, batch_size=1000), got)
    assert_same(larger, cluster)


def test_learn_stream_progress_and_threads_keep_the_batches():
    """learn_stream chunks and progress-bar chunks hold whole batches, and threads do not matter:
    all give the result of one learn_many call."""
    x = torch.rand(2100, 25) * 40
    y = (torch.rand(2100, 5) < 0.3).float()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = HanamiCluster(templates.TABLE, seed=2)
        out_one = one.learn_many(x, y, batch_size=7)
        torch.set_num_threads(2)
        progress = HanamiCluster(templates.TABLE, seed=2)
        out_progress = progress.learn_many(x, y, batch_size=7, progress=True)
        stream = HanamiCluster(templates.TABLE, seed=2)
        seen = []
        summary = stream.learn_stream(zip(x, y), batch_size=7, on_chunk=lambda out, _t: seen.append(out))
    finally:
        torch.set_num_threads(threads)
    assert summary["samples"] == 2100 and [len(s) for s in seen][:1] == [1029]  # 1024 -> 147 batches
    assert torch.equal(out_progress, out_one) and torch.equal(torch.cat(seen), out_one)
    assert_same(progress, one)
    assert_same(stream, one)


@pytest.mark.parametrize("bad", [0, -3, 2.0, 1.5, True, "4", None])
def test_bad_batch_size_is_refused(bad):
    cluster = HanamiCluster(templates.TABLE, seed=0)
    x, y = torch.rand(4, 25), torch.rand(4, 5)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        cluster.learn_many(x, y, batch_size=bad)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        cluster.learn_stream(zip(x, y), batch_size=bad)
    assert int(cluster.counters[ops.COUNTER_STEP]) == 0


def test_stream_chunks_must_hold_whole_batches():
    cluster = HanamiCluster(templates.TABLE, seed=0)
    x, y = torch.rand(4, 25), torch.rand(4, 5)
    with pytest.raises(ValueError, match=r"chunk_size \(100\) must be a multiple of batch_size \(8\)"):
        cluster.learn_stream(zip(x, y), chunk_size=100, batch_size=8)
    assert int(cluster.counters[ops.COUNTER_STEP]) == 0


def test_the_op_refuses_bad_batch_arguments():
    cluster = HanamiCluster(templates.TABLE, seed=0)
    x, y = torch.rand(4, 25), torch.rand(4, 5)
    out = torch.empty(4, 5)
    args = (cluster._layout(), cluster._state(), cluster.config, x, y, out, 0)
    capacity = cluster.syn_weight.numel()
    for pending, batch_size, message in (
        (torch.zeros(capacity), 0, "batch_size must be at least 1"),
        (torch.empty(0), 2, "batch_size > 1 needs a pending tensor"),
        (torch.zeros(capacity - 1), 2, "pending must be empty .* or as large as the arena"),
        (torch.zeros(capacity, dtype=torch.float64), 2, "pending must be Float"),
    ):
        with pytest.raises(RuntimeError, match=message):
            torch.ops.hanami.train_(*args, pending, batch_size)
    assert int(cluster.counters[ops.COUNTER_STEP]) == 0
