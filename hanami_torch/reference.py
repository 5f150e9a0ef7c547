"""The Hanami cycle in plain Python: slow, one sample at a time, written to be obviously right.

This is the test oracle for the C++ engine (``csrc/cpu/engine.cpp``). It keeps the network as
Python objects (a list of synapses per section instead of an arena), does every float operation
with numpy ``float32`` scalars in the same order as the C++ code, and draws the same counter-based
random numbers, so after any number of samples its structure, weights and outputs must equal the
engine's bit for bit.

Usage (tests)::

    ref = ReferenceCluster.from_cluster(cluster)   # a snapshot of a HanamiCluster
    out = ref.train_step(x, t)                      # one online step, x [n_inputs], t [n_outputs]
    assert cluster_structure(cluster) == ref.structure()   # after cluster.learn_one(x, t)

    outs = ref.train_many(xs, ts, batch_size=8)     # like cluster.learn_many(xs, ts, batch_size=8)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import rng

f32 = np.float32
SYNAPSES_PER_SECTION = 63
SECTIONS_PER_NEURON = 8
LAST_SPLIT_SLOT = 61
REACH_CUT = f32(0.01)
LOG2_SLOPE = f32(1.4427)
COUNTER_START, COUNTER_PERSISTENT, REDUCTION_INTERVAL = 5, 10, 100
HIDDEN, INPUT, OUTPUT = 0, 1, 2


@dataclass
class Synapse:
    weight: np.float32
    upper: np.float32  # cumulative upper end of the slot's interval above the section offset
    target: int | None  # neuron inside the target block; None = empty slot
    counter: int = 0
    accum: np.float32 = np.float32(0)  # Adagrad's sum of squared steps
    batch_sum: np.float32 = np.float32(0)  # batches: the deltas of the current batch, summed


@dataclass
class Section:
    block: int
    offset: np.float32
    has_next: bool = False
    conn: int = -1  # compat mode: connection block * 64 + slot
    slots: list[Synapse] = field(default_factory=list)


# ---- the rules (mirrors csrc/rules.h) ----------------------------------------------------------


def contribution(weight, r, border):
    return weight * (r / border) if r < border else weight


def log2_of(a):
    """log2 in plain double arithmetic, the same operations as csrc/rules.h."""
    m, exponent = math.frexp(a)
    if m < 0.7071067811865476:
        m = m * 2.0
        exponent = exponent - 1
    s = (m - 1.0) / (m + 1.0)
    s2 = s * s
    series = 1.0 / 17.0
    for odd in (15.0, 13.0, 11.0, 9.0, 7.0, 5.0, 3.0):
        series = 1.0 / odd + s2 * series
    series = 1.0 + s2 * series
    return float(exponent) + (2.0 * s * series) * 1.4426950408889634


_INVERSE_FACTORIALS = [1.0 / math.factorial(n) for n in range(12, 0, -1)]


def exp2_negative(y):
    """2**-y for y >= 0 in plain double arithmetic, as in csrc/rules.h."""
    whole = math.floor(y)
    x = -(y - whole) * 0.6931471805599453
    series = 1.0 / 6227020800.0
    for inverse in _INVERSE_FACTORIALS:
        series = inverse + x * series
    series = 1.0 + x * series
    return math.ldexp(series, -int(whole))


def hidden_activation(v):
    return f32(log2_of(float(v) + 1.0))


def output_activation(z):
    return f32(1.0 / (1.0 + math.exp(-float(z)))) if z != f32(0) else f32(0)


def output_delta(o, t):
    return ((o - t) * o) * (f32(1) - o)


def hidden_delta(slot_sum, y):
    return (slot_sum * LOG2_SLOPE) * f32(exp2_negative(float(y)))


def initial_weight(magnitude_draw, sign_draw, init_scale):
    magnitude = f32(magnitude_draw / 2147483647.0 * (init_scale * 0.5))
    return -magnitude if sign_draw % 1000 < 500 else magnitude


SUM_LANES = 16


def lane_total(lanes):
    """A section's backward sum from its 16 interleaved partial sums, added pairwise."""
    half = [lanes[i] + lanes[i + 8] for i in range(8)]
    quarter = [half[i] + half[i + 4] for i in range(4)]
    pair = [quarter[i] + quarter[i + 2] for i in range(2)]
    return pair[0] + pair[1]


ADAGRAD_EPSILON = f32(1e-8)


def adagrad_weight(weight, accum, d, learning_rate):
    """(new weight, new accum) of the per-synapse Adagrad step."""
    total = accum + d * d
    return weight - (learning_rate * d) / (np.sqrt(total) + ADAGRAD_EPSILON), total


def counted(counter, target_potential, weight):
    useful = (target_potential > f32(0)) == (weight > f32(0))
    return counter + 1 if counter < COUNTER_PERSISTENT and useful else counter


def field_block(pixel, n_blocks, rows, cols, radius, pick):
    """rules.h field_block: the target block of an input pixel's new section with receptive fields."""
    grid_cols = 1
    while grid_cols * grid_cols < n_blocks:
        grid_cols += 1
    grid_rows = (n_blocks + grid_cols - 1) // grid_cols
    r2 = (2 * (pixel // cols) + 1) * grid_rows
    c2 = (2 * (pixel % cols) + 1) * grid_cols
    row_limit = 2.0 * radius * float(grid_rows)
    col_limit = 2.0 * radius * float(grid_cols)
    holding = [
        g
        for g in range(n_blocks)
        if float(abs(r2 - (2 * (g // grid_cols) + 1) * rows)) <= row_limit
        and float(abs(c2 - (2 * (g % grid_cols) + 1) * cols)) <= col_limit
    ]
    if not holding:
        return pick % n_blocks
    return holding[pick % len(holding)]


# ---- value codes (csrc/rules.h, "value codes"; docs/streams.md) --------------------------------

CODE_QUANTILE, CODE_RATE_FLOOR, CODE_COUNT_CAP = f32(0.05), f32(0.01), f32(1024.0)
CODE_OPENING, CODE_LOW_CLIP, CODE_HIGH_CLIP = f32(0.0625), f32(-0.5), f32(1.5)
CODE_SHIFT, CODE_GAIN = f32(0.75), f32(10.0)
CODE_MIN_WIDTH, CODE_RELATIVE_WIDTH = f32(1e-30), f32(2.0**-20)
TARGET_LOW, TARGET_GAIN, TARGET_LOW_CLIP, TARGET_HIGH_CLIP = f32(0.2), f32(0.6), f32(-0.25), f32(1.25)
FLOAT_MAX = f32(np.finfo(np.float32).max)


def clamp(v, low, high):
    return low if v < low else (high if v > high else v)


def range_width(r):
    count, lo, hi = r
    magnitude = max(abs(lo), abs(hi))
    with np.errstate(over="ignore"):
        width = hi - lo
    if not width <= FLOAT_MAX:
        width = FLOAT_MAX
    width = max(width, magnitude * CODE_RELATIVE_WIDTH)
    return max(width, CODE_MIN_WIDTH)


def range_position(r, x, low, high):
    with np.errstate(over="ignore"):
        return clamp((x - r[1]) / range_width(r), low, high)


def opened_range(r, x):
    if r[0] > f32(0):
        return r
    half = abs(x) * CODE_OPENING
    return (f32(0), x - half, x + half)


def learned_range(r, x):
    count, lo, hi = r
    rate = f32(1) / (count + f32(1))
    step = max(rate, CODE_RATE_FLOOR) * range_width(r)
    with np.errstate(over="ignore"):
        lo = lo + step * (CODE_QUANTILE - f32(1) if x < lo else CODE_QUANTILE)
        hi = hi + step * (f32(1) - CODE_QUANTILE if x > hi else -CODE_QUANTILE)
    count = count + f32(1) if count < CODE_COUNT_CAP else count
    return (count, clamp(lo, -FLOAT_MAX, FLOAT_MAX), clamp(hi, -FLOAT_MAX, FLOAT_MAX))


def input_code(r, x):
    if x == f32(0):
        return f32(0)
    return (range_position(r, x, CODE_LOW_CLIP, CODE_HIGH_CLIP) + CODE_SHIFT) * CODE_GAIN


def target_code(r, t):
    return TARGET_LOW + TARGET_GAIN * range_position(r, t, TARGET_LOW_CLIP, TARGET_HIGH_CLIP)


def decode_output(r, o):
    count, lo, hi = r
    if o == f32(0):
        return lo + f32(0.5) * (hi - lo)
    return lo + ((o - TARGET_LOW) / TARGET_GAIN) * range_width(r)


def encode_value(adaptive, r, x, learn, is_target):
    """(code, range after it): one value through its neuron's encoding."""
    if not adaptive:
        return x, r
    if not is_target and x == f32(0):
        return f32(0), r
    current = opened_range(r, x)
    code = target_code(current, x) if is_target else input_code(current, x)
    return code, (learned_range(current, x) if learn else r)


class ReferenceCluster:
    """A snapshot of a :class:`~hanami_torch.HanamiCluster` that runs the cycle in Python."""

    @classmethod
    def from_cluster(cls, cluster) -> "ReferenceCluster":
        self = cls()
        self.compat = cluster.compat
        self.seed = cluster.seed
        self.learning_rate = f32(cluster.learning_rate)
        self.init_scale = cluster.init_scale
        self.adagrad = cluster.optimizer == "adagrad"
        self.input_fan_in = cluster.input_fan_in
        self.input_shape = cluster.input_shape
        self.field_radius = None if cluster.field_radius is None else float(f32(cluster.field_radius))
        settings = cluster.template.settings
        self.cooldown = f32(settings.neuron_cooldown)
        self.refractory_time = int(settings.refractory_time)
        self.reduction = bool(settings.enable_reduction)
        self.bricks = [tuple(int(v) for v in row) for row in cluster.brick_info.tolist()]
        self.targets = cluster.brick_targets.tolist()
        self.blocks = [tuple(int(v) for v in row) for row in cluster.block_info.tolist()]
        self.grid = [list(row) for row in cluster.brick_grid.tolist()]
        self.potential = [f32(v) for v in cluster.potential.numpy()]
        self.active = [bool(v) for v in cluster.active.tolist()]
        self.refractory = [int(v) for v in cluster.refractory.tolist()]
        self.request = [f32(v) for v in cluster.request.numpy()]
        self.step = int(cluster.counters[0])
        self.sections: dict[int, Section] = {}
        self.pending: list[int] = []
        weight, upper = cluster.syn_weight.detach().numpy(), cluster.syn_upper.numpy()
        target, counter = cluster.syn_target.numpy(), cluster.syn_counter.numpy()
        accum = cluster.syn_accum.numpy()
        for s, block in enumerate(cluster.sec_block.tolist()):
            if block == -1:
                continue
            section = Section(
                block=block,
                offset=f32(cluster.sec_offset[s]),
                has_next=bool(cluster.sec_has_next[s]),
                conn=int(cluster.sec_conn[s]) if self.compat else -1,
            )
            start = int(cluster.sec_start[s])
            for k in range(int(cluster.sec_len[s])):
                t = int(target[start + k])
                section.slots.append(
                    Synapse(
                        f32(weight[start + k]),
                        f32(upper[start + k]),
                        None if t == 0xFF else t,
                        int(counter[start + k]) if counter.size else 0,
                        f32(accum[start + k]) if accum.size else f32(0),
                    )
                )
            if block == -2:
                self.pending.append(s)
            self.sections[s] = section
        self.neuron_brick = []
        for b, (start, count, *_rest) in enumerate(self.bricks):
            self.neuron_brick += [b] * count
        self.requests: list[tuple[int, int, np.float32]] = []
        self.candidates = [n for n, r in enumerate(self.request) if r >= f32(0)]
        self.codes = {
            side: (
                [bool(m) for m in getattr(cluster, f"{side}_encoding").tolist()],
                [tuple(f32(v) for v in row) for row in getattr(cluster, f"{side}_range").cpu().numpy()],
            )
            for side in ("input", "output")
        }
        self.synapses = sum(s.target is not None for sec in self.sections.values() for s in sec.slots)
        return self

    # ---- helpers ----------------------------------------------------------------------------

    def kind(self, brick):
        return self.bricks[brick][2]

    def brick_blocks(self, brick):
        return (self.bricks[brick][1] + 63) // 64

    def in_use(self, neuron):
        return any(neuron * 8 + p in self.sections for p in range(8))

    def block_list(self, block):
        """Live sections targeting a block, in processing order."""
        live = [s for s, sec in self.sections.items() if sec.block == block]
        if self.compat:
            return sorted(live, key=lambda s: self.sections[s].conn)
        return sorted(live)

    def neuron_slot(self, neuron):
        """(block, index in block) of a neuron."""
        brick = self.neuron_brick[neuron]
        i = neuron - self.bricks[brick][0]
        return self.bricks[brick][4] + i // 64, i % 64

    def draw(self, stream, a, b, c):
        return rng.draw(self.seed, stream, a, b, c)

    # ---- sections (spec §4.7) ---------------------------------------------------------------

    def create_section(self, neuron, offset, fixed_slot=-1):
        brick = self.neuron_brick[neuron]
        if self.kind(brick) == OUTPUT:
            return False
        if fixed_slot >= 0:
            p = fixed_slot
        else:
            free = [p for p in range(8) if neuron * 8 + p not in self.sections]
            if not free:
                return False
            p = free[0]
        s = neuron * 8 + p
        pick = self.draw(rng.STREAM_SECTION, self.step, s, 0)
        target_brick = self.targets[brick][pick % 64]
        if target_brick < 0:
            return False
        first_block = self.bricks[target_brick][4]
        conn = -1
        if self.compat:
            conn = self.find_free_connection(target_brick, self.draw(rng.STREAM_SECTION, self.step, s, 1))
            if conn < 0:
                self.resize_grid(target_brick)
                conn = self.find_free_connection(target_brick, self.draw(rng.STREAM_SECTION, self.step, s, 2))
            block = first_block + (conn // 64) // self.grid[target_brick][1]
        else:
            pick = self.draw(rng.STREAM_SECTION, self.step, s, 1)
            n_blocks = self.brick_blocks(target_brick)
            if self.input_shape is not None and self.kind(brick) == INPUT:
                pixel = neuron - self.bricks[brick][0]
                block = first_block + field_block(pixel, n_blocks, *self.input_shape, self.field_radius, pick)
            else:
                block = first_block + pick % n_blocks
        self.sections[s] = Section(block=block, offset=f32(offset), conn=conn)
        return True

    def connections_of(self, brick):
        first = self.bricks[brick][4]
        blocks = range(first, first + self.brick_blocks(brick))
        return {sec.conn for sec in self.sections.values() if sec.block in blocks and sec.block >= 0}

    def find_free_connection(self, brick, random):
        n = self.grid[brick][0] * self.grid[brick][1]
        if n == 0:
            return -1
        used = self.connections_of(brick)
        start = random % n
        for i in range(n):
            c = (start + i) % n
            for slot in range(64):
                if c * 64 + slot not in used:
                    return c * 64 + slot
        return -1

    def resize_grid(self, brick):
        old_x, old_y = self.grid[brick]
        blocks = self.brick_blocks(brick)
        new_x = blocks if self.kind(brick) == OUTPUT else min(blocks, old_x + 1)
        new_y = old_y + 1
        first = self.bricks[brick][4]
        for sec in self.sections.values():
            if not first <= sec.block < first + blocks:
                continue
            c, slot = divmod(sec.conn, 64)
            if new_x != old_x and old_x > 0:
                c = (c // old_x) * new_x + c % old_x
            sec.conn = c * 64 + slot
            sec.block = first + c // new_y
        self.grid[brick] = [new_x, new_y]

    # ---- one walk (spec §4.3) ---------------------------------------------------------------

    def create_synapse(self, s, k, p_above, lower, block_neurons):
        sec = self.sections[s]
        t = self.draw(rng.STREAM_SYNAPSE, self.step, s, 0) % block_neurons
        w = initial_weight(
            self.draw(rng.STREAM_SYNAPSE, self.step, s, 1),
            self.draw(rng.STREAM_SYNAPSE, self.step, s, 2),
            self.init_scale,
        )
        old_upper = sec.slots[k].upper if k < len(sec.slots) else lower
        synapse = Synapse(w, p_above, t, COUNTER_START if self.reduction else 0)
        if k < len(sec.slots):
            sec.slots[k] = synapse
        else:
            sec.slots.append(synapse)
        shift = p_above - old_upper
        for later in sec.slots[k + 1 :]:
            later.upper = later.upper + shift
        self.synapses += 1
        return t

    def walk(self, s, potential, z, block_base, training):
        """Walks section s; adds into z; returns the number of reached slots."""
        sec = self.sections[s]
        p_above = potential - sec.offset
        block_neurons = self.blocks[sec.block][2]
        lower = f32(0)
        k = 0
        while k < len(sec.slots):
            r = p_above - lower
            if not r > REACH_CUT:
                return self.finish(s, k, False, training)
            syn = sec.slots[k]
            border = syn.upper - lower
            if syn.target is None:
                if not training:
                    if r < border:
                        return k + 1
                    lower = syn.upper
                    k += 1
                    continue
                t = self.create_synapse(s, k, p_above, lower, block_neurons)
                z[block_base + t] += contribution(sec.slots[k].weight, r, sec.slots[k].upper - lower)
                return self.finish(s, k + 1, False, training)
            if r < border:
                if training and k < LAST_SPLIT_SLOT and border > f32(2) * r:
                    half = (syn.upper - lower) * f32(0.5)
                    old_upper = syn.upper
                    syn.upper = old_upper - half
                    if k + 1 == len(sec.slots):
                        sec.slots.append(Synapse(f32(0), old_upper, None, 0))
                    border = syn.upper - lower
                z[block_base + syn.target] += contribution(syn.weight, r, border)
                return self.finish(s, k + 1, False, training)
            z[block_base + syn.target] += syn.weight
            lower = syn.upper
            k += 1
        r = p_above - lower
        if k < SYNAPSES_PER_SECTION:
            if not r > REACH_CUT or not training:
                return self.finish(s, k, False, training)
            t = self.create_synapse(s, k, p_above, lower, block_neurons)
            z[block_base + t] += contribution(sec.slots[k].weight, r, sec.slots[k].upper - lower)
            return self.finish(s, k + 1, False, training)
        return self.finish(s, k, bool(r > REACH_CUT), training, lower)

    def finish(self, s, reached, survived, training, last_upper=f32(0)):
        if not training:
            return reached
        sec = self.sections[s]
        neuron = s // 8
        if survived and not sec.has_next:
            if self.compat:
                offset = sec.offset + (sec.offset + last_upper)
            else:
                offset = sec.offset + last_upper
            sec.has_next = True
            if self.compat:
                self.request[neuron] = offset
                self.candidates.append(neuron)
            else:
                self.requests.append((neuron, s, offset))
        elif self.compat:
            self.request[neuron] = f32(-1)
        return reached

    # ---- the cycle (Appendix A) -------------------------------------------------------------

    def cycle(self, x, t, training, batched=False):
        x = [f32(v) for v in x]
        outputs = [f32(0)] * sum(b[1] for b in self.bricks if b[2] == OUTPUT)
        z = [f32(0)] * (len(self.blocks) * 64)
        delta = {}  # (block, index) -> delta
        visits = {}  # brick -> [(section, reached)]
        for b, (start, count, kind, io, first_block) in enumerate(self.bricks):
            if kind != INPUT:
                continue
            for i in range(count):
                n = start + i
                self.potential[n] = x[io + i]
                self.active[n] = bool(x[io + i] > f32(0))
                if training and self.active[n] and not self.in_use(n):
                    for _ in range(self.input_fan_in):
                        self.create_section(n, f32(0))
        for b, (start, count, kind, io, first_block) in enumerate(self.bricks):
            if kind == INPUT:
                continue
            visits[b] = []
            for g in range(first_block, first_block + self.brick_blocks(b)):
                for s in self.block_list(g):
                    source = s // 8
                    if not self.active[source]:
                        continue
                    visits[b].append((s, self.walk(s, self.potential[source], z, g * 64, training)))
            for i in range(count):
                n = start + i
                g, local = self.neuron_slot(n)
                zin = z[g * 64 + local]
                if kind == OUTPUT:
                    o = output_activation(zin)
                    self.potential[n] = o
                    self.active[n] = False
                    outputs[io + i] = o
                    if training:
                        delta[(g, local)] = output_delta(o, f32(t[io + i]))
                    continue
                p = self.potential[n] / self.cooldown
                r = self.refractory[n] >> 1
                if r == 0:
                    p = p + zin
                    r = self.refractory_time
                active = bool(p > f32(0))
                self.potential[n] = hidden_activation(p) if active else f32(0)
                self.refractory[n] = r
                self.active[n] = active
                if training:
                    first = active and not self.in_use(n)
                    if self.compat:
                        self.request[n] = f32(0) if first else f32(-1)
                        if first:
                            self.candidates.append(n)
                    elif first:
                        self.requests.append((n, -1, f32(0)))
            for g in range(first_block, first_block + self.brick_blocks(b)):
                z[g * 64 : g * 64 + 64] = [f32(0)] * 64
        if not training:
            return outputs
        self.create_requested_sections()
        self.backward(visits, delta, batched)
        self.step += 1
        if self.reduction and self.step % REDUCTION_INTERVAL == 0:
            self.reduce()
        return outputs

    def create_requested_sections(self):
        if self.compat:
            for n in sorted(set(self.candidates)):
                if self.request[n] < f32(0):
                    continue
                offset = self.request[n]
                self.request[n] = f32(-1)
                self.create_section(n, offset)
            self.candidates = []
            return
        for s in sorted(self.pending):
            sec = self.sections.pop(s)
            if self.create_section(s // 8, sec.offset, s % 8):
                self.sections[s].has_next = sec.has_next
        self.pending = []
        for neuron, _origin, offset in sorted(self.requests, key=lambda r: (r[0], r[1])):
            self.create_section(neuron, offset)
        self.requests = []

    def backward(self, visits, delta, batched=False):
        """Hanami's rule; ``batched``: each step is added to the synapse's batch_sum instead
        (the weights stay until :meth:`flush_batch`)."""
        slot_value = {}
        for b in reversed(range(len(self.bricks))):
            start, count, kind, io, first_block = self.bricks[b]
            if kind == INPUT:
                continue
            if kind == HIDDEN:
                for i in range(count):
                    n = start + i
                    key = self.neuron_slot(n)
                    if not self.active[n]:
                        delta[key] = f32(0)
                        continue
                    total = f32(0)
                    for p in range(8):
                        total = total + slot_value.get(n * 8 + p, f32(0))
                    delta[key] = hidden_delta(total, self.potential[n])
            for s, reached in visits.get(b, []):
                sec = self.sections[s]
                g = sec.block
                first_neuron, block_neurons = self.blocks[g][1], self.blocks[g][2]
                source_is_input = self.kind(self.neuron_brick[s // 8]) == INPUT
                lanes = [f32(0)] * SUM_LANES
                for k, syn in enumerate(sec.slots[:reached]):
                    if syn.target is None:
                        continue
                    d = delta.get((g, syn.target), f32(0))
                    if self.reduction:
                        tp = self.potential[first_neuron + syn.target] if syn.target < block_neurons else f32(0)
                        syn.counter = counted(syn.counter, tp, syn.weight)
                    if not source_is_input or self.adagrad:
                        lanes[k % SUM_LANES] = lanes[k % SUM_LANES] + d * syn.weight
                    if batched:
                        syn.batch_sum = syn.batch_sum + d
                    elif self.adagrad:
                        syn.weight, syn.accum = adagrad_weight(syn.weight, syn.accum, d, self.learning_rate)
                    else:
                        syn.weight = syn.weight - self.learning_rate * d
                if not source_is_input:
                    slot_value[s] = lane_total(lanes)

    def flush_batch(self):
        """The end of a batch: every synapse moves once by its summed delta."""
        for sec in self.sections.values():
            for syn in sec.slots:
                if syn.target is None:
                    continue
                if self.adagrad:
                    syn.weight, syn.accum = adagrad_weight(syn.weight, syn.accum, syn.batch_sum, self.learning_rate)
                else:
                    syn.weight = syn.weight - self.learning_rate * syn.batch_sum
                syn.batch_sum = f32(0)

    def reduce(self):
        """Reduction (spec §5.7), in block-list order like the engine."""
        emptied = []
        for g in range(len(self.blocks)):
            for s in self.block_list(g):
                sec = self.sections[s]
                live = 0
                if not self.compat:
                    lower, shift, kept = f32(0), f32(0), []
                    for syn in sec.slots:
                        u = syn.upper
                        border = u - lower
                        lower = u
                        if syn.target is not None:
                            c = syn.counter - 1 if syn.counter < COUNTER_PERSISTENT else syn.counter
                            if c == 0:
                                shift = shift + border
                                self.synapses -= 1
                                continue
                            syn.counter = c
                            live += 1
                        kept.append(Synapse(syn.weight, u - shift, syn.target, syn.counter, syn.accum, syn.batch_sum))
                    sec.slots = kept
                else:
                    lower, borders = f32(0), []
                    for syn in sec.slots:
                        borders.append(syn.upper - lower)
                        lower = syn.upper
                    slots = sec.slots
                    for k in range(len(slots)):
                        if slots[k].target is None:
                            continue
                        if slots[k].counter < COUNTER_PERSISTENT:
                            slots[k].counter -= 1
                        if slots[k].counter != 0:
                            live += 1
                            continue
                        self.synapses -= 1
                        if k + 1 < len(slots):
                            borders[k] = borders[k + 1]
                            slots[k] = Synapse(
                                slots[k + 1].weight,
                                f32(0),
                                slots[k + 1].target,
                                slots[k + 1].counter,
                                slots[k + 1].accum,
                                slots[k + 1].batch_sum,
                            )
                            borders[k + 1] = f32(0)
                            slots[k + 1] = Synapse(f32(0), f32(0), None, 0)
                        else:
                            borders[k] = f32(0)
                            slots[k] = Synapse(f32(0), f32(0), None, 0)
                    running = f32(0)
                    for k, syn in enumerate(slots):
                        running = running + borders[k]
                        syn.upper = running
                    if live == 0:
                        self.synapses -= sum(syn.target is not None for syn in slots)
                while sec.slots and sec.slots[-1].target is None and sec.slots[-1].upper == (
                    sec.slots[-2].upper if len(sec.slots) > 1 else f32(0)
                ):
                    sec.slots.pop()
                if live == 0:
                    emptied.append(s)
        for s in emptied:
            sec = self.sections[s]
            neuron = s // 8
            if self.compat:
                del self.sections[s]
                self.request[neuron] = sec.offset
                self.candidates.append(neuron)
            else:
                sec.block = -2
                sec.slots = []
                self.pending.append(s)

    # ---- public ------------------------------------------------------------------------------

    def coded(self, side, values, learn):
        """``values`` through the encodings of the input or output neurons (ranges learn when
        ``learn``)."""
        adaptive, ranges = self.codes[side]
        codes = []
        for i, v in enumerate(values):
            code, ranges[i] = encode_value(adaptive[i], ranges[i], f32(v), learn, side == "output")
            codes.append(code)
        return codes

    def decoded(self, outputs, ranges=None):
        """Outputs in the targets' units, with the output ranges as they are or ``ranges``."""
        adaptive, current = self.codes["output"]
        ranges = current if ranges is None else ranges
        return [decode_output(ranges[i], o) if adaptive[i] else o for i, o in enumerate(outputs)]

    def train_step(self, x, t, batched=False):
        """One online learning step; returns the outputs (list of float32), read back with the
        output ranges as they were before this step's targets."""
        before = list(self.codes["output"][1])
        x, t = self.coded("input", x, True), self.coded("output", t, True)
        return self.decoded(self.cycle(x, t, True, batched), before)

    def train_many(self, xs, ts, batch_size=1):
        """Learning over the rows of ``xs`` and ``ts`` with the weight steps summed over runs of
        ``batch_size`` rows (docs/api.md, "Batches"); batch_size 1 is online learning. Returns the
        outputs, one list per row."""
        if batch_size == 1:
            return [self.train_step(x, t) for x, t in zip(xs, ts)]
        outputs = []
        rows = len(xs)
        for i, (x, t) in enumerate(zip(xs, ts)):
            outputs.append(self.train_step(x, t, batched=True))
            if (i + 1) % batch_size == 0 or i + 1 == rows:
                self.flush_batch()
        return outputs

    def predict_step(self, x):
        """One request-mode step; returns the outputs."""
        return self.decoded(self.cycle(self.coded("input", x, False), None, False))

    def structure(self) -> dict:
        """Everything learning changes, as plain Python values, for comparison."""
        sections = {}
        for s, sec in sorted(self.sections.items()):
            sections[s] = (
                sec.block,
                float(sec.offset),
                bool(sec.has_next),
                sec.conn,
                [(float(y.weight), float(y.upper), y.target, y.counter, float(y.accum)) for y in sec.slots],
            )
        return {
            "sections": sections,
            "potential": [float(v) for v in self.potential],
            "active": list(self.active),
            "refractory": list(self.refractory),
            "request": [float(v) for v in self.request] if self.compat else None,
            "grid": [list(g) for g in self.grid],
            "step": self.step,
            "synapses": self.synapses,
            "ranges": {side: [tuple(float(v) for v in r) for r in self.codes[side][1]] for side in self.codes},
        }


def cluster_structure(cluster) -> dict:
    """The same view as :meth:`ReferenceCluster.structure`, read from a HanamiCluster's tensors."""
    return ReferenceCluster.from_cluster(cluster).structure() | {
        "synapses": int(cluster.counters[5]),
    }
