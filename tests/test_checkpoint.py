"""Checkpoints: safetensors files that round-trip a cluster exactly, and clear errors for anything
that is not a good checkpoint."""

from __future__ import annotations

import copy
import json
import os
import re
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from hanami_torch import HanamiCluster, checkpoint, ops
from hanami_torch.checkpoint import CheckpointError

TEMPLATE = """version: 1
settings:
    enable_reduction: {reduction}
    neuron_cooldown: 1000000.0
bricks:
    1,1,1
        input: px
        number_of_neurons: 6
    2,1,1
        number_of_neurons: 70
    3,1,1
        output: out
        number_of_neurons: 3
"""


def data(n, seed):
    gen = np.random.default_rng(seed)
    x = gen.uniform(0, 255, (n, 6)).astype(np.float32)
    x[gen.random(x.shape) < 0.25] = 0.0
    y = np.eye(3, dtype=np.float32)[gen.integers(0, 3, n)]
    return torch.from_numpy(x), torch.from_numpy(y)


def trained(compat=False, reduction=False, steps=150, seed=3):
    cluster = HanamiCluster(TEMPLATE.format(reduction=str(reduction).lower()), seed=seed, compat=compat)
    x, y = data(steps, seed=0)
    cluster.learn_many(x, y)
    assert cluster.stats()["synapses"] > 50
    return cluster


def assert_same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert set(ops.LAYOUT + ops.STATE) <= set(sa)
    for name in sa:
        assert sa[name].dtype == sb[name].dtype, name
        assert torch.equal(sa[name], sb[name]), f"{name} differs"
    keep = torch.ones(ops.N_CONFIG, dtype=torch.bool)
    keep[ops.CONFIG_THREADS] = False  # the thread count is synced before every call
    assert torch.equal(a.config[keep], b.config[keep])
    assert (a.seed, a.compat, a.learning_rate, a.init_scale) == (b.seed, b.compat, b.learning_rate, b.init_scale)
    assert a.template == b.template


@pytest.fixture
def saved(tmp_path):
    cluster = trained()
    path = tmp_path / "cluster.safetensors"
    checkpoint.save(cluster, path)
    return cluster, path


def rewrite(path, target, tensors=None, metadata=None, sign=True):
    """Copies the checkpoint at ``path`` to ``target`` with some tensors / metadata replaced (None:
    removed). ``sign``: with the checksum recomputed, as anyone editing a file can, so that the
    check under test and not the checksum refuses the file."""
    stored = load_file(str(path))
    with safe_open(str(path), framework="pt") as handle:
        meta = dict(handle.metadata())
    stored.update(tensors or {})
    stored = {name: value for name, value in stored.items() if value is not None}
    meta.update(metadata or {})
    meta = {k: v for k, v in meta.items() if v is not None}
    if sign:
        meta["sha256"] = checkpoint.checksum(stored, meta)
    save_file(stored, str(target), metadata=meta)
    return target


# ---- round trip ----------------------------------------------------------------------------------


@pytest.mark.parametrize("compat, reduction", [(False, False), (True, False), (False, True), (True, True)])
def test_round_trip_restores_everything(tmp_path, compat, reduction):
    cluster = trained(compat=compat, reduction=reduction)
    path = tmp_path / "sub" / "dir" / "c.safetensors"  # parents are created
    checkpoint.save(cluster, path)
    assert path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["c.safetensors"]  # no temporary left

    loaded = checkpoint.load(path)
    assert isinstance(loaded, HanamiCluster)
    assert_same_state(cluster, loaded)
    assert loaded.stats() == cluster.stats()

    x, y = data(60, seed=1)
    assert torch.equal(loaded.predict_many(x[:20]), cluster.predict_many(x[:20]))
    # learning goes on identically from the reloaded network
    out_a = cluster.learn_many(x[20:], y[20:])
    out_b = loaded.learn_many(x[20:], y[20:])
    assert torch.equal(out_a, out_b)
    assert_same_state(cluster, loaded)
    assert cluster.stats()["steps"] == loaded.stats()["steps"] == 190


def test_round_trip_of_an_adagrad_cluster(tmp_path):
    """Adagrad's accumulated squared steps (syn_accum) and the optimizer choice survive the file:
    learning goes on with the same step sizes."""
    cluster = HanamiCluster(TEMPLATE.format(reduction="true"), seed=5, optimizer="adagrad", learning_rate=0.05,
                            input_fan_in=2)
    x, y = data(160, seed=0)
    cluster.learn_many(x[:100], y[:100])
    assert cluster.syn_accum.numel() == cluster.syn_weight.numel() and bool((cluster.syn_accum > 0).any())
    path = tmp_path / "adagrad.safetensors"
    checkpoint.save(cluster, path)
    loaded = checkpoint.load(path)
    assert (loaded.optimizer, loaded.input_fan_in, loaded.learning_rate) == ("adagrad", 2, 0.05)
    assert_same_state(cluster, loaded)
    assert torch.equal(loaded.learn_many(x[100:], y[100:]), cluster.learn_many(x[100:], y[100:]))
    assert_same_state(cluster, loaded)


def test_round_trip_of_reduction_state_across_a_reduction(tmp_path):
    cluster = trained(reduction=True, steps=90)
    checkpoint.save(cluster, tmp_path / "c.safetensors")
    loaded = checkpoint.load(tmp_path / "c.safetensors")
    x, y = data(120, seed=2)  # passes the reduction at step 100 and 200
    cluster.learn_many(x, y)
    loaded.learn_many(x, y)
    assert_same_state(cluster, loaded)


def test_round_trip_of_a_fresh_cluster(tmp_path):
    cluster = HanamiCluster(TEMPLATE.format(reduction="false"), seed=123, learning_rate=0.01, init_scale=0.1)
    checkpoint.save(cluster, tmp_path / "fresh.safetensors")
    loaded = checkpoint.load(tmp_path / "fresh.safetensors")
    assert_same_state(cluster, loaded)
    assert (loaded.seed, loaded.learning_rate, loaded.init_scale) == (123, 0.01, 0.1)
    assert torch.equal(cluster.predict_many(data(5, seed=4)[0]), loaded.predict_many(data(5, seed=4)[0]))


def test_a_fresh_cluster_learns_after_save_and_load(tmp_path):
    cluster = HanamiCluster(TEMPLATE.format(reduction="false"), seed=123)
    checkpoint.save(cluster, tmp_path / "fresh.safetensors")
    loaded = checkpoint.load(tmp_path / "fresh.safetensors")
    x, y = data(30, seed=4)
    assert torch.equal(cluster.learn_many(x, y), loaded.learn_many(x, y))
    assert_same_state(cluster, loaded)


def test_save_load_save_is_stable(saved, tmp_path):
    _, path = saved
    again = tmp_path / "again.safetensors"
    checkpoint.save(checkpoint.load(path), again)
    first, second = load_file(str(path)), load_file(str(again))
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name


def test_saving_overwrites_an_older_checkpoint(saved):
    cluster, path = saved
    x, y = data(10, seed=5)
    cluster.learn_many(x, y)
    checkpoint.save(cluster, path)
    assert checkpoint.load(path).stats()["steps"] == 160


def test_file_is_plain_safetensors(saved):
    cluster, path = saved
    raw = path.read_bytes()
    (header_size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + header_size])  # a JSON header, no pickle anywhere
    meta = header.pop("__metadata__")
    assert meta["format"] == checkpoint.FORMAT
    assert meta["format_version"] == str(checkpoint.FORMAT_VERSION)
    assert json.loads(meta["options"]) == {"seed": 3, "compat": False, "learning_rate": 0.05, "init_scale": 0.2,
                                           "optimizer": "sgd", "input_fan_in": 1}
    assert "number_of_neurons: 70" in meta["template"]
    tensors = load_file(str(path))
    assert set(tensors) == set(header) == set(ops.LAYOUT + ops.STATE + ops.CODES)
    for name, value in tensors.items():
        assert torch.equal(value, getattr(cluster, name)), name
    assert raw[:2] != b"\x80\x04" and b"torch._utils" not in raw  # not a torch.save pickle


def test_top_level_api(saved, tmp_path):
    import hanami_torch

    cluster, path = saved
    loaded = hanami_torch.load(str(path))  # a str path works too
    hanami_torch.save(loaded, str(tmp_path / "x.safetensors"))
    assert issubclass(CheckpointError, ValueError)
    assert_same_state(cluster, loaded)


# ---- errors ----------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        checkpoint.load(tmp_path / "nothing.safetensors")
    with pytest.raises(FileNotFoundError):
        checkpoint.load(tmp_path)  # a directory is no checkpoint


@pytest.mark.parametrize("keep", [0, 4, 8, 100, -1])
def test_truncated_file(saved, tmp_path, keep):
    _, path = saved
    raw = path.read_bytes()
    keep = len(raw) - 1 if keep == -1 else keep
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(raw[:keep])
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        checkpoint.load(broken)


@pytest.mark.parametrize("seed", [0, 1])
def test_random_bytes(tmp_path, seed):
    path = tmp_path / "random.safetensors"
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        checkpoint.load(path)


def test_text_file(tmp_path):
    path = tmp_path / "notes.safetensors"
    path.write_text("version: 1\nbricks:\n")
    with pytest.raises(CheckpointError):
        checkpoint.load(path)


def test_foreign_safetensors_file(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({"weight": torch.randn(4, 4), "bias": torch.zeros(4)}, str(path))
    with pytest.raises(CheckpointError, match="not a hanami_torch cluster checkpoint"):
        checkpoint.load(path)
    save_file({"weight": torch.randn(4, 4)}, str(path), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="not a hanami_torch cluster checkpoint"):
        checkpoint.load(path)


def test_foreign_tensors_with_our_metadata(saved, tmp_path):
    _, path = saved
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
    target = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.randn(4, 4)}, str(target), metadata=meta)
    with pytest.raises(CheckpointError, match="lacks the tensor"):
        checkpoint.load(target)


@pytest.mark.parametrize("version", [str(checkpoint.FORMAT_VERSION + 1), "99", "", "1.0", "-1", "two"])
def test_newer_or_bad_format_version(saved, tmp_path, version):
    _, path = saved
    target = rewrite(path, tmp_path / "v.safetensors", metadata={"format_version": version})
    with pytest.raises(CheckpointError, match="checkpoint format"):
        checkpoint.load(target)


def test_missing_format_version(saved, tmp_path):
    _, path = saved
    target = rewrite(path, tmp_path / "v.safetensors", metadata={"format_version": None})
    with pytest.raises(CheckpointError, match="checkpoint format"):
        checkpoint.load(target)


@pytest.mark.parametrize(
    "metadata",
    [
        {"template": "version: 1\nbricks:\n"},
        {"template": None},
        {"options": "{not json"},
        {"options": None},
        {"options": json.dumps({"seed": -4, "compat": False, "learning_rate": 0.05, "init_scale": 0.2})},
        {"options": json.dumps({"seed": 3, "colour": "red"})},
        {"options": json.dumps([1, 2])},
    ],
    ids=["bad_template", "no_template", "bad_json", "no_options", "bad_seed", "unknown_option", "list_options"],
)
def test_unusable_metadata(saved, tmp_path, metadata):
    _, path = saved
    target = rewrite(path, tmp_path / "m.safetensors", metadata=metadata)
    with pytest.raises(CheckpointError, match="unusable metadata"):
        checkpoint.load(target)


#: the checkpoint template with walks of up to two steps: the target-brick lists depend on the seed
SEEDED = TEMPLATE.format(reduction="false").replace("settings:\n", "settings:\n    max_connection_distance: 2\n")


def test_metadata_of_another_seed_does_not_match_the_layout(tmp_path):
    cluster = HanamiCluster(SEEDED, seed=3)
    cluster.learn_many(*data(40, seed=0))
    assert not torch.equal(HanamiCluster(SEEDED, seed=4).brick_targets, cluster.brick_targets)
    path = tmp_path / "c.safetensors"
    checkpoint.save(cluster, path)
    options = json.loads(safe_open(str(path), framework="pt").metadata()["options"])
    target = rewrite(path, tmp_path / "s.safetensors", metadata={"options": json.dumps({**options, "seed": 4})})
    with pytest.raises(CheckpointError, match="'brick_targets' does not match the template and seed"):
        checkpoint.load(target)
    assert checkpoint.load(rewrite(path, tmp_path / "same.safetensors")).seed == 3


@pytest.mark.parametrize(
    "edit",
    [
        {"options": {"learning_rate": 0.1}},
        {"options": {"init_scale": 0.3}},
        {"options": {"seed": 4}},  # a seed that does not show in this template's layout
        {"template": ("neuron_cooldown: 1000000.0", "neuron_cooldown: 1000.0")},
        {"package_version": "0.0.1"},
    ],
    ids=["learning_rate", "init_scale", "seed", "template_setting", "package_version"],
)
def test_edited_metadata_is_caught_by_the_checksum(saved, tmp_path, edit):
    """Metadata that still makes a valid checkpoint (the same layout) but a different network."""
    _, path = saved
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
    changed = {}
    if "options" in edit:
        changed["options"] = json.dumps({**json.loads(meta["options"]), **edit["options"]})
    if "template" in edit:
        assert edit["template"][0] in meta["template"]
        changed["template"] = meta["template"].replace(*edit["template"])
    if "package_version" in edit:
        changed["package_version"] = edit["package_version"]
    signed = checkpoint.load(rewrite(path, tmp_path / "signed.safetensors", metadata=changed))  # loads when signed
    assert signed is not None
    with pytest.raises(CheckpointError, match="do not match the checksum"):
        checkpoint.load(rewrite(path, tmp_path / "edited.safetensors", metadata=changed, sign=False))


def test_format_1_files_with_a_checksum_over_the_tensors_only_load(saved, tmp_path):
    cluster, path = saved
    tensors = load_file(str(path))
    old = {"format_version": "1", "sha256": checkpoint.tensor_digest(tensors)}
    assert_same_state(cluster, checkpoint.load(rewrite(path, tmp_path / "v1.safetensors", metadata=old, sign=False)))
    with pytest.raises(CheckpointError, match="do not match the checksum"):
        flipped = {**tensors, "potential": tensors["potential"] + 1}
        checkpoint.load(rewrite(path, tmp_path / "bad.safetensors", tensors=flipped, metadata=old, sign=False))


def test_layout_that_does_not_match_the_template(saved, tmp_path):
    _, path = saved
    block_info = load_file(str(path))["block_info"].clone()
    block_info[0, 2] = 63
    target = rewrite(path, tmp_path / "l.safetensors", tensors={"block_info": block_info})
    with pytest.raises(CheckpointError, match="'block_info' does not match the template and seed"):
        checkpoint.load(target)


WRONG_TENSORS = [
    ("potential_f64", "potential", lambda t: t.double(), r"'potential' is torch.float64, expected torch.float32"),
    ("syn_weight_f16", "syn_weight", lambda t: t.half(), r"'syn_weight' is torch.float16"),
    ("sec_block_i64", "sec_block", lambda t: t.long(), r"'sec_block' is torch.int64, expected torch.int32"),
    ("syn_target_i32", "syn_target", lambda t: t.int(), r"'syn_target' is torch.int32, expected torch.uint8"),
    ("counters_i32", "counters", lambda t: t.int(), r"'counters'"),
    ("potential_short", "potential", lambda t: t[:-1].clone(), r"'potential' has shape \[78\], expected \[79\]"),
    ("sec_offset_long", "sec_offset", lambda t: torch.cat([t, t[:1]]), r"'sec_offset' has shape"),
    ("brick_info_narrow", "brick_info", lambda t: t[:, :4].clone(), r"'brick_info' has shape"),
    ("refractory_2d", "refractory", lambda t: t.reshape(1, -1).clone(), r"'refractory' has shape \[1, 79\]"),
    ("syn_upper_2d", "syn_upper", lambda t: t.reshape(1, -1).clone(), r"'syn_upper' has shape"),
    ("syn_upper_short", "syn_upper", lambda t: t[:-1].clone(), r"syn_target differ in length"),
    ("syn_target_long", "syn_target", lambda t: torch.cat([t, t[:3]]), r"syn_target differ in length"),
    ("sec_len_missing", "sec_len", None, r"lacks the tensor 'sec_len'"),
]


@pytest.mark.parametrize("name, make, message", [c[1:] for c in WRONG_TENSORS], ids=[c[0] for c in WRONG_TENSORS])
def test_wrong_tensor_dtype_shape_or_missing(saved, tmp_path, name, make, message):
    _, path = saved
    stored = load_file(str(path))[name]
    target = rewrite(path, tmp_path / "t.safetensors", tensors={name: make(stored) if make else None})
    with pytest.raises(CheckpointError, match=message):
        checkpoint.load(target)


# Damaged contents (right dtypes and shapes, impossible values) are refused by
# HanamiCluster.validate_state with a message naming the problem. Each file is damaged and then
# signed again (the checksum is public: anyone can recompute it), so only validate_state stands
# between the damage and the C++ kernels. The loads run in a subprocess (one forked child each)
# that also predicts and learns with whatever loaded, so that a check that lets damage through
# fails a test (crash, wrong error or "accepted") instead of ending the test session.
_LOAD_DAMAGED = textwrap.dedent(
    """
    import json, os, sys, torch
    from hanami_torch import checkpoint
    from hanami_torch.checkpoint import CheckpointError

    torch.set_num_threads(1)
    results = {}
    for target in sys.argv[1:]:
        report = target + ".txt"
        pid = os.fork()
        if pid == 0:
            try:
                cluster = checkpoint.load(target)
                x = torch.rand(250, cluster.n_inputs) * 255
                cluster.predict_many(x)
                cluster.learn_many(x, torch.zeros(250, cluster.n_outputs))
                text = "accepted"
            except CheckpointError as error:
                text = "refused: " + str(error)
            except Exception as error:
                text = "error: " + type(error).__name__ + ": " + str(error)
            with open(report, "w") as f:
                f.write(text)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        text = open(report).read() if os.path.exists(report) else ""
        results[target] = [status, text]
    print(json.dumps(results))
    """
)


def _live(t):
    """Indices of the live sections, in the order of their slots in the arena."""
    live = (t["sec_block"] >= 0).nonzero().flatten()
    return live[t["sec_start"][live].argsort()]


def _first_slot(t):
    return int(t["sec_start"][_live(t)[0]])


def _set(name, index, value):
    def damage(t):
        t[name][index(t) if callable(index) else index] = value
    return damage


def _replace(name, make):
    def damage(t):
        t[name] = make(t)
    return damage


def _last_section_above_top(t):
    last = _live(t)[-1]
    t["counters"][ops.COUNTER_ARENA_TOP] = int(t["sec_start"][last] + t["sec_cap"][last]) - 1


def _overlap(t):
    first, second = _live(t)[:2]
    t["sec_start"][second] = t["sec_start"][first]


def _longer_than_reserved(t):
    first = _live(t)[0]
    t["sec_len"][first] = t["sec_cap"][first] + 1


_first = lambda t: _live(t)[0]  # noqa: E731
_empty_u8 = lambda t: torch.zeros(0, dtype=torch.uint8)  # noqa: E731
_empty_f32 = lambda t: torch.zeros(0, dtype=torch.float32)  # noqa: E731

#: (case, kind of cluster, damage, validate_state's message): one case for each of its checks
DAMAGE = [
    ("sec_block_beyond", "reduction", _set("sec_block", _first, 10**6), "sec_block holds a block index out of range"),
    ("sec_block_negative", "reduction", _set("sec_block", _first, -3), "sec_block holds a block index out of range"),
    ("syn_counter_missing", "reduction", _replace("syn_counter", _empty_u8), "syn_counter must be as long as the arena"),
    ("syn_accum_missing", "adagrad", _replace("syn_accum", _empty_f32), "syn_accum must be as long as the arena"),
    ("longer_than_reserved", "reduction", _longer_than_reserved, "a section uses more slots than it reserves"),
    ("more_than_63_slots", "reduction", _set("sec_cap", _first, 64), "a section uses more slots than it reserves"),
    ("sec_start_beyond", "reduction", _set("sec_start", _first, 10**8), "a section's slots lie outside the synapse arena"),
    ("sec_start_negative", "reduction", _set("sec_start", _first, -1), "a section's slots lie outside the synapse arena"),
    ("overlapping_sections", "reduction", _overlap, "two sections share synapse slots"),
    ("target_outside_block", "reduction", _set("syn_target", _first_slot, 64),
     "a synapse targets a neuron outside its 64-neuron block"),
    ("nan_weight", "reduction", _set("syn_weight", _first_slot, float("nan")), "a synapse weight or border is not finite"),
    ("infinite_border", "reduction", _set("syn_upper", _first_slot, float("inf")),
     "a synapse weight or border is not finite"),
    ("gradient_short_section", "gradient", _set("sec_cap", _first, 62),
     "a learning_rule='gradient' cluster reserves all 63 slots"),
    ("grid_slot_outside", "compat", _set("sec_conn", _first, 10**6),
     "a section's connection slot lies outside its brick's grid"),
    ("grid_slot_negative", "compat", _set("sec_conn", _first, -5),
     "a section's connection slot lies outside its brick's grid"),
    ("negative_counter", "reduction", _set("counters", ops.COUNTER_STEP, -1), "negative counters"),
    ("arena_top_beyond", "reduction", _set("counters", ops.COUNTER_ARENA_TOP, 10**9),
     "the arena top lies outside the arena"),
    ("section_above_top", "reduction", _last_section_above_top, "a section lies above the arena top"),
    ("section_counter", "reduction", _set("counters", ops.COUNTER_SECTIONS, 1),
     "the section counter disagrees with the sections"),
    ("nan_potential", "reduction", _set("potential", 0, float("nan")), "a potential or section offset is not finite"),
    ("infinite_offset", "reduction", _set("sec_offset", _first, float("inf")),
     "a potential or section offset is not finite"),
    ("negative_grid", "compat", _set("brick_grid", (0, 0), -1), "brick_grid must be [bricks, 2] and non-negative"),
]
DAMAGE_IDS = [case[0] for case in DAMAGE]


def damage_source(kind: str) -> HanamiCluster:
    """A small trained cluster of each kind the damage cases need."""
    template = TEMPLATE.format(reduction=str(kind == "reduction").lower())
    options = {"reduction": {}, "compat": {"compat": True}, "adagrad": {"optimizer": "adagrad"},
               "gradient": {"learning_rule": "gradient"}}[kind]
    cluster = HanamiCluster(template, seed=3, **options)
    x, y = data(60, seed=0)
    if kind == "gradient":
        cluster.train()
        cluster(x)  # grows the network
    else:
        cluster.learn_many(x, y)
    assert cluster.stats()["sections"] > 2 and cluster.stats()["synapses"] > 20
    return cluster


@pytest.fixture(scope="module")
def damaged_files(tmp_path_factory):
    """``{case: path}``: the damaged (and signed again) checkpoints."""
    folder = tmp_path_factory.mktemp("damage")
    sources = {}
    for kind in {case[1] for case in DAMAGE}:
        sources[kind] = folder / f"good-{kind}.safetensors"
        checkpoint.save(damage_source(kind), sources[kind])
    files = {}
    for case, kind, damage, _ in DAMAGE:
        tensors = load_file(str(sources[kind]))
        damage(tensors)
        files[case] = rewrite(sources[kind], folder / f"{case}.safetensors", tensors=tensors)
    return files


@pytest.fixture(scope="module")
def damage_results(damaged_files):
    paths = [str(damaged_files[case]) for case in DAMAGE_IDS]
    result = subprocess.run(
        [sys.executable, "-c", _LOAD_DAMAGED, *paths],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    results = json.loads(result.stdout.strip().splitlines()[-1])
    return {case: results[str(damaged_files[case])] for case in DAMAGE_IDS}


@pytest.mark.parametrize("case, message", [(c[0], c[3]) for c in DAMAGE], ids=DAMAGE_IDS)
def test_damaged_state_is_refused_by_validate_state(damage_results, case, message):
    status, text = damage_results[case]
    assert status == 0, f"the process died (wait status {status}, signal {status & 0x7F})"
    assert text.startswith("refused:") and f"inconsistent network state: {message}" in text, text
    assert "checksum" not in text  # the file was signed again: validate_state refused it


#: cases whose damage is a tensor's shape, which load_state_dict refuses before validate_state
_SHAPE_DAMAGE = {"syn_counter_missing", "syn_accum_missing"}


@pytest.mark.parametrize("case, message", [(c[0], c[3]) for c in DAMAGE if c[0] not in _SHAPE_DAMAGE],
                         ids=[case for case in DAMAGE_IDS if case not in _SHAPE_DAMAGE])
def test_damaged_state_dict_is_refused_by_load_state_dict(damaged_files, case, message):
    with safe_open(str(damaged_files[case]), framework="pt") as handle:
        meta = handle.metadata()
    cluster = HanamiCluster(meta["template"], **json.loads(meta["options"]))
    x, y = data(20, seed=2)  # a network of its own, which a refused state must not touch
    if cluster.learning_rule == "gradient":
        cluster.train()
        cluster(x)  # grows the network
        cluster.eval()
    else:
        cluster.learn_many(x, y)
    kept = copy.deepcopy(cluster)
    state = cluster.state_dict()
    state.update(load_file(str(damaged_files[case])))
    with pytest.raises(ValueError, match=re.escape(f"inconsistent network state: {message}")):
        cluster.load_state_dict(state)
    assert_same_state(cluster, kept)
    assert torch.equal(cluster.predict_many(data(5, seed=4)[0]), kept.predict_many(data(5, seed=4)[0]))


def test_the_damage_cases_load_when_undamaged(damaged_files, tmp_path):
    """The damage alone makes the difference: each source file, signed again unchanged, loads."""
    for kind in {case[1] for case in DAMAGE}:
        source = damaged_files[DAMAGE_IDS[0]].parent / f"good-{kind}.safetensors"
        assert isinstance(checkpoint.load(rewrite(source, tmp_path / f"{kind}.safetensors")), HanamiCluster)


def test_a_flipped_byte_in_the_tensors_is_caught_by_the_checksum(tmp_path):
    """A bit flip inside the weights leaves a structurally valid file: only the checksum notices."""
    import hanami_torch
    from hanami_torch.checkpoint import CheckpointError

    cluster = HanamiCluster(TEMPLATE_FOR_CHECKSUM, seed=1)
    gen = torch.Generator().manual_seed(1)
    cluster.learn_many(torch.rand(50, 4, generator=gen) * 100, torch.rand(50, 2, generator=gen))
    path = tmp_path / "c.safetensors"
    hanami_torch.save(cluster, path)
    data = bytearray(path.read_bytes())
    header = int.from_bytes(data[:8], "little")
    data[8 + header + 3] ^= 0x40  # inside the first tensor's bytes
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        hanami_torch.load(path)


TEMPLATE_FOR_CHECKSUM = """version: 1
bricks:
    1,1,1
        input: x
        number_of_neurons: 4
    2,1,1
        number_of_neurons: 20
    3,1,1
        output: y
        number_of_neurons: 2
"""
