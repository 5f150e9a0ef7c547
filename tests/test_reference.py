"""The C++ engine against the pure-Python reference: same structure, weights and outputs, bit for bit."""

import numpy as np
import pytest
import torch

from hanami_torch import HanamiCluster
from hanami_torch.reference import ReferenceCluster, cluster_structure
from networks import MULTI_IO, line, random_samples, run_with_reference


@pytest.mark.parametrize("compat", [False, True])
@pytest.mark.parametrize("distance", [1, 2])
def test_training_matches_reference(compat, distance):
    cluster = HanamiCluster(line(distance=distance), seed=3, compat=compat)
    x, y = random_samples(cluster, 70, seed=distance, ramp=True)
    ref = run_with_reference(cluster, x, y)
    assert ref.synapses > 50
    chains = sum(sec.has_next for sec in ref.sections.values())
    assert chains > 0, "the ramp should have made at least one chain longer"


@pytest.mark.parametrize("compat", [False, True])
def test_reduction_matches_reference(compat):
    cluster = HanamiCluster(line(reduction="true"), seed=5, compat=compat)
    x, y = random_samples(cluster, 230, seed=7)
    ref = run_with_reference(cluster, x, y)
    assert ref.step == 230


def test_spiking_matches_reference():
    cluster = HanamiCluster(line(cooldown="1.5", refractory=3), seed=11)
    x, y = random_samples(cluster, 60, seed=11)
    run_with_reference(cluster, x, y)


def test_multi_io_matches_reference():
    cluster = HanamiCluster(MULTI_IO, seed=2)
    x, y = random_samples(cluster, 60, seed=2)
    run_with_reference(cluster, x, y)


@pytest.mark.parametrize("compat", [False, True])
def test_prediction_matches_reference(compat):
    cluster = HanamiCluster(line(), seed=1, compat=compat)
    x, y = random_samples(cluster, 40, seed=1)
    cluster.learn_many(x, y)
    ref = ReferenceCluster.from_cluster(cluster)
    tests, _ = random_samples(cluster, 20, seed=9)
    got = cluster.predict_many(tests).numpy()
    expected = np.asarray([ref.predict_step(row.tolist()) for row in tests], dtype=np.float32)
    np.testing.assert_array_equal(got, expected)
    assert cluster_structure(cluster) == ref.structure()


@pytest.mark.parametrize("compat,options", [(False, {}), (True, {}), (False, {"optimizer": "adagrad", "input_fan_in": 3})])
@pytest.mark.parametrize("threads", [1, 4])
def test_one_call_with_a_thread_team_matches_reference(compat, options, threads):
    """learn_many: one C++ call over all 300 rows, with one thread or a team of four (which also
    shares the output brick's backward pass), learns what the reference learns step by step."""
    cluster = HanamiCluster(line(), seed=4, compat=compat, **options)
    x, y = random_samples(cluster, 300, seed=4, ramp=True)
    ref = ReferenceCluster.from_cluster(cluster)
    expected = np.asarray([ref.train_step(a, b) for a, b in zip(x.tolist(), y.tolist())], dtype=np.float32)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        out = cluster.learn_many(x, y)
    finally:
        torch.set_num_threads(before)
    np.testing.assert_array_equal(out.numpy(), expected)
    assert cluster_structure(cluster) == ref.structure()
    assert ref.synapses > 500


@pytest.mark.parametrize("reduction", ["false", "true"])
def test_adagrad_and_fan_in_match_reference(reduction):
    """The options beyond Hanami: per-synapse Adagrad and several first sections per input."""
    cluster = HanamiCluster(line(reduction=reduction), seed=6, optimizer="adagrad", input_fan_in=3,
                            learning_rate=0.02, init_scale=0.03)
    x, y = random_samples(cluster, 220 if reduction == "true" else 80, seed=6, ramp=True)
    ref = run_with_reference(cluster, x, y)
    first_sections = [len(cluster.sections_of(n)) for n in range(9)]
    assert max(first_sections) >= 3
    assert any(s.accum > 0 for sec in ref.sections.values() for s in sec.slots)
