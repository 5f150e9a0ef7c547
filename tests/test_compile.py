"""torch.compile: a cluster's forward traces into one graph for inference, alone or inside a
model, and training through a compiled model grows and learns like eager."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from hanami_torch import HanamiCluster, templates


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def table_data(n, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, 25, generator=gen) * 40, torch.rand(n, 5, generator=gen)


def test_compiled_inference_equals_eager_bit_for_bit():
    cluster = HanamiCluster(templates.TABLE, seed=1)
    cluster.learn_many(*table_data(200, seed=0))
    cluster.eval()
    compiled = torch.compile(cluster, fullgraph=True)
    for rows in (50, 7):  # a second batch size: the graph takes it (at most one recompile)
        x, _ = table_data(rows, seed=rows)
        assert torch.equal(compiled(x), cluster(x))
    before = cluster.stats()
    compiled(table_data(20, seed=3)[0])
    assert cluster.stats() == before


def test_compiled_model_with_a_gradient_rule_head():
    head = HanamiCluster(templates.TABLE, seed=2, learning_rule="gradient")
    model = nn.Sequential(nn.Linear(10, 25), nn.ReLU(), head)
    with torch.no_grad():
        model[0].weight.mul_(20)
    model(torch.rand(64, 10))  # training mode: grows
    synapses = head.stats()["synapses"]
    assert synapses > 0
    model.eval()
    compiled = torch.compile(model, fullgraph=True)
    x = torch.rand(32, 10)
    with torch.no_grad():
        assert torch.allclose(compiled(x), model(x), rtol=1e-5, atol=1e-6)
    assert head.stats()["synapses"] == synapses  # eval mode: nothing grows


def test_training_a_compiled_model_matches_eager():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 25), nn.ReLU(), HanamiCluster(templates.TABLE, seed=3, learning_rule="gradient"))
    with torch.no_grad():
        model[0].weight.mul_(20)
    eager = copy.deepcopy(model)
    compiled = torch.compile(model)  # growth runs outside the graph (a graph break)
    optimizers = [torch.optim.Adam(m.parameters(), lr=0.01) for m in (model, eager)]
    for step in range(3):
        x = torch.rand(16, 10, generator=torch.Generator().manual_seed(step))
        losses = []
        for net, optimizer in zip((compiled, eager), optimizers):
            loss = net(x).square().mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    assert model[2].stats()["synapses"] == eager[2].stats()["synapses"] > 0
    assert torch.allclose(model[2].syn_weight, eager[2].syn_weight, rtol=1e-4, atol=1e-6)


def test_wrong_input_shape_under_fullgraph_names_the_expected_shape():
    cluster = HanamiCluster(templates.TABLE, seed=1).eval()
    compiled = torch.compile(cluster, fullgraph=True)
    with pytest.raises(Exception, match=r"inputs must be shaped \[samples, 25\], got \[3, 24\]"):
        compiled(torch.rand(3, 24))
