"""torch.library conformance: torch.library.opcheck on every hanami op, with the tensors of a real,
small cluster, for the main combinations of options.

opcheck runs each utility on copies of the arguments: test_schema (the schema declares every
mutated argument, here the state list and outputs), test_autograd_registration, test_faketensor
(the fake kernel in hanami_torch/ops.py agrees with the C++ kernel on the outputs' metadata) and
test_aot_dispatch_dynamic (AOTAutograd with dynamic shapes traces the mutating op and replays it
with the same results).
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from hanami_torch import HanamiCluster, ops
from networks import TABLE_CONFIGS

UTILS = ("test_schema", "test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic")

CONFIGS = TABLE_CONFIGS


def samples(rows: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(rows, 25, generator=g) * 100, torch.rand(rows, 5, generator=g)


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def cluster(request):
    """A cluster that learned 300 samples and was packed with 8 spare slots per section, so that
    train_ on 8 more samples of the same kind never stops early for a full arena."""
    template, options = CONFIGS[request.param]
    cluster = HanamiCluster(template, seed=0, **options)
    cluster.learn_many(*samples(300, seed=1))
    cluster.compact(slack=8)
    return cluster


def op_arguments(cluster, name):
    layout, state, config = cluster._layout(), cluster._state(), cluster.config
    cluster._sync_threads()
    x, y = samples(8, seed=2)
    if name == "train_":  # online: no pending sums
        return (layout, state, config, x, y, torch.empty(8, 5), 0, torch.empty(0), 1)
    if name == "train_ batches":  # summed updates in batches of 3 (the last one of 2)
        return (layout, state, config, x, y, torch.empty(8, 5), 0, torch.zeros(cluster.syn_weight.numel()), 3)
    if name == "predict_":
        return (layout, state, config, x, torch.empty(8, 5))
    return (layout, state, config, 8)


@pytest.mark.parametrize("util", UTILS)
@pytest.mark.parametrize("name", ["train_", "train_ batches", "predict_", "compact_"])
def test_opcheck(cluster, name, util):
    op = getattr(torch.ops.hanami, name.split()[0])
    torch.library.opcheck(op, op_arguments(cluster, name), test_utils=util)


def test_opcheck_arguments_are_realistic(cluster):
    """The arguments above make every op do its full work: train_ learns all rows without running
    out of arena, predict_ gives outputs, compact_ succeeds, and each op changes its state."""
    for name in ("train_", "train_ batches", "predict_", "compact_"):
        args = copy.deepcopy(op_arguments(cluster, name))
        state = args[1]
        before = [t.clone() for t in state]
        getattr(torch.ops.hanami, name.split()[0])(*args)
        counters = state[ops.STATE.index("counters")]
        if name.startswith("train_"):
            assert int(counters[ops.COUNTER_PROCESSED]) == 8, "train_ stopped early: the arena is full"
            weights = ops.STATE.index("syn_weight")
            assert not torch.equal(before[weights], state[weights]), "train_ changed no weight"
            assert bool((args[5] > 0).all()), "every output should have been reached"
            if name == "train_ batches":  # the last batch's sums were applied: every live slot's is 0
                block, start, length = (state[ops.STATE.index(n)] for n in ("sec_block", "sec_start", "sec_len"))
                live = (block >= 0).nonzero().flatten().tolist()
                assert live and all(not args[7][start[s] : start[s] + length[s]].any() for s in live)
        elif name == "predict_":
            assert bool((args[4] > 0).all())
        else:
            assert int(counters[ops.COUNTER_PROCESSED]) == 1, "compact_ did not fit"


def test_fake_kernels_refuse_what_the_cpu_kernels_refuse(cluster):
    """Under FakeTensorMode (torch.compile, export) the metadata errors come from the fake kernels."""
    layout, state, config, x, y, out, _start, none, _ = op_arguments(cluster, "train_")
    pending = op_arguments(cluster, "train_ batches")[7]
    with FakeTensorMode(allow_non_fake_inputs=True) as mode:
        fake = lambda t: mode.from_tensor(t)  # noqa: E731
        layout, state = [fake(t) for t in layout], [fake(t) for t in state]
        config, x, y, out, none, pending = fake(config), fake(x), fake(y), fake(out), fake(none), fake(pending)
        torch.ops.hanami.train_(layout, state, config, x, y, out, 0, none, 1)  # accepted
        torch.ops.hanami.train_(layout, state, config, x, y, out, 0, pending, 3)
        torch.ops.hanami.predict_(layout, state, config, x, out)
        torch.ops.hanami.compact_(layout, state, config, 8)
        bad_calls = [
            (lambda: torch.ops.hanami.train_(layout, state, config, x.double(), y, out, 0, none, 1), "inputs must be a float32"),
            (lambda: torch.ops.hanami.train_(layout, state, config, x, y[:4], out, 0, none, 1), "differ in rows"),
            (lambda: torch.ops.hanami.train_(layout, state, config, x, y, out[:, :4], 0, none, 1), "shaped like targets"),
            (lambda: torch.ops.hanami.train_(layout, state, config, x, y, out, 9, none, 1), "start out of range"),
            (lambda: torch.ops.hanami.train_(layout, state[:-1], config, x, y, out, 0, none, 1), "state tensors"),
            (lambda: torch.ops.hanami.train_(layout, state, config, x, y, out, 0, pending, 0), "batch_size must be at least 1"),
            (lambda: torch.ops.hanami.train_(layout, state, config, x, y, out, 0, none, 2), "needs a pending tensor"),
            (lambda: torch.ops.hanami.train_(layout, state, config, x, y, out, 0, pending[1:], 2), "as large as the arena"),
            (lambda: torch.ops.hanami.train_(layout, state, config, x, y, out, 0, pending.double(), 2), "pending must be a float32"),
            (lambda: torch.ops.hanami.predict_(layout, state, config.float(), x, out), "config must be float64"),
            (lambda: torch.ops.hanami.predict_(layout, state, config, x, out[:4]), "differ in rows"),
            (lambda: torch.ops.hanami.predict_(layout, state, config, x[0], out), "inputs must be a float32"),
            (lambda: torch.ops.hanami.compact_(layout, state, config, 0), "slack must be in 1..63"),
            (lambda: torch.ops.hanami.compact_(layout[:2], state, config, 8), "layout"),
        ]
        for call, message in bad_calls:
            with pytest.raises(RuntimeError, match=message):
                call()
    # the same calls on real tensors fail in the C++ kernels
    real = op_arguments(cluster, "train_")
    layout, state, config, x, y, out, _, none, _ = copy.deepcopy(real)
    pending = torch.zeros(state[ops.STATE.index("syn_weight")].numel())
    for call, message in (
        (lambda: torch.ops.hanami.train_(layout, state, config, x.double(), y, out, 0, none, 1), "inputs must be Float"),
        (lambda: torch.ops.hanami.train_(layout, state, config, x, y, out, 9, none, 1), "start out of range"),
        (lambda: torch.ops.hanami.train_(layout, state, config, x, y, out, 0, pending, 0), "batch_size must be at least 1"),
        (lambda: torch.ops.hanami.train_(layout, state, config, x, y, out, 0, none, 2), "needs a pending tensor"),
        (lambda: torch.ops.hanami.train_(layout, state, config, x, y, out, 0, pending[1:], 2), "as large as the arena"),
        (lambda: torch.ops.hanami.compact_(layout, state, config, 0), "slack must be in 1..63"),
    ):
        with pytest.raises(RuntimeError, match=message):
            call()
