#!/usr/bin/env python3
"""Inputs named on the command line: preprocessing keeps boxes on their pixels,
checkpoints load with weights_only=True, layers are found or refused by name."""

import collections
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from PIL import Image

from captum_cams._utils.inputs import (
    InputError,
    Preprocess,
    check_image_file,
    list_images,
    load_model,
    resolve_layer,
)


class _NotWeights:
    """A pickled object of its own class: ``weights_only=True`` refuses to build it."""


def test_mask_follows_the_image_geometry() -> None:
    # a 300 x 400 image: shorter side 300 -> 256 gives 256 x 341 (400 * 256 / 300 = 341.3),
    # the 224 centre crop starts at row (256 - 224) // 2 = 16, column (341 - 224) // 2 = 58
    prep = Preprocess(256, 224)
    mask = torch.zeros(1, 300, 400, dtype=torch.bool)
    mask[:, 150:300, 200:400] = True  # the lower right quarter
    out = prep.mask(mask)
    assert out.shape == (1, 224, 224) and out.dtype == torch.bool
    rows = out[0].any(1).nonzero().flatten()
    cols = out[0].any(0).nonzero().flatten()
    assert int(rows[0]) == 128 - 16 and int(rows[-1]) == 223  # 150 * 256/300 = 128
    assert int(cols[0]) == 171 - 58 and int(cols[-1]) == 223  # 200 * 341/400 = 170.5
    picture = Image.new("RGB", (400, 300), (255, 0, 0))
    image = Preprocess(256, 224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)).image(picture)
    assert image.shape == (3, 224, 224)
    torch.testing.assert_close(image[0], torch.ones(224, 224))  # (1 - 0.5) / 0.5
    torch.testing.assert_close(image[1], -torch.ones(224, 224))


def test_checkpoint_round_trip_and_refusals(tmp_path: Path) -> None:
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None)
    path = tmp_path / "r18.pt"
    torch.save({"state_dict": model.state_dict()}, path)
    loaded = load_model("resnet18", str(path))
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key
    assert loaded.preprocess.crop == 224 and not loaded.model.training

    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": model.state_dict(), "extra": _NotWeights()}, evil)
    with pytest.raises(InputError, match="cannot load .* with weights_only=True"):
        load_model("resnet18", str(evil))
    text = tmp_path / "text.pt"
    text.write_text("hello")
    with pytest.raises(InputError, match="cannot load"):
        load_model("resnet18", str(text))
    with pytest.raises(InputError, match="does not fit the model"):
        load_model("resnet34", str(path))


def test_safetensors_checkpoint(tmp_path: Path) -> None:
    safetensors = pytest.importorskip("safetensors.torch")
    from captum_cams.models import load_embedded_default

    reference = load_embedded_default()
    path = tmp_path / "shapes.safetensors"
    safetensors.save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, path)
    loaded = load_model("embedded", str(path))
    for key, value in reference.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key


def test_layer_by_name_or_the_last_feature_map() -> None:
    model = nn.Sequential(
        collections.OrderedDict(
            conv1=nn.Conv2d(3, 4, 3, padding=1),
            relu=nn.ReLU(),
            conv2=nn.Conv2d(4, 5, 3, stride=2, padding=1),
            pool=nn.AdaptiveAvgPool2d(2),  # 2 x 2: a map, but a pooling layer
            flat=nn.Flatten(),
            fc=nn.Linear(20, 3),
        )
    )
    sample = torch.zeros(1, 3, 8, 8)
    assert resolve_layer(model, None, sample)[0] == "conv2"
    name, module = resolve_layer(model, "conv1", sample)
    assert name == "conv1" and module is model.conv1
    with pytest.raises(InputError, match=r"no module named 'conv3'.*did you mean conv2, conv1\?"):
        resolve_layer(model, "conv3", sample)
    with pytest.raises(InputError, match=r"'fc' outputs \(1, 3\), not an N x C x h x w"):
        resolve_layer(model, "fc", sample)
    import torchvision

    resnet = torchvision.models.resnet18(weights=None).eval()
    assert resolve_layer(resnet, None, torch.zeros(1, 3, 64, 64))[0] == "layer4"


def test_image_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--data: no image files"):
        list_images(str(tmp_path))
    Image.new("RGB", (8, 8)).save(tmp_path / "b.png")
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "sub" / "a.JPG", format="JPEG")
    (tmp_path / "notes.txt").write_text("skip me")
    assert [p.name for p in list_images(str(tmp_path))] == ["b.png", "a.JPG"]
    check_image_file(tmp_path / "b.png")
    with pytest.raises(InputError, match="not a readable image"):
        check_image_file(tmp_path / "notes.txt")


def test_every_torch_load_in_the_package_is_weights_only() -> None:
    import ast

    package = Path(__file__).resolve().parents[2] / "captum_cams"
    unsafe = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name != "load" or not (
                isinstance(func, ast.Attribute) and getattr(func.value, "id", "") == "torch"
            ):
                continue
            flags = {k.arg: k.value for k in node.keywords}
            value = flags.get("weights_only")
            if not (isinstance(value, ast.Constant) and value.value is True):
                unsafe.append(f"{path.relative_to(package.parent)}:{node.lineno}")
    assert not unsafe, f"torch.load without weights_only=True at {unsafe}"
