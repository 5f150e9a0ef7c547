"""The portable train step (csrc/portable/train_step.h) against the CPU engine, bit for bit.

The GPU learns with the portable step (one CUDA thread block, csrc/cuda/train_cuda.cu); on the CPU
the same code runs as the test-only op ``hanami::train_portable_`` (``train_``'s schema plus
a ``schedule``). Every test lets the engine's ``train_`` and the portable op learn the same samples
from the same cluster, through the loop of ``HanamiCluster._train`` (the arena grows when an op
stops early), and asks for identical outputs, identical state tensors (network, weights, arena
layout, counters, neuron state) and the same points where the arena had to grow.

The portable op runs three times: one thread runs the items of each phase in ascending order, then
in descending order, then four threads run the step together with a barrier between phases, like
the GPU's thread block. On the GPU a phase's items run at once, so no item may depend on another
one of its phase, and every phase must end with a sync.
"""

from __future__ import annotations

import copy
import functools

import numpy as np
import pytest
import torch

from hanami_torch import HanamiCluster, ops, templates
from hanami_torch.reference import cluster_structure
from networks import LINE_OPTIONS, MULTI_IO, line_cluster, line_with, random_samples

#: schedules of the portable op: items in ascending order, in descending order, four threads
SCHEDULES = (0, 1, 2)
PORTABLE_SCHEDULES = [functools.partial(torch.ops.hanami.train_portable_, schedule=s) for s in SCHEDULES]


#: the option sets these tests run (tests/networks.py)
OPTIONS = {name: LINE_OPTIONS[name] for name in (
    "sgd", "adagrad", "reduction", "adagrad-reduction", "spiking", "spiking-reduction", "fields",
    "fan-in-8-reduction", "gradient", "gradient-spiking",
)}
make = line_cluster


@torch.no_grad()
def learn(op, cluster: HanamiCluster, x, y, batch_size: int = 1, chunk: int | None = None, calls=None):
    """HanamiCluster._train's loop with `op`, over chunks of `chunk` rows (one call each, resumed
    after arena growth). Returns the outputs and the starts of all calls. ``calls`` (a list)
    receives ``(start, needy, garbage)`` before and ``(done, needy, garbage)`` after each call."""
    out = torch.empty_like(y)
    starts = []
    chunk = chunk or x.shape[0]
    for lo in range(0, x.shape[0], chunk):
        xs, ys, outs = x[lo : lo + chunk], y[lo : lo + chunk], out[lo : lo + chunk]
        size = cluster.syn_weight.numel() if batch_size > 1 else 0
        pending = torch.zeros(size)
        start = 0
        while start < xs.shape[0]:
            cluster._sync_threads()
            before = (start, int(cluster.counters[ops.COUNTER_NEEDY]), int(cluster.counters[ops.COUNTER_GARBAGE]))
            op(cluster._layout(), cluster._state(), cluster.config, xs, ys, outs, start, pending, batch_size)
            starts.append(lo + start)
            done = int(cluster.counters[ops.COUNTER_PROCESSED])
            if calls is not None:
                calls.append((before, (done, int(cluster.counters[ops.COUNTER_NEEDY]),
                                       int(cluster.counters[ops.COUNTER_GARBAGE]))))
            assert done >= start
            if done < xs.shape[0]:
                assert len(starts) < 200, "the arena did not grow as needed"
                pending = cluster._resize_arena(max(2 * cluster.syn_weight.numel(), 16), pending)
            start = done
    return out, starts


def assert_identical(portable: HanamiCluster, engine: HanamiCluster) -> None:
    for name in ops.LAYOUT + ops.STATE:
        a, b = getattr(portable, name), getattr(engine, name)
        assert a.shape == b.shape and torch.equal(a, b), f"{name} differs"
    assert cluster_structure(portable) == cluster_structure(engine)


def run_both(cluster: HanamiCluster, x, y, batch_size: int = 1, chunk: int | None = None, arena: int | None = None):
    engine = copy.deepcopy(cluster)
    if arena is not None:
        engine._resize_arena(arena)
    out_engine, starts_engine = learn(torch.ops.hanami.train_, engine, x, y, batch_size, chunk)
    for op in PORTABLE_SCHEDULES:
        portable = copy.deepcopy(cluster)
        if arena is not None:
            portable._resize_arena(arena)
        out_portable, starts_portable = learn(op, portable, x, y, batch_size, chunk)
        assert torch.equal(out_portable, out_engine)
        assert starts_portable == starts_engine
        assert_identical(portable, engine)
    return portable, starts_engine


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_options_match_the_engine(option):
    cluster = make(option)
    x, y = random_samples(cluster, 260, ramp=True, seed=1)
    # warm up on the engine, then make reduction delete synapses soon (counters at 1)
    learn(torch.ops.hanami.train_, cluster, x[:60], y[:60])
    if OPTIONS[option][0]:
        cluster.syn_counter.fill_(1)
    result, _ = run_both(cluster, x[60:], y[60:])
    assert int(result.counters[ops.COUNTER_SYNAPSES]) > 100 and int(result.counters[ops.COUNTER_STEP]) == 260
    if "gradient" in option:  # every live section holds all 63 slots
        live = result.sec_block >= 0
        assert bool((result.sec_cap[live] == 63).all())
    if OPTIONS[option][0]:  # the reductions at steps 100 and 200 deleted synapses
        without = copy.deepcopy(cluster)
        without.config[ops.CONFIG_REDUCTION] = 0.0
        without.learn_many(x[60:], y[60:], compact=False)
        assert cluster_structure(without)["sections"] != cluster_structure(result)["sections"]


@pytest.mark.parametrize("option", ["sgd", "adagrad-reduction", "spiking-reduction", "gradient"])
def test_arena_growth_and_compaction_inside_calls(option):
    """From a 16-slot arena the ops stop for growth many times; compactions at sample boundaries
    (needy sections, garbage) happen inside the calls."""
    cluster = make(option, seed=5)
    x, y = random_samples(cluster, 230, ramp=True, seed=2)
    result, starts = run_both(cluster, x, y, arena=16, chunk=77)
    assert len(starts) > 6, starts
    assert int(result.counters[ops.COUNTER_SYNAPSES]) > 100
    # the calls themselves compact (the gradient rule: give the waiting sections their reserve):
    # a call that starts with needy sections gets past its first sample boundary only by
    # compacting there, which also clears the garbage of earlier relocations
    calls = []
    engine = copy.deepcopy(cluster)
    engine._resize_arena(16)
    learn(torch.ops.hanami.train_, engine, x, y, chunk=77, calls=calls)
    resolved = [(b, a) for b, a in calls if b[1] > 0 and a[0] > b[0]]
    assert len(resolved) >= 3, calls
    if option != "gradient":
        assert any(b[2] > 0 and a[2] < b[2] for b, a in calls), f"no compaction cleared garbage: {calls}"


@pytest.mark.parametrize("option, batch_size", [("sgd", 4), ("adagrad", 5), ("reduction", 7),
                                                 ("adagrad-reduction", 16), ("spiking", 3)])
def test_batches_match_the_engine(option, batch_size):
    cluster = make(option, seed=6)
    x, y = random_samples(cluster, 230, ramp=True, seed=3)
    cluster.learn_many(x[:30], y[:30], compact=False)
    if OPTIONS[option][0]:
        cluster.syn_counter.fill_(1)
    run_both(cluster, x[30:], y[30:], batch_size=batch_size)


@pytest.mark.parametrize("option", ["sgd", "adagrad-reduction"])
def test_batches_resumed_after_arena_growth(option):
    cluster = make(option, seed=8)
    x, y = random_samples(cluster, 170, ramp=True, seed=4)
    _, starts = run_both(cluster, x, y, batch_size=7, arena=16)
    assert any(start % 7 for start in starts), starts


def test_several_input_and_output_bricks():
    cluster = HanamiCluster(MULTI_IO, seed=2)
    x, y = random_samples(cluster, 150, ramp=True, seed=5)
    result, _ = run_both(cluster, x, y, arena=64)
    assert int(result.counters[ops.COUNTER_SYNAPSES]) > 50


def random_template(gen: np.random.Generator) -> tuple[str, dict]:
    """A line of 3 to 5 bricks with random sizes (hidden bricks of one or several blocks), random
    reduction and spiking settings, and random cluster options (fan-in, optimizer, learning rule)."""
    n_bricks = int(gen.integers(3, 6))
    sizes = [int(gen.integers(3, 40))] + [int(gen.integers(5, 200)) for _ in range(n_bricks - 2)]
    sizes.append(int(gen.integers(2, 12)))
    reduction, spiking = bool(gen.random() < 0.5), bool(gen.random() < 0.4)
    lines = ["version: 1", "settings:", f"    enable_reduction: {'true' if reduction else 'false'}",
             f"    neuron_cooldown: {'2.0' if spiking else '100000000000.0'}",
             f"    refractory_time: {int(gen.integers(2, 5)) if spiking else 1}",
             f"    max_connection_distance: {int(gen.integers(1, 3))}", "bricks:"]
    for i, n in enumerate(sizes):
        lines.append(f"    {i + 1},1,1")
        if i == 0:
            lines.append("        input: x")
        if i == n_bricks - 1:
            lines.append("        output: y")
        lines.append(f"        number_of_neurons: {n}")
    options = {"input_fan_in": int(gen.integers(1, 5))}
    rule = int(gen.integers(0, 3))  # Hanami's rule with SGD or Adagrad, or the gradient rule
    if rule == 1:
        options |= {"optimizer": "adagrad", "learning_rate": 0.03}
    elif rule == 2 and not reduction:  # the gradient rule has no reduction
        options |= {"learning_rule": "gradient"}
    return "\n".join(lines) + "\n", options


@pytest.mark.parametrize("seed", range(12))
def test_random_templates_match_the_engine(seed):
    gen = np.random.default_rng(100 + seed)
    text, options = random_template(gen)
    cluster = HanamiCluster(text, seed=seed, **options)
    x, y = random_samples(cluster, 250, ramp=True, seed=seed)
    if cluster.template.settings.enable_reduction:
        learn(torch.ops.hanami.train_, cluster, x[:40], y[:40])
        cluster.syn_counter.fill_(1)
        x, y = x[40:], y[40:]
    batch_size = int(gen.choice([1, 1, 3, 8]))
    result, _ = run_both(cluster, x, y, batch_size=batch_size, arena=int(gen.choice([16, 1000, 1 << 14])))
    assert int(result.counters[ops.COUNTER_SYNAPSES]) > 0


def mnist_like(rows: int, seed: int):
    """Images shaped like MNIST's (784 pixels 0..255, about 19% lit) in 10 classes."""
    blobs = torch.rand(10, 784, generator=torch.Generator().manual_seed(12345)) < 0.19
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (rows,), generator=g)
    lit = blobs[labels] ^ (torch.rand(rows, 784, generator=g) < 0.05)
    x = torch.where(lit, torch.randint(1, 256, (rows, 784), generator=g).float(), torch.zeros(()))
    return x, torch.nn.functional.one_hot(labels, 10).float()


def test_mnist_template_on_mnist_like_images():
    """900 images in two calls: relocations pile up garbage, which the engine compacts away
    inside the second call (before samples 603, 731 and 863 with these images)."""
    cluster = HanamiCluster(templates.MNIST, seed=0)
    x, y = mnist_like(900, seed=1)
    result, starts = run_both(cluster, x, y, chunk=450)
    assert int(result.counters[ops.COUNTER_SYNAPSES]) > 10_000


def test_mnist_samples(mnist_train):
    """300 real MNIST images with Adagrad, from a 4096-slot arena."""
    pixels, labels = mnist_train
    x, y = pixels[:300].contiguous(), torch.nn.functional.one_hot(labels[:300], 10).float()
    cluster = HanamiCluster(templates.MNIST, seed=1, optimizer="adagrad", learning_rate=0.02)
    result, starts = run_both(cluster, x, y, arena=4096)
    assert len(starts) > 1 and int(result.counters[ops.COUNTER_SYNAPSES]) > 5_000


# ---- request mode (predict_): forward passes with carried-over neuron state, no growth ----------

def predict_both(cluster: HanamiCluster, x) -> torch.Tensor:
    """predict_ of the engine and of the portable step (every schedule) from the same state:
    identical outputs and identical state afterwards (neuron potentials, activity, refractory)."""
    engine = copy.deepcopy(cluster)
    out_engine = torch.empty(x.shape[0], cluster.n_outputs)
    torch.ops.hanami.predict_(engine._layout(), engine._state(), engine.config, x, out_engine)
    for schedule in SCHEDULES:
        portable = copy.deepcopy(cluster)
        out = torch.full_like(out_engine, float("nan"))
        torch.ops.hanami.predict_portable_(portable._layout(), portable._state(), portable.config, x, out,
                                           schedule=schedule)
        assert torch.equal(out, out_engine)
        assert_identical(portable, engine)
    return out_engine


@pytest.mark.parametrize("option", ["sgd", "reduction", "spiking", "spiking-reduction", "fields", "gradient"])
def test_request_mode_matches_the_engine(option):
    cluster = make(option)
    x, y = random_samples(cluster, 200, ramp=True, seed=2)
    learn(torch.ops.hanami.train_, cluster, x[:150], y[:150])  # the gradient rule's growth too
    out = predict_both(cluster, x[150:])
    if OPTIONS[option][1]:  # spiking: the state carries over, so a sample's output depends on the one before
        again = predict_both(cluster, x[151:])
        assert not torch.equal(again[0], out[1])


@pytest.mark.parametrize("compat", [False, True])
def test_request_mode_on_mnist_like_images(compat):
    """compat mode too: its sections are processed in connection-slot order."""
    cluster = HanamiCluster(templates.MNIST, seed=0, compat=compat)
    x, y = mnist_like(400, seed=3)
    cluster.learn_many(x[:300], y[:300])
    predict_both(cluster, x[300:])


def test_request_mode_with_several_input_and_output_bricks():
    cluster = HanamiCluster(MULTI_IO, seed=2)
    x, y = random_samples(cluster, 120, ramp=True, seed=6)
    cluster.learn_many(x[:100], y[:100])
    predict_both(cluster, x[100:])


def test_portable_op_refuses_compat_and_bad_arguments():
    cluster = HanamiCluster(templates.TABLE, seed=0, compat=True)
    x, y = torch.rand(4, 25) * 50, torch.rand(4, 5)
    args = (cluster._layout(), cluster._state(), cluster.config, x, y, torch.empty(4, 5))
    with pytest.raises(RuntimeError, match="portable train step has no compat mode"):
        torch.ops.hanami.train_portable_(*args, 0, torch.empty(0), 1)
    cluster = HanamiCluster(templates.TABLE, seed=0)
    args = (cluster._layout(), cluster._state(), cluster.config, x, y, torch.empty(4, 5))
    capacity = cluster.syn_weight.numel()
    for start, pending, batch_size, message in (
        (5, torch.empty(0), 1, "start out of range"),
        (0, torch.zeros(capacity), 0, "batch_size must be at least 1"),
        (0, torch.empty(0), 2, "batch_size > 1 needs a pending tensor"),
        (0, torch.zeros(capacity - 1), 2, "pending must be empty"),
    ):
        with pytest.raises(RuntimeError, match=message):
            torch.ops.hanami.train_portable_(*args, start, pending, batch_size)
    with pytest.raises(RuntimeError, match="schedule must be 0"):
        torch.ops.hanami.train_portable_(*args, 0, torch.empty(0), 1, schedule=3)
    with pytest.raises(RuntimeError, match=r"inputs must be \[4, 25\]"):
        torch.ops.hanami.train_portable_(cluster._layout(), cluster._state(), cluster.config, x[:, :7].contiguous(),
                                         y, torch.empty(4, 5), 0, torch.empty(0), 1)
    assert int(cluster.counters[ops.COUNTER_STEP]) == 0


def test_fake_kernels_check_the_metadata():
    """Without real data (meta tensors: torch.compile, opcheck) the portable ops make the checks of
    train_ and predict_; hanami_torch.ops registers their fake kernels with the others."""
    cluster = make("sgd")
    meta = lambda tensors: [t.to("meta") for t in tensors]  # noqa: E731
    layout, state, config = meta(cluster._layout()), meta(cluster._state()), cluster.config.to("meta")
    x, y = torch.empty(4, cluster.n_inputs, device="meta"), torch.empty(4, cluster.n_outputs, device="meta")
    out, empty = torch.empty_like(y), torch.empty(0, device="meta")
    torch.ops.hanami.train_portable_(layout, state, config, x, y, out, 0, empty, 1, schedule=2)
    torch.ops.hanami.predict_portable_(layout, state, config, x, out, schedule=1)
    with pytest.raises(RuntimeError, match="config must be float64"):
        torch.ops.hanami.train_portable_(layout, state, config.float(), x, y, out, 0, empty, 1)
    with pytest.raises(RuntimeError, match="batch_size > 1 needs a pending tensor"):
        torch.ops.hanami.train_portable_(layout, state, config, x, y, out, 0, empty, 3)
    with pytest.raises(RuntimeError, match="outputs and inputs differ in rows"):
        torch.ops.hanami.predict_portable_(layout, state, config, x, out[:3], schedule=0)


@pytest.mark.parametrize("util", ["test_schema", "test_autograd_registration", "test_faketensor",
                                  "test_aot_dispatch_dynamic"])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_opcheck(util, batch_size):
    cluster = HanamiCluster(templates.TABLE, seed=0, optimizer="adagrad")
    cluster.learn_many(torch.rand(300, 25) * 100, torch.rand(300, 5))
    cluster.compact(slack=8)
    cluster._sync_threads()
    x, y = torch.rand(8, 25) * 100, torch.rand(8, 5)
    pending = torch.zeros(cluster.syn_weight.numel()) if batch_size > 1 else torch.empty(0)
    args = (cluster._layout(), cluster._state(), cluster.config, x, y, torch.empty(8, 5), 0, pending, batch_size)
    torch.library.opcheck(torch.ops.hanami.train_portable_, args, test_utils=util)
