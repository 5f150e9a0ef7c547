"""The pure ops: ``infer`` (batched inference from rest) and ``infer_backward`` (its gradient).

infer must compute, bit for bit, what the engine's request mode computes for each sample from a
network at rest; its gradient must agree with finite differences; both must pass opcheck.
"""

from __future__ import annotations

import pytest
import torch

from hanami_torch import HanamiCluster, ops
from networks import TABLE_CONFIGS, direct

CONFIGS = TABLE_CONFIGS


def samples(rows: int, seed: int, scale: float = 100.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(rows, 25, generator=g) * scale
    x[torch.rand(rows, 25, generator=g) < 0.3] = 0.0  # some inputs stay inactive
    return x, torch.rand(rows, 5, generator=g)


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def cluster(request):
    template, options = CONFIGS[request.param]
    cluster = HanamiCluster(template, seed=3, **options)
    cluster.learn_many(*samples(300, seed=1))
    return cluster


def codes(cluster, x):
    """What the ops see of raw inputs: the cluster's value codes (the identity for raw bricks)."""
    return ops.encode(cluster.input_encoding, cluster.input_range, x)


def run_infer(cluster, x, weights=None):
    """infer on raw inputs, coded as the cluster codes them."""
    x = codes(cluster, x)
    weights = cluster.syn_weight if weights is None else weights
    return torch.ops.hanami.infer(
        cluster._layout(), cluster._state(), cluster.config, x, weights, cluster.n_outputs
    )


def test_infer_equals_request_mode_from_rest(cluster):
    x, _ = samples(40, seed=5)
    outputs, potentials = run_infer(cluster, x)
    assert outputs.shape == (40, cluster.n_outputs) and potentials.shape == (40, cluster.potential.numel())
    for i in range(x.shape[0]):
        probe = HanamiCluster(cluster.template, seed=3, **{
            "compat": cluster.compat, "optimizer": cluster.optimizer, "input_fan_in": cluster.input_fan_in})
        probe.load_state_dict(cluster.state_dict())
        probe.reset_state()
        expected = probe.predict_many(x[i : i + 1])
        assert torch.equal(outputs[i], expected[0]), f"sample {i}"
        assert torch.equal(potentials[i], probe.potential), f"sample {i}"
    assert bool((outputs > 0).any()), "the test network should produce outputs"


def test_infer_changes_nothing_and_is_batch_independent(cluster):
    x, _ = samples(32, seed=6)
    before = [t.clone() for t in cluster._state()]
    whole, _ = run_infer(cluster, x)
    halves = torch.cat([run_infer(cluster, x[:13])[0], run_infer(cluster, x[13:])[0]])
    assert torch.equal(whole, halves)
    for old, new in zip(before, cluster._state()):
        assert torch.equal(old, new)


def test_infer_uses_the_given_weights(cluster):
    x, _ = samples(8, seed=7)
    zero, _ = run_infer(cluster, x, torch.zeros_like(cluster.syn_weight))
    # every reached synapse adds 0: the hidden neurons stay silent and the outputs receive nothing
    assert torch.equal(zero, torch.zeros_like(zero))




def test_gradcheck_without_hidden_bricks():
    """Inputs wired straight to outputs: the outputs are smooth functions of the weights (sigmoids
    of sums of weights times fixed fractions), so torch.autograd.gradcheck applies as is. (In the
    inputs they have kinks at the slot borders: see the next test.)"""
    cluster = HanamiCluster(direct(12, 4), seed=1, input_fan_in=2)
    g = torch.Generator().manual_seed(0)
    cluster.learn_many(torch.rand(200, 12, generator=g) * 10, torch.rand(200, 4, generator=g))
    layout, state, config = cluster._layout(), cluster._state(), cluster.config
    x = torch.rand(5, 12, generator=g) * 10
    w = cluster.syn_weight.double().requires_grad_(True)

    def f(w_):
        return ops.infer(layout, state, config, x, w_.float(), 4).double()

    assert torch.autograd.gradcheck(f, (w,), eps=1e-3, atol=1e-3, rtol=1e-2)


def test_gradient_matches_finite_differences_where_smooth(cluster):
    """With hidden bricks the network is piecewise smooth: a hidden value that crosses the walk's
    0.01 cut switches a synapse on at once. Central differences with two step sizes that agree
    mark the smooth directions; there the analytic gradient must match them."""
    x = codes(cluster, samples(6, seed=8, scale=30.0)[0])
    layout, state, config, n_out = cluster._layout(), cluster._state(), cluster.config, cluster.n_outputs
    w0 = cluster.syn_weight.clone()
    g = torch.Generator().manual_seed(1)
    v = torch.randn(6, n_out, generator=g)

    def loss_x(x_, w):
        return float((ops.infer(layout, state, config, x_, w, n_out).double() * v).sum())

    def loss(w):
        return loss_x(x, w)

    w = w0.clone().requires_grad_(True)
    (ops.infer(layout, state, config, x, w, n_out) * v).sum().backward()
    live = [k for k in range(int(cluster.counters[ops.COUNTER_ARENA_TOP])) if int(cluster.syn_target[k]) != 255]
    picks = torch.randperm(len(live), generator=g)[:150].tolist()
    smooth = 0
    for i in picks:
        k = live[i]
        estimates = []
        for eps in (2e-3, 1e-3):
            plus, minus = w0.clone(), w0.clone()
            plus[k] += eps
            minus[k] -= eps
            estimates.append((loss(plus) - loss(minus)) / (2 * eps))
        if abs(estimates[0] - estimates[1]) > 1e-2 * max(1.0, abs(estimates[1])):
            continue  # a jump lies within the step
        smooth += 1
        assert abs(float(w.grad[k]) - estimates[1]) <= 2e-2 * max(1.0, abs(estimates[1])), k
    assert smooth >= 0.8 * len(picks), f"only {smooth} of {len(picks)} directions were smooth"

    # the same for the inputs (active ones; an inactive input has no gradient)
    xg = x.clone().requires_grad_(True)
    (ops.infer(layout, state, config, xg, w0, n_out) * v).sum().backward()
    active = (x > 0).nonzero().tolist()
    smooth = 0
    for i, j in active:
        estimates = []
        for eps in (2e-3, 1e-3):
            plus, minus = x.clone(), x.clone()
            plus[i, j] += eps
            minus[i, j] -= eps
            estimates.append((loss_x(plus, w0) - loss_x(minus, w0)) / (2 * eps))
        if abs(estimates[0] - estimates[1]) > 1e-2 * max(1.0, abs(estimates[1])):
            continue
        smooth += 1
        assert abs(float(xg.grad[i, j]) - estimates[1]) <= 2e-2 * max(1.0, abs(estimates[1])), (i, j)
    assert smooth >= 0.8 * len(active), f"only {smooth} of {len(active)} inputs were smooth"


def test_gradient_reaches_inputs_and_weights(cluster):
    x, _ = samples(16, seed=9, scale=30.0)
    x.requires_grad_(True)
    w = cluster.syn_weight.clone().requires_grad_(True)
    out = ops.infer(cluster._layout(), cluster._state(), cluster.config, x, w, cluster.n_outputs)
    out.sum().backward()
    assert x.grad is not None and bool((x.grad != 0).any())
    assert w.grad is not None and bool((w.grad != 0).any())
    assert bool((x.grad[x.detach() <= 0] == 0).all()), "inactive inputs have no gradient"


def test_backward_refuses_a_network_that_changed(cluster):
    x, y = samples(4, seed=10)
    probe = HanamiCluster(cluster.template, seed=3, compat=cluster.compat, optimizer=cluster.optimizer,
                          input_fan_in=cluster.input_fan_in)
    probe.load_state_dict(cluster.state_dict())
    w = probe.syn_weight.clone().requires_grad_(True)
    out = ops.infer(probe._layout(), probe._state(), probe.config, x, w, probe.n_outputs)
    probe.learn_many(x, y, compact=False)
    with pytest.raises(RuntimeError, match="between this forward pass and its backward pass"):
        out.sum().backward()


def test_infer_rejects_bad_arguments(cluster):
    x, _ = samples(4, seed=11)
    with pytest.raises(RuntimeError, match="weights must be a float32 vector"):
        run_infer(cluster, x, cluster.syn_weight[:-1].clone())
    with pytest.raises(RuntimeError, match="n_outputs"):
        torch.ops.hanami.infer(cluster._layout(), cluster._state(), cluster.config, x, cluster.syn_weight, 3)
    with pytest.raises(RuntimeError, match="inputs must be"):
        torch.ops.hanami.infer(cluster._layout(), cluster._state(), cluster.config, x[:, :7].contiguous(),
                               cluster.syn_weight, cluster.n_outputs)


@pytest.mark.parametrize(
    "util", ["test_schema", "test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic"]
)
def test_opcheck_infer(cluster, util):
    x, _ = samples(8, seed=12, scale=30.0)
    w = cluster.syn_weight.clone().requires_grad_(True)
    args = (cluster._layout(), cluster._state(), cluster.config, x.requires_grad_(True), w, cluster.n_outputs)
    torch.library.opcheck(torch.ops.hanami.infer, args, test_utils=util)


@pytest.mark.parametrize("util", ["test_schema", "test_faketensor", "test_aot_dispatch_dynamic"])
def test_opcheck_infer_backward(cluster, util):
    x, _ = samples(8, seed=13, scale=30.0)
    _, potentials = run_infer(cluster, x)
    args = (cluster._layout(), cluster._state(), cluster.config, x, cluster.syn_weight, potentials,
            torch.rand(8, cluster.n_outputs))
    torch.library.opcheck(torch.ops.hanami.infer_backward, args, test_utils=util)
