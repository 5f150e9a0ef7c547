"""Value codes (docs/streams.md): the C++ rule against the Python reference, bit for bit, and what
the cluster builds on it (defaults, checkpoints, threads, bad input, broken readings)."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from hanami_torch import HanamiCluster, checkpoint, ops, templates
from hanami_torch.reference import decode_output, encode_value, input_code
from hanami_torch.template import Template, TemplateError

f32 = np.float32

STREAM = """version: 1
bricks:
    1,1,1
        input: sensors
        number_of_neurons: 6
    2,1,1
        number_of_neurons: 40
    3,1,1
        output: value
        number_of_neurons: 2
        encoding: adaptive
"""


def columns(rows=300, seed=0):
    """Six columns of very different scales and signs, with zeros, broken readings and extremes."""
    gen = np.random.default_rng(seed)
    scales = np.array([1e-3, 1.0, 300.0, 1e5, -40.0, 2e-38], dtype=np.float64)
    x = (gen.normal(1.0, 0.2, size=(rows, 6)) * scales).astype(np.float32)
    x[gen.random(x.shape) < 0.05] = 0.0  # no reading
    broken = gen.random(x.shape) < 0.01
    x[broken] *= f32(1e6)  # a million times too large
    x[0, 1] = f32(3.0e38)  # the largest floats, as a first value and later
    x[5, 3] = f32(-3.4e38)
    x[7, 2] = f32(1e-30)
    return torch.from_numpy(x)


def reference_codes(modes, ranges, values, learn, targets, trail=None):
    ranges = [tuple(f32(v) for v in row) for row in ranges.numpy()]
    codes = np.zeros(values.shape, dtype=np.float32)
    for i, row in enumerate(values.numpy()):
        for j, v in enumerate(row):
            if trail is not None:
                trail[i, j] = ranges[j]
            codes[i, j], new = encode_value(bool(modes[j]), ranges[j], f32(v), learn, targets)
            ranges[j] = new
    return codes, np.array(ranges, dtype=np.float32)


@pytest.mark.parametrize("targets", [False, True])
def test_learning_codes_match_the_reference(targets):
    values = columns()
    modes = torch.tensor([1, 1, 1, 1, 1, 0], dtype=torch.uint8)  # the last column raw
    ranges = torch.zeros(6, 3)
    expected_trail = np.zeros((*values.shape, 3), dtype=np.float32)
    expected_codes, expected_ranges = reference_codes(modes, ranges, values, True, targets, expected_trail)
    codes, trail = torch.empty_like(values), torch.empty(*values.shape, 3)
    ops.encode_(modes, ranges, values, codes, learn=True, targets=targets, trail=trail)
    np.testing.assert_array_equal(codes.numpy(), expected_codes)
    np.testing.assert_array_equal(ranges.numpy(), expected_ranges)
    np.testing.assert_array_equal(trail.numpy(), expected_trail)
    assert trail[0].abs().sum() == 0 and torch.equal(trail[-1, :, 0], ranges[:, 0] - (ranges[:, 0] > trail[-1, :, 0]).float())
    assert torch.equal(codes[:, 5], values[:, 5]), "a raw column passes unchanged"
    counted = (values[:, :5] != 0).sum(0).clamp(max=ops.RANGE_COUNT_CAP)
    expected_counts = counted.float() if not targets else torch.full((5,), float(len(values)))
    assert torch.equal(ranges[:5, 0], expected_counts), "a range counts the values it learned (inputs skip 0)"
    assert torch.isfinite(codes).all() and torch.isfinite(ranges).all()


def test_pure_codes_and_decoding_match_the_reference():
    values = columns(seed=1)
    modes = torch.ones(6, dtype=torch.uint8)
    ranges = torch.zeros(6, 3)
    ops.encode_(modes, ranges, values, torch.empty_like(values), learn=True, targets=False)
    kept = ranges.clone()
    probe = columns(50, seed=2)
    codes = ops.encode(modes, ranges, probe)
    assert torch.equal(ranges, kept), "encode without learning must leave the ranges alone"
    expected, _ = reference_codes(modes, ranges, probe, False, False)
    np.testing.assert_array_equal(codes.numpy(), expected)
    outputs = torch.rand(50, 6, generator=torch.Generator().manual_seed(3))
    outputs[::7] = 0.0
    decoded = ops.decode(modes, ranges, outputs)
    rows = [tuple(f32(v) for v in r) for r in ranges.numpy()]
    expected = [[decode_output(rows[j], f32(o)) for j, o in enumerate(row)] for row in outputs.numpy()]
    np.testing.assert_array_equal(decoded.numpy(), np.array(expected, dtype=np.float32))
    # with a trail, every row is read back with its own ranges
    trail = torch.stack([ranges * (1 + 0.01 * i) for i in range(50)])
    per_row = ops.decode(modes, trail, outputs)
    for i in (0, 17, 49):
        assert torch.equal(per_row[i], ops.decode(modes, trail[i].contiguous(), outputs[i : i + 1])[0])
    assert not torch.equal(per_row, decoded)


def test_the_rule_in_numbers():
    """The documented constants, on values worked out by hand."""
    r = (f32(0), f32(0), f32(0))
    code, r = encode_value(True, r, f32(100.0), True, False)
    # the first value opens [x - x/16, x + x/16] and sits in its middle: (0.5 + 0.75) * 10
    assert code == f32(12.5)
    assert r == (f32(1), f32(93.75 + 0.625), f32(106.25 - 0.625))
    modes, ranges = torch.ones(1, dtype=torch.uint8), torch.zeros(1, 3)
    codes = torch.empty(1, 1)
    ops.encode_(modes, ranges, torch.tensor([[100.0]]), codes, learn=True, targets=False)
    assert codes.item() == 12.5
    # learning 100: rate 1, step = width 12.5; lo moves up by 0.05 * 12.5, hi down by as much
    assert ranges.tolist() == [[1.0, 93.75 + 0.625, 106.25 - 0.625]]
    assert input_code((f32(1), f32(0), f32(10)), f32(1e9)) == f32(22.5), "far above: clipped at 1.5"
    assert input_code((f32(1), f32(0), f32(10)), f32(-1e9)) == f32(2.5), "far below: clipped at -0.5"
    assert input_code((f32(1), f32(0), f32(10)), f32(0)) == f32(0), "0 means no reading"


def test_a_broken_reading_moves_the_range_by_at_most_one_step():
    gen = torch.Generator().manual_seed(0)
    values = (300.0 + torch.randn(2000, 1, generator=gen)).float()
    modes, ranges = torch.ones(1, dtype=torch.uint8), torch.zeros(1, 3)
    ops.encode_(modes, ranges, values, torch.empty_like(values), learn=True, targets=False)
    before = ranges.clone()
    width = float(before[0, 2] - before[0, 1])
    codes = torch.empty(1, 1)
    ops.encode_(modes, ranges, values[-1:] * 1e6, codes, learn=True, targets=False)
    assert codes.item() == 22.5
    assert 0 < float(ranges[0, 2] - before[0, 2]) <= 0.95 * 0.01 * width * 1.0001
    assert 1.0 < width < 6.0, "after 2,000 readings the range spans the middle 90 % of N(300, 1)"


def test_threads_do_not_change_the_codes():
    values = columns(400, seed=4)
    modes = torch.ones(6, dtype=torch.uint8)
    results = []
    threads = torch.get_num_threads()
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            ranges, codes = torch.zeros(6, 3), torch.empty_like(values)
            ops.encode_(modes, ranges, values, codes, learn=True, targets=False)
            results.append((codes, ranges))
    finally:
        torch.set_num_threads(threads)
    for codes, ranges in results[1:]:
        assert torch.equal(codes, results[0][0]) and torch.equal(ranges, results[0][1])


def test_the_ops_reject_bad_arguments():
    modes, ranges = torch.ones(3, dtype=torch.uint8), torch.zeros(3, 3)
    values = torch.ones(2, 3)
    with pytest.raises(RuntimeError, match="modes"):
        ops.encode(modes.float(), ranges, values)
    with pytest.raises(RuntimeError, match="ranges"):
        ops.encode(modes, torch.zeros(3, 2), values)
    with pytest.raises(RuntimeError):
        ops.encode(modes, ranges, torch.ones(2, 4))
    with pytest.raises(RuntimeError, match="codes"):
        ops.encode_(modes, ranges, values, torch.empty(2, 2), learn=False, targets=False)
    with pytest.raises(RuntimeError, match="trail"):
        ops.encode_(modes, ranges, values, torch.empty(2, 3), learn=True, targets=True, trail=torch.empty(2, 3, 2))
    with pytest.raises(RuntimeError, match="per row"):
        ops.decode(modes, torch.zeros(3, 3, 3), values)


def raw_inputs(text: str) -> str:
    """``text`` with ``encoding: raw`` on every input brick."""
    template = Template.parse(text)
    bricks = [dataclasses.replace(b, encoding="raw") if b.is_input else b for b in template.bricks]
    return dataclasses.replace(template, bricks=tuple(bricks)).dumps()


# ---- the cluster ---------------------------------------------------------------------------


def test_defaults_per_mode():
    assert HanamiCluster(templates.TABLE).input_encoding.all(), "default: adaptive inputs"
    assert not HanamiCluster(templates.TABLE, compat=True).input_encoding.any(), "compat: Hanami's raw values"
    assert not HanamiCluster(templates.TABLE, learning_rule="gradient").input_encoding.any()
    assert not HanamiCluster(templates.TABLE).output_encoding.any(), "outputs stay raw unless asked"
    with pytest.raises(ValueError, match="gradient"):
        HanamiCluster(STREAM, learning_rule="gradient")
    assert not HanamiCluster(raw_inputs(templates.TABLE)).input_encoding.any()


def stream(rows=400, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(rows, 6, generator=gen) * 0.1 + 1) * torch.tensor([1e-3, 1.0, 300.0, 1e5, -40.0, 7.0])
    y = torch.stack([x[:, 2] * 2 + x[:, 3] / 1e3, -x[:, 4]], 1)
    return x, y


def test_adaptive_targets_come_back_in_their_units():
    cluster = HanamiCluster(STREAM, seed=1)
    x, y = stream(3000)
    out = cluster.learn_many(x, y)
    late = (out[-500:] - y[-500:]).abs().mean(0)
    spread = (y[-500:] - y[-500:].mean(0)).abs().mean(0)
    assert (late < spread).all(), f"the learned outputs {late} should beat predicting the mean {spread}"
    predicted = cluster.predict_many(x[-500:])
    assert (predicted[:, 0] > 500).all() and (predicted[:, 1] > 20).all(), "outputs are in the targets' units"


def test_checkpoint_round_trip_keeps_the_ranges(tmp_path):
    cluster = HanamiCluster(STREAM, seed=2)
    x, y = stream(600)
    cluster.learn_many(x[:300], y[:300])
    checkpoint.save(cluster, tmp_path / "c.safetensors")
    loaded = checkpoint.load(tmp_path / "c.safetensors")
    for name in ops.CODES:
        assert torch.equal(getattr(loaded, name), getattr(cluster, name)), name
    assert loaded.input_range[:, 0].min() > 0
    assert torch.equal(loaded.learn_many(x[300:], y[300:]), cluster.learn_many(x[300:], y[300:]))
    assert torch.equal(loaded.input_range, cluster.input_range)


def test_a_checkpoint_from_before_value_codes_keeps_raw_inputs(tmp_path):
    """Files written before value codes have no code tensors; their networks took raw values."""
    from safetensors.torch import load_file, save_file

    raw = HanamiCluster(raw_inputs(templates.TABLE), seed=3)
    x, y = stream(200)
    x = torch.cat([x, x[:, :1].repeat(1, 19)], 1).abs()
    raw.learn_many(x, y[:, :1].sigmoid().repeat(1, 5))
    old = HanamiCluster(templates.TABLE, seed=3)  # the same network as an older version saved it
    for name in ops.LAYOUT + ops.STATE:
        old._replace(name, getattr(raw, name).clone())
    path = tmp_path / "old.safetensors"
    checkpoint.save(old, path)
    tensors = {k: v for k, v in load_file(path).items() if k not in ops.CODES}
    from safetensors import safe_open

    with safe_open(path, "pt") as f:
        metadata = f.metadata()
    assert "encoding" not in metadata["template"]
    metadata["sha256"] = checkpoint.checksum(tensors, metadata)
    save_file(tensors, path, metadata=metadata)
    loaded = checkpoint.load(path)
    assert not loaded.input_encoding.any()
    assert torch.equal(loaded.predict_many(x), raw.predict_many(x))


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda t: t["input_range"].__setitem__((0, 1), float("nan")), "input_range holds a value that is not finite"),
        (lambda t: t["output_range"].__setitem__((1, 0), 5000.0), "output_range holds a count outside"),
        (lambda t: t["output_range"].__setitem__((1, 0), 2.5), "output_range holds a count outside"),
        (lambda t: t["input_encoding"].__setitem__(2, 0), "input_encoding"),
    ],
)
def test_damaged_codes_are_refused(tmp_path, damage, message):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    cluster = HanamiCluster(STREAM, seed=2)
    x, y = stream(100)
    cluster.learn_many(x, y)
    path = tmp_path / "c.safetensors"
    checkpoint.save(cluster, path)
    tensors = load_file(path)
    damage(tensors)
    with safe_open(path, "pt") as f:
        metadata = f.metadata()
    metadata["sha256"] = checkpoint.checksum(tensors, metadata)
    save_file(tensors, path, metadata=metadata)
    with pytest.raises(checkpoint.CheckpointError, match=message):
        checkpoint.load(path)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), 1e39])
def test_values_that_are_not_finite_floats_raise(bad):
    cluster = HanamiCluster(STREAM, seed=0)
    x, y = stream(3)
    before = cluster.input_range.clone()
    bad_x = x.double().clone()
    bad_x[1, 2] = bad
    with pytest.raises(ValueError):
        cluster.learn_many(bad_x, y)
    with pytest.raises(ValueError):
        cluster.predict_many(bad_x)
    bad_y = y.double().clone()
    bad_y[2, 0] = bad
    with pytest.raises(ValueError):
        cluster.learn_many(x, bad_y)
    assert torch.equal(cluster.input_range, before), "a refused call must not move the ranges"


def test_forward_is_differentiable_through_the_codes():
    cluster = HanamiCluster(STREAM, seed=4)
    x, y = stream(300)
    cluster.learn_many(x, y)
    probe = x[:4].clone().requires_grad_(True)
    cluster(probe).sum().backward()
    modes, ranges = cluster.input_encoding, cluster.input_range
    _, slopes = torch.ops.hanami.encode(modes, ranges, x[:4])
    width = ranges[:, 2] - ranges[:, 1]
    inside = (x[:4] - ranges[:, 1]) / width
    inside = (inside > -0.5) & (inside < 1.5)
    assert torch.allclose(slopes[inside], (10.0 / width).expand_as(slopes)[inside], rtol=1e-5)
    assert (slopes[~inside] == 0).all()
    assert probe.grad is not None and torch.isfinite(probe.grad).all()


# ---- the template --------------------------------------------------------------------------


def test_encoding_round_trips_in_the_template():
    template = Template.parse(STREAM)
    assert [b.encoding for b in template.bricks] == [None, None, "adaptive"]
    assert Template.parse(template.dumps()) == template
    assert "encoding: adaptive" in template.dumps() and template.dumps().count("encoding") == 1
    changed = dataclasses.replace(template.bricks[0], encoding="raw")
    assert changed != template.bricks[0]


@pytest.mark.parametrize(
    "edit,line,message",
    [
        (("number_of_neurons: 40", "number_of_neurons: 40\n        encoding: raw"), 8, "hidden brick has none"),
        (("encoding: adaptive", "encoding: linear"), 11, "bad value 'linear' for encoding"),
        (("encoding: adaptive", "encoding: adaptive\n        encoding: raw"), 12, "given twice"),
    ],
)
def test_template_errors_name_the_line(edit, line, message):
    with pytest.raises(TemplateError, match=message) as error:
        Template.parse(STREAM.replace(*edit))
    assert error.value.line == line


def test_ranges_are_part_of_the_state_dict():
    cluster = HanamiCluster(STREAM, seed=5)
    x, y = stream(50)
    cluster.learn_many(x, y)
    state = cluster.state_dict()
    assert all(name in state for name in ops.CODES)
    fresh = HanamiCluster(STREAM, seed=5)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.predict_many(x), cluster.predict_many(x))
    assert json.dumps(cluster.stats())  # stats stay plain values


def test_a_learned_row_is_read_back_without_its_own_target():
    """The outputs of learn_one/learn_many are predictions: decoded with the target ranges as they
    were before the row, so the row's own target cannot leak into them."""
    x, y = stream(40)
    first, second = HanamiCluster(STREAM, seed=6), HanamiCluster(STREAM, seed=6)
    first.learn_many(x[:39], y[:39])
    second.learn_many(x[:39], y[:39])
    assert torch.equal(first.learn_one(x[39], y[39]), second.learn_one(x[39], y[39] * 1000))
    assert not torch.equal(first.output_range, second.output_range)
    one_by_one = HanamiCluster(STREAM, seed=6)
    rows = torch.stack([one_by_one.learn_one(x[i], y[i]) for i in range(40)])
    assert torch.equal(rows, HanamiCluster(STREAM, seed=6).learn_many(x, y))
