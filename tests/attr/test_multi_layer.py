#!/usr/bin/env python3
"""Multi-layer fusion: pytorch-grad-cam's list of target layers (mean) and torchcam's
``fuse_cams`` (maximum), each on the same random-weight ResNet-18."""

import numpy as np
import pytest
import torch
import torchvision
from pytorch_grad_cam import HiResCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from captum_cams import LayerGradCam, LayerHiResCam, MultiLayerCam, fuse_maps
from captum_cams._utils.maps import minmax_normalize

TARGETS = [3, 512]


def _setup() -> tuple:
    torch.manual_seed(1)
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    return model, x


def test_mean_fusion_at_the_input_size_equals_pytorch_grad_cam() -> None:
    model, x = _setup()
    layers = [model.layer3, model.layer4]
    ours = MultiLayerCam(model, layers, LayerHiResCam, fusion="mean").attribute(
        x, target=TARGETS, size=x.shape[-2:]
    )
    with HiResCAM(model=model, target_layers=layers) as peer:
        theirs = peer(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in TARGETS])
    assert ours.shape == (2, 1, 64, 64)
    np.testing.assert_allclose(ours[:, 0].detach().numpy(), theirs, atol=1e-4, rtol=0)


def test_max_fusion_equals_torchcams_fuse_cams() -> None:
    from torchcam.methods import GradCAM

    model, x = _setup()
    layers = [model.layer3, model.layer4]
    # LayerGradCam keeps Captum's default (no ReLU); torchcam's Grad-CAM applies it
    ours = MultiLayerCam(model, layers, LayerGradCam).attribute(
        x, target=TARGETS, relu_attributions=True
    )
    with GradCAM(model, target_layer=layers, input_shape=x.shape[1:]) as extractor:
        cams = extractor(class_idx=TARGETS, scores=model(x))
    fused = GradCAM.fuse_cams(cams)
    assert ours.shape == (2, 1, 4, 4)  # the larger (layer3) resolution, as torchcam
    torch.testing.assert_close(ours[:, 0], fused, atol=1e-5, rtol=0)


def test_fuse_maps_by_hand() -> None:
    coarse = torch.tensor([[[[0.0, 2.0], [4.0, 4.0]]]])
    fine = torch.arange(16.0).view(1, 1, 4, 4)
    up = torch.nn.functional.interpolate(
        coarse / 4.0, size=(4, 4), mode="bilinear", align_corners=False
    )
    torch.testing.assert_close(fuse_maps([coarse, fine]), torch.maximum(up, fine / 15.0))
    mean = (up + fine / 15.0) / 2
    torch.testing.assert_close(fuse_maps([coarse, fine], "mean"), minmax_normalize(mean))
    torch.testing.assert_close(fuse_maps([coarse, fine], size=(2, 2)).shape, (1, 1, 2, 2))


def test_bad_arguments_are_named() -> None:
    model, x = _setup()
    with pytest.raises(ValueError, match="fusion must be"):
        fuse_maps([torch.zeros(1, 1, 2, 2)], fusion="min")
    with pytest.raises(ValueError, match="same examples"):
        fuse_maps([torch.zeros(1, 1, 2, 2), torch.zeros(2, 1, 2, 2)])
    with pytest.raises(ValueError, match="non-empty sequence"):
        fuse_maps([])
    with pytest.raises(TypeError, match="layers must be a non-empty list"):
        MultiLayerCam(model, model.layer4, LayerHiResCam)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"layers\[1\] is not a submodule"):
        MultiLayerCam(model, [model.layer4, torch.nn.Conv2d(1, 1, 1)], LayerHiResCam)
    with pytest.raises(ValueError, match="return_weights is not available"):
        MultiLayerCam(model, [model.layer4], LayerHiResCam).attribute(x, 1, return_weights=True)
