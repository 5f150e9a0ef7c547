"""The public API of HanamiCluster: bad input is refused with a clear ValueError and leaves the
network untouched; good input in every accepted form gives the same result."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from hanami_torch import HanamiCluster, Template, TemplateError
from hanami_torch.reference import ReferenceCluster
from hanami_torch.template import Settings
from networks import MULTI_IO, assert_same_buffers, snapshot

#: Two input bricks and two output bricks (all addressed by name).
MULTI = MULTI_IO
N_IN, N_OUT = 8, 5

LINE = """version: 1
bricks:
    1,1,1
        input: px
        number_of_neurons: {inputs}
    2,1,1
        number_of_neurons: {hidden}
    3,1,1
        output: out
        number_of_neurons: {outputs}
"""


def samples(n, seed=0, inputs=N_IN, outputs=N_OUT):
    gen = np.random.default_rng(seed)
    x = gen.uniform(0, 255, (n, inputs)).astype(np.float32)
    x[gen.random(x.shape) < 0.3] = 0.0
    y = (gen.random((n, outputs)) < 0.4).astype(np.float32)
    return torch.from_numpy(x), torch.from_numpy(y)


def assert_unchanged(cluster, before):
    assert_same_buffers(snapshot(cluster), before)


@pytest.fixture
def trained():
    cluster = HanamiCluster(MULTI, seed=9)
    x, y = samples(60)
    cluster.learn_many(x, y)
    assert cluster.stats()["synapses"] > 0
    return cluster


def good_x(n=3):
    return samples(n, seed=5)[0]


def good_y(n=3):
    return samples(n, seed=5)[1]


def with_value(tensor, value, row=-1, col=0):
    tensor = tensor.clone()
    tensor[row, col] = value
    return tensor


def split_x(x):
    return {"left": x[:, :5], "right": x[:, 5:]}


def split_y(y):
    return {"first": y[:, :2], "second": y[:, 2:]}


# (id, call(cluster), message fragment)
BAD_CALLS = [
    # shapes
    ("predict_wide", lambda c: c.predict_many(torch.zeros(3, N_IN + 1)), r"shaped \[samples, 8\], got \[3, 9\]"),
    ("predict_narrow", lambda c: c.predict_many(torch.zeros(3, N_IN - 1)), r"shaped \[samples, 8\]"),
    ("learn_wide_x", lambda c: c.learn_many(torch.zeros(3, N_IN + 1), good_y()), r"inputs must be shaped"),
    ("learn_wide_y", lambda c: c.learn_many(good_x(), torch.zeros(3, N_OUT + 1)), r"targets must be shaped"),
    ("predict_3d", lambda c: c.predict_many(torch.zeros(2, 3, N_IN)), r"shaped \[samples, 8\], got \[2, 3, 8\]"),
    ("learn_3d", lambda c: c.learn_many(torch.zeros(1, 3, N_IN), good_y()), r"inputs must be shaped"),
    ("predict_many_1d", lambda c: c.predict_many(torch.zeros(N_IN)), r"shaped \[samples, 8\], got \[8\]"),
    ("learn_many_1d_x", lambda c: c.learn_many(torch.zeros(N_IN), torch.zeros(1, N_OUT)), r"inputs must be shaped"),
    ("learn_many_1d_y", lambda c: c.learn_many(torch.ones(1, N_IN), torch.zeros(N_OUT)), r"targets must be shaped"),
    ("predict_one_2d", lambda c: c.predict_one(torch.zeros(1, N_IN)), r"single sample must be 1-D"),
    ("learn_one_2d_x", lambda c: c.learn_one(torch.ones(1, N_IN), torch.zeros(N_OUT)), r"single sample must be 1-D"),
    ("learn_one_2d_y", lambda c: c.learn_one(torch.ones(N_IN), torch.zeros(1, N_OUT)), r"single sample must be 1-D"),
    ("learn_one_wide", lambda c: c.learn_one(torch.ones(N_IN + 1), torch.zeros(N_OUT)), r"shaped \[samples, 8\]"),
    ("predict_one_scalar", lambda c: c.predict_one(torch.tensor(3.0)), r"single sample must be 1-D"),
    ("ragged_list", lambda c: c.predict_many([[1.0] * N_IN, [1.0]]), r"must be a tensor, an array"),
    ("none", lambda c: c.predict_many(None), r"must be a tensor, an array"),
    # dtypes
    ("bool_x", lambda c: c.predict_many(torch.ones(2, N_IN, dtype=torch.bool)), r"real numbers.*bool"),
    ("complex_x", lambda c: c.predict_many(torch.ones(2, N_IN, dtype=torch.complex64)), r"real numbers.*complex"),
    ("bool_y", lambda c: c.learn_many(good_x(), good_y().bool()), r"targets must hold real numbers"),
    ("complex_y", lambda c: c.learn_many(good_x(), good_y().to(torch.complex128)), r"targets must hold real"),
    ("numpy_bool", lambda c: c.predict_many(np.ones((2, N_IN), dtype=bool)), r"real numbers"),
    ("bool_one", lambda c: c.learn_one(torch.ones(N_IN, dtype=torch.bool), torch.zeros(N_OUT)), r"real numbers"),
    # devices
    ("meta_x", lambda c: c.predict_many(torch.zeros(2, N_IN, device="meta")), r"on meta.*CPU"),
    ("meta_x_learn", lambda c: c.learn_many(torch.zeros(2, N_IN, device="meta"), good_y(2)), r"on meta"),
    ("meta_y", lambda c: c.learn_many(good_x(2), torch.zeros(2, N_OUT, device="meta")), r"targets are on meta"),
    ("meta_dict", lambda c: c.predict_many(split_x(torch.zeros(2, N_IN, device="meta"))), r"on meta"),
    # non-finite values (in the last row: nothing may be trained before the check)
    ("nan_x", lambda c: c.learn_many(with_value(good_x(), math.nan), good_y()), r"row 2 contains NaN or inf"),
    ("inf_x", lambda c: c.learn_many(with_value(good_x(), math.inf), good_y()), r"inputs row 2 contains NaN"),
    ("neg_inf_x", lambda c: c.learn_many(with_value(good_x(), -math.inf), good_y()), r"inputs row 2"),
    ("nan_y", lambda c: c.learn_many(good_x(), with_value(good_y(), math.nan)), r"targets row 2 contains NaN"),
    ("inf_y", lambda c: c.learn_many(good_x(), with_value(good_y(), math.inf)), r"targets row 2"),
    ("nan_predict", lambda c: c.predict_many(with_value(good_x(), math.nan, row=1)), r"inputs row 1"),
    ("nan_one", lambda c: c.learn_one(with_value(good_x(1), math.nan)[0], good_y(1)[0]), r"NaN"),
    ("inf_predict_one", lambda c: c.predict_one(with_value(good_x(1), math.inf)[0]), r"NaN or infinity"),
    ("float32_overflow", lambda c: c.predict_many(torch.full((1, N_IN), 1e300, dtype=torch.float64)), r"infinity"),
    # empty batches
    ("empty_predict", lambda c: c.predict_many(torch.zeros(0, N_IN)), r"inputs are empty"),
    ("empty_learn", lambda c: c.learn_many(torch.zeros(0, N_IN), torch.zeros(0, N_OUT)), r"are empty"),
    ("empty_dict", lambda c: c.predict_many(split_x(torch.zeros(0, N_IN))), r"empty"),
    # dict inputs
    ("unknown_brick", lambda c: c.predict_many(split_x(good_x()) | {"middle": torch.ones(3, 2)}),
     r"unknown brick.*middle"),
    ("misspelt_brick", lambda c: c.predict_many({"left": torch.ones(3, 5), "rigth": torch.ones(3, 3)}), r"rigth"),
    ("missing_brick", lambda c: c.predict_many({"left": torch.ones(3, 5)}), r"lack brick.*right"),
    ("missing_target_brick", lambda c: c.learn_many(good_x(), {"first": torch.ones(3, 2)}),
     r"targets lack brick.*second"),
    ("output_name_as_input", lambda c: c.predict_many(split_y(torch.ones(3, N_OUT))), r"unknown brick"),
    ("brick_width", lambda c: c.predict_many({"left": torch.ones(3, 4), "right": torch.ones(3, 3)}),
     r"inputs\['left'\] must be shaped \[samples, 5\]"),
    ("brick_rows", lambda c: c.predict_many({"left": torch.ones(3, 5), "right": torch.ones(2, 3)}),
     r"differ in their number of samples"),
    ("brick_3d", lambda c: c.predict_many({"left": torch.ones(1, 3, 5), "right": torch.ones(3, 3)}),
     r"inputs\['left'\]"),
    ("dict_bool", lambda c: c.predict_many(split_x(torch.ones(2, N_IN, dtype=torch.bool))), r"real numbers"),
    ("dict_nan", lambda c: c.learn_many(split_x(with_value(good_x(), math.nan, col=6)), good_y()), r"row 2"),
    # row counts
    ("rows_mismatch", lambda c: c.learn_many(good_x(3), good_y(2)), r"inputs have 3 rows but targets have 2"),
    ("rows_mismatch_dict", lambda c: c.learn_many(split_x(good_x(4)), split_y(good_y(3))), r"4 rows.*3"),
]


@pytest.mark.parametrize("call, message", [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS])
def test_bad_input_raises_and_changes_nothing(trained, call, message):
    before = snapshot(trained)
    with pytest.raises(ValueError, match=message):
        call(trained)
    assert_unchanged(trained, before)
    # and the cluster still works afterwards
    x, y = good_x(2), good_y(2)
    assert trained.learn_many(x, y).shape == (2, N_OUT)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_input_is_refused(trained):
    before = snapshot(trained)
    with pytest.raises(ValueError, match=r"on cuda.*x\.cpu\(\)"):
        trained.predict_many(good_x().cuda())
    with pytest.raises(ValueError, match=r"targets are on cuda"):
        trained.learn_many(good_x(), good_y().cuda())
    assert_unchanged(trained, before)


def test_dict_with_tensors_on_different_devices_raises_value_error(trained):
    before = snapshot(trained)
    with pytest.raises(ValueError, match=r"on meta"):
        trained.predict_many({"left": torch.ones(2, 5, device="meta"), "right": torch.ones(2, 3)})
    assert_unchanged(trained, before)


def test_dict_with_one_bool_brick_is_refused(trained):
    with pytest.raises(ValueError, match=r"real numbers"):
        trained.predict_many({"left": torch.ones(2, 5, dtype=torch.bool), "right": torch.ones(2, 3)})


@pytest.mark.parametrize("array", [np.array([["1"] * N_IN]), np.array([[1.0] * N_IN], dtype=object)])
def test_numpy_non_numeric_array_raises_value_error(trained, array):
    with pytest.raises(ValueError):
        trained.predict_many(array)


def test_uint16_and_string_inputs_are_refused(trained):
    before = snapshot(trained)
    with pytest.raises(ValueError, match=r"real numbers"):
        trained.predict_many(torch.ones(2, N_IN, dtype=torch.uint16))
    with pytest.raises(ValueError, match=r"inputs\['left'\] must be a tensor or an array"):
        trained.predict_many({"left": "abc", "right": torch.ones(1, 3)})
    assert_unchanged(trained, before)


# ---- constructor arguments and templates ---------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"seed": -1}, r"seed must be an integer in 0\.\.2\*\*53-1, got -1"),
        ({"seed": 2**53}, r"seed must be an integer"),
        ({"seed": 2**64}, r"seed must be an integer"),
        ({"seed": True}, r"seed must be an integer.*True"),
        ({"seed": 1.0}, r"seed must be an integer"),
        ({"seed": "1"}, r"seed must be an integer"),
        ({"learning_rate": 0}, r"learning_rate must be a positive finite.*got 0"),
        ({"learning_rate": -0.05}, r"learning_rate must be a positive finite"),
        ({"learning_rate": math.nan}, r"learning_rate must be a positive finite"),
        ({"learning_rate": math.inf}, r"learning_rate"),
        ({"learning_rate": "0.05"}, r"learning_rate"),
        ({"init_scale": math.nan}, r"init_scale must be a positive finite.*got nan"),
        ({"init_scale": 0.0}, r"init_scale"),
        ({"init_scale": -1.0}, r"init_scale"),
        ({"init_scale": None}, r"init_scale"),
        ({"optimizer": "adam"}, r"optimizer must be one of \['adagrad', 'sgd'\], got 'adam'"),
        ({"optimizer": "SGD"}, r"optimizer must be one of"),
        ({"optimizer": None}, r"optimizer must be one of"),
        ({"input_fan_in": 0}, r"input_fan_in must be an integer in 1\.\.8 .*got 0"),
        ({"input_fan_in": 9}, r"input_fan_in must be an integer in 1\.\.8 .*got 9"),
        ({"input_fan_in": True}, r"input_fan_in must be an integer"),
        ({"input_fan_in": 2.0}, r"input_fan_in must be an integer"),
        ({"learning_rule": "backprop"}, r"learning_rule must be one of"),
        ({"learning_rule": "gradient", "optimizer": "adagrad"}, r"optimizer='adagrad' belongs to Hanami's rule"),
    ],
)
def test_bad_constructor_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HanamiCluster(MULTI, **kwargs)


@pytest.mark.parametrize("fan_in", [1, 8, np.int64(3)])
def test_input_fan_in_at_the_limits(fan_in):
    cluster = HanamiCluster(MULTI, input_fan_in=fan_in)
    assert cluster.input_fan_in == int(fan_in) and type(cluster.input_fan_in) is int


def _cooldown(value: float) -> str:
    """A small template with ``neuron_cooldown`` written out (the format has no exponents)."""
    settings = f"settings:\n    neuron_cooldown: {value:.1f}\nbricks:"
    return LINE.format(inputs=2, hidden=4, outputs=2).replace("bricks:", settings)


@pytest.mark.parametrize("cooldown", [3.5e38, 1e39, 1e300])
def test_settings_beyond_float32_are_refused(cooldown):
    # the kernels keep the cooldown in float32: 3.5e38 would become infinity there
    with pytest.raises(ValueError, match=r"bad value '\d+\.0' for neuron_cooldown"):
        HanamiCluster(_cooldown(cooldown))
    with pytest.raises(ValueError, match="for neuron_cooldown"):
        Settings(neuron_cooldown=cooldown)


def test_settings_at_the_float32_limit_are_accepted():
    largest = float(np.finfo(np.float32).max)
    cluster = HanamiCluster(_cooldown(largest))
    assert cluster.template.settings.neuron_cooldown == largest
    cluster.learn_many(*samples(5, inputs=2, outputs=2))
    assert torch.isfinite(cluster.potential).all()


def test_good_constructor_arguments_at_the_limits():
    assert HanamiCluster(MULTI, seed=0).seed == 0
    assert HanamiCluster(MULTI, seed=2**53 - 1).seed == 2**53 - 1
    assert HanamiCluster(MULTI, seed=np.int64(7)).seed == 7
    cluster = HanamiCluster(Template.parse(MULTI), learning_rate=1, init_scale=0.5, compat=True)
    assert (cluster.learning_rate, cluster.init_scale, cluster.compat) == (1.0, 0.5, True)


@pytest.mark.parametrize(
    "kwargs", [{"learning_rate": 1e300}, {"init_scale": 1e300}, {"init_scale": 1e39}, {"learning_rate": True}]
)
def test_parameters_beyond_float32_are_refused(kwargs):
    # the C++ side works in float32: a larger value would give inf/NaN weights
    with pytest.raises(ValueError, match="must be a positive finite"):
        HanamiCluster(MULTI, **kwargs)


def test_numpy_float32_parameters_are_accepted():
    cluster = HanamiCluster(MULTI, learning_rate=np.float32(0.1), init_scale=np.float64(0.1))
    assert cluster.learning_rate == pytest.approx(0.1) and cluster.init_scale == 0.1
    x, y = samples(5)
    cluster.learn_many(x, y)
    assert torch.isfinite(cluster.syn_weight).all()


def test_template_argument_type():
    with pytest.raises(TypeError, match="template must be a Template or template text"):
        HanamiCluster(42)


SMALL = LINE.format(inputs=2, hidden=4, outputs=2)
#: two more bricks: 4 x 2**24 neurons in all, over the total limit of 2**26
HUGE_HIDDEN = "    4,1,1\n        number_of_neurons: 16777216\n    5,1,1\n        number_of_neurons: 2\n"
#: an output brick behind the input brick (connections only go forward)
BEHIND = "    0,1,1\n        output: behind\n        number_of_neurons: 1\n"


@pytest.mark.parametrize(
    "template, message",
    [
        (LINE.format(inputs=2**24 + 1, hidden=4, outputs=2), r"number_of_neurons.*1 to 16777216"),
        (LINE.format(inputs=0, hidden=4, outputs=2), r"number_of_neurons"),
        (LINE.format(inputs=2**24, hidden=2**24, outputs=2**24) + HUGE_HIDDEN, r"too many neurons"),
        (SMALL.replace("bricks:", "settings:\n    refractory_time: 256\nbricks:"), r"refractory_time"),
        (SMALL.replace("output: out\n", ""), r"no output brick"),
        (SMALL.replace("3,1,1", "5,1,1"), r"no neighbour in flow direction"),
        (SMALL + BEHIND, r"named 'behind' cannot be reached from any input"),
    ],
    ids=["brick_over_limit", "zero_neurons", "total_over_limit", "refractory", "no_output", "dead_end",
         "unreachable"],
)
def test_templates_over_the_limits_are_refused(template, message):
    with pytest.raises(TemplateError, match=message) as info:
        HanamiCluster(template)
    assert isinstance(info.value, ValueError)


# ---- happy paths ---------------------------------------------------------------------------------


def test_dict_inputs_equal_concatenated_inputs():
    x, y = samples(40, seed=2)
    a = HanamiCluster(MULTI, seed=4)
    b = HanamiCluster(MULTI, seed=4)
    out_a = a.learn_many(x, y)
    out_b = b.learn_many(split_x(x), split_y(y))
    assert torch.equal(out_a, out_b)
    for (name, va), vb in zip(a.named_buffers(), b.buffers()):
        assert torch.equal(va, vb), name
    test = samples(10, seed=3)[0]
    assert torch.equal(a.predict_many(test), b.predict_many(split_x(test)))
    # one sample by name, 1-D tensors per brick
    one = {"left": test[0, :5], "right": test[0, 5:]}
    assert torch.equal(a.predict_one(test[0]), b.predict_one(one))
    assert torch.equal(
        a.learn_one(test[0], y[0]), b.learn_one(one, {"first": y[0, :2], "second": y[0, 2:]})
    )
    # mixed: dict inputs with a plain target tensor
    assert torch.equal(a.learn_many(test[:3], y[:3]), b.learn_many(split_x(test[:3]), y[:3]))


def test_split_outputs(trained):
    out = trained.predict_many(good_x(4))
    parts = trained.split_outputs(out)
    assert list(parts) == ["first", "second"]
    assert torch.equal(parts["first"], out[:, :2]) and torch.equal(parts["second"], out[:, 2:])
    single = trained.split_outputs(out[0])
    assert single["first"].shape == (2,) and single["second"].shape == (3,)
    assert torch.equal(torch.cat([single["first"], single["second"]]), out[0])


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16, torch.int32, torch.int64, torch.float64])
def test_integer_and_double_inputs_equal_float_inputs(dtype):
    x, y = samples(30, seed=6)
    x = x.round().clamp(0, 255)
    a = HanamiCluster(MULTI, seed=1)
    b = HanamiCluster(MULTI, seed=1)
    out_a = a.learn_many(x, y)
    out_b = b.learn_many(x.to(dtype), y.to(torch.int64))
    assert torch.equal(out_a, out_b)
    for (name, va), vb in zip(a.named_buffers(), b.buffers()):
        assert torch.equal(va, vb), name
    assert torch.equal(a.predict_many(x[:5]), b.predict_many(x[:5].to(dtype)))
    assert torch.equal(a.predict_many(x[:5]), b.predict_many(x[:5].numpy().astype(np.uint8)))


def test_single_sample_shapes_and_input_forms(trained):
    x, y = good_x(1)[0], good_y(1)[0]
    out = trained.predict_one(x)
    assert out.shape == (N_OUT,) and out.dtype == torch.float32
    assert torch.equal(trained.predict_one(x.tolist()), out)
    assert torch.equal(trained.predict_one(x.numpy()), out)
    learned = trained.learn_one(x, y)
    assert learned.shape == (N_OUT,) and learned.dtype == torch.float32
    assert trained.learn_one(x.numpy(), y.tolist()).shape == (N_OUT,)
    many = trained.predict_many(good_x(7))
    assert many.shape == (7, N_OUT)
    assert ((many == 0) | ((many > 0) & (many < 1))).all()


def test_learn_many_returns_outputs_before_each_update():
    """Row i's output is the one of step i, computed before step i's update (and read back with the
    target ranges of before that row), as the Python reference's online step returns it."""
    cluster = HanamiCluster(MULTI, seed=2)
    x, y = samples(20, seed=8)
    ref = ReferenceCluster.from_cluster(cluster)
    expected = np.asarray([ref.train_step(a, b) for a, b in zip(x.tolist(), y.tolist())], dtype=np.float32)
    out = cluster.learn_many(x, y)
    np.testing.assert_array_equal(out.numpy(), expected)
    # the outputs really move with the updates: the same rows again give other outputs
    assert not torch.equal(cluster.learn_many(x, y), out)


def test_forward_is_pure_inference_from_rest(trained):
    x = good_x(6)
    # with the default (non-spiking) settings, inference from rest is Hanami's request mode
    trained.reset_state()
    before = snapshot(trained)
    expected = copy.deepcopy(trained).predict_many(x)
    assert torch.equal(trained.forward(x), expected)
    assert torch.equal(trained(x), expected)
    assert torch.equal(trained(split_x(x)), expected)
    # each row on its own gives the same as in the batch
    for i in range(len(x)):
        assert torch.equal(trained(x[i : i + 1])[0], expected[i])
    # forward reads nothing but the synapses and changes nothing, not even the neuron state
    trained.potential.fill_(3.0)
    assert torch.equal(trained(x), expected)
    trained.potential.zero_()
    assert_unchanged(trained, before)


def count_synapses_by_sections(cluster):
    synapses, sections = 0, 0
    for neuron in range(cluster.potential.numel()):
        for section in cluster.sections_of(neuron):
            sections += 1
            synapses += sum(t is not None for t in section["targets"])
    return synapses, sections


def test_stats(trained):
    stats = trained.stats()
    assert {
        "synapses", "sections", "synapse_bytes", "bytes_per_synapse", "section_table_bytes",
        "arena_slots_used", "arena_capacity", "steps", "bricks",
    } <= set(stats)
    synapses, sections = count_synapses_by_sections(trained)
    assert stats["synapses"] == synapses > 0
    assert stats["sections"] == sections
    assert stats["steps"] == 60
    assert list(stats["bricks"]) == ["left", "right", "brick2@2,1,1", "first", "second"]
    assert sum(b["synapses"] for b in stats["bricks"].values()) == synapses
    assert sum(b["sections"] for b in stats["bricks"].values()) == sections
    for brick in stats["bricks"].values():
        assert set(brick) == {"synapses", "sections", "synapse_bytes"}
        assert brick["synapses"] <= brick["sections"] * 63
    assert stats["arena_slots_used"] <= stats["arena_capacity"]
    assert stats["bytes_per_synapse"] == stats["synapse_bytes"] / synapses

    fresh = HanamiCluster(MULTI).stats()
    assert fresh["synapses"] == 0 and fresh["sections"] == 0 and fresh["steps"] == 0
    assert math.isnan(fresh["bytes_per_synapse"])


def test_stats_after_many_steps_and_compact_arena():
    cluster = HanamiCluster(LINE.format(inputs=16, hidden=16, outputs=2), seed=0)
    x, y = samples(500, seed=0, inputs=16, outputs=2)
    cluster.learn_many(x, y)
    stats = cluster.stats()
    synapses, sections = count_synapses_by_sections(cluster)
    assert stats["synapses"] == synapses > 300 and stats["sections"] == sections
    # the arena is packed: one spare slot per section, 9 bytes per slot
    slots = sum(
        min(63, len(s["borders"]) + 1) for n in range(cluster.potential.numel()) for s in cluster.sections_of(n)
    )
    assert stats["arena_capacity"] == stats["arena_slots_used"] == slots
    assert stats["synapse_bytes"] == 9 * slots
    assert stats["bytes_per_synapse"] <= 10


@pytest.mark.parametrize("slack", [0, 64, -1, True, 1.0, "2", None])
def test_compact_refuses_a_bad_slack_and_changes_nothing(trained, slack):
    before = snapshot(trained)
    with pytest.raises(ValueError, match=r"slack must be an integer in 1\.\.63, got "):
        trained.compact(slack=slack)
    assert_unchanged(trained, before)


def test_compact_slack_sets_the_spare_slots(trained):
    for slack in (1, 5, 63):
        trained.compact(slack=slack)
        stats = trained.stats()
        sections = [s for n in range(trained.potential.numel()) for s in trained.sections_of(n)]
        assert stats["arena_capacity"] == sum(min(63, len(s["borders"]) + slack) for s in sections)
    gradient = HanamiCluster(LINE.format(inputs=2, hidden=4, outputs=2), learning_rule="gradient")
    with pytest.raises(RuntimeError, match="never compacted"):
        gradient.compact(slack=2)


def test_repr(trained):
    text = repr(trained)
    assert text.startswith("HanamiCluster(")
    for part in ("bricks=5→3→65→2→3", "seed=9", "compat=False", "learning_rate=0.05", "init_scale=0.2"):
        assert part in text


def test_sections_of_checks_the_neuron(trained):
    n = trained.potential.numel()
    with pytest.raises(ValueError, match=rf"neuron must be in 0\.\.{n - 1}"):
        trained.sections_of(n)
    with pytest.raises(ValueError, match="neuron must be"):
        trained.sections_of(-1)


def test_every_active_input_neuron_grows_synapses():
    cluster = HanamiCluster(MULTI, seed=9)
    x, y = samples(300)
    cluster.learn_many(x.clamp(min=1.0), y)
    silent = [n for n in range(N_IN) if not any(
        t is not None for s in cluster.sections_of(n) for t in s["targets"])]
    assert silent == []


@pytest.mark.parametrize("start", ["dark_batch", "compact"])
def test_learning_goes_on_after_a_step_that_grew_nothing(start):
    cluster = HanamiCluster(LINE.format(inputs=4, hidden=8, outputs=2), seed=0)
    if start == "dark_batch":
        cluster.learn_many(torch.zeros(5, 4), torch.zeros(5, 2))
    else:
        cluster.compact()
    x, y = samples(5, inputs=4, outputs=2)
    cluster.learn_many(x.clamp(min=1.0), y)
    assert cluster.stats()["synapses"] > 0


def test_dtype_casts_keep_the_network_and_device_moves_are_refused():
    """.double()/.half() leave the network's fixed-dtype tensors alone; moving off the CPU is refused."""
    cluster = HanamiCluster(MULTI, seed=1)
    x, y = samples(20, seed=1)
    cluster.learn_many(x, y)
    before = {name: t.clone() for name, t in cluster.state_dict().items()}
    assert cluster.double() is cluster and cluster.half() is cluster
    for name, tensor in cluster.state_dict().items():
        assert tensor.dtype == before[name].dtype and torch.equal(tensor, before[name]), name
    assert cluster.predict_many(x.double()).dtype == torch.float32
    before = {name: t.clone() for name, t in cluster.state_dict().items()}  # prediction moved the state
    with pytest.raises(ValueError, match="runs on the CPU only"):
        cluster.to("meta")
    assert cluster.to("cpu") is cluster
    for name, tensor in cluster.state_dict().items():
        assert torch.equal(tensor, before[name]), name
