"""Explicit neuron state between samples (spiking settings), Norse style."""

import copy

import pytest
import torch

from hanami_torch import HanamiCluster
from hanami_torch.cluster import NeuronState

SPIKING = """version: 1
settings:
    neuron_cooldown: 1.5
    refractory_time: 3
bricks:
    1,1,1
        input: x
        number_of_neurons: 6
    2,1,1
        number_of_neurons: 40
    3,1,1
        output: y
        number_of_neurons: 3
"""


def trained(seed=0):
    cluster = HanamiCluster(SPIKING, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    cluster.learn_many(torch.rand(80, 6, generator=gen) * 50, torch.rand(80, 3, generator=gen))
    cluster.reset_state()
    return cluster


def test_explicit_state_equals_the_clusters_own_stream():
    cluster = trained()
    reference = copy.deepcopy(cluster)
    x = torch.rand(12, 6, generator=torch.Generator().manual_seed(5)) * 50
    expected = reference.predict_many(x)  # the cluster's own state, from rest
    state, outputs = None, []
    for row in x:
        y, state = cluster(row.unsqueeze(0), state)
        outputs.append(y)
    assert torch.equal(torch.cat(outputs), expected)
    assert torch.equal(state.potential, reference.potential)
    assert torch.equal(state.refractory, reference.refractory)


def test_explicit_state_leaves_the_clusters_own_state_alone_and_streams_do_not_leak():
    cluster = trained()
    own = (cluster.potential.clone(), cluster.active.clone(), cluster.refractory.clone())
    a = torch.full((1, 6), 40.0)
    b = torch.zeros(1, 6)
    _, state_a = cluster(a, None)
    y_b, state_b = cluster(b, None)  # a second stream, from rest
    assert torch.equal(cluster.potential, own[0]) and torch.equal(cluster.refractory, own[2])
    assert not torch.equal(state_a.potential, state_b.potential)
    y_b_again, _ = cluster(b, None)
    assert torch.equal(y_b, y_b_again)  # stream a did not change what stream b sees
    y_a2, _ = cluster(a, state_a)
    y_a2_fresh, _ = cluster(a, None)
    assert not torch.equal(y_a2, y_a2_fresh)  # with spiking settings the carried state matters


def test_bad_states_are_refused():
    cluster = trained()
    x = torch.ones(1, 6)
    with pytest.raises(ValueError, match="NeuronState"):
        cluster(x, "state")
    good = cluster.rest_state()
    with pytest.raises(ValueError, match="state.potential must be"):
        cluster(x, NeuronState(good.potential[:-1], good.active, good.refractory))
    with pytest.raises(ValueError, match="NaN"):
        cluster(x, NeuronState(torch.full_like(good.potential, float("nan")), good.active, good.refractory))


def test_forward_without_a_state_is_stateless_even_when_spiking():
    cluster = trained()
    x = torch.rand(8, 6, generator=torch.Generator().manual_seed(7)) * 50
    from_rest = torch.cat([cluster(row.unsqueeze(0), None)[0] for row in x])
    stream = copy.deepcopy(cluster).predict_many(x)  # Hanami's request mode carries the state
    assert not torch.equal(stream, from_rest)  # the spiking settings matter for this data
    assert torch.equal(cluster(x), from_rest)
    assert torch.equal(cluster(x.flip(0)), from_rest.flip(0))


def test_predict_with_state_carries_the_state_across_calls():
    cluster = trained()
    reference = copy.deepcopy(cluster)
    x = torch.rand(10, 6, generator=torch.Generator().manual_seed(11)) * 50
    own = (cluster.potential.clone(), cluster.active.clone(), cluster.refractory.clone())
    outputs, state = cluster.predict_with_state(x, None)
    assert torch.equal(outputs, reference.predict_many(x))  # None: from rest, as the cluster's own stream
    assert torch.equal(state.potential, reference.potential) and torch.equal(state.refractory, reference.refractory)
    first, middle = cluster.predict_with_state(x[:4], None)
    rest, end = cluster.predict_with_state(x[4:], middle)
    assert torch.equal(torch.cat([first, rest]), outputs)  # two calls with the carried state: one stream
    assert all(torch.equal(a, b) for a, b in zip(end, state))
    assert not torch.equal(cluster.predict_with_state(x[4:], None)[0], rest)  # the state matters
    assert torch.equal(cluster.potential, own[0]) and torch.equal(cluster.active, own[1])
    assert torch.equal(cluster.refractory, own[2])  # the cluster's own state is left alone


def test_predict_with_state_refuses_bad_states_and_keeps_its_own():
    cluster = trained()
    before = {name: value.clone() for name, value in cluster.named_buffers()}
    x = torch.ones(2, 6)
    good = cluster.rest_state()
    for bad, message in [
        ("state", "state must be a NeuronState"),
        ((good.potential, good.active), "state must be a NeuronState"),
        (NeuronState(good.potential.double(), good.active, good.refractory), "state.potential must be a torch.float32"),
        (NeuronState(good.potential, good.active[:-1], good.refractory), r"state.active must be .* of shape"),
        (NeuronState(good.potential, good.active, good.refractory.tolist()), "state.refractory must be"),
        (NeuronState(torch.full_like(good.potential, float("inf")), good.active, good.refractory), "NaN or infinity"),
    ]:
        with pytest.raises(ValueError, match=message):
            cluster.predict_with_state(x, bad)
    with pytest.raises(ValueError, match="inputs must be shaped"):
        cluster.predict_with_state(torch.ones(2, 5), good)
    for name, value in cluster.named_buffers():
        assert torch.equal(value, before[name]), f"{name} changed"
