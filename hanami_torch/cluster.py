"""``HanamiCluster``: a growing Hanami network as a ``torch.nn.Module``.

The module owns the network as a handful of flat tensors (registered buffers, so ``state_dict``
and ``.to()`` see them) and hands them to the C++ ops in :mod:`hanami_torch.ops`. All per-sample
work happens in C++; this file checks arguments, turns user input into ``[B, n]`` float32 tensors,
and enlarges the synapse arena when an op reports that it is full.
"""

from __future__ import annotations

import numbers
import warnings
from typing import Mapping, NamedTuple

import numpy as np
import torch
import torch.utils.weak
from torch.optim.optimizer import register_optimizer_step_pre_hook
from torch import nn

from . import geometry, ops
from .template import Template

#: bytes one synapse slot takes in the arena: weight f32, upper border f32, target u8
SLOT_BYTES = 9
#: ... plus the reduction counter (u8) when the template enables reduction
REDUCTION_BYTES = 1
#: ... plus the Adagrad sum (f32) with optimizer="adagrad"
ADAGRAD_BYTES = 4
#: bytes of the per-section table, for every possible section (8 per neuron)
SECTION_BYTES = 4 + 4 + 1 + 4 + 1 + 1  # block, offset, has_next, start, len, cap
INITIAL_ARENA_SLOTS = 1 << 14
#: step size of Hanami's learning rule (spec §5.4)
HANAMI_LEARNING_RATE = 0.05
#: the largest seed the float64 config vector carries exactly
MAX_SEED = 2**53 - 1

_BRICK_KIND = {"hidden": 0, "input": 1, "output": 2}


class NeuronState(NamedTuple):
    """What a cluster carries from one sample to the next (it matters with spiking settings:
    ``neuron_cooldown`` and ``refractory_time``). One entry per neuron, in template order."""

    potential: torch.Tensor  # float32: raw input, log2 activation or sigmoid output
    active: torch.Tensor  # uint8
    refractory: torch.Tensor  # uint8: the right-shifted refractory counter


_OWN_STATE = object()  # forward() called without a state: the pure, stateless inference


#: ``syn_weight`` parameters (learning_rule="gradient") whose arena a cluster has resized; the
#: optimizer hook below pads their optimizer state to the new size.
_RESIZED_WEIGHTS = torch.utils.weak.WeakIdKeyDictionary()

#: optimizer state entries that do not start at zero: the value a new slot starts from
_STATE_START = {
    "sum": lambda group: group.get("initial_accumulator_value", 0.0),  # Adagrad
    "step_size": lambda group: group.get("lr", 0.0),  # Rprop
}


def _pad_optimizer_state(optimizer, args, kwargs):
    """Global optimizer pre-step hook: when the synapse arena of a gradient-rule cluster grew,
    the per-parameter state (Adam's ``exp_avg``/``exp_avg_sq``, SGD's ``momentum_buffer``, ...)
    still has the old length. Slots keep their index when the arena grows, so the state of the old
    slots stays where it is and the new slots get the state of a fresh parameter (zeros)."""
    if not _RESIZED_WEIGHTS:
        return None
    for group in optimizer.param_groups:
        for param in group["params"]:
            if param not in _RESIZED_WEIGHTS:
                continue
            state = optimizer.state.get(param)
            if not state:
                continue
            for key, value in state.items():
                if isinstance(value, torch.Tensor) and value.dim() == 1 and value.numel() < param.numel():
                    padded = torch.full(param.shape, float(_STATE_START.get(key, lambda g: 0.0)(group)),
                                        dtype=value.dtype, device=value.device)
                    padded[: value.numel()] = value
                    state[key] = padded
    return None


register_optimizer_step_pre_hook(_pad_optimizer_state)


class HanamiCluster(nn.Module):
    """A cluster of hexagon bricks whose synapses grow while it learns (Hanami's core).

    Args:
        template: a :class:`~hanami_torch.Template` or template text (see ``docs/template_format.md``).
        seed: every random choice (target bricks, blocks, synapse targets and weights) is a pure
            function of this seed and the training step, so the same template, seed and data
            grow a bit-identical network.
        compat: reproduce Hanami 0.4.1's behaviour where it changes results: its target-brick
            walk, its square connection-block grid (sections reach only the first blocks of a
            brick), the chain-offset bug B2, last-writer-wins section requests and its reduction.
        learning_rate: step of Hanami's surrogate SGD rule (0.05 in Hanami).
        init_scale: new synapse weights are uniform in ``(-init_scale, init_scale)`` (0.2 in Hanami).
        optimizer: ``"sgd"`` (Hanami's plain step) or ``"adagrad"`` (each synapse's step shrinks
            with its own history of squared surrogate gradients; 4 more bytes per synapse).
        input_fan_in: how many sections (each to its own random target block) an input neuron
            opens when it first fires; Hanami opens 1.
        input_shape: ``(rows, cols)``: the neurons of every input brick are the pixels of an
            image of this size, row by row (each input brick must have ``rows * cols`` neurons).
            Together with ``field_radius`` it gives the hidden blocks receptive fields; ``None``
            (the default, Hanami's behaviour) picks every target block uniformly.
        field_radius: with ``input_shape``: the blocks of a target brick lie on a grid of
            ``ceil(sqrt(blocks))`` columns over the image, each the centre of a square field, and
            a section of an input pixel goes to one of the blocks whose centre is at most this
            many pixels away in both directions (any block when none is). See docs/learning.md.
        learning_rule: ``"hanami"``: the weights learn with Hanami's rule inside ``learn_many``.
            ``"gradient"``: ``syn_weight`` is an ``nn.Parameter`` trained by autograd and any
            ``torch.optim`` optimizer; ``forward`` in training mode grows the network for its
            batch first. Synapses then never move in the arena (no compaction), so optimizer
            state stays attached to its synapse.

    Inputs are raw values (no normalisation); a neuron with a value <= 0 stays inactive. Targets
    are the wanted values of the output neurons (one-hot for classes). Several input or output
    bricks are addressed by brick name (a dict of tensors) or concatenated in template order.
    """

    def __init__(
        self,
        template: Template | str,
        *,
        seed: int = 0,
        compat: bool = False,
        learning_rate: float = HANAMI_LEARNING_RATE,
        init_scale: float = 0.2,
        optimizer: str = "sgd",
        input_fan_in: int = 1,
        input_shape: tuple[int, int] | None = None,
        field_radius: float | None = None,
        learning_rule: str = "hanami",
    ) -> None:
        super().__init__()
        if isinstance(template, str):
            template = Template.parse(template)
        if not isinstance(template, Template):
            raise TypeError(f"template must be a Template or template text, got {type(template).__name__}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED:
            raise ValueError(f"seed must be an integer in 0..2**53-1, got {seed!r}")
        for name, value in (("learning_rate", learning_rate), ("init_scale", init_scale)):
            # the C++ side works in float32: the value must be a positive float32 number
            if (
                isinstance(value, bool)
                or not isinstance(value, numbers.Real)
                or not 0 < float(value) <= float(np.finfo(np.float32).max)
            ):
                raise ValueError(f"{name} must be a positive finite float32 number, got {value!r}")
        if optimizer not in ops.OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {sorted(ops.OPTIMIZERS)}, got {optimizer!r}")
        if isinstance(input_fan_in, bool) or not isinstance(input_fan_in, (int, np.integer)) or not 1 <= input_fan_in <= 8:
            raise ValueError(f"input_fan_in must be an integer in 1..8 (a neuron has 8 section slots), got {input_fan_in!r}")
        input_shape, field_radius = _check_fields(template, input_shape, field_radius, compat)
        if learning_rule not in ops.LEARNING_RULES:
            raise ValueError(f"learning_rule must be one of {sorted(ops.LEARNING_RULES)}, got {learning_rule!r}")
        settings = template.settings
        if learning_rule == "gradient":
            if optimizer != "sgd":
                raise ValueError(
                    f"optimizer={optimizer!r} belongs to Hanami's rule; with learning_rule='gradient' "
                    "the weights are trained by a torch.optim optimizer: leave optimizer at 'sgd' and "
                    "pass cluster.parameters() to the optimizer you want"
                )
            if settings.enable_reduction:
                raise ValueError(
                    "learning_rule='gradient' does not support enable_reduction: reduction deletes "
                    "synapses and moves the rest of their section, which would detach optimizer "
                    "state from its synapse; set enable_reduction: false in the template"
                )
            if float(learning_rate) != HANAMI_LEARNING_RATE:
                warnings.warn(
                    f"learning_rate={learning_rate} has no effect with learning_rule='gradient': it is "
                    "the step of Hanami's rule; set the learning rate of your torch optimizer instead",
                    stacklevel=2,
                )
        input_modes = _encodings(template.input_bricks, "raw" if compat or learning_rule == "gradient" else "adaptive")
        output_modes = _encodings(template.output_bricks, "raw")
        if learning_rule == "gradient" and output_modes.any():
            raise ValueError(
                "learning_rule='gradient' trains on the outputs themselves (a torch loss), so an output "
                "brick cannot have 'encoding: adaptive'; remove that line and scale the targets in the loss"
            )
        if not 1 <= settings.refractory_time <= 255:
            raise ValueError(
                f"refractory_time {settings.refractory_time} is out of range: the refractory "
                "counter is 8 bits wide, use a value in 1..255"
            )
        if not (0 < settings.neuron_cooldown <= float(np.finfo(np.float32).max)):
            raise ValueError("neuron_cooldown must be a positive float32 value")

        self.template = template
        self.seed = int(seed)
        self.compat = bool(compat)
        self.learning_rate = float(learning_rate)
        self.init_scale = float(init_scale)
        self.optimizer = optimizer
        self.input_fan_in = int(input_fan_in)
        self.input_shape = input_shape
        self.field_radius = field_radius
        self.learning_rule = learning_rule

        targets = geometry.target_brick_lists(template, self.seed, self.compat)
        geometry.validate_connectivity(template, targets, compat=self.compat)
        brick_info, block_info = _layout(template)
        n_neurons = int(brick_info[:, 1].sum())
        n_sections = n_neurons * 8
        self.n_inputs = template.n_inputs
        self.n_outputs = template.n_outputs

        layout = {
            "brick_info": torch.from_numpy(brick_info),
            "brick_targets": torch.from_numpy(np.ascontiguousarray(targets, dtype=np.int32)),
            "block_info": torch.from_numpy(block_info),
        }
        for name in ops.LAYOUT:
            self.register_buffer(name, layout[name])

        reduction = settings.enable_reduction
        capacity = INITIAL_ARENA_SLOTS
        state = {
            "brick_grid": torch.zeros(len(template.bricks), 2, dtype=torch.int32),
            "potential": torch.zeros(n_neurons, dtype=torch.float32),
            "active": torch.zeros(n_neurons, dtype=torch.uint8),
            "refractory": torch.ones(n_neurons, dtype=torch.uint8),
            "request": torch.full((n_neurons,), -1.0, dtype=torch.float32),
            "sec_block": torch.full((n_sections,), ops.NO_SECTION, dtype=torch.int32),
            "sec_offset": torch.zeros(n_sections, dtype=torch.float32),
            "sec_has_next": torch.zeros(n_sections, dtype=torch.uint8),
            "sec_conn": torch.full((n_sections if self.compat else 0,), -1, dtype=torch.int32),
            "sec_start": torch.zeros(n_sections, dtype=torch.int32),
            "sec_len": torch.zeros(n_sections, dtype=torch.uint8),
            "sec_cap": torch.zeros(n_sections, dtype=torch.uint8),
            "syn_weight": torch.zeros(capacity, dtype=torch.float32),
            "syn_upper": torch.zeros(capacity, dtype=torch.float32),
            "syn_target": torch.full((capacity,), ops.EMPTY_TARGET, dtype=torch.uint8),
            "syn_counter": torch.zeros(capacity if reduction else 0, dtype=torch.uint8),
            "syn_accum": torch.zeros(capacity if optimizer == "adagrad" else 0, dtype=torch.float32),
            "counters": torch.zeros(ops.N_COUNTERS, dtype=torch.int64),
        }
        for name in ops.STATE:
            if name == "syn_weight" and learning_rule == "gradient":
                self.syn_weight = nn.Parameter(state[name])
            else:
                self.register_buffer(name, state[name])

        # value codes (docs/streams.md): every neuron of an adaptive brick tracks its own range
        codes = {
            "input_encoding": torch.from_numpy(input_modes),
            "input_range": torch.zeros(self.n_inputs, 3, dtype=torch.float32),
            "output_encoding": torch.from_numpy(output_modes),
            "output_range": torch.zeros(self.n_outputs, 3, dtype=torch.float32),
        }
        for name in ops.CODES:
            self.register_buffer(name, codes[name])
        self._input_bricks, self._output_bricks = tuple(template.input_bricks), tuple(template.output_bricks)
        # what the template asks for (copies: the buffers above share memory with these arrays)
        self._encodings = {"input": input_modes.copy(), "output": output_modes.copy()}
        self._adaptive_inputs = bool(input_modes.any())
        self._adaptive_outputs = bool(output_modes.any())

        config = torch.zeros(ops.N_CONFIG, dtype=torch.float64)
        config[ops.CONFIG_SEED] = float(self.seed)
        config[ops.CONFIG_COMPAT] = float(self.compat)
        config[ops.CONFIG_COOLDOWN] = float(settings.neuron_cooldown)
        config[ops.CONFIG_REFRACTORY] = float(settings.refractory_time)
        config[ops.CONFIG_REDUCTION] = float(reduction)
        config[ops.CONFIG_LEARNING_RATE] = self.learning_rate
        config[ops.CONFIG_INIT_SCALE] = self.init_scale
        config[ops.CONFIG_OPTIMIZER] = float(ops.OPTIMIZERS[optimizer])
        config[ops.CONFIG_INPUT_FAN_IN] = float(self.input_fan_in)
        if input_shape is not None:
            config[ops.CONFIG_FIELD_ROWS], config[ops.CONFIG_FIELD_COLS] = map(float, input_shape)
            config[ops.CONFIG_FIELD_RADIUS] = field_radius
        config[ops.CONFIG_LEARNING_RULE] = float(ops.LEARNING_RULES[learning_rule])
        self.register_buffer("config", config, persistent=False)
        self._config_threads = None  # the thread count last written into config (_sync_threads)

    # ---- public API ------------------------------------------------------------------------

    def forward(self, x, state=_OWN_STATE):
        """``[B, n_inputs]`` raw values to ``[B, n_outputs]`` outputs (sigmoid; exactly 0 for an
        output that received nothing).

        ``y = cluster(x)`` is pure, batched inference: every sample starts from rest, nothing
        grows, the cluster's state is neither read beyond its synapses nor changed, and each row's
        result does not depend on the other rows. The result is differentiable with respect to
        ``x`` and, with ``learning_rule="gradient"``, to the weights (``cluster.parameters()``).
        With ``learning_rule="gradient"``, in training mode and with grad enabled, the call first
        grows the network for the batch (new synapses and sections where the signal reaches empty
        slots), so a plain ``loss.backward(); optimizer.step()`` loop trains it. It works under
        ``torch.compile`` (``fullgraph=True`` for inference in eval mode).

        Hanami's stateful request mode, where a sample's neuron state carries into the next, is
        :meth:`predict_many`; with spiking settings the state can be kept explicitly, Norse style:
        ``y, state = cluster(x, state)``, where ``state=None`` starts from rest and the returned
        :class:`NeuronState` goes into the next call (the cluster's own state is neither read nor
        changed, so several streams can share one network).
        """
        if state is not _OWN_STATE:
            return self.predict_with_state(x, state)
        x = self._forward_inputs(x)
        if self.learning_rule == "gradient" and self.training and torch.is_grad_enabled():
            self._grow(x.detach())
        if not torch.compiler.is_compiling():
            self._sync_threads()
        state = self._state()
        state[_SYN_WEIGHT] = state[_SYN_WEIGHT].detach()  # the weights go in as the `weights` argument
        if self._adaptive_inputs:
            x = ops.encode(self.input_encoding, self.input_range, x)
        outputs = ops.infer(self._layout(), state, self.config, x, self.syn_weight, self.n_outputs)
        if self._adaptive_outputs:
            outputs = ops.decode(self.output_encoding, self.output_range, outputs)
        return outputs

    def _forward_inputs(self, x) -> torch.Tensor:
        """forward's inputs as a float32 ``[B, n_inputs]`` tensor, keeping autograd. Eager calls get
        every check of :meth:`predict_many`; under ``torch.compile`` only the checks that need no
        data (type, shape, device), so that the graph does not break."""
        if not torch.compiler.is_compiling():
            return self._samples(x, self.n_inputs, self.template.input_bricks, "inputs")
        if isinstance(x, Mapping):
            x = torch.cat([x[brick.name] for brick in self.template.input_bricks], dim=-1)
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"inputs must be a tensor, got {type(x).__name__}")
        if x.dim() != 2 or x.shape[1] != self.n_inputs:
            raise ValueError(f"inputs must be shaped [samples, {self.n_inputs}], got {list(x.shape)}")
        if x.device != self.syn_weight.device:
            raise ValueError(f"inputs are on {x.device} but this cluster runs on {self.syn_weight.device}")
        return x.to(torch.float32).contiguous()

    @torch.compiler.disable
    @torch.no_grad()
    def _grow(self, x: torch.Tensor) -> None:
        """Gradient rule: Hanami's growth for the rows of ``x`` (the train_ op only grows in this
        mode; the targets it gets are not used)."""
        targets = torch.zeros(x.shape[0], self.n_outputs, dtype=torch.float32, device=x.device)
        self._train(x, targets, torch.empty_like(targets))

    @torch.no_grad()
    def predict_with_state(self, x, state: NeuronState | None) -> tuple[torch.Tensor, NeuronState]:
        """``predict_many`` from an explicit neuron state (None: at rest); returns the outputs and the
        state after the last sample. The cluster's own state is left as it was."""
        if state is None:
            state = self.rest_state()
        if not isinstance(state, tuple) or len(state) != 3:
            raise ValueError("state must be a NeuronState (potential, active, refractory) or None")
        state = NeuronState(*state)
        for name, value, own in zip(state._fields, state, (self.potential, self.active, self.refractory)):
            if not isinstance(value, torch.Tensor) or value.shape != own.shape or value.dtype != own.dtype:
                raise ValueError(
                    f"state.{name} must be a {own.dtype} tensor of shape {list(own.shape)}; pass the state "
                    "a call of this cluster returned, or None to start at rest"
                )
        if not bool(torch.isfinite(state.potential).all()):
            raise ValueError("state.potential contains NaN or infinity")
        kept = (self.potential.clone(), self.active.clone(), self.refractory.clone())
        try:
            self.potential.copy_(state.potential)
            self.active.copy_(state.active)
            self.refractory.copy_(state.refractory)
            outputs = self.predict_many(x)
            new_state = NeuronState(self.potential.clone(), self.active.clone(), self.refractory.clone())
        finally:
            self.potential.copy_(kept[0])
            self.active.copy_(kept[1])
            self.refractory.copy_(kept[2])
        return outputs, new_state

    def rest_state(self) -> NeuronState:
        """The neuron state of a cluster that has seen nothing yet."""
        n, device = self.potential.numel(), self.potential.device
        return NeuronState(
            torch.zeros(n, dtype=torch.float32, device=device),
            torch.zeros(n, dtype=torch.uint8, device=device),
            torch.ones(n, dtype=torch.uint8, device=device),
        )

    @torch.no_grad()
    def predict_many(self, inputs, *, progress: bool = False) -> torch.Tensor:
        """Outputs ``[B, n_outputs]`` for the rows of ``inputs`` (``[B, n_inputs]`` or a dict of
        ``[B, n]`` tensors by input-brick name), one C++ call (or chunks when ``progress``)."""
        x = self._samples(inputs, self.n_inputs, self._input_bricks, "inputs")
        if self._adaptive_inputs:  # encode_ without learning: the codes of encode, without autograd's wrapper
            codes = torch.empty_like(x)
            ops.encode_(self.input_encoding, self.input_range, x, codes, learn=False, targets=False)
            x = codes
        out = torch.empty(x.shape[0], self.n_outputs, dtype=torch.float32, device=x.device)
        for rows in _chunks(x.shape[0], progress, "predict"):
            self._sync_threads()
            ops.predict_(self._layout(), self._state(), self.config, _rows(x, rows), _rows(out, rows))
        return self._decoded(out)

    @torch.no_grad()
    def learn_many(
        self, inputs, targets, *, batch_size: int = 1, progress: bool = False, compact: bool = True
    ) -> torch.Tensor:
        """Online learning, one sample per step in row order (Hanami's training task).

        Args:
            inputs: ``[B, n_inputs]`` raw values, or a dict by input-brick name.
            targets: ``[B, n_outputs]`` wanted outputs (one-hot for classes), or a dict by name.
            batch_size: 1 (online: every sample moves the weights) or more: every sample still
                runs its own cycle and grows the network as online, but the weight steps are
                summed per synapse and applied once at the end of each run of ``batch_size``
                rows and after the last row (see "Batches" in docs/api.md).
            progress: show a progress bar (the samples then run in chunks of C++ calls).
            compact: pack the synapse arena afterwards (when B > 1), freeing its spare room.
                Callers that learn in many chunks pass False and call :meth:`compact` at the
                end: packing after every chunk only makes the next chunk grow the arena again.
        Returns:
            ``[B, n_outputs]``: each sample's output as computed before its own update.
        """
        self._refuse_with_gradient_rule("learn_many")
        batch_size = _batch_size(batch_size)
        x = self._samples(inputs, self.n_inputs, self._input_bricks, "inputs")
        y = self._samples(targets, self.n_outputs, self._output_bricks, "targets")
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"inputs have {x.shape[0]} rows but targets have {y.shape[0]}")
        out = torch.empty_like(y)
        # progress chunks hold whole batches: batches count from the first row of this call
        for rows in _chunks(x.shape[0], progress, "learn", multiple=batch_size):
            self._train(_rows(x, rows), _rows(y, rows), _rows(out, rows), batch_size)
        if compact and x.shape[0] > 1:
            self.compact()
        return out

    def learn_one(self, x, y) -> torch.Tensor:
        """One online learning step; ``x`` is ``[n_inputs]`` (or a dict), ``y`` ``[n_outputs]``.
        Returns the output ``[n_outputs]`` computed before the update."""
        self._refuse_with_gradient_rule("learn_one")
        return self.learn_many(_one(x), _one(y))[0]

    @torch.no_grad()
    def learn_stream(
        self, stream, *, chunk_size: int | None = None, batch_size: int = 1, progress: bool = False, on_chunk=None
    ) -> dict:
        """Online learning from an iterable of samples ``(x, y)`` or chunks ``(X, Y)``, which may
        be endless (a sensor, :class:`hanami_torch.data.SlidingWindow`).

        The items are gathered into chunks of exactly ``chunk_size`` rows (a larger item is split,
        smaller ones are joined), and each chunk is one :meth:`learn_many` call, so the result is
        the same, bit for bit, as one ``learn_many`` over all rows in stream order. At the end of a
        finite stream the remaining rows form a last, shorter chunk. Bound an endless stream with
        ``itertools.islice``; items read but not yet learned are lost when it is interrupted.

        Args:
            stream: yields pairs ``(x, y)``: ``x`` ``[n_inputs]`` and ``y`` ``[n_outputs]`` (one
                sample) or ``[B, n_inputs]`` and ``[B, n_outputs]`` (B samples), or dicts by brick
                name; raw values, as for :meth:`learn_many`.
            chunk_size: rows per ``learn_many`` call, a multiple of ``batch_size``; None: 1024
                rounded up to a multiple of ``batch_size``.
            batch_size: summed weight updates over runs of this many rows, as in
                :meth:`learn_many`; batches never straddle chunks.
            progress: show a progress bar with the last chunk's mean absolute error.
            on_chunk: called after each chunk as ``on_chunk(outputs, targets)`` (both
                ``[rows, n_outputs]``; ``outputs`` computed before each sample's own update).
        Returns:
            ``{"samples": rows learned, "chunks": learn_many calls, "chunk_mae": [per chunk, the
            mean absolute difference between the online outputs and the targets]}``.
        """
        self._refuse_with_gradient_rule("learn_stream")
        batch_size = _batch_size(batch_size)
        if chunk_size is None:
            chunk_size = -(-1024 // batch_size) * batch_size
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
            raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
        chunk_size = int(chunk_size)
        if chunk_size % batch_size:
            raise ValueError(
                f"chunk_size ({chunk_size}) must be a multiple of batch_size ({batch_size}), so that "
                "every batch lies inside one chunk"
            )
        summary = {"samples": 0, "chunks": 0, "chunk_mae": []}
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(stream) if hasattr(stream, "__len__") else None, desc="learn", unit="sample", unit_scale=True)

        def rows(data, width, bricks, what, item):
            # one item as [B, width]; values are checked by learn_many, chunk by chunk
            if isinstance(data, Mapping):
                return self._samples(data, width, bricks, what)
            try:
                data = torch.from_numpy(data) if isinstance(data, np.ndarray) else torch.as_tensor(data)
            except (TypeError, ValueError, RuntimeError) as error:
                raise ValueError(f"stream item {item}: {what} must be a tensor, an array or a dict of them: {error}") from None
            if data.dtype == torch.bool or data.is_complex():
                raise ValueError(f"stream item {item}: {what} must hold real numbers, got {data.dtype}")
            if data.dim() not in (1, 2) or data.shape[-1] != width:
                raise ValueError(
                    f"stream item {item}: {what} must be shaped [{width}] or [samples, {width}], got {list(data.shape)}"
                )
            return data.reshape(-1, width).to(torch.float32)

        def learn(inputs, targets):
            outputs = self.learn_many(inputs, targets, batch_size=batch_size, compact=False)
            summary["samples"] += inputs.shape[0]
            summary["chunks"] += 1
            summary["chunk_mae"].append(float((outputs - targets).abs().mean()))
            if on_chunk is not None:
                on_chunk(outputs, targets)
            if bar is not None:
                bar.update(inputs.shape[0])
                bar.set_postfix(mae=f"{summary['chunk_mae'][-1]:.4f}")

        pending_x, pending_y, pending = [], [], 0
        try:
            for item, pair in enumerate(stream):
                try:
                    x, y = pair
                except (TypeError, ValueError):
                    raise ValueError(f"stream item {item} must be a pair (inputs, targets), got {type(pair).__name__}") from None
                x = rows(x, self.n_inputs, self.template.input_bricks, "inputs", item)
                y = rows(y, self.n_outputs, self.template.output_bricks, "targets", item)
                if x.shape[0] != y.shape[0]:
                    raise ValueError(f"stream item {item}: inputs have {x.shape[0]} rows but targets have {y.shape[0]}")
                pending_x.append(x)
                pending_y.append(y)
                pending += x.shape[0]
                if pending >= chunk_size:
                    inputs, targets = torch.cat(pending_x), torch.cat(pending_y)
                    full = pending - pending % chunk_size
                    for lo in range(0, full, chunk_size):
                        learn(inputs[lo : lo + chunk_size], targets[lo : lo + chunk_size])
                    pending_x, pending_y, pending = [inputs[full:]], [targets[full:]], pending - full
            if pending:
                learn(torch.cat(pending_x), torch.cat(pending_y))
            if summary["samples"] > 1:
                # once at the end, to end exactly like one learn_many over the whole stream
                self.compact()
        finally:
            if bar is not None:
                bar.close()
        return summary

    def predict_one(self, x) -> torch.Tensor:
        """Outputs ``[n_outputs]`` for one sample ``[n_inputs]`` (or a dict by brick name)."""
        return self.predict_many(_one(x))[0]

    def split_outputs(self, outputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Splits ``[..., n_outputs]`` into a dict by output-brick name (template order)."""
        if outputs.shape[-1] != self.n_outputs:
            raise ValueError(f"outputs must end in a dimension of {self.n_outputs}, got {list(outputs.shape)}")
        result, start = {}, 0
        for brick in self.template.output_bricks:
            result[brick.name] = outputs[..., start : start + brick.number_of_neurons]
            start += brick.number_of_neurons
        return result

    def reset_state(self) -> None:
        """Forgets the neuron state carried between samples (only matters with spiking settings)."""
        self.potential.zero_()
        self.active.zero_()
        self.refractory.fill_(1)

    @torch.no_grad()
    def compact(self, slack: int = 1) -> None:
        """Packs the synapse arena densely, ``slack`` (1..63) spare slots per section, and frees
        the rest; learning then grows sections in place until their spare slots are used up."""
        if self.learning_rule == "gradient":
            raise RuntimeError(
                "compact() would move synapses to other arena slots, and the optimizer state of a "
                "learning_rule='gradient' cluster is kept per slot: such a cluster is never compacted"
            )
        if isinstance(slack, bool) or not isinstance(slack, int) or not 1 <= slack <= 63:
            raise ValueError(f"slack must be an integer in 1..63, got {slack!r}")
        live = self.sec_block >= 0
        needed = int(torch.clamp(self.sec_len[live].to(torch.int64) + slack, max=63).sum())
        if needed > self.syn_weight.numel():
            self._resize_arena(needed)
        ops.compact_(self._layout(), self._state(), self.config, slack)
        if int(self.counters[ops.COUNTER_PROCESSED]) == 1:
            self._resize_arena(int(self.counters[ops.COUNTER_ARENA_TOP]))

    @torch.no_grad()
    def stats(self) -> dict:
        """Size of the network: synapses, sections and bytes, in total and per target brick."""
        slot_bytes = self._slot_bytes()
        sec_block = self.sec_block.numpy()
        live = np.nonzero(sec_block >= 0)[0]
        per_section = _synapses_per_section(
            self.sec_start.numpy()[live], self.sec_len.numpy()[live], self.syn_target.numpy()
        )
        target_brick = self.block_info.numpy()[sec_block[live], 0] if live.size else live
        caps = self.sec_cap.numpy()[live].astype(np.int64)
        synapses = int(per_section.sum())
        # the slots the live sections hold (after learn_many or compact() this is the whole arena)
        synapse_bytes = int(caps.sum()) * slot_bytes
        bricks = {}
        for index, brick in enumerate(self.template.bricks):
            mask = target_brick == index
            bricks[_brick_label(brick, index)] = {
                "synapses": int(per_section[mask].sum()),
                "sections": int(mask.sum()),
                "synapse_bytes": int(caps[mask].sum()) * slot_bytes,
            }
        return {
            "synapses": synapses,
            "sections": int(live.size),
            "synapse_bytes": synapse_bytes,
            "bytes_per_synapse": synapse_bytes / synapses if synapses else float("nan"),
            "section_table_bytes": int(sec_block.size) * SECTION_BYTES + int(self.sec_conn.numel()) * 4,
            "arena_bytes": int(self.syn_weight.numel()) * slot_bytes,
            "arena_slots_used": int(self.counters[ops.COUNTER_ARENA_TOP] - self.counters[ops.COUNTER_GARBAGE]),
            "arena_capacity": int(self.syn_weight.numel()),
            "steps": int(self.counters[ops.COUNTER_STEP]),
            "bricks": bricks,
        }

    @torch.no_grad()
    def sections_of(self, neuron: int) -> list[dict]:
        """The sections a neuron owns (for inspection and tests), in slot order.

        Each is a dict: ``slot`` (0..7), ``target_brick``, ``target_block`` (inside that brick),
        ``offset``, ``has_next``, and per synapse slot ``weights``, ``borders`` (width of the slot's
        interval of source values) and ``targets`` (neuron index inside the target block, or None
        for an empty slot that only carries a border).
        """
        if isinstance(neuron, bool) or not isinstance(neuron, (int, np.integer)) or not 0 <= neuron < self.potential.numel():
            raise ValueError(f"neuron must be in 0..{self.potential.numel() - 1}, got {neuron}")
        result = []
        for p in range(8):
            s = neuron * 8 + p
            block = int(self.sec_block[s])
            if block < 0:
                continue
            start, length = int(self.sec_start[s]), int(self.sec_len[s])
            upper = self.syn_upper[start : start + length].tolist()
            lower = [0.0] + upper[:-1]
            brick, first_neuron, _count = self.block_info[block].tolist()
            result.append(
                {
                    "slot": p,
                    "target_brick": brick,
                    "target_block": block - int(self.brick_info[brick, 4]),
                    "offset": float(self.sec_offset[s]),
                    "has_next": bool(self.sec_has_next[s]),
                    "weights": self.syn_weight[start : start + length].tolist(),
                    "borders": [u - lo for u, lo in zip(upper, lower)],
                    "targets": [None if t == ops.EMPTY_TARGET else t for t in self.syn_target[start : start + length].tolist()],
                }
            )
        return result

    @torch.no_grad()
    def validate_state(self) -> None:
        """Checks that the network's tensors describe a consistent network, so that the C++ ops can
        trust every index in them; raises ValueError naming the first problem. Run on every
        loaded checkpoint and state dict: a damaged file must never reach the kernels. A cluster
        on the GPU is checked on a host copy of its tensors."""
        n_neurons, n_blocks = self.potential.numel(), self.block_info.shape[0]
        capacity = self.syn_weight.numel()
        device = self._device
        host = {name: tensor.detach().cpu() for name, tensor in [*self._buffers.items(), *self._parameters.items()]
                if tensor is not None}

        def array(name: str) -> np.ndarray:
            return host[name].numpy()

        sec_block = array("sec_block").astype(np.int64)
        problems = []

        def check(ok, what):
            if not ok:
                problems.append(what)

        for name in ops.STATE:
            tensor = getattr(self, name)
            check(tensor.device == device and tensor.is_contiguous(),
                  f"{name} must be a contiguous tensor on the cluster's device ({device})")
        check(self.syn_upper.numel() == capacity and self.syn_target.numel() == capacity,
              "syn_weight, syn_upper and syn_target differ in length")
        check(self.syn_counter.numel() == (capacity if self.template.settings.enable_reduction else 0),
              "syn_counter must be as long as the arena with reduction on, and empty without")
        check(self.syn_accum.numel() == (capacity if self.optimizer == "adagrad" else 0),
              "syn_accum must be as long as the arena with Adagrad, and empty without")
        check(bool(((sec_block >= ops.PENDING_SECTION) & (sec_block < n_blocks)).all()),
              "sec_block holds a block index out of range")
        if problems:
            raise ValueError("inconsistent network state: " + "; ".join(problems))
        live = np.nonzero(sec_block >= 0)[0]
        if live.size:
            start = array("sec_start")[live].astype(np.int64)
            length = array("sec_len")[live].astype(np.int64)
            cap = array("sec_cap")[live].astype(np.int64)
            check(bool((length <= cap).all() and (cap <= 63).all()), "a section uses more slots than it reserves")
            check(bool((start >= 0).all() and (start + cap <= capacity).all()),
                  "a section's slots lie outside the synapse arena")
            if problems:  # the checks below index the arena with these values
                raise ValueError("inconsistent network state: " + "; ".join(problems))
            order = np.argsort(start, kind="stable")
            ends = (start + cap)[order]
            check(bool((ends[:-1] <= start[order][1:]).all()), "two sections share synapse slots")
            owner = np.repeat(np.arange(live.size), length)
            slots = start[owner] + (np.arange(owner.size) - np.repeat(np.cumsum(length) - length, length))
            targets = array("syn_target")[slots] if slots.size else np.zeros(0, np.uint8)
            check(bool(((targets < 64) | (targets == ops.EMPTY_TARGET)).all()),
                  "a synapse targets a neuron outside its 64-neuron block")
            if self.learning_rule == "gradient":
                check(bool(((cap == 0) | (cap == 63)).all()),
                      "a learning_rule='gradient' cluster reserves all 63 slots of each section, and this "
                      "state does not (it comes from a cluster with Hanami's rule: call compact(slack=63) "
                      "on that cluster before taking its state)")
            check(bool(np.isfinite(array("syn_weight")[slots]).all() and np.isfinite(array("syn_upper")[slots]).all()),
                  "a synapse weight or border is not finite")
            if self.compat:
                conn = array("sec_conn")[live].astype(np.int64)
                grid = array("brick_grid").astype(np.int64)
                brick = array("block_info")[sec_block[live], 0]
                cells = grid[brick, 0] * grid[brick, 1]
                check(bool(((conn >= 0) & (conn // 64 < cells)).all()), "a section's connection slot lies outside its brick's grid")
        counters = array("counters")
        check(bool((counters[: ops.COUNTER_SECTIONS + 1] >= 0).all()), "negative counters")
        check(0 <= counters[ops.COUNTER_ARENA_TOP] <= capacity, "the arena top lies outside the arena")
        if live.size:
            check(bool((start + cap <= counters[ops.COUNTER_ARENA_TOP]).all()), "a section lies above the arena top")
        check(int(counters[ops.COUNTER_SECTIONS]) == live.size, "the section counter disagrees with the sections")
        check(bool(np.isfinite(array("potential")).all() and np.isfinite(array("sec_offset")).all()),
              "a potential or section offset is not finite")
        check(self.brick_grid.shape == (len(self.template.bricks), 2) and bool((self.brick_grid >= 0).all()),
              "brick_grid must be [bricks, 2] and non-negative")
        for name, size in (("active", n_neurons), ("refractory", n_neurons), ("request", n_neurons)):
            check(getattr(self, name).numel() == size, f"{name} must have one entry per neuron")
        for side, n in (("input", self.n_inputs), ("output", self.n_outputs)):
            modes = getattr(self, f"{side}_encoding")
            check(modes.dtype == torch.uint8 and np.array_equal(array(f"{side}_encoding"), self._encodings[side]),
                  f"{side}_encoding differs from the encodings the template gives its {side} bricks")
            ranges = getattr(self, f"{side}_range")
            check(ranges.shape == (n, 3) and ranges.dtype == torch.float32, f"{side}_range must be float32 [{n}, 3]")
            if ranges.shape == (n, 3):
                values = array(f"{side}_range")
                count = values[:, 0]
                check(bool(np.isfinite(values).all()), f"{side}_range holds a value that is not finite")
                check(bool(((count >= 0) & (count <= ops.RANGE_COUNT_CAP) & (count == np.floor(count))).all()),
                      f"{side}_range holds a count outside 0..{ops.RANGE_COUNT_CAP}")
        if problems:
            raise ValueError("inconsistent network state: " + "; ".join(problems))

    def _apply(self, fn, recurse=True):
        # .to(), .double(), .cuda() ... all come through here. The network's tensors have fixed
        # dtypes that the kernels rely on, so dtype casts leave them alone (inputs of any real dtype
        # are accepted, outputs are float32); a device move moves them all with their dtypes.
        probe = fn(torch.zeros(1, dtype=torch.float32))
        device = probe.device
        if device.type != "cpu":
            if device.type != "cuda":
                raise ValueError(
                    f"HanamiCluster runs on the CPU only, or on a CUDA GPU with a CUDA build; it cannot "
                    f"move to {device}. Keep the cluster on the CPU and move its inputs there (x.cpu())"
                )
            if not _has_cuda_kernels():
                raise ValueError(
                    f"HanamiCluster cannot move to {device}: this build of hanami_torch has no CUDA "
                    "kernels (build it with HANAMI_CUDA=1, see docs/gpu.md). Keep the cluster on the "
                    "CPU and move its inputs there (x.cpu())"
                )
        self._config_threads = None  # config may move: write the thread count again
        if probe.dtype != torch.float32:  # a dtype cast, perhaps with a move: only the move
            if device == self.syn_weight.device:
                return self
            return super()._apply(lambda t: t.to(device), recurse)
        return super()._apply(fn, recurse)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A refused state leaves the network as it was: keep a copy to put back.
        kept = {name: tensor.detach().clone() for name, tensor in [*self._parameters.items(), *self._buffers.items()]
                if tensor is not None}
        try:
            # The synapse arena grows while the network learns: make room for the stored one first,
            # so that load_state_dict works between clusters that learned different amounts.
            key = prefix + "syn_weight"
            if key in state_dict and state_dict[key].dim() == 1:
                capacity = state_dict[key].numel()
                device = self._device
                for name in ("syn_weight", "syn_upper", "syn_target"):
                    self._replace(name, torch.empty(capacity, dtype=getattr(self, name).dtype, device=device))
                if self.template.settings.enable_reduction:
                    self._replace("syn_counter", torch.empty(capacity, dtype=torch.uint8, device=device))
                if self.optimizer == "adagrad":
                    self._replace("syn_accum", torch.empty(capacity, dtype=torch.float32, device=device))
            super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
            self.validate_state()
        except BaseException:
            with torch.no_grad():
                for name, tensor in kept.items():
                    if getattr(self, name).shape == tensor.shape:
                        getattr(self, name).copy_(tensor)
                    else:
                        self._replace(name, tensor)
            raise

    def extra_repr(self) -> str:
        sizes = "→".join(str(b.number_of_neurons) for b in self.template.bricks)
        return (
            f"bricks={sizes}, seed={self.seed}, compat={self.compat}, "
            f"learning_rate={self.learning_rate}, init_scale={self.init_scale}, "
            f"optimizer={self.optimizer!r}, input_fan_in={self.input_fan_in}"
            + (f", input_shape={self.input_shape}, field_radius={self.field_radius}" if self.input_shape else "")
            + f", learning_rule={self.learning_rule!r}"
        )

    # ---- internals -------------------------------------------------------------------------

    def _slot_bytes(self) -> int:
        """Bytes of one arena slot with this cluster's options."""
        return (
            SLOT_BYTES
            + (REDUCTION_BYTES if self.template.settings.enable_reduction else 0)
            + (ADAGRAD_BYTES if self.optimizer == "adagrad" else 0)
        )

    def _refuse_with_gradient_rule(self, method: str) -> None:
        if self.learning_rule == "gradient":
            raise RuntimeError(
                f"{method} learns with Hanami's rule, but this cluster has learning_rule='gradient': "
                "train it with a torch optimizer instead (optimizer = torch.optim.Adam(cluster.parameters()); "
                "loss = loss_fn(cluster(x), y); loss.backward(); optimizer.step()); forward in "
                "training mode grows the network"
            )

    def _replace(self, name: str, tensor: torch.Tensor) -> None:
        """Puts ``tensor`` in place of the network tensor ``name``. The weight parameter of the
        gradient rule stays the same object (optimizers hold it): its data is swapped, its gradient
        keeps the old slots, and the optimizer hook pads its optimizer state at the next step."""
        current = getattr(self, name)
        if not isinstance(current, nn.Parameter):
            setattr(self, name, tensor)
            return
        # A graph of an earlier step (a loss still referenced) keeps the parameter's gradient
        # accumulator alive, and that remembers the old size. torch renews the accumulator only
        # when the dtype changes, so pass through another dtype first.
        current.data = torch.empty(0, dtype=torch.float64, device=tensor.device)
        current.data = tensor
        grad = current.grad
        if grad is not None and grad.shape != tensor.shape:
            kept = min(grad.numel(), tensor.numel())
            new_grad = torch.zeros_like(tensor)
            new_grad[:kept] = grad[:kept]
            current.grad = new_grad
        _RESIZED_WEIGHTS[current] = True

    # The per-sample calls (learn_one, predict_one) go through these on every call: they read the
    # module's dicts directly, because nn.Module.__getattr__ costs a microsecond per tensor.
    def _tensors(self, names) -> list[torch.Tensor]:
        buffers = self._buffers
        return [buffers[name] if name in buffers else self._parameters[name] for name in names]

    def _layout(self) -> list[torch.Tensor]:
        return self._tensors(ops.LAYOUT)

    def _state(self) -> list[torch.Tensor]:
        return self._tensors(ops.STATE)

    @property
    def _device(self) -> torch.device:
        return self._tensors(("syn_weight",))[0].device

    def _sync_threads(self) -> None:
        # Writing one element of a tensor costs microseconds (a copy to the GPU on CUDA): write the
        # thread count only when it changed (_apply forgets what was written: config moved).
        threads = torch.get_num_threads()
        if threads != self._config_threads:
            self.config[ops.CONFIG_THREADS] = float(threads)
            self._config_threads = threads

    def _coded(self, values: torch.Tensor, targets: bool, trail: torch.Tensor | None = None) -> torch.Tensor:
        """The rows as the network learns them: adaptive neurons learn their ranges row by row
        and give codes; without adaptive neurons the rows themselves."""
        modes, ranges = (self.output_encoding, self.output_range) if targets else (self.input_encoding, self.input_range)
        if not (self._adaptive_outputs if targets else self._adaptive_inputs):
            return values
        codes = torch.empty_like(values)
        ops.encode_(modes, ranges, values, codes, learn=True, targets=targets, trail=trail)
        return codes

    def _decoded(self, outputs: torch.Tensor) -> torch.Tensor:
        if not self._adaptive_outputs:
            return outputs
        return ops.decode(self.output_encoding, self.output_range, outputs)

    def _train(self, x: torch.Tensor, y: torch.Tensor, out: torch.Tensor, batch_size: int = 1) -> None:
        # The ranges learn every row once, before the network does: they depend on the values alone.
        # A row's outputs are read back with the target ranges as they were before that row (its own
        # target is not known when they are computed), so learn_many equals learn_one row by row.
        trail = y.new_empty(*y.shape, 3) if self._adaptive_outputs else None
        x, y = self._coded(x, targets=False), self._coded(y, targets=True, trail=trail)
        self._train_coded(x, y, out, batch_size)
        if trail is not None:
            out.copy_(ops.decode(self.output_encoding, trail, out))

    def _train_coded(self, x: torch.Tensor, y: torch.Tensor, out: torch.Tensor, batch_size: int) -> None:
        # batches: each synapse's summed delta, carried through arena growth (see ops.train_)
        weights = self._tensors(("syn_weight",))[0]
        if batch_size > 1:
            pending = torch.zeros(weights.numel(), dtype=torch.float32, device=weights.device)
        else:  # online: no sums to carry
            pending = ops.empty(weights.device)
        start, stalled = 0, 0
        while start < x.shape[0]:
            self._sync_threads()
            ops.train_(self._layout(), self._state(), self.config, x, y, out, start, pending, batch_size)
            # (counters is replaced when the arena grows, so read it from the dict each time)
            counters = self._tensors(("counters",))[0]
            done = int(counters.numpy()[ops.COUNTER_PROCESSED] if counters.device.type == "cpu"
                       else counters[ops.COUNTER_PROCESSED])
            if done < x.shape[0]:  # the arena is full: grow it and go on from that sample
                stalled = stalled + 1 if done == start else 0
                if stalled > 2:
                    raise RuntimeError("hanami: the synapse arena did not grow as needed (bug)")
                pending = self._resize_arena(max(2 * self.syn_weight.numel(), INITIAL_ARENA_SLOTS), pending)
            start = done

    def _resize_arena(self, capacity: int, pending: torch.Tensor | None = None) -> torch.Tensor | None:
        """Moves the arena into tensors of ``capacity`` slots (keeping everything below the top).
        A non-empty ``pending`` (a batch's summed deltas, one per slot) moves with it and is
        returned; an empty one or None is returned as it is."""
        top = int(self.counters[ops.COUNTER_ARENA_TOP])
        capacity = max(capacity, top)
        if capacity == self.syn_weight.numel():
            return pending
        if capacity >= 2**31:
            raise RuntimeError("hanami: the synapse arena would exceed 2**31 slots")
        keep = min(top, capacity)

        def moved(old: torch.Tensor, fill) -> torch.Tensor:
            new = torch.full((capacity,), fill, dtype=old.dtype, device=old.device)
            new[:keep] = old[:keep]
            return new

        self._replace("syn_weight", moved(self.syn_weight.detach(), 0.0))
        self.syn_upper = moved(self.syn_upper, 0.0)
        self.syn_target = moved(self.syn_target, ops.EMPTY_TARGET)
        if self.template.settings.enable_reduction:  # counters exist only with reduction
            self.syn_counter = moved(self.syn_counter, 0)
        if self.optimizer == "adagrad":
            self.syn_accum = moved(self.syn_accum, 0.0)
        if pending is not None and pending.numel():
            pending = moved(pending, 0.0)
        return pending

    def _samples(self, data, width: int, bricks, what: str) -> torch.Tensor:
        """Turns user data into a contiguous float32 tensor ``[B, width]`` on the cluster's device, or
        raises ValueError."""
        if type(data) is not torch.Tensor and isinstance(data, Mapping):  # (the ABC check is slow)
            data = _join_bricks(data, bricks, what, self._device)
        if isinstance(data, np.ndarray):
            if data.dtype.kind not in "biuf":
                raise ValueError(f"{what} must hold real numbers, got a numpy array of {data.dtype}")
            data = torch.from_numpy(data)
        elif not isinstance(data, torch.Tensor):
            try:
                data = torch.as_tensor(data)
            except (TypeError, ValueError, RuntimeError) as error:
                raise ValueError(f"{what} must be a tensor, an array or a dict of them: {error}") from None
        device = self._device
        if data.device != device:
            if device.type == "cpu":
                raise ValueError(
                    f"{what} are on {data.device} but this cluster runs on the CPU; pass CPU tensors "
                    "(x.cpu())"
                )
            raise ValueError(
                f"{what} are on {data.device} but this cluster runs on {device}; pass tensors on "
                f"that device (x.to({str(device)!r}))"
            )
        if data.dtype == torch.bool or data.is_complex() or not (
            data.is_floating_point() or data.dtype in _INTEGER_DTYPES
        ):
            raise ValueError(f"{what} must hold real numbers (float or integer dtype), got {data.dtype}")
        if data.dim() != 2 or data.shape[1] != width:
            raise ValueError(f"{what} must be shaped [samples, {width}], got {list(data.shape)}")
        if data.shape[0] == 0:
            raise ValueError(f"{what} are empty: pass at least one sample")
        data = data.to(torch.float32).contiguous()
        if data.device.type == "cpu" and data.numel() <= 4096:
            # a sample or a few: NumPy checks them in a fraction of a torch call's dispatch
            finite = bool(np.isfinite(data.detach().numpy()).all())
        else:
            # A finite sum proves every value finite (NaN or inf would carry into it) and costs a
            # twentieth of an element-wise check; only a non-finite sum needs the exact test.
            finite = bool(torch.isfinite(data.sum())) or bool(torch.isfinite(data).all())
        if not finite:
            bad = int((~torch.isfinite(data)).any(dim=1).nonzero()[0])
            raise ValueError(
                f"{what} row {bad} contains NaN or infinity; Hanami takes any finite value "
                "(no normalisation needed), so replace or drop that sample"
            )
        return data


def _encodings(bricks, default: str) -> np.ndarray:
    """The encoding of every neuron of ``bricks`` (ops.ENCODINGS codes, uint8), in template order."""
    codes = [ops.ENCODINGS[brick.encoding or default] for brick in bricks for _ in range(brick.number_of_neurons)]
    return np.array(codes, dtype=np.uint8)


def _has_cuda_kernels() -> bool:
    """Whether this build of the extension registered CUDA kernels (built with HANAMI_CUDA=1)."""
    return torch._C._dispatch_has_kernel_for_dispatch_key("hanami::infer", "CUDA")


_SYN_WEIGHT = ops.STATE.index("syn_weight")
_INTEGER_DTYPES = {torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64}


def _check_fields(template: Template, input_shape, field_radius, compat: bool):
    """Checks the receptive-field options; returns ``(rows, cols)`` or None, and the radius as a
    float32 value (what the C++ side uses) or None."""
    if input_shape is None and field_radius is None:
        return None, None
    if input_shape is None or field_radius is None:
        raise ValueError("input_shape and field_radius go together: give both (receptive fields) or neither")
    if compat:
        raise ValueError("receptive fields (input_shape, field_radius) are not part of Hanami; they need compat=False")
    if (
        not isinstance(input_shape, (tuple, list))
        or len(input_shape) != 2
        or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 1 <= v <= 2**24 for v in input_shape)
    ):
        raise ValueError(f"input_shape must be (rows, cols), two positive integers, got {input_shape!r}")
    rows, cols = (int(v) for v in input_shape)
    for brick in template.input_bricks:
        if brick.number_of_neurons != rows * cols:
            raise ValueError(
                f"input_shape {rows}x{cols} needs {rows * cols} neurons in every input brick, but input brick "
                f"'{brick.name}' has {brick.number_of_neurons}"
            )
    if (
        isinstance(field_radius, bool)
        or not isinstance(field_radius, numbers.Real)
        or not 0 < float(field_radius) <= 2**24
    ):
        raise ValueError(f"field_radius must be a positive number of pixels (at most 2**24), got {field_radius!r}")
    return (rows, cols), float(np.float32(field_radius))


def _layout(template: Template) -> tuple[np.ndarray, np.ndarray]:
    """brick_info [bricks, 5] (neuron_start, count, kind, io_offset, first_block) and
    block_info [blocks, 3] (brick, first_neuron, count) for the template."""
    brick_info = np.zeros((len(template.bricks), 5), dtype=np.int32)
    blocks = []
    neuron, io_in, io_out = 0, 0, 0
    for index, brick in enumerate(template.bricks):
        count = brick.number_of_neurons
        kind = _BRICK_KIND[brick.kind]
        io = io_in if kind == 1 else io_out if kind == 2 else 0
        brick_info[index] = (neuron, count, kind, io, len(blocks))
        for first in range(0, count, 64):
            blocks.append((index, neuron + first, min(64, count - first)))
        neuron += count
        io_in += count if kind == 1 else 0
        io_out += count if kind == 2 else 0
    return brick_info, np.asarray(blocks, dtype=np.int32).reshape(-1, 3)


def _join_bricks(data: Mapping, bricks, what: str, device: torch.device):
    names = [b.name for b in bricks]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"unknown brick name(s) {unknown} in {what}; this cluster's bricks are {names}")
    missing = [n for n in names if n not in data]
    if missing:
        raise ValueError(f"{what} lack brick(s) {missing}; give a tensor for each of {names}")
    parts = []
    for brick in bricks:
        part = data[brick.name]
        if isinstance(part, np.ndarray) and part.dtype.kind not in "biuf":
            raise ValueError(f"{what}[{brick.name!r}] must hold real numbers, got {part.dtype}")
        try:
            part = torch.as_tensor(part)
        except (TypeError, ValueError, RuntimeError) as error:
            raise ValueError(f"{what}[{brick.name!r}] must be a tensor or an array: {error}") from None
        if part.device != device:
            where, hint = ("the CPU", "pass CPU tensors (x.cpu())") if device.type == "cpu" else (
                str(device), f"pass tensors on that device (x.to({str(device)!r}))")
            raise ValueError(f"{what}[{brick.name!r}] is on {part.device} but this cluster runs on {where}; {hint}")
        if part.dtype == torch.bool or part.is_complex():
            raise ValueError(f"{what}[{brick.name!r}] must hold real numbers, got {part.dtype}")
        if part.dim() == 1:
            part = part.unsqueeze(0)
        if part.dim() != 2 or part.shape[1] != brick.number_of_neurons:
            raise ValueError(
                f"{what}[{brick.name!r}] must be shaped [samples, {brick.number_of_neurons}], "
                f"got {list(part.shape)}"
            )
        parts.append(part)
    rows = {p.shape[0] for p in parts}
    if len(rows) != 1:
        raise ValueError(f"the bricks of {what} differ in their number of samples: {sorted(rows)}")
    return torch.cat([p.to(torch.float64) if p.is_floating_point() else p for p in parts], dim=1)


def _one(sample):
    """A single sample (1-D tensor or dict of 1-D tensors) as a batch of one."""
    if isinstance(sample, Mapping):
        return {name: torch.as_tensor(value).reshape(1, -1) for name, value in sample.items()}
    sample = torch.as_tensor(sample) if not isinstance(sample, np.ndarray) else torch.from_numpy(sample)
    if sample.dim() != 1:
        raise ValueError(f"a single sample must be 1-D, got shape {list(sample.shape)}; use *_many for batches")
    return sample.unsqueeze(0)


def _batch_size(batch_size) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


def _chunks(n: int, progress: bool, what: str, multiple: int = 1):
    """Row ranges to hand to one C++ call each: everything at once, or chunks for a progress bar
    (of about 2000 rows, a multiple of ``multiple``)."""
    if not progress:
        yield 0, n
        return
    from tqdm.auto import tqdm

    chunk = -(-2000 // multiple) * multiple
    with tqdm(total=n, desc=what, unit="sample", unit_scale=True) as bar:
        for lo in range(0, n, chunk):
            hi = min(n, lo + chunk)
            yield lo, hi
            bar.update(hi - lo)


def _rows(tensor: torch.Tensor, rows: tuple[int, int]) -> torch.Tensor:
    """``tensor[lo:hi]``, or the tensor itself when that is all of it (a view costs microseconds,
    which per-sample calls feel)."""
    lo, hi = rows
    return tensor if lo == 0 and hi == tensor.shape[0] else tensor[lo:hi]


def _synapses_per_section(starts: np.ndarray, lens: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Number of non-empty slots in each section's arena range."""
    if starts.size == 0:
        return np.zeros(0, dtype=np.int64)
    lens = lens.astype(np.int64)
    owner = np.repeat(np.arange(starts.size), lens)
    offsets = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)
    slots = starts.astype(np.int64)[owner] + offsets
    filled = targets[slots] != ops.EMPTY_TARGET
    return np.bincount(owner, weights=filled, minlength=starts.size).astype(np.int64)


def _brick_label(brick, index: int) -> str:
    return brick.name if brick.name else f"brick{index}@{','.join(map(str, brick.position))}"
