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

__all__ = ["MNIST", "TABLE", "mnist"]
