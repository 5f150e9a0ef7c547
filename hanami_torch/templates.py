"""Ready-made template texts (spec §3.3 and §8.3).

Parse them with ``Template.parse(MNIST)``.
"""

from __future__ import annotations


def mnist(hidden: int = 400) -> str:
    """Hanami's documentation template: 784 input neurons (one per pixel of a 28x28 image) in
    brick 1,1,1, ``hidden`` neurons in brick 2,1,1 and 10 output neurons (one per digit) in brick
    3,1,1, with Hanami's documented settings.  ``mnist(400) == MNIST``."""
    return f"""version: 1
settings:
    neuron_cooldown: 100000000000.0
    refractory_time: 1
    max_connection_distance: 1
    enable_reduction: false
bricks:
    1,1,1
        input: test_input
        number_of_neurons: 784
    2,1,1
        number_of_neurons: {hidden}
    3,1,1
        output: test_output
        number_of_neurons: 10
"""


#: The MNIST template of Hanami's documentation (784 -> 400 -> 10), byte for byte.
MNIST = mnist(400)

#: Hanami's table (CSV) measurement: a window of 25 values -> 128 -> 128 -> 5 outputs, in a
#: straight line at x = 1..4.
TABLE = """version: 1
settings:
    neuron_cooldown: 100000000000.0
    refractory_time: 1
    max_connection_distance: 1
    enable_reduction: false
bricks:
    1,1,1
        input: test_input
        number_of_neurons: 25
    2,1,1
        number_of_neurons: 128
    3,1,1
        number_of_neurons: 128
    4,1,1
        output: test_output
        number_of_neurons: 5
"""

#: MNIST presets: (hidden neurons for :func:`mnist`, HanamiCluster options). "hanami" is Hanami's
#: own setting; "best" adds per-synapse Adagrad, four small-weight sections per pixel and receptive
#: fields over a 3 x 3 grid of hidden blocks (9 x 64 = 576 neurons); docs/learning.md has the
#: reasoning and the measurements (about 97.0 % after one online epoch, 98.1 % after ten).
MNIST_PRESETS = {
    "hanami": (400, {}),
    "best": (576, {"optimizer": "adagrad", "learning_rate": 0.015, "init_scale": 0.03, "input_fan_in": 4,
                   "input_shape": (28, 28), "field_radius": 7.0}),
}


def mnist_preset(name: str) -> tuple[str, dict]:
    """``(template text, HanamiCluster options)`` of an MNIST preset (see ``MNIST_PRESETS``)::

        text, options = mnist_preset("best")
        cluster = HanamiCluster(text, seed=0, **options)
    """
    if name not in MNIST_PRESETS:
        raise ValueError(f"unknown MNIST preset {name!r}; choose one of {sorted(MNIST_PRESETS)}")
    hidden, options = MNIST_PRESETS[name]
    return mnist(hidden), dict(options)


__all__ = ["MNIST", "MNIST_PRESETS", "TABLE", "mnist", "mnist_preset"]
