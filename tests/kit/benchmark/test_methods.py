#!/usr/bin/env python3
"""Libra-CAM's reference library in the benchmark and explain: from the model's own task or
the user's images, never another task's, and a class it cannot serve is one line."""

from pathlib import Path

import pytest
import torch
import torch.nn as nn
from PIL import Image

from captum_cams.attr import ReferenceLibrary
from captum_cams.kit.benchmark import (
    LIBRARY_NEEDED,
    EmbeddedData,
    FolderData,
    MethodContext,
    libra_cam_with_library,
)
from captum_cams.kit.benchmark.methods import _LibraCamWithLibrary
from captum_cams.kit.inputs import InputError, Preprocess, list_images
from captum_cams.kit.models import embedded_default_layer, load_embedded_default


class _Peaked(nn.Module):
    r"""A small CNN whose logits are large, so most classes get probabilities below 1e-4."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 200.0 * self.head(self.features(x))


def _folder(root: Path, count: int) -> FolderData:
    root.mkdir()
    generator = torch.Generator().manual_seed(1)
    for i in range(count):
        pixels = (torch.rand(20, 24, 3, generator=generator) * 255).byte().numpy()
        Image.fromarray(pixels).save(root / f"img{i}.png")
    return FolderData(list_images(str(root)), Preprocess(16, 16))


def test_without_a_source_of_references_libra_cam_is_refused() -> None:
    model = _Peaked().eval()
    context = MethodContext(model, model.features, None, torch.device("cpu"), 0)
    with pytest.raises(InputError, match="needs a reference library") as error:
        libra_cam_with_library(context)
    assert str(error.value) == LIBRARY_NEEDED


def test_the_library_comes_from_library_data_before_the_benchmark_images(tmp_path: Path) -> None:
    model = _Peaked().eval()
    data = _folder(tmp_path / "data", 2)
    references = _folder(tmp_path / "references", 12)
    context = MethodContext(model, model.features, data, torch.device("cpu"), 0, references)
    cam = libra_cam_with_library(context)
    assert cam.library is not None and cam.library.tau == 1e-4
    assert "the first 12 images of --library-data" in cam.source  # type: ignore[attr-defined]
    # every entry is an image of --library-data: its activation is stored as it is
    x = torch.stack([references.load([i]).images[0] for i in range(12)])
    with torch.no_grad():
        stored = model.features(x)
    for entry in cam.library.activations:
        assert any(torch.allclose(entry, a) for a in stored)
    cam = libra_cam_with_library(context._replace(library_data=None))
    assert "the first 2 images of --data" in cam.source  # type: ignore[attr-defined]
    assert torch.is_grad_enabled()  # building the library leaves the grad mode as it was


def test_a_class_without_references_is_refused_in_one_line() -> None:
    model = _Peaked().eval()
    activations = torch.rand(2, 8, 4, 4)
    indices = [torch.tensor([0, 1])] * 4 + [torch.tensor([], dtype=torch.long)]  # none for 4
    library = ReferenceLibrary(activations, indices, 1e-4, 30)
    cam = _LibraCamWithLibrary(model, model.features, library=library)
    cam.source = "a test library"
    x = torch.rand(2, 3, 4, 4)
    with pytest.raises(InputError, match=r"\(a test library\) holds no image .* class 4: pass"):
        cam.attribute(x, target=torch.tensor([1, 4]))
    assert cam.attribute(x, target=torch.tensor([1, 2])).shape == (2, 1, 4, 4)


def test_the_embedded_models_build_their_library_from_their_own_task() -> None:
    model = load_embedded_default().eval()  # the tutorials' model, of GroundTruthShapes
    layer = embedded_default_layer(model)
    data = EmbeddedData(1, "shapes")
    cam = libra_cam_with_library(MethodContext(model, layer, data, torch.device("cpu"), 0))
    assert "training images of the embedded task" in cam.source  # type: ignore[attr-defined]
    assert cam.library is not None and cam.library.tau == data.reference_tau == 1e-4
