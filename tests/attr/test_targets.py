#!/usr/bin/env python3
"""Captum's targets on outputs of any rank: a tuple ``(c, h, w)`` on a segmentation's
``N x C x H x W`` output, one tuple per example, and a model with one output per
example. LayerGradCam equals Captum's; every method that only needs ``y_c`` equals
itself on the model wrapped to return that one value; Libra-CAM refuses in one line."""

from typing import Any, Dict, Tuple

import captum.attr as captum_attr
import pytest
import torch
import torch.nn as nn
from captum._utils.common import _select_targets
from torch import Tensor

import captum_cams as cc
from captum_cams._utils.guards import target_positions, target_values


class TinySegmenter(nn.Module):
    r"""``N x 4 x 4 x 4`` class scores per position of a stride-2 layer."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 5, 3, padding=1)
        self.layer = nn.Conv2d(5, 6, 3, padding=1, stride=2)
        self.classifier = nn.Conv2d(6, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        features = torch.relu(self.layer(torch.relu(self.stem(x))))
        return self.classifier(features)


class Picked(nn.Module):
    r"""The model's value at ``position`` for every row, ``N x 1``."""

    def __init__(self, model: nn.Module, position: Tuple[int, ...]) -> None:
        super().__init__()
        self.model = model
        self.position = position

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)[(slice(None), *self.position)][:, None]


def _segmenter() -> TinySegmenter:
    torch.manual_seed(0)
    return TinySegmenter().double().eval()


X = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

#: method -> (class, attribute keyword arguments)
METHODS: Dict[str, Tuple[type, Dict[str, Any]]] = {
    "Grad-CAM": (cc.LayerGradCam, {}),
    "Grad-CAM++": (cc.LayerGradCamPlusPlus, {"relu_attributions": False}),
    "XGrad-CAM": (cc.LayerXGradCam, {"relu_attributions": False}),
    "Layer-CAM": (cc.LayerCam, {"relu_attributions": False}),
    "Score-CAM": (cc.LayerScoreCam, {"relu_attributions": False}),
    "Ablation-CAM": (cc.LayerAblationCam, {"relu_attributions": False}),
    "LIFT-CAM": (cc.LayerLiftCam, {"relu_attributions": False}),
    "SHAP-CAM": (cc.LayerShapCam, {"num_permutations": 3, "relu_attributions": False}),
    "IG-CAM": (cc.LayerIntegratedGradCam, {"n_steps": 3, "relu_attributions": False}),
}


def test_target_positions_select_what_captum_selects() -> None:
    outputs = torch.randn(3, 4, 5, 6, dtype=torch.float64)
    for target in [(1, 2, 3), [(0, 4, 5), (3, 0, 0), (2, 2, 2)], torch.tensor([[1, 1, 1]] * 3)]:
        ours = target_values(outputs, target_positions(target, outputs))
        theirs = (
            _select_targets(outputs, [tuple(r) for r in target.tolist()])
            if isinstance(target, Tensor)
            else _select_targets(outputs, target)
        )
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    scalar = torch.randn(3, dtype=torch.float64)
    torch.testing.assert_close(target_values(scalar, target_positions(None, scalar)), scalar)
    with pytest.raises(ValueError, match=r"each target must hold 3 indices"):
        target_positions((1,), outputs)
    with pytest.raises(ValueError, match="target is needed"):
        target_positions(None, outputs)
    with pytest.raises(ValueError, match="out of range: dimension 3"):
        target_positions((1, 2, 6), outputs)


@pytest.mark.parametrize("target", [(2, 3, 1), [(2, 3, 1), (1, 0, 2)]], ids=["one", "per-example"])
def test_layer_grad_cam_equals_captums_with_a_tuple_target(target: Any) -> None:
    model = _segmenter()
    theirs = captum_attr.LayerGradCam(model, model.layer).attribute(X, target=target)
    ours = cc.LayerGradCam(model, model.layer).attribute(X, target=target)
    assert float(theirs.detach().abs().max()) > 0
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_needing_only_y_c_takes_a_tuple_target(name: str) -> None:
    method, options = METHODS[name]
    positions = [(2, 3, 1), (1, 0, 2)]
    model = _segmenter()
    ours = method(model, model.layer).attribute(X, target=positions, **options)
    for i, position in enumerate(positions):  # the methods evaluate many rows per example
        picked = Picked(model, position)
        expected = method(picked, model.layer).attribute(X[i : i + 1], target=0, **options)
        assert float(expected.abs().max()) > 0
        torch.testing.assert_close(ours[i : i + 1], expected, rtol=1e-10, atol=1e-12)


def test_libra_cam_refuses_a_non_class_target_in_one_line() -> None:
    model = _segmenter()
    libra = cc.LayerLibraCam(model, model.layer)
    with pytest.raises(ValueError, match="class per example for Libra-CAM") as caught:
        libra.attribute(X, target=(2, 3, 1), use_references=False, score="logit")
    assert "\n" not in str(caught.value)


def test_one_output_per_example_needs_no_target() -> None:
    model = _segmenter()
    total = cc.OutputAdapter(model, select=lambda out: out[:, 2].sum(dim=(1, 2)))
    ours = cc.LayerGradCam(total, model.layer).attribute(X)
    theirs = captum_attr.LayerGradCam(total, model.layer).attribute(X)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="target must hold 0 indices|selects 1 index"):
        cc.LayerGradCam(total, model.layer).attribute(X, target=1)


def test_lraspp_mobilenet_v3_large_equals_captum_with_target_c_h_w() -> None:
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    segmenter = torchvision.models.segmentation.lraspp_mobilenet_v3_large(
        weights=None, weights_backbone=None
    ).eval()
    model = cc.OutputAdapter(segmenter, select="out")  # torchvision returns {"out": ...}
    layer = segmenter.backbone["16"]
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    for target in [(15, 20, 11), [(15, 20, 11), (0, 31, 2)]]:
        theirs = captum_attr.LayerGradCam(model, layer).attribute(x, target=target)
        ours = cc.LayerGradCam(model, layer).attribute(x, target=target)
        assert ours.shape == (2, 1, 2, 2) and float(theirs.detach().abs().max()) > 0
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=0)
