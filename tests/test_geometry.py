"""Hex grid and target-brick walks (hanami_torch/geometry.py)."""

import dataclasses
import itertools
import random
import warnings

import numpy as np
import pytest

from hanami_torch import rng
from hanami_torch.geometry import (
    input_bricks,
    FORWARD_SIDES,
    NEIGHBOR_OFFSETS,
    _draw_array,
    brick_neighbors,
    neighbor_position,
    possible_targets,
    target_brick_lists,
    validate_connectivity,
    walk_path,
)
from hanami_torch.template import Brick, Settings, Template, TemplateError
from hanami_torch.templates import MNIST, TABLE


def make_template(positions, max_distance=1):
    """Bricks at ``positions``: the first is the input, the last the output."""
    bricks = []
    for index, position in enumerate(positions):
        if index == 0:
            bricks.append(Brick(position, "input", "data", 4))
        elif index == len(positions) - 1:
            bricks.append(Brick(position, "output", "result", 2))
        else:
            bricks.append(Brick(position, "hidden", None, 8))
    return Template(tuple(bricks), Settings(max_connection_distance=max_distance))


def with_distance(template, max_distance):
    return dataclasses.replace(template, settings=Settings(max_connection_distance=max_distance))


# A 3-D block of bricks, with gaps, so that walks branch and hit dead ends.
BLOCK = [(x, y, z) for x in range(1, 5) for y in range(3) for z in range(3) if (x + 2 * y + z) % 5 != 0]
BLOCK = [(0, 1, 1)] + BLOCK + [(5, 1, 1)]


# ------------------------------------------------------------------------------------------------
# Neighbours


def test_neighbor_table_spot_checks():
    even, odd = (2, 2, 2), (2, 3, 2)
    assert neighbor_position(even, 4) == (3, 2, 2)  # +x
    assert neighbor_position(even, 7) == (1, 2, 2)  # -x
    assert neighbor_position(even, 3) == (2, 1, 2)
    assert neighbor_position(even, 6) == (1, 1, 2)
    assert neighbor_position(even, 5) == (2, 3, 2)
    assert neighbor_position(even, 0) == (1, 1, 1)
    assert neighbor_position(even, 9) == (2, 2, 3)
    assert neighbor_position(even, 11) == (2, 3, 3)
    assert neighbor_position(odd, 3) == (3, 2, 2)
    assert neighbor_position(odd, 6) == (2, 2, 2)
    assert neighbor_position(odd, 5) == (3, 4, 2)
    assert neighbor_position(odd, 8) == (2, 4, 2)
    assert neighbor_position(odd, 0) == (2, 2, 1)
    assert neighbor_position(odd, 11) == (3, 4, 3)
    assert neighbor_position(odd, 2) == (2, 3, 1)
    assert NEIGHBOR_OFFSETS[0][4] == NEIGHBOR_OFFSETS[1][4] == (1, 0, 0)
    with pytest.raises(ValueError):
        neighbor_position(even, 12)


def test_opposite_side_leads_back():
    for position in itertools.product(range(3, 5), repeat=3):
        for side in range(12):
            assert neighbor_position(neighbor_position(position, side), 11 - side) == position
        assert len({neighbor_position(position, side) for side in range(12)}) == 12


def test_forward_sides_increase_x_or_change_z():
    for parity in (0, 1):
        for side in FORWARD_SIDES:
            dx, dy, dz = NEIGHBOR_OFFSETS[parity][side]
            # Odd rows sit half a hexagon further right.
            real_dx = dx + 0.5 * ((parity + dy) % 2) - 0.5 * parity
            assert dz != 0 or real_dx > 0
        in_plane_forward = [side for side in FORWARD_SIDES if NEIGHBOR_OFFSETS[parity][side][2] == 0]
        assert sorted(in_plane_forward) == [3, 4, 5]


@pytest.mark.parametrize("trial", range(5))
def test_neighbors_are_symmetric_for_random_brick_sets(trial):
    generator = random.Random(trial)
    positions = generator.sample(list(itertools.product(range(4), repeat=3)), 30)
    template = make_template(positions)
    neighbors = brick_neighbors(template)
    links = 0
    for a, row in enumerate(neighbors):
        assert len(row) == 12
        for side, b in enumerate(row):
            if b is not None:
                links += 1
                assert neighbors[b][11 - side] == a
                assert template.bricks[b].position == neighbor_position(template.bricks[a].position, side)
    assert links > 0


# ------------------------------------------------------------------------------------------------
# Target-brick lists


@pytest.mark.parametrize("compat", [False, True])
def test_straight_line_targets_the_next_brick(compat):
    lists = target_brick_lists(Template.parse(MNIST), seed=123, compat=compat)
    assert lists.dtype == np.int32 and lists.shape == (3, 64)
    assert (lists[0] == 1).all()
    assert (lists[1] == 2).all()
    assert (lists[2] == -1).all()


def test_hanami_table_example_with_distance_two():
    """Spec §3.6: with distance 2, input -> brick 3, brick 2 -> output, brick 3 -> output."""
    template = with_distance(Template.parse(TABLE), 2)
    lists = target_brick_lists(template, seed=5, compat=True)
    assert [set(row.tolist()) for row in lists] == [{2}, {3}, {3}, {-1}]
    assert possible_targets(template, compat=True) == [{2}, {3}, {3}, set()]
    assert possible_targets(template, compat=False) == [{1, 2}, {2, 3}, {3}, set()]


@pytest.mark.parametrize("compat", [False, True])
def test_lists_are_deterministic_and_depend_on_the_seed(compat):
    template = make_template(BLOCK, max_distance=3)
    first = target_brick_lists(template, seed=7, compat=compat)
    assert np.array_equal(first, target_brick_lists(template, seed=7, compat=compat))
    assert not np.array_equal(first, target_brick_lists(template, seed=8, compat=compat))
    assert (first[-1] == -1).all() and (first[:-1] >= 0).all()


def test_modes_differ():
    template = make_template(BLOCK, max_distance=3)
    assert not np.array_equal(target_brick_lists(template, 7, compat=False), target_brick_lists(template, 7, compat=True))


def test_draw_array_matches_rng_draw():
    a = np.array([0, 1, 17, 4095, 2**31 + 5])
    b = np.array([0, 63, 5, 1, 2**32 - 1])
    for seed in (0, 1, 2**40 + 3, 2**64 - 1):
        for c in (0, 1, 9):
            expected = [rng.draw(seed, rng.STREAM_TARGET_BRICKS, int(x), int(y), c) for x, y in zip(a, b)]
            assert _draw_array(seed, rng.STREAM_TARGET_BRICKS, a, b, c).tolist() == expected


@pytest.mark.parametrize("compat", [False, True])
def test_lists_equal_the_step_by_step_walks(compat):
    template = make_template(BLOCK, max_distance=3)
    neighbors = brick_neighbors(template)
    lists = target_brick_lists(template, seed=11, compat=compat)
    possible = possible_targets(template, compat)
    for brick in range(len(template.bricks) - 1):
        for walk in range(64):
            skip = frozenset() if compat else input_bricks(template)
            path = walk_path(neighbors, brick, 11, walk, 3, compat, skip)
            assert lists[brick, walk] == path[-1]
            assert path[-1] in possible[brick]
            for here, there in zip(path, path[1:]):
                assert there in [neighbors[here][side] for side in FORWARD_SIDES]


def test_compat_walk_takes_exactly_max_distance_steps_unless_dead_end():
    for max_distance in (1, 2, 4):
        template = make_template(BLOCK, max_distance)
        neighbors = brick_neighbors(template)
        for brick in range(len(template.bricks) - 1):
            for walk in range(64):
                path = walk_path(neighbors, brick, 3, walk, max_distance, compat=True)
                if len(path) - 1 < max_distance:
                    assert all(neighbors[path[-1]][side] is None for side in FORWARD_SIDES)
                else:
                    assert len(path) - 1 == max_distance


def test_default_walk_prefers_near_bricks():
    """Line of 5 bricks, distance at most 3: distances 1:2:3 occur about 4:2:1."""
    template = make_template([(x, 1, 1) for x in range(5)], max_distance=3)
    counts = np.zeros(5)
    for seed in range(40):
        counts += np.bincount(target_brick_lists(template, seed)[0], minlength=5)
    shares = counts[1:4] / counts.sum()
    assert counts[0] == counts[4] == 0
    assert np.allclose(shares, [4 / 7, 2 / 7, 1 / 7], atol=0.04), shares


def test_default_walk_never_exceeds_max_distance():
    template = make_template([(x, 1, 1) for x in range(6)], max_distance=2)
    lists = target_brick_lists(template, seed=1)
    for brick in range(5):
        assert set(lists[brick].tolist()) <= {brick + 1, brick + 2}


# ------------------------------------------------------------------------------------------------
# Validation


@pytest.mark.parametrize("compat", [False, True])
def test_valid_templates_pass(compat):
    for text in (MNIST, TABLE):
        template = Template.parse(text)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            validate_connectivity(template, target_brick_lists(template, 0, compat), compat=compat)
    validate_connectivity(make_template(BLOCK, 2), compat=compat)


@pytest.mark.parametrize("compat", [False, True])
def test_brick_without_forward_neighbour(compat):
    text = """version: 1
bricks:
    1,1,1
        input: a
        number_of_neurons: 4
    2,1,1
        number_of_neurons: 4
    4,1,1
        output: b
        number_of_neurons: 1
"""
    with pytest.raises(TemplateError) as info:
        validate_connectivity(Template.parse(text), compat=compat)
    assert info.value.line == 6
    assert "brick at line 6 (2,1,1) has no neighbour in flow direction" in str(info.value)


@pytest.mark.parametrize("compat", [False, True])
def test_unreachable_output(compat):
    text = """version: 1
bricks:
    2,1,1
        input: a
        number_of_neurons: 4
    3,1,1
        output: ahead
        number_of_neurons: 1
    1,1,1
        output: behind
        number_of_neurons: 1
"""
    with pytest.raises(TemplateError) as info:
        validate_connectivity(Template.parse(text), compat=compat)
    assert info.value.line == 9
    assert "'behind' cannot be reached from any input brick" in str(info.value)


def test_walks_that_only_return_to_the_start():
    # The only forward neighbour of the input is the brick above it, whose only one is the input.
    template = make_template([(1, 1, 1), (1, 1, 2), (5, 5, 5)], max_distance=2)
    with pytest.raises(TemplateError, match="returns to the brick itself"):
        validate_connectivity(template, compat=True)
    # default walks never step onto input bricks, so the brick above the input is a dead end
    with pytest.raises(TemplateError, match="no neighbour in flow direction"):
        validate_connectivity(template, compat=False)


def test_unlucky_lists_only_warn():
    template = Template.parse(MNIST)
    lists = target_brick_lists(template, 0)
    lists[0] = 0  # as if every walk of the input brick had ended at itself
    with pytest.warns(RuntimeWarning, match="choose another seed"):
        validate_connectivity(template, lists)
    with pytest.raises(ValueError, match="shape"):
        validate_connectivity(template, lists[:2])
