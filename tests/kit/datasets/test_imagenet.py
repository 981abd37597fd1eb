#!/usr/bin/env python3
from pathlib import Path

import pytest
import torch
from PIL import Image

from captum_cams.kit.datasets import (
    ImageNetPhotos,
    find_imagenet_root,
    imagenet_mobilenet_transform,
    imagenet_root,
)

IMAGENET = find_imagenet_root()


def _fake_folder(root: Path) -> Path:
    photos = root / "photos"
    photos.mkdir(parents=True)
    for index, (wnid, name) in enumerate([("n0", "tench"), ("n1", "great_white_shark")]):
        Image.new("RGB", (300, 256), (index * 100, 20, 30)).save(
            photos / f"{index:03d}_{wnid}_{name}.jpg"
        )
    return root


def test_explicit_root_environment_and_absent_folder(tmp_path: Path, monkeypatch) -> None:
    folder = _fake_folder(tmp_path / "imagenet")
    assert find_imagenet_root(folder) == folder
    assert find_imagenet_root(tmp_path / "nowhere") is None
    monkeypatch.setenv("CAPTUM_CAMS_IMAGENET", str(folder))
    assert imagenet_root() == folder
    with pytest.raises(FileNotFoundError, match="CAPTUM_CAMS_IMAGENET"):
        imagenet_root(tmp_path / "nowhere")


def test_photos_labels_and_class_names_from_file_names(tmp_path: Path) -> None:
    photos = ImageNetPhotos(_fake_folder(tmp_path / "imagenet"))
    assert len(photos) == 2 and photos.labels == [0, 1]
    assert photos.class_names == ["tench", "great white shark"]
    image, label = photos[1]
    assert image.shape == (3, 192, 192) and label == 1
    # Normalize(0.5, 0.5): inputs in [-1, 1]
    assert float(image.min()) >= -1.0 and float(image.max()) <= 1.0
    subset = ImageNetPhotos(tmp_path / "imagenet", indices=[1])
    assert subset.labels == [1] and subset.class_names[0] == "tench"


def test_transform_resizes_shorter_side_then_crops_centre() -> None:
    picture = Image.new("RGB", (438, 219), (255, 255, 255))
    tensor = imagenet_mobilenet_transform()(picture)
    assert tensor.shape == (3, 192, 192)
    assert torch.allclose(tensor, torch.ones_like(tensor))


@pytest.mark.skipif(IMAGENET is None, reason="shared ImageNet folder absent")
def test_shared_folder_has_one_photo_per_class() -> None:
    photos = ImageNetPhotos()
    assert len(photos) == 1000 and photos.labels == list(range(1000))
    assert photos.class_names[1] == "goldfish"
