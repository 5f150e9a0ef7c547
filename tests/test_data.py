"""hanami_torch.data: MNIST loading and one-hot targets."""

from __future__ import annotations

import pytest
import torch
from support import require

from hanami_torch.data import data_dir, load_mnist, one_hot


def test_data_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HANAMI_DATA_DIR", str(tmp_path))
    assert data_dir() == tmp_path
    monkeypatch.delenv("HANAMI_DATA_DIR")
    assert data_dir().name == "data"


@pytest.mark.parametrize("split, size", [("train", 60_000), ("test", 10_000)])
def test_mnist_shapes_dtypes_and_range(split, size, request):
    pixels, labels = request.getfixturevalue(f"mnist_{split}")
    assert pixels.shape == (size, 784) and pixels.dtype == torch.float32
    assert labels.shape == (size,) and labels.dtype == torch.int64
    # Raw grey values, not normalised: whole numbers 0..255.
    assert pixels.min().item() == 0.0 and pixels.max().item() == 255.0
    assert torch.equal(pixels, pixels.round())
    assert labels.min().item() == 0 and labels.max().item() == 9
    assert torch.bincount(labels, minlength=10).min().item() > size // 20


def test_mnist_is_in_file_order(mnist_train, mnist_test):
    # The first labels of the official files.
    assert mnist_train[1][:8].tolist() == [5, 0, 4, 1, 9, 2, 1, 3]
    assert mnist_test[1][:8].tolist() == [7, 2, 1, 0, 4, 1, 4, 9]


def test_missing_mnist_without_download_says_where_to_put_it(tmp_path):
    require("torchvision", "load_mnist needs torchvision: pip install torchvision==0.29.1")
    with pytest.raises(FileNotFoundError, match="HANAMI_DATA_DIR"):
        load_mnist(train=True, root=tmp_path, download=False)
    assert list(tmp_path.iterdir()) == [], "a failed load must not write into the data folder"


def test_one_hot():
    targets = one_hot(torch.tensor([0, 3, 9]))
    assert targets.dtype == torch.float32 and targets.shape == (3, 10)
    assert torch.equal(targets.argmax(1), torch.tensor([0, 3, 9]))
    assert targets.sum().item() == 3.0
    assert one_hot(torch.tensor([1]), n_classes=2).tolist() == [[0.0, 1.0]]


def test_one_hot_rejects_bad_labels():
    with pytest.raises(ValueError, match="n_classes"):
        one_hot(torch.tensor([10]))
    with pytest.raises(ValueError, match="n_classes"):
        one_hot(torch.tensor([-1]))
    with pytest.raises(TypeError):
        one_hot(torch.tensor([1.0]))
    with pytest.raises(ValueError):
        one_hot(torch.tensor([[1]]))
