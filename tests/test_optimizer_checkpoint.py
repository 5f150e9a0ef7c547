"""Optimizer state saved beside a checkpoint (gradient rule): safetensors, no pickle, and training
that resumes from the files goes on exactly as if it had never stopped."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import hanami_torch
from hanami_torch import CheckpointError, HanamiCluster
from hanami_torch.checkpoint import optimizer_path
from networks import direct

TEMPLATE = direct(12, 3)



def batches(seed: int, n: int = 6):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x = torch.rand(16, 12, generator=g) * 5
        yield x, torch.nn.functional.one_hot((x[:, :3].argmax(1)), 3).float()


def train(cluster, optimizer, data):
    cluster.train()
    for x, y in data:
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(cluster(x), y).backward()
        optimizer.step()


@pytest.mark.parametrize("kind", ["adam", "sgd-momentum"])
def test_training_resumes_exactly_from_saved_files(tmp_path: Path, kind):
    make = {
        "adam": lambda params: torch.optim.Adam(params, lr=0.01),
        "sgd-momentum": lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9),
    }[kind]
    cluster = HanamiCluster(TEMPLATE, seed=2, learning_rule="gradient", init_scale=0.01, input_fan_in=2)
    optimizer = make(cluster.parameters())
    train(cluster, optimizer, batches(0))
    path = tmp_path / "head.safetensors"
    hanami_torch.save(cluster, path, optimizer=optimizer)
    assert optimizer_path(path) == tmp_path / "head.optimizer.safetensors" and optimizer_path(path).is_file()

    restored = hanami_torch.load(path)
    restored_optimizer = make(restored.parameters())
    hanami_torch.load_optimizer(restored_optimizer, path)  # the cluster's path finds the file beside it

    train(cluster, optimizer, batches(1))
    train(restored, restored_optimizer, batches(1))
    assert torch.equal(cluster.syn_weight.detach(), restored.syn_weight.detach())
    assert int(cluster.stats()["synapses"]) == int(restored.stats()["synapses"])


def test_optimizer_files_are_checked(tmp_path: Path):
    cluster = HanamiCluster(TEMPLATE, seed=2, learning_rule="gradient", init_scale=0.01)
    optimizer = torch.optim.Adam(cluster.parameters(), lr=0.01)
    train(cluster, optimizer, batches(0, 2))
    path = tmp_path / "opt.optimizer.safetensors"
    hanami_torch.save_optimizer(optimizer, path)

    with pytest.raises(CheckpointError, match="not of a SGD"):
        hanami_torch.load_optimizer(torch.optim.SGD(cluster.parameters(), lr=0.1), path)
    other = HanamiCluster(TEMPLATE, seed=2, learning_rule="gradient")
    with pytest.raises(CheckpointError, match="does not fit this optimizer"):
        hanami_torch.load_optimizer(torch.optim.Adam([other.syn_weight, torch.nn.Parameter(torch.zeros(2))]), path)

    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # a flipped bit in a tensor
    damaged = tmp_path / "damaged.optimizer.safetensors"
    damaged.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="damaged"):
        hanami_torch.load_optimizer(torch.optim.Adam(cluster.parameters()), damaged)
    truncated = tmp_path / "truncated.optimizer.safetensors"
    truncated.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        hanami_torch.load_optimizer(torch.optim.Adam(cluster.parameters()), truncated)
    cluster_file = tmp_path / "cluster.safetensors"
    hanami_torch.save(cluster, cluster_file)  # no optimizer beside it
    with pytest.raises(FileNotFoundError, match="optimizer=..."):
        hanami_torch.load_optimizer(torch.optim.Adam(cluster.parameters()), cluster_file)
    with pytest.raises(TypeError, match="torch.optim.Optimizer"):
        hanami_torch.save_optimizer(object(), tmp_path / "x.optimizer.safetensors")


def _rewrite(path: Path, target: Path, metadata: dict | None = None, tensors: dict | None = None,
             sign: bool = True) -> Path:
    """A copy of the optimizer file ``path`` with metadata / tensors replaced; ``sign``: with the
    checksum written again, as anyone editing the file can, so that the check under test refuses it."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from hanami_torch.checkpoint import _optimizer_digest

    stored = {**load_file(str(path)), **(tensors or {})}
    with safe_open(str(path), framework="pt") as handle:
        meta = {**handle.metadata(), **(metadata or {})}
    if sign:
        meta["sha256"] = _optimizer_digest(stored, meta)
    save_file(stored, str(target), metadata=meta)
    return target


def test_optimizer_files_of_another_format_version_or_with_bad_metadata_are_refused(tmp_path: Path):
    cluster = HanamiCluster(TEMPLATE, seed=2, learning_rule="gradient", init_scale=0.01)
    optimizer = torch.optim.Adam(cluster.parameters(), lr=0.01)
    train(cluster, optimizer, batches(0, 2))
    path = tmp_path / "good.optimizer.safetensors"
    hanami_torch.save_optimizer(optimizer, path)
    fresh = torch.optim.Adam(cluster.parameters(), lr=0.01)
    cases = [
        ({"format": "something.else"}, {}, True, r"is not a hanami_torch optimizer state \(format 'something.else'\)"),
        ({"format_version": "2"}, {}, True, r"has optimizer state format '2'.*upgrade hanami_torch"),
        ({"format_version": "one"}, {}, True, r"has optimizer state format 'one'"),
        ({"param_groups": '[{"lr": 0.5}]'}, {}, False, r"is damaged"),  # an edited learning rate, not signed
        ({"state_values": "not json"}, {}, True, r"has unusable optimizer metadata"),
        ({}, {"other/0/x": torch.zeros(1)}, True, r"has unusable optimizer metadata: unexpected tensor 'other/0/x'"),
        ({"param_groups": "[]"}, {}, True, r"does not fit this optimizer"),
    ]
    for number, (metadata, tensors, sign, message) in enumerate(cases):
        damaged = _rewrite(path, tmp_path / f"case{number}.optimizer.safetensors", metadata, tensors, sign)
        with pytest.raises(CheckpointError, match=message):
            hanami_torch.load_optimizer(fresh, damaged)
        assert fresh.state_dict()["state"] == {} and fresh.param_groups[0]["lr"] == 0.01  # left as it was
    hanami_torch.load_optimizer(fresh, _rewrite(path, tmp_path / "resigned.optimizer.safetensors"))
    assert fresh.state_dict()["state"].keys() == optimizer.state_dict()["state"].keys()

    checkpoint_file = tmp_path / "cluster.safetensors"
    hanami_torch.save(cluster, checkpoint_file)
    renamed = tmp_path / "cluster-as.optimizer.safetensors"  # a cluster checkpoint under an optimizer's name
    renamed.write_bytes(checkpoint_file.read_bytes())
    with pytest.raises(CheckpointError, match="is not a hanami_torch optimizer state"):
        hanami_torch.load_optimizer(torch.optim.Adam(cluster.parameters()), renamed)

    optimizer.param_groups[0]["schedule"] = object()  # a value safetensors metadata cannot hold
    with pytest.raises(TypeError, match=r"cannot store optimizer param_groups\[0\]\['schedule'\].*without pickle"):
        hanami_torch.save_optimizer(optimizer, tmp_path / "never.optimizer.safetensors")
    assert not (tmp_path / "never.optimizer.safetensors").exists()
