"""Thin wrappers around the ``torch.ops.hanami`` C++ ops, with their fake (meta) kernels.

The ops take the cluster's tensors as two lists in the order of ``LAYOUT`` and ``STATE`` (the same
order as ``csrc/cluster_state.h``) plus a float64 ``config`` vector. They mutate ``state`` in place
and never change a shape; when the synapse arena is full, ``train_`` stops at a sample boundary and
:class:`hanami_torch.HanamiCluster` enlarges the arena and calls again.
"""

from __future__ import annotations

import torch

try:
    from . import _C  # noqa: F401  (importing it registers torch.ops.hanami)
except ImportError as error:  # pragma: no cover - depends on how the package was installed
    raise ImportError(
        "hanami_torch's C++ extension (hanami_torch._C) is not built. Build it from the "
        "repository root with `pip install --no-build-isolation -e .` (torch must be installed "
        "first), or run `make test`, which sets everything up. Original error: " + str(error)
    ) from error

#: names of the layout tensors, in op order (read-only description of bricks and blocks)
LAYOUT = ("brick_info", "brick_targets", "block_info")

#: names of the state tensors, in op order (everything learning changes)
STATE = (
    "brick_grid",
    "potential",
    "active",
    "refractory",
    "request",
    "sec_block",
    "sec_offset",
    "sec_has_next",
    "sec_conn",
    "sec_start",
    "sec_len",
    "sec_cap",
    "syn_weight",
    "syn_upper",
    "syn_target",
    "syn_counter",
    "syn_accum",
    "counters",
)

#: indices into the int64 ``counters`` tensor
COUNTER_STEP, COUNTER_ARENA_TOP, COUNTER_GARBAGE, COUNTER_NEEDY = 0, 1, 2, 3
COUNTER_PROCESSED, COUNTER_SYNAPSES, COUNTER_SECTIONS = 4, 5, 6
N_COUNTERS = 8

#: indices into the float64 ``config`` tensor
CONFIG_SEED, CONFIG_COMPAT, CONFIG_COOLDOWN, CONFIG_REFRACTORY = 0, 1, 2, 3
CONFIG_REDUCTION, CONFIG_LEARNING_RATE, CONFIG_INIT_SCALE, CONFIG_THREADS = 4, 5, 6, 7
CONFIG_OPTIMIZER, CONFIG_INPUT_FAN_IN, CONFIG_LEARNING_RULE = 8, 9, 10
CONFIG_FIELD_ROWS, CONFIG_FIELD_COLS, CONFIG_FIELD_RADIUS = 11, 12, 13
OPTIMIZERS = {"sgd": 0, "adagrad": 1}
LEARNING_RULES = {"hanami": 0, "gradient": 1}
N_CONFIG = 16

#: names of the value-code tensors (docs/streams.md): each brick's encoding per neuron (uint8,
#: ``ENCODINGS``) and each neuron's tracked range (float32 ``[n, 3]``: count, lo, hi)
CODES = ("input_encoding", "input_range", "output_encoding", "output_range")
ENCODINGS = {"raw": 0, "adaptive": 1}
#: a range's count stops here (csrc/rules.h, kCodeCountCap)
RANGE_COUNT_CAP = 1024

#: values of ``sec_block`` that are not a block
NO_SECTION, PENDING_SECTION = -1, -2
EMPTY_TARGET = 0xFF


def train_(layout, state, config, inputs, targets, outputs, start: int, pending=None, batch_size: int = 1) -> None:
    """Online learning, one Hanami cycle per row of ``inputs`` from row ``start`` on.

    ``inputs`` float32 ``[B, n_inputs]`` (raw values), ``targets`` float32 ``[B, n_outputs]``,
    ``outputs`` float32 ``[B, n_outputs]`` receives each sample's output before its update.
    ``state[counters][4]`` tells how many rows are done (less than B when the arena must grow).

    ``pending`` (None: empty) is a float32 ``[capacity]`` tensor of zeros for batches: the weight
    steps are then summed per synapse and applied at the end of every ``batch_size`` rows counted
    from row 0, and after the last row (docs/api.md, "Batches"). When the call stops early it
    holds the sums of the unfinished batch: grow it with the arena and pass it again.
    """
    if pending is None:
        pending = torch.empty(0, dtype=torch.float32, device=inputs.device)
    torch.ops.hanami.train_(list(layout), list(state), config, inputs, targets, outputs, start, pending, batch_size)


def predict_(layout, state, config, inputs, outputs) -> None:
    """Request mode: forward passes over the rows of ``inputs`` in order, no growth."""
    torch.ops.hanami.predict_(list(layout), list(state), config, inputs, outputs)


def compact_(layout, state, config, slack: int) -> None:
    """Rewrites the synapse arena densely, ``slack`` spare slots per section (at least 1)."""
    torch.ops.hanami.compact_(list(layout), list(state), config, slack)


@torch.library.register_fake("hanami::train_")
def _train_fake(layout, state, config, inputs, targets, outputs, start, pending, batch_size):
    # The checks the C++ kernel makes on metadata alone (the sizes of the bricks are data, so the
    # widths of inputs and targets are checked only when the kernel runs). Nothing is returned:
    # the op only mutates state and outputs, whose shapes never change.
    torch._check(len(layout) == len(LAYOUT) and len(state) == len(STATE),
                 lambda: f"hanami: expected {len(LAYOUT)} layout and {len(STATE)} state tensors")
    torch._check(config.dtype == torch.float64, lambda: "hanami: config must be float64")
    for name, tensor in (("inputs", inputs), ("targets", targets), ("outputs", outputs)):
        torch._check(tensor.dtype == torch.float32 and tensor.dim() == 2,
                     lambda: f"hanami: {name} must be a float32 [samples, n] tensor")
    torch._check(targets.shape[0] == inputs.shape[0], lambda: "hanami: targets and inputs differ in rows")
    torch._check(outputs.shape == targets.shape, lambda: "hanami: outputs must be shaped like targets")
    torch._check(0 <= start, lambda: "hanami: start out of range")
    torch._check(start <= inputs.shape[0], lambda: "hanami: start out of range")
    torch._check(batch_size >= 1, lambda: f"hanami: batch_size must be at least 1, got {batch_size}")
    torch._check(pending.dtype == torch.float32 and pending.dim() == 1,
                 lambda: "hanami: pending must be a float32 [capacity] tensor")
    if pending.shape[0] != 0:
        capacity = state[STATE.index("syn_weight")].shape[0]
        torch._check(pending.shape[0] == capacity, lambda: "hanami: pending must be empty (online learning) or as large as the arena")
    else:
        torch._check(batch_size == 1, lambda: "hanami: batch_size > 1 needs a pending tensor as large as the arena")


@torch.library.register_fake("hanami::predict_")
def _predict_fake(layout, state, config, inputs, outputs):
    torch._check(len(layout) == len(LAYOUT) and len(state) == len(STATE),
                 lambda: f"hanami: expected {len(LAYOUT)} layout and {len(STATE)} state tensors")
    torch._check(config.dtype == torch.float64, lambda: "hanami: config must be float64")
    for name, tensor in (("inputs", inputs), ("outputs", outputs)):
        torch._check(tensor.dtype == torch.float32 and tensor.dim() == 2,
                     lambda: f"hanami: {name} must be a float32 [samples, n] tensor")
    torch._check(outputs.shape[0] == inputs.shape[0], lambda: "hanami: outputs and inputs differ in rows")


@torch.library.register_fake("hanami::compact_")
def _compact_fake(layout, state, config, slack):
    torch._check(len(layout) == len(LAYOUT) and len(state) == len(STATE),
                 lambda: f"hanami: expected {len(LAYOUT)} layout and {len(STATE)} state tensors")
    torch._check(config.dtype == torch.float64, lambda: "hanami: config must be float64")
    torch._check(1 <= slack <= 63, lambda: "hanami: slack must be in 1..63")


# The portable step on the CPU (csrc/cpu/portable_cpu.cpp): test-only ops with the schemas of
# train_ and predict_ plus a schedule, so their metadata rules are those of train_ and predict_.
# Registered here, once, like the other ops' fake kernels (opcheck and torch.compile need them);
# only where the build has the ops.
if hasattr(torch.ops.hanami, "train_portable_"):

    @torch.library.register_fake("hanami::train_portable_")
    def _train_portable_fake(layout, state, config, inputs, targets, outputs, start, pending, batch_size, schedule=0):
        _train_fake(layout, state, config, inputs, targets, outputs, start, pending, batch_size)


if hasattr(torch.ops.hanami, "predict_portable_"):

    @torch.library.register_fake("hanami::predict_portable_")
    def _predict_portable_fake(layout, state, config, inputs, outputs, schedule=0):
        _predict_fake(layout, state, config, inputs, outputs)


def infer(layout, state, config, inputs, weights, n_outputs: int) -> torch.Tensor:
    """Pure batched inference, differentiable in ``inputs`` and ``weights``.

    Every row of ``inputs`` (float32 ``[B, n_inputs]``, raw values) runs from a network at rest;
    nothing grows and no state changes. ``weights`` (float32, as large as the arena) stands in for
    ``state[syn_weight]``, so that it can be a parameter. Returns ``[B, n_outputs]``.
    """
    outputs, _ = torch.ops.hanami.infer(list(layout), list(state), config, inputs, weights, n_outputs)
    return outputs


def _check_lists(layout, state, config):
    torch._check(len(layout) == len(LAYOUT) and len(state) == len(STATE),
                 lambda: f"hanami: expected {len(LAYOUT)} layout and {len(STATE)} state tensors")
    torch._check(config.dtype == torch.float64, lambda: "hanami: config must be float64")


@torch.library.register_fake("hanami::infer")
def _infer_fake(layout, state, config, inputs, weights, n_outputs):
    _check_lists(layout, state, config)
    torch._check(inputs.dtype == torch.float32 and inputs.dim() == 2,
                 lambda: "hanami: inputs must be a float32 [samples, n] tensor")
    torch._check(weights.dtype == torch.float32 and weights.dim() == 1,
                 lambda: "hanami: weights must be a float32 vector")
    n_neurons = state[STATE.index("potential")].shape[0]
    outputs = inputs.new_empty((inputs.shape[0], n_outputs))
    potentials = inputs.new_empty((inputs.shape[0], n_neurons))
    return outputs, potentials


@torch.library.register_fake("hanami::infer_backward")
def _infer_backward_fake(layout, state, config, inputs, weights, potentials, grad_outputs):
    _check_lists(layout, state, config)
    for name, tensor in (("inputs", inputs), ("potentials", potentials), ("grad_outputs", grad_outputs)):
        torch._check(tensor.dtype == torch.float32 and tensor.dim() == 2,
                     lambda: f"hanami: {name} must be a float32 [samples, n] tensor")
    return torch.empty_like(inputs), torch.empty_like(weights)


def _infer_setup_context(ctx, inputs, output):
    layout, state, config, x, weights, _ = inputs
    _, potentials = output
    ctx.layout, ctx.state, ctx.config = list(layout), list(state), config
    # Growth between forward and backward would make the backward walk another network: keep
    # the counters (training step, synapses, sections) to notice it.
    ctx.counters = state[STATE.index("counters")].clone()
    ctx.save_for_backward(x, weights, potentials)
    ctx.mark_non_differentiable(potentials)


def _infer_backward(ctx, grad_outputs, _grad_potentials):
    x, weights, potentials = ctx.saved_tensors
    # autograd wants one entry per tensor of the list arguments too
    no_layout, no_state = [None] * len(ctx.layout), [None] * len(ctx.state)
    if grad_outputs is None:
        return no_layout, no_state, None, None, None, None
    current = ctx.state[STATE.index("counters")]
    # (checked on real tensors only: under tracing the values are not known)
    plain = type(ctx.counters) is torch.Tensor and type(current) is torch.Tensor
    if plain and not torch.equal(ctx.counters, current):
        raise RuntimeError(
            "hanami: the network changed (it grew or learned) between this forward pass and its "
            "backward pass, so the gradient would belong to another network. Call backward() "
            "before the next training forward pass or learning call."
        )
    grad_x, grad_w = torch.ops.hanami.infer_backward(
        ctx.layout, ctx.state, ctx.config, x, weights, potentials, grad_outputs.contiguous()
    )
    return (
        no_layout,
        no_state,
        None,
        grad_x if ctx.needs_input_grad[3] else None,
        grad_w if ctx.needs_input_grad[4] else None,
        None,
    )


# Gradients flow to the inputs and to the weights; layout, state and config are structure.
torch.library.register_autograd("hanami::infer", _infer_backward, setup_context=_infer_setup_context)


_EMPTY: dict = {}


def empty(device) -> torch.Tensor:
    """An empty float32 tensor on ``device``, made once: the "nothing here" argument of the ops
    (no trail for encode_, no pending sums for online train_). The ops never write to it."""
    tensor = _EMPTY.get(device)
    if tensor is None:
        tensor = _EMPTY[device] = torch.zeros(0, dtype=torch.float32, device=device)
    return tensor


def encode_(modes, ranges, values, codes, *, learn: bool, targets: bool, trail=None) -> None:
    """Codes the rows of ``values`` (float32 ``[B, n]``) into ``codes`` with each neuron's range
    (``modes`` uint8 ``[n]``, ``ranges`` float32 ``[n, 3]``); with ``learn`` the rows are learned in
    order and ``ranges`` moves. ``targets``: the values are targets of output neurons. ``trail``
    (float32 ``[B, n, 3]``) receives each value's range before its row, for :func:`decode`."""
    if trail is None:
        trail = empty(values.device)
    torch.ops.hanami.encode_(modes, ranges, values, codes, trail, learn, targets)


def _check_codes(modes, ranges, values, per_row=False):
    torch._check(modes.dtype == torch.uint8 and modes.dim() == 1, lambda: "hanami: modes must be a uint8 [n] tensor")
    torch._check(ranges.dtype == torch.float32 and ranges.dim() in ((2, 3) if per_row else (2,)),
                 lambda: "hanami: ranges must be float32 [n, 3]")
    torch._check(values.dtype == torch.float32 and values.dim() == 2,
                 lambda: "hanami: values must be a float32 [samples, n] tensor")


@torch.library.register_fake("hanami::encode_")
def _encode_learn_fake(modes, ranges, values, codes, trail, learn, targets):
    _check_codes(modes, ranges, values)
    torch._check(codes.shape == values.shape, lambda: "hanami: codes must be shaped like the values")


@torch.library.register_fake("hanami::encode")
def _encode_fake(modes, ranges, values):
    _check_codes(modes, ranges, values)
    return torch.empty_like(values), torch.empty_like(values)


@torch.library.register_fake("hanami::decode")
def _decode_fake(modes, ranges, outputs):
    _check_codes(modes, ranges, outputs, per_row=True)
    return torch.empty_like(outputs), torch.empty_like(outputs)


def _slope_setup_context(ctx, inputs, output):
    ctx.save_for_backward(output[1])
    ctx.mark_non_differentiable(output[1])


def _slope_backward(ctx, grad, _grad_slopes):
    (slopes,) = ctx.saved_tensors
    return None, None, grad * slopes


# Both are elementwise in their third argument; the ranges are statistics, not parameters.
torch.library.register_autograd("hanami::encode", _slope_backward, setup_context=_slope_setup_context)
torch.library.register_autograd("hanami::decode", _slope_backward, setup_context=_slope_setup_context)


def encode(modes, ranges, values) -> torch.Tensor:
    """Input codes of ``values`` with the ranges as they are (inference), differentiable in
    ``values``."""
    return torch.ops.hanami.encode(modes, ranges, values)[0]


def decode(modes, ranges, outputs) -> torch.Tensor:
    """Outputs read back in the targets' units (adaptive output neurons), differentiable.
    ``ranges``: ``[n, 3]`` for every row, or a trail ``[B, n, 3]`` of :func:`encode_`."""
    return torch.ops.hanami.decode(modes, ranges, outputs)[0]
