"""Small networks the engine tests share: a line of bricks 9 -> 70 -> 130 -> 4, a network with two
input and two output bricks, and option sets over the TABLE template; the random samples they
learn (:func:`random_samples`) and the step-by-step comparison with the Python reference
(:func:`run_with_reference`).

The line and the direct network take raw values (``encoding: raw``), so that the chosen values
reach the section walk as they are; the TABLE option sets use the default adaptive value codes,
and MULTI_IO mixes both (and adaptive targets), so the engine tests cover the codes as well."""

import numpy as np
import torch

from hanami_torch import templates
from hanami_torch.reference import ReferenceCluster, cluster_structure

LINE = """version: 1
settings:
    max_connection_distance: {distance}
    enable_reduction: {reduction}
    neuron_cooldown: {cooldown}
    refractory_time: {refractory}
bricks:
    1,1,1
        input: pixels
        encoding: raw
        number_of_neurons: 9
    2,1,1
        number_of_neurons: 70
    3,1,1
        number_of_neurons: 130
    4,1,1
        output: classes
        number_of_neurons: 4
"""

MULTI_IO = """version: 1
bricks:
    1,1,1
        input: left
        number_of_neurons: 5
    1,1,2
        input: right
        encoding: raw
        number_of_neurons: 3
    2,1,1
        number_of_neurons: 65
    2,1,2
        output: first
        number_of_neurons: 2
    3,1,1
        output: second
        number_of_neurons: 3
        encoding: adaptive
"""


DIRECT = """version: 1
bricks:
    1,1,1
        input: x
        encoding: raw
        number_of_neurons: {inputs}
    2,1,1
        output: y
        number_of_neurons: {outputs}
"""


def direct(inputs: int, outputs: int) -> str:
    """An input brick wired straight to an output brick (no hidden neurons)."""
    return DIRECT.format(inputs=inputs, outputs=outputs)


def line(distance=1, reduction="false", cooldown="100000000000.0", refractory=1):
    """The line of bricks with these settings (reduction as "true"/"false")."""
    return LINE.format(distance=distance, reduction=reduction, cooldown=cooldown, refractory=refractory)


def line_with(reduction: bool, spiking: bool) -> str:
    """The line with reduction on or off, and spiking (cooldown 1.5, refractory 3) or not."""
    return line(
        reduction="true" if reduction else "false",
        cooldown="1.5" if spiking else "100000000000.0",
        refractory=3 if spiking else 1,
    )


SPIKING_WITH_REDUCTION = (
    templates.TABLE.replace("neuron_cooldown: 100000000000.0", "neuron_cooldown: 1.5")
    .replace("refractory_time: 1", "refractory_time: 5")
    .replace("enable_reduction: false", "enable_reduction: true")
)

#: option sets of the engine tests over the line: name -> (reduction, spiking, HanamiCluster options)
LINE_OPTIONS = {
    "sgd": (False, False, {}),
    "compat": (False, False, {"compat": True}),
    "adagrad": (False, False, {"optimizer": "adagrad", "learning_rate": 0.02, "input_fan_in": 3}),
    "reduction": (True, False, {}),
    "compat-reduction": (True, False, {"compat": True}),
    "adagrad-reduction": (True, False, {"optimizer": "adagrad", "learning_rate": 0.02}),
    "spiking": (False, True, {}),
    "spiking-reduction": (True, True, {"input_fan_in": 2}),
    "fields": (False, False, {"input_shape": (3, 3), "field_radius": 1.0}),
    # every section slot of an input neuron taken at once: chains cannot grow, freed slots are re-created
    "fan-in-8-reduction": (True, False, {"input_fan_in": 8}),
    # growth only, all 63 slots reserved per section, no compaction (weights learn with autograd)
    "gradient": (False, False, {"learning_rule": "gradient"}),
    "gradient-spiking": (False, True, {"learning_rule": "gradient", "input_fan_in": 2}),
}


def line_cluster(option: str, seed: int = 3, template: str | None = None):
    """A cluster of the line (or ``template``) with the option set ``option`` of LINE_OPTIONS."""
    from hanami_torch import HanamiCluster

    reduction, spiking, kwargs = LINE_OPTIONS[option]
    return HanamiCluster(template or line_with(reduction, spiking), seed=seed, **kwargs)


def snapshot(cluster) -> dict:
    """A copy of every buffer of ``cluster`` by name."""
    return {name: value.clone() for name, value in cluster.named_buffers()}


def assert_same_buffers(a: dict, b: dict, skip=()) -> None:
    """Two snapshots hold the same buffers, bit for bit (except those in ``skip``)."""
    assert a.keys() == b.keys()
    for name in a:
        if name in skip:
            continue
        assert a[name].dtype == b[name].dtype and a[name].shape == b[name].shape, name
        assert torch.equal(a[name], b[name]), f"buffer {name!r} differs"


#: templates.TABLE (25 inputs, 5 outputs) with the main combinations of options: (template, options)
TABLE_CONFIGS = {
    "default": (templates.TABLE, {}),
    "compat": (templates.TABLE, {"compat": True}),  # sec_conn is in use
    "adagrad-spiking-reduction": (SPIKING_WITH_REDUCTION, {"optimizer": "adagrad", "input_fan_in": 4}),
}


def random_samples(cluster, steps: int, seed: int, ramp: bool = False):
    """``steps`` rows of inputs in -50..300 (40 % of them 0, like dark pixels) and 0/1 targets (30 %
    ones) for ``cluster``. ``ramp``: the first input rises slowly from 0.5 to 400, which fills whole
    sections and makes chains grow."""
    gen = np.random.default_rng(seed)
    x = gen.uniform(-50, 300, size=(steps, cluster.n_inputs)).astype(np.float32)
    x[gen.random(x.shape) < 0.4] = 0.0
    if ramp:
        x[:, 0] = np.linspace(0.5, 400.0, steps, dtype=np.float32)
    y = (gen.random((steps, cluster.n_outputs)) < 0.3).astype(np.float32)
    return torch.from_numpy(x), torch.from_numpy(y)


def run_with_reference(cluster, x, y) -> ReferenceCluster:
    """``cluster.learn_one`` and the Python reference's online step learn the rows one by one:
    the same outputs at every step and the same structure at the end, bit for bit. Returns the
    reference."""
    ref = ReferenceCluster.from_cluster(cluster)
    for i in range(x.shape[0]):
        expected = np.asarray(ref.train_step(x[i].tolist(), y[i].tolist()), dtype=np.float32)
        got = cluster.learn_one(x[i], y[i]).numpy()
        np.testing.assert_array_equal(got, expected, err_msg=f"outputs differ at step {i}")
    assert cluster_structure(cluster) == ref.structure()
    return ref
