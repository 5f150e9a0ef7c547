"""Counter-based random numbers shared by the Python code and the C++ kernels.

Every random draw is a pure function of ``(seed, stream, a, b, c)``: no generator state is carried
from one draw to the next.  That makes growth independent of thread scheduling and lets the CPU,
the CUDA kernels and the pure-Python reference grow bit-identical networks.  The mixing function is
Hanami's ``pcg_hash``; ``csrc/rules.h`` implements the same two functions.
"""

from __future__ import annotations

MASK32 = 0xFFFFFFFF

#: Streams keep draws for different purposes apart.
STREAM_TARGET_BRICKS = 1  # a = brick id, b = walk index (0..63), c = draw index within the walk
STREAM_SYNAPSE = 2  # a = training step, b = section id, c = 0 target neuron, 1 weight, 2 sign
STREAM_SECTION = 3  # a = training step, b = section id, c = 0 target brick, 1 target block

_DRAW_START = 0x2545F491


def pcg_hash(x: int) -> int:
    """Hanami's 32-bit ``pcg_hash`` (spec §4.4)."""
    state = (x * 747796405 + 2891336453) & MASK32
    word = (((state >> ((state >> 28) + 4)) ^ state) * 277803737) & MASK32
    return ((word >> 22) ^ word) & MASK32


def draw(seed: int, stream: int, a: int, b: int, c: int) -> int:
    """One uniformly distributed 32-bit integer for the key ``(seed, stream, a, b, c)``.

    ``seed`` and ``a`` are 64-bit; ``stream``, ``b`` and ``c`` are 32-bit.
    """
    h = _DRAW_START
    for word in (
        seed & MASK32,
        (seed >> 32) & MASK32,
        stream & MASK32,
        a & MASK32,
        (a >> 32) & MASK32,
        b & MASK32,
        c & MASK32,
    ):
        h = pcg_hash(h ^ word)
    return h
