"""Hanami's own acceptance script (service_inventory §7.5), through the client against a real
server: projects, users, datasets, clusters, one MNIST epoch as a task, checkpoint round trip,
request task whose outputs and accuracy equal those of a local HanamiCluster trained with the
same seed, and a hand-drawn "5" learned over direct IO."""

from __future__ import annotations

import asyncio

import pytest
import torch
from support import missing

from hanami_torch import HanamiCluster, templates
from hanami_torch.client import ConflictError, NotFoundError, UnprocessableError
from hanami_torch.data import MNIST_FILES, data_dir, mnist_available, one_hot

from .helpers import PASSWORD, unique


def hand_drawn_five() -> torch.Tensor:
    """A 28x28 "5" drawn with thick strokes (values 0 or 255), flattened to [784]."""
    image = torch.zeros(28, 28)
    image[4:7, 8:21] = 255      # top bar
    image[4:15, 8:11] = 255     # left stroke down to the middle
    image[12:15, 8:19] = 255    # middle bar
    image[13:22, 18:21] = 255   # right side of the bowl
    image[20:23, 7:20] = 255    # bottom bar
    return image.flatten()


@pytest.fixture(scope="module")
def mnist_files():
    if not mnist_available():
        missing(f"MNIST not under {data_dir()}: set HANAMI_DATA_DIR to the folder holding MNIST/raw/")
    raw = data_dir() / "MNIST" / "raw"
    return {name: raw / name for name in MNIST_FILES}


def test_projects_and_users(admin):
    project = unique("proj")
    assert admin.create_project(project, "Acceptance project")["id"] == project
    with pytest.raises(ConflictError):
        admin.create_project(project, "again")
    assert project in [p["id"] for p in admin.pages(admin.list_projects)]
    assert admin.get_project(project)["name"] == "Acceptance project"
    with pytest.raises(NotFoundError):
        admin.get_project(unique("nothere"))
    admin.delete_project(project)
    with pytest.raises(NotFoundError):
        admin.delete_project(project)

    user = unique("user")
    assert admin.create_user(user, "Test User", PASSWORD, is_admin=True)["is_admin"] is True
    with pytest.raises(ConflictError):
        admin.create_user(user, "again", PASSWORD)
    assert user in [u["id"] for u in admin.pages(admin.list_users)]
    assert admin.get_user(user)["name"] == "Test User"
    with pytest.raises(NotFoundError):
        admin.get_user(unique("nobody"))
    admin.delete_user(user)
    with pytest.raises(NotFoundError):
        admin.delete_user(user)


@pytest.fixture(scope="module")
def local_epoch(mnist_train, mnist_test):
    """The same epoch as the service's task, trained here: (cluster, test-set outputs)."""
    cluster = HanamiCluster(templates.MNIST, seed=0)
    cluster.learn_many(mnist_train[0], one_hot(mnist_train[1]))
    return cluster, cluster.predict_many(mnist_test[0])


@pytest.mark.slow
def test_mnist_workflow(server, make_member, mnist_files, local_epoch, mnist_test):
    user = make_member()
    local, local_outputs = local_epoch

    # datasets
    train = user.upload_mnist("mnist-train", mnist_files["train-images-idx3-ubyte"],
                              mnist_files["train-labels-idx1-ubyte"])
    test = user.upload_mnist("mnist-test", mnist_files["t10k-images-idx3-ubyte"], mnist_files["t10k-labels-idx1-ubyte"])
    assert (train["samples"], train["inputs"], test["samples"]) == (60000, 784, 10000)
    assert {train["id"], test["id"]} <= {d["id"] for d in user.pages(user.list_datasets)}
    assert user.get_dataset(test["id"])["type"] == "mnist"
    assert not any("/" in str(value) for value in user.get_dataset(test["id"]).values())  # no server paths
    with pytest.raises(UnprocessableError):
        user.get_dataset("not-a-uuid")

    # clusters: create, get, delete, delete again
    probe = user.create_cluster("probe", templates.MNIST)
    assert probe["id"] in [c["id"] for c in user.pages(user.list_clusters)]
    assert user.get_cluster(probe["id"])["stats"]["synapses"] == 0
    with pytest.raises(UnprocessableError):
        user.get_cluster("not-a-uuid")
    user.delete_cluster(probe["id"])
    with pytest.raises(NotFoundError):
        user.delete_cluster(probe["id"])

    # one epoch of training as a task, polling its progress
    cluster = user.create_cluster("mnist", templates.MNIST, seed=0)
    assert cluster["seed"] == 0
    task = user.create_task(cluster["id"], train["id"], "train", name="epoch 1")
    assert task["state"] in ("queued", "running")
    seen = []
    task = user.wait_task(task["id"], poll_s=0.1, on_progress=lambda t: seen.append(t["progress"]))
    assert task["state"] == "finished", task["error"]
    assert task["samples_done"] == 60000 and seen == sorted(seen) and seen[-1] == 1.0
    trained = user.get_cluster(cluster["id"])["stats"]
    # the service trains in chunks of samples; the result equals one local learn_many call
    assert trained["steps"] == 60000
    assert {key: trained[key] for key in ("synapses", "sections")} == {key: local.stats()[key] for key in ("synapses", "sections")}
    user.delete_task(task["id"])

    # checkpoint, new cluster, restore
    checkpoint = user.save_checkpoint(cluster["id"], "after one epoch")
    assert checkpoint["synapses"] == trained["synapses"]
    assert checkpoint["id"] in [c["id"] for c in user.pages(user.list_checkpoints)]
    user.delete_cluster(cluster["id"])
    cluster = user.create_cluster("mnist", templates.MNIST)
    assert user.get_cluster(cluster["id"])["stats"]["synapses"] == 0
    restored = user.restore_checkpoint(cluster["id"], checkpoint["id"])
    assert restored["stats"]["synapses"] == trained["synapses"]
    user.delete_checkpoint(checkpoint["id"])
    with pytest.raises(NotFoundError):
        user.delete_checkpoint(checkpoint["id"])

    # request task on the test set, result, accuracy
    task = user.wait_task(user.create_task(cluster["id"], test["id"], "request", name="test")["id"], poll_s=0.1)
    assert task["state"] == "finished", task["error"]
    assert task["id"] in [t["id"] for t in user.pages(user.list_tasks, cluster_id=cluster["id"])]
    user.delete_task(task["id"])
    result = user.get_result(task["result_id"])
    assert result["samples"] == 10000 and result["outputs"] == 10
    assert result["id"] in [r["id"] for r in user.pages(user.list_results)]
    # every output (the service rounds them to 6 decimals) and class equals the local network's
    expected = local_outputs.numpy().round(6)
    for offset in range(0, 10000, 1000):
        page = user.result_data(result["id"], limit=1000, offset=offset)
        assert page["outputs"] == expected[offset : offset + 1000].tolist(), f"outputs from {offset} differ"
        assert page["classes"] == local_outputs[offset : offset + 1000].argmax(1).tolist()
    correct = int((local_outputs.argmax(1) == mnist_test[1]).sum())
    accuracy = user.accuracy(result["id"], test["id"])
    assert (accuracy["correct"], accuracy["total"]) == (correct, 10000)
    assert accuracy["accuracy"] == pytest.approx(correct / 100)
    user.delete_result(result["id"])

    # direct IO: the hand-drawn "5", 100 training steps, then a request
    five = hand_drawn_five()
    target = torch.zeros(10)
    target[5] = 1.0

    async def talk():
        async with user.direct_io(cluster["id"]) as socket:
            for _ in range(100):
                await socket.learn(five, target)
            return await socket.predict(five)

    outputs = asyncio.run(talk())
    assert max(range(10), key=outputs.__getitem__) == 5

    for dataset in (train, test):
        user.delete_dataset(dataset["id"])
    user.delete_cluster(cluster["id"])
    assert user.list_clusters()["total"] == 0
