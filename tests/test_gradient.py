"""learning_rule="gradient": the synapse weights are a Parameter trained by autograd and torch.optim,
forward grows the network in training mode, and synapses never move in the arena."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hanami_torch
from hanami_torch import HanamiCluster, templates
from hanami_torch.cluster import INITIAL_ARENA_SLOTS

#: 4 input neurons straight into 3 outputs (one block), each input with 8 sections
SMALL = """version: 1
bricks:
    1,1,1
        input: x
        number_of_neurons: 4
    2,1,1
        output: y
        number_of_neurons: 3
"""

SMALL_RAW = SMALL.replace("input: x", "input: x\n        encoding: raw")

#: 300 inputs: once all of them fired, their sections (63 slots each) overflow the first arena
WIDE = """version: 1
bricks:
    1,1,1
        input: x
        number_of_neurons: 300
    2,1,1
        number_of_neurons: 64
    3,1,1
        output: y
        number_of_neurons: 2
"""


def toy_task(n, seed):
    """Three classes: which of the first three inputs is the largest (the fourth is noise)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 4, generator=gen) * 10
    return x, x[:, :3].argmax(1)


def accuracy(cluster, x, labels):
    cluster.eval()
    with torch.no_grad():
        result = (cluster(x).argmax(1) == labels).float().mean().item()
    cluster.train()
    return result


@pytest.mark.parametrize(
    "make_optimizer",
    [
        lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9),
        lambda params: torch.optim.Adam(params, lr=0.01),
    ],
    ids=["sgd_momentum", "adam"],
)
def test_gradient_rule_learns_a_toy_task(make_optimizer):
    cluster = HanamiCluster(SMALL, seed=3, learning_rule="gradient", input_fan_in=8)
    optimizer = make_optimizer(cluster.parameters())
    test_x, test_labels = toy_task(500, seed=99)
    before = accuracy(cluster, test_x, test_labels)
    losses = []
    for step in range(150):
        x, labels = toy_task(32, seed=step)
        loss = F.cross_entropy(torch.logit(cluster(x), eps=1e-6), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    after = accuracy(cluster, test_x, test_labels)
    assert after >= 0.85, f"accuracy {before:.3f} before, {after:.3f} after training"
    assert sum(losses[-20:]) < 0.5 * sum(losses[:20])
    assert cluster.stats()["synapses"] > 0


def wide_batch(active, seed, n=16):
    """Rows of WIDE inputs where only the first ``active`` inputs fire."""
    x = torch.rand(n, 300, generator=torch.Generator().manual_seed(seed)) * 5 + 0.5
    x[:, active:] = 0.0
    return x


@pytest.mark.parametrize("kind", ["sgd_momentum", "adam"])
def test_arena_growth_keeps_the_parameter_and_the_optimizer_state_of_old_slots(kind):
    cluster = HanamiCluster(WIDE, seed=1, learning_rule="gradient")
    weight = cluster.syn_weight
    if kind == "adam":
        optimizer = torch.optim.Adam(cluster.parameters(), lr=0.01)
    else:
        optimizer = torch.optim.SGD(cluster.parameters(), lr=0.01, momentum=0.9)

    def step(x):
        optimizer.zero_grad()
        cluster(x).sum().backward()
        optimizer.step()

    step(wide_batch(100, seed=0))  # 100 inputs: their sections fit into the first arena
    assert weight.numel() == INITIAL_ARENA_SLOTS
    state_before = {key: value.clone() for key, value in optimizer.state[weight].items()}
    weights_before = weight.detach().clone()

    # 300 inputs fire: the arena must grow during this forward pass
    x = wide_batch(300, seed=1)
    out = cluster(x)
    assert cluster.syn_weight is weight, "growth must keep the Parameter object (optimizers hold it)"
    capacity = weight.numel()
    assert capacity > INITIAL_ARENA_SLOTS
    old = INITIAL_ARENA_SLOTS
    # the old synapses kept their slots and weights (growth only filled empty slots)
    grown = weights_before != 0
    assert torch.equal(weight.detach()[:old][grown], weights_before[grown])
    optimizer.zero_grad()
    out.sum().backward()
    grad = weight.grad.clone()
    assert grad.shape == (capacity,) and grad[old:].abs().sum() > 0
    optimizer.step()

    state = optimizer.state[weight]
    if kind == "sgd_momentum":
        buffer = state["momentum_buffer"]
        assert buffer.shape == (capacity,)
        # torch's SGD: buf = momentum * buf + grad; new slots start from a zero buffer
        assert torch.allclose(buffer[:old], 0.9 * state_before["momentum_buffer"] + grad[:old])
        assert torch.allclose(buffer[old:], grad[old:])
    else:
        for key, beta in (("exp_avg", 0.9), ("exp_avg_sq", 0.999)):
            assert state[key].shape == (capacity,), key
            g = grad if key == "exp_avg" else grad * grad
            assert torch.allclose(state[key][:old], beta * state_before[key] + (1 - beta) * g[:old]), key
            assert torch.allclose(state[key][old:], (1 - beta) * g[old:]), key
    # and training goes on
    step(wide_batch(300, seed=2))
    cluster.validate_state()


def test_a_section_reserves_all_its_slots_and_no_synapse_moves():
    cluster = HanamiCluster(WIDE, seed=2, learning_rule="gradient")
    optimizer = torch.optim.SGD(cluster.parameters(), lr=0.1)
    where = {}
    for seed in range(4):
        # (the loss of the last step is still alive when the arena grows, as in any training loop)
        loss = cluster(wide_batch(100 + 60 * seed, seed=seed)).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        live = torch.nonzero(cluster.sec_block >= 0).flatten()
        assert bool((cluster.sec_cap[live] == 63).all())
        for s in live.tolist():
            assert where.setdefault(s, int(cluster.sec_start[s])) == int(cluster.sec_start[s])
    assert cluster.syn_weight.numel() > INITIAL_ARENA_SLOTS
    assert int(cluster.counters[hanami_torch.ops.COUNTER_GARBAGE]) == 0


def test_growth_leaves_the_intervals_of_synapses_alone_except_the_last_slot_of_a_section():
    # Hanami's rule also splits a slot inside a section, moving half of its interval to the next
    # synapse; the gradient rule only splits the last slot (that adds a slot), so the borders do
    # not drift under the weights the optimizer fits to them.
    cluster = HanamiCluster(SMALL, seed=0, learning_rule="gradient", input_fan_in=2)
    x, _ = toy_task(64, seed=0)
    cluster(x)
    before = [cluster.sections_of(n) for n in range(4)]
    for seed in range(1, 6):
        cluster(toy_task(64, seed=seed)[0])
    after = [cluster.sections_of(n) for n in range(4)]
    for neuron in range(4):
        for old, new in zip(before[neuron], after[neuron]):
            kept = len(old["borders"]) - 1
            assert new["borders"][:kept] == old["borders"][:kept]
            assert new["weights"][:kept] == old["weights"][:kept]
            assert len(new["borders"]) >= len(old["borders"])
    hanami = HanamiCluster(SMALL, seed=0, input_fan_in=2)
    hanami.learn_many(x, torch.zeros(64, 3))
    old = [hanami.sections_of(n) for n in range(4)]
    changed_inside = 0
    for seed in range(1, 6):
        hanami.learn_many(toy_task(64, seed=seed)[0], torch.zeros(64, 3))
    for neuron in range(4):
        for first, later in zip(old[neuron], hanami.sections_of(neuron)):
            kept = len(first["borders"]) - 1
            changed_inside += first["borders"][:kept] != later["borders"][:kept]
    assert changed_inside > 0, "Hanami's rule moves borders inside sections on the same data"


def test_gradients_reach_a_module_in_front_and_the_weights():
    front = nn.Linear(6, 4)
    cluster = HanamiCluster(SMALL, seed=0, learning_rule="gradient", input_fan_in=4)
    model = nn.Sequential(front, nn.ReLU(), cluster)
    x = torch.rand(32, 6, generator=torch.Generator().manual_seed(0)) * 4
    model(x).sum().backward()
    assert front.weight.grad is not None and front.weight.grad.abs().sum() > 0
    assert cluster.syn_weight.grad.abs().sum() > 0
    # the module's parameters are the front's and the synapse weights
    assert [name for name, _ in model.named_parameters()] == ["0.weight", "0.bias", "2.syn_weight"]


def test_training_forward_grows_inference_does_not():
    cluster = HanamiCluster(SMALL, seed=0, learning_rule="gradient")
    x, _ = toy_task(8, seed=0)
    with torch.no_grad():
        cluster(x)
    cluster.eval()
    cluster(x)
    assert cluster.stats()["synapses"] == 0
    cluster.train()
    out = cluster(x)
    assert cluster.stats()["synapses"] > 0 and out.grad_fn is not None
    assert int(cluster.counters[hanami_torch.ops.COUNTER_STEP]) == 8


def test_weights_change_only_through_the_optimizer():
    cluster = HanamiCluster(SMALL, seed=0, learning_rule="gradient")
    x, _ = toy_task(16, seed=0)
    cluster(x)  # grows: new synapses get their initial weights
    grown = cluster.syn_weight.detach().clone()
    existing = cluster.syn_target != hanami_torch.ops.EMPTY_TARGET
    out = cluster(x)  # may grow more synapses, but leaves the existing ones alone
    assert torch.equal(cluster.syn_weight.detach()[existing], grown[existing])
    grown = cluster.syn_weight.detach().clone()
    out.sum().backward()
    torch.optim.SGD(cluster.parameters(), lr=0.1).step()
    assert torch.equal(cluster.syn_weight.detach(), grown.add(cluster.syn_weight.grad, alpha=-0.1))


def test_hanami_rule_has_no_parameters_but_forward_is_differentiable_in_the_inputs():
    cluster = HanamiCluster(SMALL, seed=0)
    x, labels = toy_task(64, seed=0)
    cluster.learn_many(x, F.one_hot(labels, 3).float())
    assert list(cluster.parameters()) == []
    x = x.clone().requires_grad_()
    cluster(x).sum().backward()
    assert x.grad.abs().sum() > 0


def test_state_dict_round_trip():
    source = HanamiCluster(WIDE, seed=4, learning_rule="gradient")
    optimizer = torch.optim.Adam(source.parameters(), lr=0.01)
    for seed in range(2):
        optimizer.zero_grad()
        source(wide_batch(300, seed=seed)).sum().backward()
        optimizer.step()
    state = source.state_dict()
    assert "syn_weight" in state and state["syn_weight"].numel() > INITIAL_ARENA_SLOTS
    target = HanamiCluster(WIDE, seed=4, learning_rule="gradient")
    weight = target.syn_weight
    target.load_state_dict(state)
    assert target.syn_weight is weight and isinstance(weight, nn.Parameter)
    assert torch.equal(weight.detach(), source.syn_weight.detach())
    x = wide_batch(300, seed=5)
    source.eval(), target.eval()
    assert torch.equal(target(x), source(x))


def test_checkpoint_keeps_the_learning_rule_and_every_slot(tmp_path):
    cluster = HanamiCluster(WIDE, seed=5, learning_rule="gradient")
    optimizer = torch.optim.SGD(cluster.parameters(), lr=0.01)
    cluster(wide_batch(300, seed=0)).sum().backward()
    optimizer.step()
    starts = cluster.sec_start.clone()
    capacity = cluster.syn_weight.numel()
    hanami_torch.save(cluster, tmp_path / "gradient.safetensors")
    assert torch.equal(cluster.sec_start, starts), "saving must not move synapses"
    loaded = hanami_torch.load(tmp_path / "gradient.safetensors")
    assert loaded.learning_rule == "gradient" and isinstance(loaded.syn_weight, nn.Parameter)
    assert loaded.syn_weight.numel() == capacity and torch.equal(loaded.sec_start, starts)
    x = wide_batch(300, seed=3)
    cluster.eval(), loaded.eval()
    assert torch.equal(loaded(x), cluster(x))
    # a checkpoint from before the option loads with Hanami's rule
    hanami = HanamiCluster(templates.TABLE, seed=0)
    hanami_torch.save(hanami, tmp_path / "hanami.safetensors")
    assert hanami_torch.load(tmp_path / "hanami.safetensors").learning_rule == "hanami"


def test_state_of_a_hanami_rule_cluster_loads_after_compact_63():
    # the gradient rule takes raw inputs: so must the Hanami-rule cluster whose state it takes
    with pytest.raises(ValueError, match="input_encoding differs"):
        HanamiCluster(SMALL, seed=0, learning_rule="gradient").load_state_dict(HanamiCluster(SMALL, seed=0).state_dict())
    hanami = HanamiCluster(SMALL_RAW, seed=0)
    x, labels = toy_task(200, seed=1)
    hanami.learn_many(x, F.one_hot(labels, 3).float())
    gradient = HanamiCluster(SMALL, seed=0, learning_rule="gradient")
    with pytest.raises(ValueError, match=r"compact\(slack=63\)"):
        gradient.load_state_dict(hanami.state_dict())
    hanami.compact(slack=63)
    gradient = HanamiCluster(SMALL, seed=0, learning_rule="gradient")
    gradient.load_state_dict(hanami.state_dict())
    gradient.eval()
    assert torch.equal(gradient(x), hanami(x))


def test_two_training_forwards_before_backward_are_refused():
    cluster = HanamiCluster(SMALL, seed=0, learning_rule="gradient")
    first = cluster(toy_task(8, seed=0)[0])
    cluster(toy_task(8, seed=1)[0] * 3)  # grows again
    with pytest.raises(RuntimeError, match="changed"):
        first.sum().backward()


def test_torch_optimizers_with_nonzero_initial_state_pad_with_their_start_value():
    cluster = HanamiCluster(WIDE, seed=0, learning_rule="gradient")
    optimizer = torch.optim.Adagrad(cluster.parameters(), lr=0.01, initial_accumulator_value=0.5)
    cluster(wide_batch(100, seed=0)).sum().backward()
    optimizer.step()
    optimizer.zero_grad()
    cluster(wide_batch(300, seed=1)).sum().backward()
    optimizer.step()
    total = optimizer.state[cluster.syn_weight]["sum"]
    grad = cluster.syn_weight.grad
    assert total.shape == cluster.syn_weight.shape
    old = INITIAL_ARENA_SLOTS
    assert torch.allclose(total[old:], 0.5 + grad[old:] * grad[old:])


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda c: c.learn_many(torch.ones(2, 4), torch.zeros(2, 3)), RuntimeError, r"torch optimizer"),
        (lambda c: c.learn_one(torch.ones(4), torch.zeros(3)), RuntimeError, r"learning_rule='gradient'"),
        (lambda c: c.learn_stream([(torch.ones(4), torch.zeros(3))]), RuntimeError, r"learn_stream"),
        (lambda c: c.compact(), RuntimeError, r"never compacted"),
        (lambda c: c(torch.ones(2, 5)), ValueError, r"shaped \[samples, 4\]"),
    ],
    ids=["learn_many", "learn_one", "learn_stream", "compact", "forward_shape"],
)
def test_clear_errors(call, error, message):
    cluster = HanamiCluster(SMALL, seed=0, learning_rule="gradient")
    before = copy.deepcopy(cluster.state_dict())
    with pytest.raises(error, match=message):
        call(cluster)
    after = cluster.state_dict()
    assert all(torch.equal(after[name], value) for name, value in before.items())


REDUCTION = SMALL.replace("version: 1\n", "version: 1\nsettings:\n    enable_reduction: true\n")


@pytest.mark.parametrize(
    "kwargs, template, message",
    [
        ({"learning_rule": "adam"}, SMALL, r"learning_rule must be one of \['gradient', 'hanami'\]"),
        ({"learning_rule": "gradient", "optimizer": "adagrad"}, SMALL, r"torch.optim optimizer"),
        ({"learning_rule": "gradient"}, REDUCTION, r"enable_reduction: false"),
    ],
    ids=["unknown_rule", "hanami_optimizer", "reduction"],
)
def test_constructor_refuses(kwargs, template, message):
    with pytest.raises(ValueError, match=message):
        HanamiCluster(template, **kwargs)


def test_hanami_learning_rate_with_the_gradient_rule_warns():
    """learning_rate is the step of Hanami's rule: with the gradient rule it would be silently
    ignored, so the constructor says so."""
    with pytest.warns(UserWarning, match="has no effect with learning_rule='gradient'"):
        HanamiCluster(templates.TABLE, learning_rule="gradient", learning_rate=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        HanamiCluster(templates.TABLE, learning_rule="gradient")  # the default: no warning
