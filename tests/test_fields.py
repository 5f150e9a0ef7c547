"""Receptive fields (input_shape, field_radius): which blocks a pixel's sections reach, the C++
engine against the Python reference bit for bit, checks of the options, checkpoints."""

import numpy as np
import pytest
import torch

from hanami_torch import HanamiCluster, checkpoint, ops
from hanami_torch.reference import field_block
from networks import random_samples, run_with_reference

# a 4x4 image; 600 hidden neurons = 10 blocks on a grid of 4 columns and 3 rows (the last row
# holds blocks 8 and 9 only, so some pixels lie in no field when the radius is small)
FIELDS = """version: 1
bricks:
    1,1,1
        input: pixels
        number_of_neurons: 16
    2,1,1
        number_of_neurons: 600
    3,1,1
        output: classes
        number_of_neurons: 3
"""


def holding_blocks(pixel, n_blocks, rows, cols, radius):
    """The blocks whose field holds the pixel, straight from the definition (float centres)."""
    grid_cols = int(np.ceil(np.sqrt(n_blocks)))
    grid_rows = -(-n_blocks // grid_cols)
    r, c = pixel // cols + 0.5, pixel % cols + 0.5
    return [
        g for g in range(n_blocks)
        if abs(r - (g // grid_cols + 0.5) * rows / grid_rows) <= radius
        and abs(c - (g % grid_cols + 0.5) * cols / grid_cols) <= radius
    ]


@pytest.mark.parametrize("n_blocks, rows, cols, radius", [
    (9, 28, 28, 7.0), (9, 28, 28, 4.6666665), (10, 4, 4, 0.6), (7, 28, 28, 5.0), (1, 3, 5, 0.5), (16, 6, 10, 2.5),
])
def test_field_block_picks_among_the_blocks_whose_field_holds_the_pixel(n_blocks, rows, cols, radius):
    for pixel in range(rows * cols):
        expected = holding_blocks(pixel, n_blocks, rows, cols, radius) or list(range(n_blocks))
        picked = {field_block(pixel, n_blocks, rows, cols, radius, pick) for pick in range(3 * n_blocks)}
        assert picked == set(expected), f"pixel {pixel}"


def test_mnist_layout_has_overlapping_fields():
    # 576 hidden neurons = 3x3 blocks; with radius 7 a pixel near the middle sees 4 blocks
    assert holding_blocks(14 * 28 + 14, 9, 28, 28, 7.0) == [4]
    assert holding_blocks(10 * 28 + 10, 9, 28, 28, 7.0) == [0, 1, 3, 4]
    assert holding_blocks(0, 9, 28, 28, 7.0) == [0]


@pytest.mark.parametrize("radius", [0.6, 1.5])
@pytest.mark.parametrize("reduction", [False, True])
def test_fields_match_reference(radius, reduction):
    template = FIELDS.replace("bricks:", "settings:\n    enable_reduction: true\nbricks:") if reduction else FIELDS
    cluster = HanamiCluster(template, seed=4, optimizer="adagrad", input_fan_in=3, learning_rate=0.02,
                            init_scale=0.03, input_shape=(4, 4), field_radius=radius)
    x, y = random_samples(cluster, 220 if reduction else 90, seed=4, ramp=True)
    run_with_reference(cluster, x, y)
    for pixel in range(16):
        allowed = holding_blocks(pixel, 10, 4, 4, radius) or list(range(10))
        for section in cluster.sections_of(pixel):
            assert section["target_block"] in allowed, f"pixel {pixel}"
    if radius == 0.6:  # the corner pixel's sections all go to the corner block
        assert {s["target_block"] for s in cluster.sections_of(0)} == {0}


def test_without_fields_the_config_is_unchanged():
    plain = HanamiCluster(FIELDS, seed=1)
    assert plain.input_shape is None and plain.field_radius is None
    assert float(plain.config[ops.CONFIG_FIELD_ROWS:ops.CONFIG_FIELD_RADIUS + 1].abs().sum()) == 0.0
    fields = HanamiCluster(FIELDS, seed=1, input_shape=[4, 4], field_radius=1.5)
    assert fields.input_shape == (4, 4) and fields.field_radius == 1.5
    assert fields.config[ops.CONFIG_FIELD_ROWS:ops.CONFIG_FIELD_RADIUS + 1].tolist() == [4.0, 4.0, 1.5]
    assert "field_radius=1.5" in repr(fields)


@pytest.mark.parametrize("options, message", [
    ({"input_shape": (4, 4)}, "go together"),
    ({"field_radius": 2.0}, "go together"),
    ({"input_shape": (4, 4), "field_radius": 2.0, "compat": True}, "compat=False"),
    ({"input_shape": (4, 5), "field_radius": 2.0}, "needs 20 neurons"),
    ({"input_shape": (16,), "field_radius": 2.0}, "two positive integers"),
    ({"input_shape": (0, 16), "field_radius": 2.0}, "two positive integers"),
    ({"input_shape": (4.0, 4), "field_radius": 2.0}, "two positive integers"),
    ({"input_shape": (4, 4), "field_radius": 0.0}, "positive number"),
    ({"input_shape": (4, 4), "field_radius": float("nan")}, "positive number"),
    ({"input_shape": (4, 4), "field_radius": True}, "positive number"),
])
def test_bad_field_options(options, message):
    with pytest.raises(ValueError, match=message):
        HanamiCluster(FIELDS, **options)


def test_checkpoint_keeps_the_fields(tmp_path):
    cluster = HanamiCluster(FIELDS, seed=2, input_fan_in=2, input_shape=(4, 4), field_radius=0.6)
    x, y = random_samples(cluster, 60, seed=2)
    cluster.learn_many(x[:40], y[:40])
    checkpoint.save(cluster, tmp_path / "fields.safetensors")
    loaded = checkpoint.load(tmp_path / "fields.safetensors")
    assert (loaded.input_shape, loaded.field_radius) == ((4, 4), 0.6000000238418579)
    # learning goes on identically, new sections included
    assert torch.equal(cluster.learn_many(x[40:], y[40:]), loaded.learn_many(x[40:], y[40:]))
    assert torch.equal(cluster.sec_block, loaded.sec_block)
