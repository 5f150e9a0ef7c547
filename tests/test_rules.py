"""Each rule of the Hanami cycle (core spec §4-§5) on small, hand-made cases.

The inputs are raw values (``encoding: raw``): the rules act on the values the tests choose. The
adaptive value codes in front of them have their own tests (test_encoding.py).

The tests drive a real :class:`HanamiCluster` with a few chosen samples and read the structure back
through ``sections_of`` (borders are reported as interval widths) or the cluster's buffers. Where a
rule is hard to reach through training alone (reduction counters, spiking state), a buffer is set
by hand, exactly like a checkpoint could hold it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hanami_torch import HanamiCluster, ops
from hanami_torch.reference import ReferenceCluster
from networks import assert_same_buffers, snapshot

f32 = np.float32

#: The spec's worked example (§4.4): one pixel, a hidden brick of 10 neurons, two outputs.
PIXEL = """version: 1
bricks:
    1,1,1
        input: px
        encoding: raw
        number_of_neurons: 1
    2,1,1
        number_of_neurons: 10
    3,1,1
        output: out
        number_of_neurons: 2
"""

#: Inputs wired straight to the outputs: every synapse of an input section targets an output.
DIRECT = """version: 1
{settings}bricks:
    1,1,1
        input: px
        encoding: raw
        number_of_neurons: {inputs}
    2,1,1
        output: out
        number_of_neurons: {outputs}
"""

#: One neuron per brick: input -> hidden -> output.
CHAIN = """version: 1
settings:
    neuron_cooldown: {cooldown}
    refractory_time: {refractory}
bricks:
    1,1,1
        input: px
        encoding: raw
        number_of_neurons: 1
    2,1,1
        number_of_neurons: 1
    3,1,1
        output: out
        number_of_neurons: 1
"""

#: Big enough that a hidden brick has several neuron blocks (several threads take part).
WIDE = """version: 1
bricks:
    1,1,1
        input: px
        encoding: raw
        number_of_neurons: 12
    2,1,1
        number_of_neurons: 130
    3,1,1
        output: out
        number_of_neurons: 3
"""

TARGET = torch.tensor([1.0, 0.0])


def direct(inputs=1, outputs=2, reduction=False):
    settings = "settings:\n    enable_reduction: true\n" if reduction else ""
    return DIRECT.format(settings=settings, inputs=inputs, outputs=outputs)


def learn(cluster, *values, target=TARGET):
    """One learning step per value (a single input neuron); returns the outputs."""
    return [cluster.learn_one(torch.tensor([float(v)]), target) for v in values]


def only_section(cluster, neuron=0):
    sections = cluster.sections_of(neuron)
    assert len(sections) == 1, sections
    return sections[0]


buffers = snapshot


def slot_index(cluster, neuron, k, slot=0):
    """Arena index of synapse slot ``k`` of section ``slot`` of ``neuron``."""
    return int(cluster.sec_start[neuron * 8 + slot]) + k


def ramp_section(compat=False, top=63):
    """The pixel template trained on the rising ramp 1, 2, ..., top (one new synapse each)."""
    cluster = HanamiCluster(PIXEL, seed=0, compat=compat)
    learn(cluster, *range(1, top + 1))
    return cluster


# ---- the worked example (§4.4) -----------------------------------------------------------------


def test_worked_example_structure_after_each_step():
    cluster = HanamiCluster(PIXEL, seed=0)
    assert cluster.sections_of(0) == []

    # 255: the first section is created before the walk (CPU timing) and gets synapse 0
    (out,) = learn(cluster, 255)
    sec = only_section(cluster)
    assert sec["offset"] == 0.0 and sec["has_next"] is False
    assert sec["borders"] == [255.0]
    assert sec["targets"][0] is not None
    assert sec["target_brick"] == 1 and sec["target_block"] == 0
    # nothing reached an output yet (the hidden neuron's first section acts from the next sample)
    assert out.tolist() == [0.0, 0.0]
    w0 = sec["weights"][0]

    # 128: 255 <= 2 * 128, no split
    learn(cluster, 128)
    sec = only_section(cluster)
    assert sec["borders"] == [255.0]
    assert len(sec["targets"]) == 1

    # 100: 255 > 200, split: [127.5, 127.5], the upper half is an empty slot
    learn(cluster, 100)
    sec = only_section(cluster)
    assert sec["borders"] == [127.5, 127.5]
    assert sec["targets"][0] is not None and sec["targets"][1] is None
    assert sec["weights"][1] == 0.0

    # 255: slot 0 full, R = 127.5 reaches the empty slot 1, which becomes a synapse of border 127.5
    learn(cluster, 255)
    sec = only_section(cluster)
    assert sec["borders"] == [127.5, 127.5]
    assert all(t is not None for t in sec["targets"])
    assert sec["has_next"] is False

    # the synapse kept its target and only moved by small SGD steps
    assert abs(sec["weights"][0] - w0) < 0.05
    for section in (s for n in range(13) for s in cluster.sections_of(n)):
        for weight, target in zip(section["weights"], section["targets"]):
            if target is None:
                continue
            block_size = 10 if section["target_brick"] == 1 else 2
            assert 0 <= target < block_size
            assert 0.0 < abs(weight) < 0.2


def test_new_synapse_weights_and_targets_are_in_range():
    gen = np.random.default_rng(0)
    x = torch.from_numpy(gen.uniform(1, 255, (1, 40)).astype(np.float32))
    # learning_rate tiny: the stored weights are the initial draws, up to a negligible step
    cluster = HanamiCluster(direct(inputs=40, outputs=7), seed=5, learning_rate=1e-12)
    cluster.learn_many(x, torch.zeros(1, 7))
    weights = [w for n in range(40) for w in cluster.sections_of(n)[0]["weights"]]
    targets = [t for n in range(40) for t in cluster.sections_of(n)[0]["targets"]]
    assert len(weights) == 40
    assert all(0 < abs(w) < 0.2 for w in weights)
    assert all(0 <= t < 7 for t in targets)
    negative = sum(w < 0 for w in weights)
    assert 8 <= negative <= 32  # sign 50/50


def test_init_scale_bounds_new_weights():
    cluster = HanamiCluster(direct(inputs=30, outputs=3), seed=2, init_scale=0.02, learning_rate=1e-12)
    cluster.learn_many(torch.full((1, 30), 50.0), torch.zeros(1, 3))
    weights = [w for n in range(30) for w in cluster.sections_of(n)[0]["weights"]]
    assert len(weights) == 30 and all(0 < abs(w) < 0.02 for w in weights)
    assert max(abs(w) for w in weights) > 0.002  # not just tiny: the scale really is 0.02


# ---- the split rule ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "second, split",
    [(128.0, False), (127.5, False), (127.4, True), (127.0, True), (100.0, True)],
)
def test_split_only_when_border_exceeds_twice_the_remaining(second, split):
    cluster = HanamiCluster(PIXEL, seed=1)
    learn(cluster, 255, second)
    sec = only_section(cluster)
    if split:
        assert sec["borders"] == [127.5, 127.5]
        assert sec["targets"][1] is None
    else:
        assert sec["borders"] == [255.0]


def test_split_of_a_slot_in_the_middle_moves_half_to_the_next_slot():
    cluster = ramp_section(top=10)  # borders 1 x 10, uppers 1..10
    assert only_section(cluster)["borders"] == [1.0] * 10
    learn(cluster, 4.2)  # slot 4: R = 0.2, border 1 > 0.4: split
    sec = only_section(cluster)
    expected = [1.0] * 10
    expected[4], expected[5] = 0.5, 1.5
    assert sec["borders"] == pytest.approx(expected, abs=1e-6)
    assert all(t is not None for t in sec["targets"])  # slot 5 existed: no empty slot appears
    assert sum(sec["borders"]) == pytest.approx(10.0)


def test_slots_61_and_62_never_split():
    cluster = ramp_section(top=63)
    sec = only_section(cluster)
    assert sec["borders"] == [1.0] * 63 and None not in sec["targets"]
    assert sec["has_next"] is False
    # walks ending in slot 61 or 62 with R = 0.2 < border / 2: no split
    for value in (61.2, 62.2, 61.3, 62.45):
        learn(cluster, value)
        assert only_section(cluster)["borders"] == [1.0] * 63, value
    # ... while the same case one slot earlier splits
    learn(cluster, 60.2)
    borders = only_section(cluster)["borders"]
    assert borders[60] == pytest.approx(0.5) and borders[61] == pytest.approx(1.5)
    assert borders[:60] == [1.0] * 60 and borders[62] == 1.0


def test_a_ramp_creates_one_synapse_per_sample_at_the_end_of_the_section():
    cluster = HanamiCluster(PIXEL, seed=0)
    for value in range(1, 8):
        learn(cluster, value)
        sec = only_section(cluster)
        assert sec["borders"] == [1.0] * value
        assert None not in sec["targets"]


# ---- the 0.01 cut --------------------------------------------------------------------------------


def test_tiny_input_is_active_but_creates_no_synapse():
    cluster = HanamiCluster(PIXEL, seed=0)
    (out,) = learn(cluster, 0.005)
    assert int(cluster.active[0]) == 1
    sec = only_section(cluster)
    assert sec["borders"] == [] and sec["targets"] == []
    assert cluster.stats()["synapses"] == 0
    assert out.tolist() == [0.0, 0.0]

    learn(cluster, 0.02)
    sec = only_section(cluster)
    assert len(sec["borders"]) == 1 and sec["targets"][0] is not None
    assert sec["borders"][0] == pytest.approx(0.02, rel=1e-6)
    assert cluster.stats()["synapses"] == 1


def test_reach_cut_at_the_end_of_a_section():
    cluster = HanamiCluster(PIXEL, seed=0)
    learn(cluster, 10.0)
    learn(cluster, 10.005)  # R = 0.005 at slot 1: not reached
    assert only_section(cluster)["borders"] == [10.0]
    learn(cluster, 10.02)  # R = 0.02 > 0.01: a new synapse of border 0.02
    borders = only_section(cluster)["borders"]
    assert len(borders) == 2 and borders[1] == pytest.approx(0.02, abs=2e-6)


def test_reach_cut_in_inference():
    cluster = HanamiCluster(direct(), seed=3)
    learn(cluster, 10.0)
    assert cluster.predict_one(torch.tensor([0.009])).tolist() == [0.0, 0.0]
    assert cluster.predict_one(torch.tensor([0.011])).abs().sum() > 0


# ---- negative and zero inputs --------------------------------------------------------------------


@pytest.mark.parametrize("value", [0.0, -0.5, -300.0])
def test_non_positive_input_is_inactive_and_grows_nothing(value):
    cluster = HanamiCluster(PIXEL, seed=0)
    (out,) = learn(cluster, value)
    assert int(cluster.active[0]) == 0
    assert cluster.sections_of(0) == []
    assert int(cluster.sec_block[0]) == ops.NO_SECTION
    assert cluster.stats()["synapses"] == 0 and cluster.stats()["sections"] == 0
    assert out.tolist() == [0.0, 0.0]


def test_negative_input_contributes_nothing():
    template = DIRECT.format(settings="", inputs=2, outputs=2)
    cluster = HanamiCluster(template, seed=4)
    gen = np.random.default_rng(1)
    x = torch.from_numpy(gen.uniform(1, 100, (20, 2)).astype(np.float32))
    cluster.learn_many(x, torch.tensor([[1.0, 0.0]]).expand(20, 2).contiguous())
    before = buffers(cluster)

    import copy

    a, b = copy.deepcopy(cluster), copy.deepcopy(cluster)
    assert torch.equal(a.predict_one(torch.tensor([30.0, -7.0])), b.predict_one(torch.tensor([30.0, 0.0])))
    a, b = copy.deepcopy(cluster), copy.deepcopy(cluster)
    out_a = a.learn_one(torch.tensor([30.0, -7.0]), TARGET)
    out_b = b.learn_one(torch.tensor([30.0, 0.0]), TARGET)
    assert torch.equal(out_a, out_b)
    # the only difference is the raw value the input neuron holds
    assert_same_buffers(buffers(a), buffers(b), skip=("potential",))
    assert float(a.potential[1]) == -7.0 and float(b.potential[1]) == 0.0
    assert torch.equal(a.potential[[0, 2, 3]], b.potential[[0, 2, 3]])
    assert_same_buffers(buffers(cluster), before)


# ---- chain offsets -------------------------------------------------------------------------------


@pytest.mark.parametrize("compat", [False, True])
def test_chain_offsets_and_timing(compat):
    cluster = ramp_section(compat=compat, top=63)
    sec = only_section(cluster)
    assert sec["borders"] == [1.0] * 63 and sec["has_next"] is False

    # 64 survives the full section: a successor is requested, created after the walks
    learn(cluster, 64)
    first, second = cluster.sections_of(0)
    assert first["has_next"] is True
    assert second["offset"] == sum(first["borders"]) == 63.0
    assert second["borders"] == [] and second["has_next"] is False  # not walked in this sample

    # from the next sample on it acts: 65 - 63 = 2 is its first border
    learn(cluster, 65)
    first, second = cluster.sections_of(0)
    assert second["borders"] == [2.0] and second["targets"][0] is not None
    assert first["borders"] == [1.0] * 63  # the full first section did not change

    learn(cluster, *range(66, 128))  # fills the second section: borders 2, 1, 1, ... (sum 64)
    first, second = cluster.sections_of(0)
    assert len(second["borders"]) == 63 and sum(second["borders"]) == 64.0
    assert second["has_next"] is False

    learn(cluster, 128)
    sections = cluster.sections_of(0)
    assert len(sections) == 3
    third = sections[2]
    assert sections[1]["has_next"] is True
    if compat:  # Hanami's bug B2: 2 * offset + sum of borders
        assert third["offset"] == 2 * 63.0 + 64.0 == 190.0
    else:
        assert third["offset"] == 63.0 + 64.0 == 127.0
    assert third["borders"] == []
    assert [s["slot"] for s in sections] == [0, 1, 2]

    learn(cluster, 200)
    third = cluster.sections_of(0)[2]
    assert third["borders"] == [200.0 - third["offset"]]


def test_a_section_requests_its_successor_only_once():
    cluster = ramp_section(top=63)
    learn(cluster, 64, 300, 500)
    sections = cluster.sections_of(0)
    # 300 and 500 also survive the first section, but it already has a successor
    assert [s["offset"] for s in sections] == [0.0, 63.0]
    assert sections[1]["borders"] == [300.0 - 63.0, 200.0]
    assert sections[0]["has_next"] and not sections[1]["has_next"]


def chain_that_fired():
    """The chain template after one sample of 10.0 whose input synapse came out positive, so that
    the hidden neuron fired (the first seed that does it)."""
    for seed in range(50):
        cluster = HanamiCluster(CHAIN.format(cooldown="1000000000.0", refractory=1), seed=seed)
        (out,) = learn(cluster, 10.0, target=torch.tensor([1.0]))
        if float(cluster.syn_weight[slot_index(cluster, 0, 0)]) > 0:
            return cluster, out
    raise AssertionError("no seed in 0..49 drew a positive weight")


def test_hidden_neuron_first_section_acts_from_the_next_sample():
    cluster, out = chain_that_fired()
    assert only_section(cluster)["borders"] == [10.0]
    assert float(cluster.potential[1]) > 0 and int(cluster.active[1]) == 1
    hidden = only_section(cluster, 1)  # its first section exists, still empty
    assert hidden["offset"] == 0.0 and hidden["borders"] == [] and hidden["target_brick"] == 2
    assert out.tolist() == [0.0]

    (out,) = learn(cluster, 10.0, target=torch.tensor([1.0]))
    hidden = only_section(cluster, 1)
    assert len(hidden["borders"]) == 1 and hidden["targets"] == [0]
    assert 0.0 < float(out[0]) < 1.0 and float(out[0]) != 0.5


# ---- outputs and the learning rule ---------------------------------------------------------------


def test_untouched_output_is_exactly_zero_and_sigmoid_otherwise():
    cluster = HanamiCluster(direct(inputs=1, outputs=2), seed=3)
    assert cluster.predict_one(torch.tensor([50.0])).tolist() == [0.0, 0.0]
    (out,) = learn(cluster, 50.0)
    sec = only_section(cluster)
    (t,) = sec["targets"]
    (w,) = sec["weights"]
    other = 1 - t
    assert float(out[other]) == 0.0  # received nothing: 0, not sigmoid(0) = 0.5

    now = cluster.predict_one(torch.tensor([50.0]))
    assert float(now[other]) == 0.0
    assert float(now[t]) == pytest.approx(1 / (1 + math.exp(-w)), rel=1e-6)
    # a partly covered synapse contributes w * R / border
    half = cluster.predict_one(torch.tensor([20.0]))
    assert float(half[t]) == pytest.approx(1 / (1 + math.exp(-w * 20.0 / 50.0)), rel=1e-6)
    assert float(half[other]) == 0.0


def test_output_weight_update_is_hanamis_surrogate_sgd():
    lr = 0.05
    cluster = HanamiCluster(direct(inputs=1, outputs=1), seed=7, learning_rate=lr)
    target = torch.tensor([1.0])
    learn(cluster, 40.0, target=target)
    (w,) = only_section(cluster)["weights"]
    # a partly covered synapse (no split: 40 <= 2 * 30): the forward uses w * 30/40, the update
    # ignores the fraction
    (out,) = learn(cluster, 30.0, target=target)
    assert only_section(cluster)["borders"] == [40.0]
    o = f32(out[0])
    assert float(o) == pytest.approx(1.0 / (1.0 + math.exp(-float(w) * 0.75)), rel=1e-6)
    delta = ((o - f32(1.0)) * o) * (f32(1.0) - o)
    (w_after,) = only_section(cluster)["weights"]
    assert f32(w_after) == f32(w) - f32(lr) * delta


def test_hidden_delta_uses_the_log2_derivative():
    cluster, _ = chain_that_fired()
    target = torch.tensor([1.0])
    w_in = float(cluster.syn_weight[slot_index(cluster, 0, 0)])
    (out,) = learn(cluster, 10.0, target=target)  # the hidden section grows its first synapse
    # forward of sample 2: the hidden neuron's value y = log2(1 + w_in), its synapse border y
    y = f32(math.log2(float(f32(w_in)) + 1.0))
    hidden = only_section(cluster, 1)
    assert hidden["borders"] == [pytest.approx(float(y), rel=1e-6)]
    o = f32(out[0])
    delta_out = ((o - f32(1.0)) * o) * (f32(1.0) - o)
    w_out_after = f32(hidden["weights"][0])
    w_out_before = w_out_after + f32(0.05) * delta_out  # undo the output synapse's step
    assert o == pytest.approx(1 / (1 + math.exp(-float(w_out_before))), abs=1e-6)
    delta_hidden = (delta_out * w_out_before * f32(1.4427)) * f32(2.0 ** -float(y))
    w_in_after = float(cluster.syn_weight[slot_index(cluster, 0, 0)])
    assert w_in_after == pytest.approx(float(f32(w_in) - f32(0.05) * delta_hidden), rel=1e-6, abs=1e-9)
    assert w_in_after != w_in


# ---- reduction -----------------------------------------------------------------------------------


def reduction_cluster(compat):
    """Two input neurons with three synapses each (borders 1, 1, 1), at step 3."""
    cluster = HanamiCluster(direct(inputs=2, outputs=2, reduction=True), seed=0, compat=compat)
    outs = [cluster.learn_one(torch.tensor([v, v]), TARGET) for v in (1.0, 2.0, 3.0)]
    return cluster, outs


def zeros(cluster, n):
    cluster.learn_many(torch.zeros(n, 2), torch.zeros(n, 2))


def set_counters(cluster, neuron, values):
    for k, value in enumerate(values):
        cluster.syn_counter[slot_index(cluster, neuron, k)] = value


def test_new_synapse_counter_starts_at_5_plus_useful():
    cluster = HanamiCluster(direct(inputs=1, outputs=1, reduction=True), seed=0)
    (out,) = learn(cluster, 5.0, target=torch.tensor([1.0]))
    counter = int(cluster.syn_counter[slot_index(cluster, 0, 0)])
    # the output is active (sigmoid > 0): the synapse was useful iff its weight was positive
    assert counter == (6 if float(out[0]) > 0.5 else 5)


def test_reduction_deletes_after_five_rounds_and_keeps_persistent_synapses():
    cluster, _ = reduction_cluster(compat=False)
    set_counters(cluster, 0, [5, 10, 5])  # the middle synapse is persistent
    set_counters(cluster, 1, [5, 5, 5])
    survivor = only_section(cluster, 0)
    assert cluster.stats()["synapses"] == 6

    zeros(cluster, 496)  # steps 4..499: reductions at 100, 200, 300, 400
    assert cluster.stats()["steps"] == 499
    assert cluster.stats()["synapses"] == 6
    assert [int(cluster.syn_counter[slot_index(cluster, 0, k)]) for k in range(3)] == [1, 10, 1]
    assert [int(cluster.syn_counter[slot_index(cluster, 1, k)]) for k in range(3)] == [1, 1, 1]

    zeros(cluster, 1)  # step 500: fifth reduction
    assert cluster.stats()["synapses"] == 1
    assert int(cluster.counters[ops.COUNTER_SYNAPSES]) == 1
    sec = only_section(cluster, 0)
    # the persistent synapse stays, moved down to slot 0 with its own border and weight
    assert sec["borders"] == [1.0]
    assert sec["weights"] == [survivor["weights"][1]]
    assert sec["targets"] == [survivor["targets"][1]]
    # neuron 1's section lost all synapses: freed; its slot waits to be re-created (pending)
    assert int(cluster.sec_block[8]) == ops.PENDING_SECTION
    assert cluster.sections_of(1) == []
    assert cluster.stats()["sections"] == 1

    zeros(cluster, 1)  # the next growth step re-creates it, empty, at the same offset
    again = only_section(cluster, 1)
    assert again["offset"] == 0.0 and again["borders"] == [] and again["slot"] == 0
    assert cluster.stats()["sections"] == 2

    zeros(cluster, 1499)  # up to step 2000: the persistent synapse is never deleted
    assert only_section(cluster, 0)["weights"] == [survivor["weights"][1]]
    assert cluster.stats()["synapses"] == 1


def test_reduction_compat_frees_sections_and_shifts_one_slot():
    cluster, _ = reduction_cluster(compat=True)
    set_counters(cluster, 0, [10, 5, 5])
    set_counters(cluster, 1, [5, 5, 5])
    zeros(cluster, 496)
    assert cluster.stats()["synapses"] == 6
    zeros(cluster, 1)  # step 500
    # neuron 0: slot 1 dies, slot 2 moves into it and skips this round (bug B7): it survives
    sec = only_section(cluster, 0)
    assert len(sec["targets"]) == 2 and None not in sec["targets"]
    assert [int(cluster.syn_counter[slot_index(cluster, 0, k)]) for k in range(2)] == [10, 1]
    # neuron 1: its section is freed (slot released, a request with its offset is left)
    assert int(cluster.sec_block[8]) == ops.NO_SECTION
    assert float(cluster.request[1]) == 0.0
    assert cluster.stats()["synapses"] == 2
    zeros(cluster, 100)  # step 600: the moved synapse dies now
    assert cluster.stats()["synapses"] == 1
    assert only_section(cluster, 0)["borders"] == [1.0]


def test_reduction_off_never_deletes():
    cluster = HanamiCluster(direct(inputs=2, outputs=2), seed=0)
    cluster.learn_many(torch.tensor([[1.0, 1.0], [2.0, 2.0]]), torch.zeros(2, 2))
    assert cluster.syn_counter.numel() == 0
    cluster.learn_many(torch.zeros(700, 2), torch.zeros(700, 2))
    assert cluster.stats()["synapses"] == 4


# ---- Hanami's bugs that compat mode keeps (core spec §11.2: B1, B3, B8) --------------------------
#
# Known answers worked out by hand from the spec's rules (§4.7, §5.7) and constants (63 slots per
# section, 64 sections per connection block, reductions every 100 steps), not read from either
# implementation. Each case runs on the engine and on the Python reference from the same start, so
# "fixing" a bug in csrc/ or in hanami_torch/reference.py, or breaking it, fails here.


def engine_and_reference(cluster, ref):
    """The engine's state read back into the reference's objects, next to the reference itself."""
    return [("engine", ReferenceCluster.from_cluster(cluster)), ("reference", ref)]


def learn_both(cluster, ref, rows, target):
    """The engine and the reference learn the same rows (each a list of input values)."""
    for row in rows:
        cluster.learn_one(torch.tensor(row, dtype=torch.float32), target)
        ref.train_step(row, target.tolist())


def chain(ref: ReferenceCluster, neuron: int) -> list[tuple]:
    """A neuron's live sections in slot order: (slot, offset, has_next, borders)."""
    out = []
    for p in range(8):
        sec = ref.sections.get(neuron * 8 + p)
        if sec is None or sec.block < 0:
            continue
        borders, lower = [], f32(0)
        for syn in sec.slots:
            borders.append(float(syn.upper - lower))
            lower = syn.upper
        out.append((p, float(sec.offset), sec.has_next, borders))
    return out


def sections_per_block(ref: ReferenceCluster) -> dict[int, int]:
    counts: dict[int, int] = {}
    for sec in ref.sections.values():
        counts[sec.block] = counts.get(sec.block, 0) + 1
    return counts


#: 17 inputs with all 8 sections each (input_fan_in 8) into 128 outputs, i.e. two full neuron
#: blocks. Block 0 holds the inputs, blocks 1 and 2 the outputs.
GRID = direct(inputs=17, outputs=128)


def test_b1_compat_grid_regrowth_moves_sections_to_another_block():
    """B1: the output brick's connection grid is dimX x dimY with dimX fixed at its 2 blocks; a
    section's block is (connection block) / dimY. 16 inputs open 16 * 8 = 128 sections: the 2 x 1
    grid (2 * 64 connection slots) is exactly full, 64 sections per block. The 17th input's first
    section grows the grid to 2 x 2: the connection blocks 0 and 1 now both map to block 0 (1 // 2
    = 0), so the 64 sections of block 2 move, with their synapses, to block 1; the 8 new sections
    take connection blocks 2 and 3, i.e. block 2."""
    cluster = HanamiCluster(GRID, seed=0, compat=True, input_fan_in=8)
    ref = ReferenceCluster.from_cluster(cluster)
    target = torch.zeros(128)
    learn_both(cluster, ref, [[10.0] * 16 + [0.0]], target)
    for who, view in engine_and_reference(cluster, ref):
        assert view.grid[1] == [2, 1], who
        assert sections_per_block(view) == {1: 64, 2: 64}, who
        assert all(len(sec.slots) == 1 for sec in view.sections.values()), who  # border 10 each
    moved = {s for s, sec in ref.sections.items() if sec.block == 2}
    targets = {s: ref.sections[s].slots[0].target for s in moved}

    learn_both(cluster, ref, [[10.0] * 17], target)
    for who, view in engine_and_reference(cluster, ref):
        assert view.grid[1] == [2, 2], who
        assert sections_per_block(view) == {1: 128, 2: 8}, who
        assert all(view.sections[s].block == 1 for s in moved), who
        # they keep their synapses: same slot, same target index, now inside block 1
        assert {s: view.sections[s].slots[0].target for s in moved} == targets, who
        assert {s // 8 for s, sec in view.sections.items() if sec.block == 2} == {16}, who


def test_b1_is_not_in_the_default_mode():
    """The default mode has no grid: every block of the brick is reachable and sections stay."""
    cluster = HanamiCluster(GRID, seed=0, input_fan_in=8)
    cluster.learn_one(torch.tensor([10.0] * 16 + [0.0]), torch.zeros(128))
    before = cluster.sec_block.clone()
    cluster.learn_one(torch.tensor([10.0] * 17), torch.zeros(128))
    assert torch.equal(cluster.sec_block[: 16 * 8], before[: 16 * 8])


def twin_sections(compat: bool, longer_slot: int | None):
    """One input with two first sections (input_fan_in 2), both filled by the ramp 1..63 (63
    synapses of border 1, uppers 1..63). ``longer_slot``: that section's last upper is set to 100
    by hand, so a value of 64 ends inside its slot 62 (R = 2 < border 38, slots 61 and 62 never
    split) instead of surviving it."""
    cluster = HanamiCluster(direct(inputs=1, outputs=1), seed=0, compat=compat, input_fan_in=2)
    learn(cluster, *range(1, 64), target=torch.tensor([1.0]))
    assert [c[3] for c in chain(ReferenceCluster.from_cluster(cluster), 0)] == [[1.0] * 63] * 2
    if longer_slot is not None:
        cluster.syn_upper[slot_index(cluster, 0, 62, slot=longer_slot)] = 100.0
    return cluster, ReferenceCluster.from_cluster(cluster)


@pytest.mark.parametrize(
    "compat, longer_slot, expected",
    [
        # both survive and ask for a successor at 0 + 63 (B2's 2*0 + 63 in compat); one flag per
        # neuron: one successor, yet both sections now claim one
        (True, None, [(0, 0.0, True), (1, 0.0, True), (2, 63.0, False)]),
        # section 0 asks (63), section 1 is walked after it and writes "no request" (-1) over it:
        # the request is lost and section 0 keeps has_next with no successor (a hole)
        (True, 1, [(0, 0.0, True), (1, 0.0, False)]),
        # the other order: section 0 writes -1, section 1's request comes last and wins
        (True, 0, [(0, 0.0, False), (1, 0.0, True), (2, 63.0, False)]),
        # the default mode keeps every request
        (False, None, [(0, 0.0, True), (1, 0.0, True), (2, 63.0, False), (3, 63.0, False)]),
        (False, 1, [(0, 0.0, True), (1, 0.0, False), (2, 63.0, False)]),
    ],
    ids=["compat-both-ask", "compat-later-cancels", "compat-later-asks", "default-both-ask", "default-one-asks"],
)
def test_b3_compat_request_flag_last_writer_wins(compat, longer_slot, expected):
    """B3: in compat mode a neuron has one request flag (its offset, or -1), and every walk of the
    neuron in the cycle overwrites it; the sections are walked in connection order, which here is
    creation order (section 0 takes connection slot 0, section 1 slot 1)."""
    cluster, ref = twin_sections(compat, longer_slot)
    learn_both(cluster, ref, [[64.0]], torch.tensor([1.0]))
    for who, view in engine_and_reference(cluster, ref):
        assert [c[:3] for c in chain(view, 0)] == expected, who
        if compat:
            assert float(view.request[0]) == -1.0, who  # consumed, or lost


def chain_with_dying_successor(compat: bool):
    """One input into one output, with reduction: the ramp 1..63 fills section 0 (borders 1), 64
    asks for its successor (offset 63, the same in both modes for the first link), 65 gives the
    successor one synapse of border 2. By hand: section 0's synapses persistent (counter 10), the
    successor's at 1, so that the reduction at step 100 deletes it and frees the section."""
    cluster = HanamiCluster(direct(inputs=1, outputs=1, reduction=True), seed=0, compat=compat)
    learn(cluster, *range(1, 66), target=torch.tensor([1.0]))
    assert [c[1:] for c in chain(ReferenceCluster.from_cluster(cluster), 0)] == [
        (0.0, True, [1.0] * 63),
        (63.0, False, [2.0]),
    ]
    set_counters(cluster, 0, [10] * 63)
    cluster.syn_counter[slot_index(cluster, 0, 0, slot=1)] = 1
    ref = ReferenceCluster.from_cluster(cluster)
    learn_both(cluster, ref, [[0.0]] * 35, torch.tensor([1.0]))  # steps 66..100, nothing walks
    return cluster, ref


def test_b8_compat_freed_successor_is_lost_when_its_neuron_walks_again():
    """B8: reduction frees the empty successor and leaves the neuron's flag at its offset (63);
    the next sample that walks section 0 (which keeps has_next) writes -1 over it, so the section
    is never re-created: values above 63 reach nothing any more (a permanent hole)."""
    cluster, ref = chain_with_dying_successor(compat=True)
    for who, view in engine_and_reference(cluster, ref):
        assert view.step == 100, who
        assert [c[:3] for c in chain(view, 0)] == [(0, 0.0, True)], who
        assert float(view.request[0]) == 63.0, who
    learn_both(cluster, ref, [[70.0], [80.0], [200.0]], torch.tensor([1.0]))
    for who, view in engine_and_reference(cluster, ref):
        assert [c[1:] for c in chain(view, 0)] == [(0.0, True, [1.0] * 63)], who
        assert float(view.request[0]) == -1.0, who
        assert view.synapses == 63, who
    # the hole: above 63 every value gives the output of 63
    at_63 = cluster.predict_one(torch.tensor([63.0]))
    assert torch.equal(cluster.predict_one(torch.tensor([500.0])), at_63)
    assert torch.equal(torch.tensor(ref.predict_step([500.0])), at_63)


def test_b8_compat_freed_successor_returns_when_nothing_overwrites_its_request():
    """The same flag survives a sample in which the neuron is silent (input 0): the section is
    created again at the end of that cycle, empty, at offset 63, in the freed slot 1."""
    cluster, ref = chain_with_dying_successor(compat=True)
    learn_both(cluster, ref, [[0.0]], torch.tensor([1.0]))
    for who, view in engine_and_reference(cluster, ref):
        assert [c[1:] for c in chain(view, 0)] == [(0.0, True, [1.0] * 63), (63.0, False, [])], who
        assert float(view.request[0]) == -1.0, who


def test_b8_is_not_in_the_default_mode():
    """The default mode keeps the freed slot reserved and re-creates it at the next growth step,
    whatever walks: the chain keeps covering values above 63."""
    cluster, ref = chain_with_dying_successor(compat=False)
    learn_both(cluster, ref, [[70.0], [80.0]], torch.tensor([1.0]))
    for who, view in engine_and_reference(cluster, ref):
        # re-created empty after the walks of 70; 80 - 63 = 17 is its first border
        assert [c[1:] for c in chain(view, 0)] == [(0.0, True, [1.0] * 63), (63.0, False, [17.0])], who


# ---- spiking -------------------------------------------------------------------------------------


def test_cooldown_decays_the_potential_and_refractory_shifts():
    cluster = HanamiCluster(CHAIN.format(cooldown="1.5", refractory=3), seed=0)
    cluster.potential[1] = 100.0
    refractory = []
    for _ in range(8):
        before = float(cluster.potential[1])
        cluster.predict_one(torch.zeros(1))
        assert float(cluster.potential[1]) == pytest.approx(math.log2(1 + before / 1.5), rel=1e-6)
        assert int(cluster.active[1]) == 1
        refractory.append(int(cluster.refractory[1]))
    assert refractory == [3, 1, 3, 1, 3, 1, 3, 1]


@pytest.mark.parametrize(
    "refractory, period", [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (7, 3), (8, 4)]
)
def test_input_is_let_in_only_when_the_shifted_counter_reaches_zero(refractory, period):
    cluster = HanamiCluster(CHAIN.format(cooldown="1000000000.0", refractory=refractory), seed=0)
    learn(cluster, 10.0, target=torch.tensor([1.0]))  # input synapse into the hidden neuron
    cluster.syn_weight[slot_index(cluster, 0, 0)] = 0.5
    cluster.reset_state()
    admitted = []
    for _ in range(3 * period + 1):
        cluster.predict_one(torch.tensor([10.0]))
        value = float(cluster.potential[1])
        assert value == pytest.approx(math.log2(1.5)) or value < 1e-6
        admitted.append(value > 0.5)
    assert admitted == [i % period == 0 for i in range(3 * period + 1)]


def test_reset_state_restores_the_initial_neuron_state():
    cluster = HanamiCluster(CHAIN.format(cooldown="1.5", refractory=3), seed=0)
    fresh = buffers(cluster)
    learn(cluster, 10.0, 20.0, target=torch.tensor([1.0]))
    cluster.reset_state()
    for name in ("potential", "active", "refractory"):
        assert torch.equal(getattr(cluster, name), fresh[name]), name


# ---- determinism ---------------------------------------------------------------------------------


def random_data(n, seed):
    gen = np.random.default_rng(seed)
    x = gen.uniform(-20, 255, (n, 12)).astype(np.float32)
    x[gen.random(x.shape) < 0.3] = 0
    y = np.eye(3, dtype=np.float32)[gen.integers(0, 3, n)]
    return torch.from_numpy(x), torch.from_numpy(y)


@pytest.mark.parametrize("compat", [False, True])
def test_same_seed_same_network_bit_for_bit(compat):
    x, y = random_data(200, seed=0)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = HanamiCluster(WIDE, seed=11, compat=compat)
        out_a = a.learn_many(x, y)
        torch.set_num_threads(4)  # thread count must not matter
        b = HanamiCluster(WIDE, seed=11, compat=compat)
        out_b = b.learn_many(x, y)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(out_a, out_b)
    assert_same_buffers(buffers(a), buffers(b), skip=("config",))
    assert a.stats()["synapses"] > 100
    assert torch.equal(a.predict_many(x[:20]), b.predict_many(x[:20]))

    c = HanamiCluster(WIDE, seed=12, compat=compat)
    c.learn_many(x, y)
    assert not torch.equal(a.syn_weight, c.syn_weight) or not torch.equal(a.syn_target, c.syn_target)
    assert not torch.equal(a.brick_targets, c.brick_targets) or not torch.equal(a.sec_block, c.sec_block)


@pytest.mark.parametrize("compat, spiking", [(False, False), (True, False), (False, True)])
def test_calls_of_a_few_rows_equal_one_call(compat, spiking):
    """200 rows learned in calls of 7 rows with one thread grow and learn what one call over all
    rows with four threads does: the step counter, the neuron state (spiking: potentials and
    refractory counters) and the growth carry over between calls. After compaction even the
    arenas are identical."""
    template = WIDE.replace("bricks:", "settings:\n    neuron_cooldown: 1.5\n    refractory_time: 3\nbricks:") if spiking else WIDE
    x, y = random_data(200, seed=1)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(4)
        a = HanamiCluster(template, seed=3, compat=compat)
        out_a = a.learn_many(x, y)
        torch.set_num_threads(1)
        b = HanamiCluster(template, seed=3, compat=compat)
        out_b = torch.cat([b.learn_many(x[i : i + 7], y[i : i + 7], compact=False) for i in range(0, 200, 7)])
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(out_a, out_b)
    assert a.stats()["synapses"] > 100
    a.compact()
    b.compact()
    assert_same_buffers(buffers(a), buffers(b), skip=("config",))  # config holds the thread count
