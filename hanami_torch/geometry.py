"""The hexagonal brick grid: neighbours, and the target bricks that each brick connects to.

Bricks sit on an offset-hex grid (spec §3.5): rows of constant ``y`` with every odd row shifted by
half a hexagon in +x, stacked in ``z``.  A brick has 12 sides: 6 in its plane, 3 towards z-1 and
3 towards z+1; side ``11 - s`` is the opposite of side ``s``.

A new synapse section of a neuron in brick ``B`` is placed in a brick drawn from ``B``'s 64
*target bricks* (spec §3.6).  Each of the 64 entries is the end of a short random walk from ``B``
that moves only "forward": +x within the plane, or to z±1.  Two walks exist:

* default (``compat=False``, what Hanami's documentation describes): nearer bricks are more
  likely.  Every step picks one of the existing forward neighbours uniformly; after ``d`` steps
  the walk stops with the probability that makes the walk length ``d`` proportional to
  ``2**-(d - 1)`` for ``d = 1 .. max_connection_distance`` (4:2:1 for a maximum of 3).
* compat (``compat=True``, what Hanami's code does): exactly ``max_connection_distance`` steps,
  each taking the first existing side in a cyclic order of the forward sides from a biased
  random start.

Both walks stop early at a dead end (no forward neighbour).  All randomness comes from
``rng.draw(seed, STREAM_TARGET_BRICKS, brick_id, walk_index, draw_index)`` with ``draw_index``
``2*step`` for the side and ``2*step + 1`` for the decision to continue, so the lists are a pure
function of the template, the seed and the mode.
"""

from __future__ import annotations

import warnings
from collections import deque

import numpy as np

from hanami_torch import rng
from hanami_torch.template import Template, TemplateError

NUMBER_OF_SIDES = 12
#: Every brick that is not an output brick has this many target-brick entries.
TARGETS_PER_BRICK = 64

#: ``NEIGHBOR_OFFSETS[y % 2][side] == (dx, dy, dz)``: even rows first, then odd rows (spec §3.5).
NEIGHBOR_OFFSETS: tuple[tuple[tuple[int, int, int], ...], tuple[tuple[int, int, int], ...]] = (
    (  # y even
        (-1, -1, -1), (0, -1, -1), (0, 0, -1),
        (0, -1, 0), (1, 0, 0), (0, 1, 0),
        (-1, -1, 0), (-1, 0, 0), (-1, 1, 0),
        (0, 0, 1), (-1, 1, 1), (0, 1, 1),
    ),
    (  # y odd: the row is shifted by +1/2, so its diagonal neighbours lie one x further right
        (0, -1, -1), (1, -1, -1), (0, 0, -1),
        (1, -1, 0), (1, 0, 0), (1, 1, 0),
        (0, -1, 0), (-1, 0, 0), (0, 1, 0),
        (0, 0, 1), (0, 1, 1), (1, 1, 1),
    ),
)

#: The sides a walk may take, in Hanami's order: z+1, in-plane up-right, z-1 up-right, +x,
#: z+1 down-right, in-plane down-right, z-1.
FORWARD_SIDES = (9, 3, 1, 4, 11, 5, 2)
#: Compat walks start their cyclic search at ``FORWARD_SIDES[r % 7] % 7``: Hanami uses the side
#: number, not its position in the list, as start index (so positions 0 and 6 never come first).
_COMPAT_START = np.array([side % len(FORWARD_SIDES) for side in FORWARD_SIDES], dtype=np.int64)


def neighbor_position(position: tuple[int, int, int], side: int) -> tuple[int, int, int]:
    """The grid position next to ``position`` on ``side`` (0..11).  It may have negative
    coordinates; no brick sits there then."""
    if not 0 <= side < NUMBER_OF_SIDES:
        raise ValueError(f"side must be 0..{NUMBER_OF_SIDES - 1}, got {side}")
    x, y, z = position
    dx, dy, dz = NEIGHBOR_OFFSETS[y % 2][side]
    return (x + dx, y + dy, z + dz)


def brick_neighbors(template: Template) -> list[list[int | None]]:
    """For every brick, 12 entries: the index of the brick on that side, or ``None``.

    Returns:
        ``neighbors[brick][side]``, bricks in template order.  Symmetric:
        ``neighbors[a][s] == b`` exactly when ``neighbors[b][11 - s] == a``.
    """
    index_at = {brick.position: index for index, brick in enumerate(template.bricks)}
    return [
        [index_at.get(neighbor_position(brick.position, side)) for side in range(NUMBER_OF_SIDES)]
        for brick in template.bricks
    ]


def _forward_neighbors(
    neighbors: list[list[int | None]], brick: int, skip: frozenset[int] = frozenset()
) -> list[int]:
    """Existing forward neighbours of ``brick`` in FORWARD_SIDES order, leaving out ``skip``."""
    return [
        neighbors[brick][side]
        for side in FORWARD_SIDES
        if neighbors[brick][side] is not None and neighbors[brick][side] not in skip
    ]


def input_bricks(template: Template) -> frozenset[int]:
    """Indices of the input bricks. Default-mode walks never step onto them: input neurons take
    their values from the data, so sections stored there would never be walked. (Hanami's walk,
    kept in compat mode, can end there, and such sections stay silent.)"""
    return frozenset(b for b, brick in enumerate(template.bricks) if brick.is_input)


def _compat_next(neighbors: list[list[int | None]], brick: int, start: int) -> int | None:
    """Hanami's step: the first existing forward side in cyclic order from position ``start``."""
    for i in range(len(FORWARD_SIDES)):
        target = neighbors[brick][FORWARD_SIDES[(i + start) % len(FORWARD_SIDES)]]
        if target is not None:
            return target
    return None


def _continue_threshold(steps_left: int) -> tuple[int, int]:
    """``(modulus, limit)``: a walk that may still take ``steps_left`` (>= 1) more steps
    continues when ``draw % modulus < limit``.

    Stopping now has weight ``2**m`` and the longer walks ``2**(m-1) + ... + 1 = 2**m - 1``
    (``m = steps_left``), so continuing has probability ``(2**m - 1) / (2**(m+1) - 1)``; this
    makes the walk length ``d`` proportional to ``2**-(d-1)`` up to the maximum.  ``m`` is capped
    at 30 to stay within a 32-bit draw; the probability then differs from 1/2 by < 1e-9.
    """
    m = min(steps_left, 30)
    return (1 << (m + 1)) - 1, (1 << m) - 1


def walk_path(
    neighbors: list[list[int | None]],
    start: int,
    seed: int,
    walk_index: int,
    max_distance: int,
    compat: bool = False,
    skip: frozenset[int] = frozenset(),
) -> list[int]:
    """One target-brick walk, step by step (the readable reference for
    :func:`target_brick_lists`).

    Args:
        neighbors: from :func:`brick_neighbors`.
        start: brick index the walk starts from.
        seed: cluster seed.
        walk_index: 0..63, which of the brick's 64 entries this walk fills.
        max_distance: the template's ``max_connection_distance`` (>= 1).
        compat: Hanami's walk instead of the default one.
        skip: bricks a default walk never steps onto (:func:`input_bricks`).

    Returns:
        The visited brick indices, ``start`` first; the last one is the target brick.  The walk
        has ``len(path) - 1`` steps.
    """
    path = [start]
    current = start
    for step in range(max_distance):
        side_draw = rng.draw(seed, rng.STREAM_TARGET_BRICKS, start, walk_index, 2 * step)
        if compat:
            following = _compat_next(neighbors, current, int(_COMPAT_START[side_draw % len(FORWARD_SIDES)]))
            if following is None:
                break  # dead end
        else:
            options = _forward_neighbors(neighbors, current, skip)
            if not options:
                break  # dead end
            following = options[side_draw % len(options)]
        current = following
        path.append(current)
        steps_taken = step + 1
        if not compat and steps_taken < max_distance:
            modulus, limit = _continue_threshold(max_distance - steps_taken)
            stop_draw = rng.draw(seed, rng.STREAM_TARGET_BRICKS, start, walk_index, 2 * step + 1)
            if stop_draw % modulus >= limit:
                break
    return path


# ------------------------------------------------------------------------------------------------
# The same walks for all bricks at once


def _pcg_hash_array(values: np.ndarray) -> np.ndarray:
    """``rng.pcg_hash`` on a uint64 array of 32-bit values (products stay below 2**63)."""
    mask = np.uint64(rng.MASK32)
    state = (values * np.uint64(747796405) + np.uint64(2891336453)) & mask
    word = (((state >> ((state >> np.uint64(28)) + np.uint64(4))) ^ state) * np.uint64(277803737)) & mask
    return ((word >> np.uint64(22)) ^ word) & mask


def _draw_array(seed: int, stream: int, a: np.ndarray, b: np.ndarray, c: int) -> np.ndarray:
    """``rng.draw(seed, stream, a[i], b[i], c)`` for arrays ``a`` (non-negative, < 2**32) and ``b``.

    Mirrors the word order of ``rng.draw``; ``tests/test_geometry.py`` checks that both agree.
    """
    key = rng._DRAW_START
    for word in (seed & rng.MASK32, (seed >> 32) & rng.MASK32, stream & rng.MASK32):
        key = rng.pcg_hash(key ^ word)
    mask = np.uint64(rng.MASK32)
    h = np.full(a.shape, key, dtype=np.uint64)
    for word in (a.astype(np.uint64) & mask, np.zeros(a.shape, np.uint64), b.astype(np.uint64) & mask):
        h = _pcg_hash_array(h ^ word)
    return _pcg_hash_array(h ^ np.uint64(c & rng.MASK32))


def target_brick_lists(template: Template, seed: int, compat: bool = False) -> np.ndarray:
    """The 64 target bricks of every brick.

    Args:
        template: the cluster template; its ``max_connection_distance`` bounds the walks.
        seed: cluster seed (64-bit).
        compat: Hanami's walk (exactly ``max_connection_distance`` steps) instead of the default
            walk (nearer bricks more likely).

    Returns:
        int32 array ``[n_bricks, 64]`` of brick indices.  Row ``b`` holds the ends of the walks
        ``j = 0..63`` from brick ``b`` (equal to ``walk_path(..., b, seed, j, ...)[-1]``).  A row
        may contain ``b`` itself (dead end, or a walk that went up and down in z).  Rows of
        output bricks are all -1: output neurons never own sections.
    """
    seed = int(seed)
    neighbors = brick_neighbors(template)
    n_bricks = len(template.bricks)
    max_distance = template.settings.max_connection_distance
    width = len(FORWARD_SIDES)

    # Where one step from brick b goes (-1: dead end).  compat: step_table[b, start] for each
    # cyclic start position; default: step_table[b, :option_counts[b]] are the options.
    step_table = np.full((n_bricks, width), -1, dtype=np.int64)
    option_counts = np.zeros(n_bricks, dtype=np.int64)
    for b in range(n_bricks):
        if compat:
            for start_position in range(width):
                following = _compat_next(neighbors, b, start_position)
                step_table[b, start_position] = -1 if following is None else following
        else:
            options = _forward_neighbors(neighbors, b, input_bricks(template))
            step_table[b, : len(options)] = options
            option_counts[b] = len(options)

    sources = np.array([b for b, brick in enumerate(template.bricks) if not brick.is_output], dtype=np.int64)
    start = np.repeat(sources, TARGETS_PER_BRICK)
    walk = np.tile(np.arange(TARGETS_PER_BRICK, dtype=np.int64), len(sources))
    current = start.copy()
    walking = np.arange(len(start))  # indices of the walks that have not stopped yet

    for step in range(max_distance):
        if walking.size == 0:
            break
        here = current[walking]
        side_draw = _draw_array(seed, rng.STREAM_TARGET_BRICKS, start[walking], walk[walking], 2 * step)
        if compat:
            following = step_table[here, _COMPAT_START[side_draw % np.uint64(width)]]
        else:
            counts = option_counts[here]
            choice = (side_draw % np.maximum(counts, 1).astype(np.uint64)).astype(np.int64)
            following = step_table[here, choice]
        moved = following >= 0
        current[walking[moved]] = following[moved]
        walking = walking[moved]  # dead ends stop
        steps_taken = step + 1
        if not compat and steps_taken < max_distance and walking.size:
            modulus, limit = _continue_threshold(max_distance - steps_taken)
            stop_draw = _draw_array(
                seed, rng.STREAM_TARGET_BRICKS, start[walking], walk[walking], 2 * step + 1
            )
            walking = walking[stop_draw % np.uint64(modulus) < np.uint64(limit)]

    lists = np.full((n_bricks, TARGETS_PER_BRICK), -1, dtype=np.int32)
    lists[start, walk] = current
    return lists


# ------------------------------------------------------------------------------------------------
# Seed-independent reachability and validation


def possible_targets(template: Template, compat: bool = False) -> list[set[int]]:
    """For every brick, the set of bricks that at least one walk can end at, whatever the seed.

    Output bricks get an empty set.  Used by :func:`validate_connectivity`, so that a template is
    valid or invalid independent of the seed.
    """
    neighbors = brick_neighbors(template)
    max_distance = template.settings.max_connection_distance
    # The bricks one step can reach, per brick.  Compat walks can only start their cyclic search
    # at the positions in _COMPAT_START, so not every forward neighbour is a possible step.
    if compat:
        starts = set(_COMPAT_START.tolist())
        steps = [
            {_compat_next(neighbors, b, start) for start in starts} - {None}
            for b in range(len(template.bricks))
        ]
    else:
        skip = input_bricks(template)
        steps = [set(_forward_neighbors(neighbors, b, skip)) for b in range(len(template.bricks))]

    result: list[set[int]] = []
    for b, brick in enumerate(template.bricks):
        if brick.is_output:
            result.append(set())
            continue
        ends: set[int] = set()
        frontier = {b}  # where the walks can be after `step` steps
        for step in range(max_distance):
            ends |= {brick_id for brick_id in frontier if not steps[brick_id]}  # dead ends stop
            frontier = set().union(*(steps[brick_id] for brick_id in frontier))
            if not compat:
                ends |= frontier  # a default walk may stop after any step
        ends |= frontier  # the walks that used all their steps
        result.append(ends)
    return result


def validate_connectivity(
    template: Template, target_lists: np.ndarray | None = None, *, compat: bool = False
) -> None:
    """Check that data can flow from the input bricks to every output brick.

    The check uses :func:`possible_targets`, so its verdict does not depend on the seed.

    Args:
        template: the template.
        target_lists: optional ``[n_bricks, 64]`` lists from :func:`target_brick_lists`.  If an
            output brick is reachable in principle but not with these particular lists (an
            unlucky seed, very unlikely), a ``RuntimeWarning`` is issued rather than an error.
        compat: the walk mode the lists are (or will be) drawn with.

    Raises:
        TemplateError: with the line of the offending brick, when a non-output brick can only
            reach itself, or an output brick cannot be reached from any input brick.
    """
    neighbors = brick_neighbors(template)
    possible = possible_targets(template, compat)
    for b, brick in enumerate(template.bricks):
        if brick.is_output or possible[b] != {b}:
            continue
        line = brick.line or None
        if not _forward_neighbors(neighbors, b, frozenset() if compat else input_bricks(template)):
            raise TemplateError(
                f"{brick.describe()} has no neighbour in flow direction (+x in its row, or z±1) other "
                f"than input bricks: "
                f"its neurons could only connect to themselves; move the next brick next to it",
                line,
            )
        raise TemplateError(
            f"{brick.describe()}: every connection walk returns to the brick itself (it goes up and "
            f"down in z), so its neurons could only connect to themselves; add a brick at +x next "
            f"to it or change max_connection_distance",
            line,
        )

    for b in _unreachable_outputs(template, possible):
        brick = template.bricks[b]
        raise TemplateError(
            f"output {brick.describe()} named '{brick.name}' cannot be reached from any input brick: "
            f"connections only go +x within a row or to z±1, at most max_connection_distance="
            f"{template.settings.max_connection_distance} bricks far; place the bricks so that a "
            f"chain of neighbouring bricks leads from an input brick to it",
            brick.line or None,
        )

    for b in _dead_inputs(template, possible):
        brick = template.bricks[b]
        raise TemplateError(
            f"input {brick.describe()} named '{brick.name}' cannot reach any output brick: its "
            f"connections lead only to input bricks, whose neurons ignore incoming synapses; place a "
            f"hidden or output brick at +x next to it (or at z±1)",
            brick.line or None,
        )

    if target_lists is not None:
        lists = np.asarray(target_lists)
        if lists.shape != (len(template.bricks), TARGETS_PER_BRICK):
            raise ValueError(
                f"target_lists must have shape ({len(template.bricks)}, {TARGETS_PER_BRICK}), "
                f"got {lists.shape}"
            )
        drawn = [set(int(t) for t in row if t >= 0) for row in lists]
        missed = _unreachable_outputs(template, drawn)
        if missed:
            names = ", ".join(template.bricks[b].describe() for b in missed)
            warnings.warn(
                f"with this seed the drawn target bricks never lead to the output {names}; "
                f"choose another seed",
                RuntimeWarning,
                stacklevel=2,
            )


def _dead_inputs(template: Template, targets: list[set[int]]) -> list[int]:
    """Input bricks from which no chain of targets reaches an output brick. Input bricks are not
    passed through: their neurons take their values from the data, not from synapses."""
    dead = []
    for start, brick in enumerate(template.bricks):
        if not brick.is_input:
            continue
        seen, queue = {start}, deque([start])
        while queue:
            for target in targets[queue.popleft()]:
                if target not in seen and not template.bricks[target].is_input:
                    seen.add(target)
                    queue.append(target)
        if not any(template.bricks[b].is_output for b in seen):
            dead.append(start)
    return dead


def _unreachable_outputs(template: Template, targets: list[set[int]]) -> list[int]:
    """Output bricks that no chain of targets from an input brick reaches (breadth-first)."""
    seen = {b for b, brick in enumerate(template.bricks) if brick.is_input}
    queue = deque(seen)
    while queue:
        for target in targets[queue.popleft()]:
            if target not in seen:
                seen.add(target)
                queue.append(target)
    return [b for b, brick in enumerate(template.bricks) if brick.is_output and b not in seen]


__all__ = [
    "NEIGHBOR_OFFSETS",
    "FORWARD_SIDES",
    "NUMBER_OF_SIDES",
    "TARGETS_PER_BRICK",
    "neighbor_position",
    "brick_neighbors",
    "walk_path",
    "input_bricks",
    "target_brick_lists",
    "possible_targets",
    "validate_connectivity",
]
