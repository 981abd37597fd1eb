#!/usr/bin/env python3
"""The shared CIFAR-10 folder: found or refused with what to do, its test JPEGs read
with the checkpoints' normalisation, the training archive extracted once."""

import io
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from captum_cams.kit.datasets.cifar10 import (
    CIFAR10_CLASSES,
    CIFAR10_MEAN,
    CIFAR10_STD,
    ENV_VAR,
    cifar10_root,
    cifar10_test_set,
    cifar10_train_set,
    find_cifar10_root,
)


def test_a_missing_folder_is_refused_naming_it_and_the_variable(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    assert find_cifar10_root(missing) is None
    with pytest.raises(FileNotFoundError, match=re.escape(f"at {missing}: set {ENV_VAR}")):
        cifar10_root(missing)
    with pytest.raises(FileNotFoundError, match="CIFAR-10 folder not found"):
        cifar10_test_set(missing)


def test_the_test_set_reads_a_jpeg_normalised_by_hand(cifar10_root: Path) -> None:
    test_set = cifar10_test_set(cifar10_root)
    assert len(test_set) == 10_000
    assert test_set.classes == list(CIFAR10_CLASSES)  # labels index CIFAR10_CLASSES
    path, label = test_set.samples[0]
    image, read_label = test_set[0]
    assert read_label == label and CIFAR10_CLASSES[label] == Path(path).parent.name
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0
    expected = (pixels - np.array(CIFAR10_MEAN)) / np.array(CIFAR10_STD)
    expected_chw = torch.from_numpy(expected).permute(2, 0, 1).float()
    torch.testing.assert_close(image, expected_chw, rtol=0, atol=1e-5)
    # [0, 1] pixels normalised: within the transform's range
    low = (0 - torch.tensor(CIFAR10_MEAN)) / torch.tensor(CIFAR10_STD)
    high = (1 - torch.tensor(CIFAR10_MEAN)) / torch.tensor(CIFAR10_STD)
    assert bool((image >= low[:, None, None] - 1e-6).all())
    assert bool((image <= high[:, None, None] + 1e-6).all())


def _tiny_archive(root: Path, folder: str) -> None:
    root.mkdir(parents=True)
    (root / "test").mkdir()
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (255, 0, 0)).save(buffer, format="PNG")
    data = buffer.getvalue()
    with tarfile.open(root / "train.tar.gz", "w:gz") as tar:
        for name in (f"{folder}/cat/0.png", f"{folder}/dog/1.png"):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_the_training_archive_is_extracted_once_into_the_cache(tmp_path: Path) -> None:
    root, cache = tmp_path / "cifar10", tmp_path / "cache"
    _tiny_archive(root, "train")
    train = cifar10_train_set(root, cache_dir=cache)
    assert train.classes == ["cat", "dog"] and len(train) == 2
    image, label = train[1]
    assert label == 1 and image.shape == (3, 32, 32)
    expected_red = (1 - CIFAR10_MEAN[0]) / CIFAR10_STD[0]
    assert float(image[0].min()) == pytest.approx(expected_red, abs=1e-6)
    assert sorted(p.name for p in cache.iterdir()) == ["train"]  # no staging folder left
    (root / "train.tar.gz").unlink()  # the cache is read without the archive
    assert len(cifar10_train_set(root, cache_dir=cache)) == 2


def test_an_archive_without_train_is_refused_and_leaves_no_cache(tmp_path: Path) -> None:
    root, cache = tmp_path / "cifar10", tmp_path / "cache"
    _tiny_archive(root, "other")
    with pytest.raises(ValueError, match="holds no train/ folder"):
        cifar10_train_set(root, cache_dir=cache)
    assert list(cache.iterdir()) == []
    (root / "train.tar.gz").unlink()
    with pytest.raises(FileNotFoundError, match="training archive not found"):
        cifar10_train_set(root, cache_dir=cache)
