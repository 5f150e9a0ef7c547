"""A machine-state simulator: raw readings of eight sensors of one machine, one sample per tick.

The stream is the use case Hanami was made for: sensors of wildly different ranges (about 1e-3 to
1e5), some signed, a machine that switches between a few states which persist for tens to hundreds
of ticks, slow drifts, and optionally broken readings a million times too large.

Each state moves two or three sensors by a few noise widths (and one of them also makes two
sensors noisier: a worn bearing rattles), so a state is visible only in the combination of
sensors, never in one alone. Everything is a pure function of the seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: (name, unit, typical value, noise width) of each sensor
SENSORS = (
    ("temperature", "K", 338.0, 1.5),
    ("pressure", "Pa", 1.013e5, 600.0),
    ("vibration", "g", 5.0e-3, 1.2e-3),
    ("current", "A", 12.0, 0.6),
    ("speed", "rpm", 1480.0, 15.0),
    ("humidity", "%", 45.0, 2.5),
    ("voltage", "V", 231.0, 1.8),
    ("flow", "m3/s", 2.0e-3, 3.0e-3),  # signed: the flow reverses now and then
)

#: the machine states and how each moves the sensors, in noise widths (sensor index: shift)
STATES = (
    ("normal", {}),
    ("overheating", {0: 2.2, 3: 1.4, 6: -1.2}),
    ("bearing wear", {2: 1.6, 4: -1.3, 3: 0.9}),
    ("blockage", {1: 1.8, 7: -1.5, 5: 1.1}),
)
#: a worn bearing also makes vibration and current rattle: noise widths multiplied by this
BEARING_RATTLE = {2: 2.5, 3: 1.8}


@dataclass(frozen=True)
class SensorStream:
    """``readings`` float64 ``[N, 8]`` in raw units, ``states`` int64 ``[N]`` (index into
    :data:`STATES`), ``broken`` bool ``[N, 8]``: which readings were multiplied by ``broken_factor``."""

    readings: np.ndarray
    states: np.ndarray
    broken: np.ndarray

    @property
    def sensor_names(self) -> list[str]:
        return [name for name, *_ in SENSORS]

    @property
    def state_names(self) -> list[str]:
        return [name for name, _ in STATES]


def machine_states(
    n_samples: int,
    *,
    seed: int = 0,
    segment: tuple[int, int] = (20, 200),
    broken_fraction: float = 0.0,
    broken_factor: float = 1e6,
) -> SensorStream:
    """Simulate ``n_samples`` ticks of the machine.

    Args:
        segment: a state lasts a uniform number of ticks in this range, then the next state is
            drawn uniformly among the other states.
        broken_fraction: the share of single readings (sample, sensor) multiplied by
            ``broken_factor``; the state labels are unchanged, so a learner must shrug them off.
    """
    if not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    low, high = segment
    if not 1 <= low <= high:
        raise ValueError(f"segment must be (low, high) with 1 <= low <= high, got {segment!r}")
    if not 0.0 <= broken_fraction < 1.0:
        raise ValueError(f"broken_fraction must be in [0, 1), got {broken_fraction!r}")
    rng = np.random.default_rng(seed)
    n_sensors = len(SENSORS)
    typical = np.array([s[2] for s in SENSORS])
    noise = np.array([s[3] for s in SENSORS])

    states = np.empty(n_samples, dtype=np.int64)
    tick, state = 0, int(rng.integers(len(STATES)))
    while tick < n_samples:
        length = int(rng.integers(low, high + 1))
        states[tick : tick + length] = state
        tick += length
        state = (state + 1 + int(rng.integers(len(STATES) - 1))) % len(STATES)

    shift = np.zeros((len(STATES), n_sensors))
    spread = np.ones((len(STATES), n_sensors))
    for index, (_, moves) in enumerate(STATES):
        for sensor, widths in moves.items():
            shift[index, sensor] = widths
    for sensor, factor in BEARING_RATTLE.items():
        spread[2, sensor] = factor

    # slow drift of every sensor's baseline (ambient temperature, supply voltage, ...): an AR(1)
    # walk with a stationary spread of 0.5 noise widths and a time constant of ~2,000 ticks
    drift = np.empty((n_samples, n_sensors))
    level = rng.normal(0.0, 0.5, n_sensors)
    keep = 1.0 - 1.0 / 2000.0
    steps = rng.normal(0.0, 0.5 * np.sqrt(1.0 - keep * keep), (n_samples, n_sensors))
    for t in range(n_samples):
        level = keep * level + steps[t]
        drift[t] = level

    white = rng.normal(0.0, 1.0, (n_samples, n_sensors))
    readings = typical + noise * (drift + shift[states] + spread[states] * white)
    broken = rng.random((n_samples, n_sensors)) < broken_fraction
    readings = np.where(broken, readings * broken_factor, readings)
    return SensorStream(readings=readings, states=states, broken=broken)
