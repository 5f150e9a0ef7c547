"""Checkpoints: safetensors files that round-trip a cluster exactly, and clear errors for anything
that is not a good checkpoint."""

from __future__ import annotations

import json
import os
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


def rewrite(path, target, tensors=None, metadata=None):
    """Copies the checkpoint at ``path`` to ``target`` with some tensors / metadata replaced."""
    stored = load_file(str(path))
    with safe_open(str(path), framework="pt") as handle:
        meta = dict(handle.metadata())
    stored.update(tensors or {})
    stored = {name: value for name, value in stored.items() if value is not None}
    meta.update(metadata or {})
    save_file(stored, str(target), metadata={k: v for k, v in meta.items() if v is not None})
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
    assert set(tensors) == set(header) == set(ops.LAYOUT + ops.STATE)
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


def test_metadata_of_another_seed_does_not_match_the_layout(saved, tmp_path):
    _, path = saved
    options = {"seed": 4, "compat": False, "learning_rate": 0.05, "init_scale": 0.2}
    target = rewrite(path, tmp_path / "s.safetensors", metadata={"options": json.dumps(options)})
    # the template's target-brick lists are a line here, so the seed may not show in the layout;
    # then the file is a valid checkpoint of that seed and must load
    try:
        loaded = checkpoint.load(target)
    except CheckpointError as error:
        assert "does not match the template and seed" in str(error)
    else:
        assert loaded.seed == 4


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


# Damaged contents (right dtypes and shapes, impossible values) must not crash the process. The cases
# run in a subprocess (one forked child each), so that a crash fails a test instead of ending the
# test session.
_DAMAGE = textwrap.dedent(
    """
    import json, os, sys, torch
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file
    from hanami_torch import checkpoint
    from hanami_torch.checkpoint import CheckpointError

    torch.set_num_threads(1)
    source, folder, *cases = sys.argv[1:]
    results = {}
    for case in cases:
        target = os.path.join(folder, case + ".safetensors")
        report = os.path.join(folder, case + ".txt")
        pid = os.fork()
        if pid == 0:
            t = load_file(source)
            with safe_open(source, "pt") as h:
                meta = h.metadata()
            live = (t["sec_block"] >= 0).nonzero()[0, 0]
            if case == "sec_start":
                t["sec_start"][live] = 10**8
            elif case == "sec_block":
                t["sec_block"][live] = 10**6
            elif case == "syn_counter":
                t["syn_counter"] = torch.zeros(0, dtype=torch.uint8)
            save_file(t, target, metadata=meta)
            try:
                cluster = checkpoint.load(target)
                x = torch.rand(250, 6) * 255
                cluster.predict_many(x)
                cluster.learn_many(x, torch.zeros(250, 3))
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
        results[case] = [status, text]
    print(json.dumps(results))
    """
)
DAMAGE_CASES = ["sec_start", "sec_block", "syn_counter"]


@pytest.fixture(scope="module")
def damage_results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("damage")
    cluster = trained(reduction=True, steps=60)
    source = folder / "good.safetensors"
    checkpoint.save(cluster, source)
    result = subprocess.run(
        [sys.executable, "-c", _DAMAGE, str(source), str(folder), *DAMAGE_CASES],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", DAMAGE_CASES)
def test_damaged_indices_are_refused_not_crashing(damage_results, case):
    status, text = damage_results[case]
    assert status == 0, f"the process died (wait status {status}, signal {status & 0x7F})"
    assert text.startswith("refused:"), text


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
