#!/usr/bin/env python3
"""The CIFAR ResNet definition against the real shared checkpoints and photos."""

from pathlib import Path

import pytest
import torch

from captum_cams import (
    LayerAblationCam,
    LayerCam,
    LayerGradCam,
    LayerGradCamPlusPlus,
    LayerScoreCam,
    LayerXGradCam,
)
from captum_cams.kit.datasets import cifar10_test_set
from captum_cams.kit.models import load_cifar_resnet

# Top-1 on 200 test JPEGs per class, as stated in the data folder's README.
STATED_ACCURACY = {"resnet20-12fca82f.th": 0.814, "resnet56-4bfd9763.th": 0.832}


def _first_per_class(dataset, per_class: int):  # type: ignore[no-untyped-def]
    counts = [0] * len(dataset.classes)
    chosen = []
    for index, (_, label) in enumerate(dataset.samples):
        if counts[label] < per_class:
            counts[label] += 1
            chosen.append(index)
    return torch.utils.data.Subset(dataset, chosen)


@pytest.mark.parametrize("checkpoint", sorted(STATED_ACCURACY))
def test_accuracy_matches_the_data_readme(cifar10_root: Path, checkpoint: str) -> None:
    model = load_cifar_resnet(cifar10_root / checkpoint)
    subset = _first_per_class(cifar10_test_set(cifar10_root), 200)
    loader = torch.utils.data.DataLoader(subset, batch_size=500)
    correct = 0
    with torch.no_grad():
        for images, labels in loader:
            correct += int((model(images).argmax(1) == labels).sum())
    accuracy = correct / len(subset)
    assert abs(accuracy - STATED_ACCURACY[checkpoint]) <= 0.01, accuracy


def test_every_baseline_gives_finite_non_constant_maps(cifar10_root: Path) -> None:
    model = load_cifar_resnet(cifar10_root / "resnet20-12fca82f.th")
    images, labels = next(
        iter(
            torch.utils.data.DataLoader(
                _first_per_class(cifar10_test_set(cifar10_root), 1), batch_size=10
            )
        )
    )
    for method in (
        LayerGradCam,
        LayerGradCamPlusPlus,
        LayerXGradCam,
        LayerCam,
        LayerAblationCam,
        LayerScoreCam,
    ):
        maps = method(model, model.layer3).attribute(images, target=labels)
        assert maps.shape == (10, 1, 8, 8), method.__name__
        assert torch.isfinite(maps).all(), method.__name__
        spread = maps.flatten(1).amax(1) - maps.flatten(1).amin(1)
        assert (spread > 0).all(), method.__name__


def test_checkpoint_name_and_path_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="arch"):
        load_cifar_resnet(tmp_path / "model.th")
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_cifar_resnet(tmp_path / "resnet20-x.th")
