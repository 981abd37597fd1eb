#!/usr/bin/env python3
"""The shared CAM core, checked through every method built on it."""

from typing import List

import pytest
import torch
import torch.nn as nn
import torchvision
from captum.attr import LayerGradCam as CaptumLayerGradCam

from captum_cams import (
    LayerAblationCam,
    LayerCam,
    LayerGradCam,
    LayerGradCamPlusPlus,
    LayerScoreCam,
    LayerXGradCam,
)
from captum_cams.attr import CamBase

METHODS: List[type] = [
    LayerGradCam,
    LayerGradCamPlusPlus,
    LayerXGradCam,
    LayerCam,
    LayerAblationCam,
    LayerScoreCam,
]
IDS = [m.__name__ for m in METHODS]


class SmallNet(nn.Module):
    """conv-ReLU-conv-ReLU (the CAM layer), then a non-linear head."""

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(6, 4, 3, padding=1, stride=2)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(16, 8)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc2(self.relu3(self.fc1(self.flatten(self.pool(a)))))


def _small(dtype: torch.dtype = torch.float32) -> SmallNet:
    torch.manual_seed(0)
    return SmallNet().to(dtype).eval()


def _images(n: int = 3, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(1)).to(dtype)


def _hook_count(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks)
        + len(m._forward_pre_hooks)
        + len(m._backward_hooks)
        + len(getattr(m, "_backward_pre_hooks", {}))
        for m in model.modules()
    )


def test_grad_cam_equals_captum_layer_grad_cam_with_relu() -> None:
    torch.manual_seed(4)
    model = torchvision.models.resnet18(weights=None).eval()
    images = torch.randn(3, 3, 96, 96, generator=torch.Generator().manual_seed(5))
    targets = [1, 200, 999]
    ours, weights = LayerGradCam(model, model.layer4).attribute(
        images, target=targets, relu_attributions=True, return_weights=True
    )
    theirs = CaptumLayerGradCam(model, model.layer4).attribute(
        images, target=targets, relu_attributions=True
    )
    assert float(theirs.detach().amax()) > 0
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    assert weights.shape == (3, 512)


def test_grad_cam_weights_are_mean_gradients_float64() -> None:
    """Grad-CAM's closed form on a linear head: dy_c/dA = W_c / (h w), weights W_c / (h w)."""
    model = _small(torch.float64)
    head_free = nn.Sequential(
        model.conv1,
        model.relu1,
        model.conv2,
        model.relu2,
        model.pool,
        model.flatten,
        nn.Linear(16, 5).double(),
    ).eval()
    layer = head_free[3]
    _, weights = LayerGradCam(head_free, layer).attribute(
        _images(2, torch.float64), target=[0, 3], return_weights=True
    )
    fc = head_free[6].weight.view(5, 4, 4)  # class x channel x (2 x 2 pooled cells)
    # the 4 x 4 layer output is average-pooled to 2 x 2: each cell mean over 4 positions,
    # so dy_c/dA_k,ij = W_c,k,cell(ij) / 4 and its mean over the 16 positions is sum(W_c,k)/16
    expected = fc.sum(dim=2)[[0, 3]] / 16
    torch.testing.assert_close(weights, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("method", METHODS, ids=IDS)
def test_batch_invariance(method: type) -> None:
    model = _small(torch.float64)
    images = _images(4, torch.float64)
    targets = [0, 4, 2, 2]
    batched = method(model, model.relu2).attribute(images, target=targets)
    for i in range(4):
        alone = method(model, model.relu2).attribute(images[i : i + 1], target=targets[i])
        torch.testing.assert_close(batched[i : i + 1], alone, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("method", METHODS, ids=IDS)
def test_float64_and_inputs_without_grad(method: type) -> None:
    model = _small(torch.float64)
    images = _images(2, torch.float64)
    assert not images.requires_grad
    maps = method(model, model.relu2).attribute(images, target=1)
    assert maps.dtype == torch.float64 and maps.shape == (2, 1, 4, 4)
    assert torch.isfinite(maps).all()
    assert not images.requires_grad and images.grad is None


@pytest.mark.parametrize("method", METHODS, ids=IDS)
def test_frozen_model_works(method: type) -> None:
    model = _small()
    for p in model.parameters():
        p.requires_grad_(False)
    maps = method(model, model.relu2).attribute(_images(), target=[0, 1, 2])
    assert torch.isfinite(maps).all()
    assert not any(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("method", METHODS, ids=IDS)
def test_hooks_released_grads_and_mode_kept(method: type) -> None:
    model = _small()
    model.train()
    model.fc1.eval()  # a mixed mode must come back exactly
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    saved = {n: p.grad.clone() for n, p in model.named_parameters()}
    before = _hook_count(model)
    attribution = method(model, model.relu2)
    images = _images()
    for _ in range(3):  # a hook, grad or mode left behind shows after the first call
        attribution.attribute(images, target=[0, 1, 2])
    with pytest.raises(ValueError, match="target"):
        attribution.attribute(images, target=7)
    assert _hook_count(model) == before
    for name, p in model.named_parameters():
        assert torch.equal(p.grad, saved[name]), name
    assert model.training and not model.fc1.training


def test_hooks_released_after_head_mismatch() -> None:
    model = _small()
    attribution = LayerAblationCam(
        model,
        model.relu2,
        head=nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5)),
    )
    with pytest.raises(ValueError, match="head"):
        attribution.attribute(_images(), target=0)
    assert _hook_count(model) == 0


def test_derived_head_is_fx_and_fallback_agrees() -> None:
    torch.manual_seed(6)
    model = torchvision.models.resnet18(weights=None).eval()
    images = torch.randn(2, 3, 32, 32)
    around_skip = model.layer4[1].conv1  # a skip connection bypasses it: no fx split
    assert LayerAblationCam(model, model.layer4).head.source == "fx"
    assert LayerAblationCam(model, around_skip).head.source == "fallback"
    # the fallback re-runs the whole model (once per channel and example); both must
    # give the same Ablation-CAM on a layer where both exist: layer2's last block
    # (128 channels, 4 x 4 maps at 32 x 32; layer4 at 64 x 64 took 16 times longer)
    fx_maps = LayerAblationCam(model, model.layer2[1]).attribute(images, target=[3, 4])
    forced = LayerAblationCam(model, model.layer2[1])
    forced.head.module, forced.head.source = None, "fallback"
    assert float(fx_maps.amax()) > 0  # not a comparison of two all-zero maps
    torch.testing.assert_close(
        forced.attribute(images, target=[3, 4]), fx_maps, rtol=1e-4, atol=1e-5
    )


def test_return_weights_shapes() -> None:
    model = _small()
    images = _images()
    for method in METHODS:
        maps, weights = method(model, model.relu2).attribute(
            images, target=0, relu_attributions=True, return_weights=True
        )
        expected = (3, 4, 4, 4) if method is LayerCam else (3, 4)
        assert weights.shape == expected, method.__name__
        torch.testing.assert_close(
            maps,
            torch.relu(
                CamBase._weighted_sum(
                    weights, model.relu2(model.conv2(model.relu1(model.conv1(images))))
                )
            ),
            rtol=1e-5,
            atol=1e-6,
        )


def test_predicted_class_is_the_default_target() -> None:
    model = _small()
    images = _images()
    predicted = model(images).argmax(1).tolist()
    torch.testing.assert_close(
        LayerGradCamPlusPlus(model, model.relu2).attribute(images),
        LayerGradCamPlusPlus(model, model.relu2).attribute(images, target=predicted),
    )


def test_target_formats_agree() -> None:
    model = _small()
    images = _images()
    cam = LayerXGradCam(model, model.relu2)
    reference = cam.attribute(images, target=[2, 2, 2])
    for target in (2, torch.tensor(2), torch.tensor([2, 2, 2])):
        torch.testing.assert_close(cam.attribute(images, target=target), reference)


def test_additional_forward_args_follow_the_rows() -> None:
    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = _small()

        def forward(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
            return self.net(x) * scale[:, None]

    model = Scaled().eval()
    images = _images()
    scale = torch.tensor([1.0, -2.0, 0.5])
    for method in (LayerScoreCam, LayerAblationCam, LayerGradCamPlusPlus):
        batched = method(model, model.net.relu2).attribute(
            images, target=1, additional_forward_args=(scale,)
        )
        for i in range(3):
            alone = method(model, model.net.relu2).attribute(
                images[i : i + 1], target=1, additional_forward_args=(scale[i : i + 1],)
            )
            torch.testing.assert_close(batched[i : i + 1], alone, rtol=1e-5, atol=1e-6)


def test_internal_batch_size_does_not_change_results() -> None:
    model = _small(torch.float64)
    images = _images(3, torch.float64)
    for method in (LayerScoreCam, LayerAblationCam):
        results = [
            method(model, model.relu2).attribute(images, target=[0, 1, 2], internal_batch_size=b)
            for b in (1, 5, None)
        ]
        for other in results[1:]:
            torch.testing.assert_close(other, results[0], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("method", METHODS, ids=IDS)
def test_bad_input_gets_clear_errors(method: type) -> None:
    model = _small()
    cam = method(model, model.relu2)
    with pytest.raises(ValueError, match="inputs must be a 4-D"):
        cam.attribute(_images()[0], target=0)
    with pytest.raises(ValueError, match="target out of range"):
        cam.attribute(_images(), target=5)
    with pytest.raises(ValueError, match="target out of range"):
        cam.attribute(_images(), target=[0, -1, 2])
    with pytest.raises(ValueError, match="target given as a list"):
        cam.attribute(_images(), target=[0, 1])
    nan_images = _images()
    nan_images[1, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="inputs contains NaN"):
        cam.attribute(nan_images, target=0)
    with pytest.raises(TypeError, match="inputs must be a torch.Tensor"):
        cam.attribute(_images().numpy(), target=0)
    with pytest.raises(ValueError, match="layer is not a submodule"):
        method(model, nn.Conv2d(4, 4, 1))
    with pytest.raises(ValueError, match="4-D"):
        method(model, model.fc1).attribute(_images(), target=0)


def test_bad_internal_batch_size_and_score() -> None:
    model = _small()
    with pytest.raises(ValueError, match="internal_batch_size"):
        LayerScoreCam(model, model.relu2).attribute(_images(), internal_batch_size=0)
    with pytest.raises(ValueError, match="score"):
        LayerScoreCam(model, model.relu2).attribute(_images(), score="softmax")


def test_layer_not_called_by_forward_func() -> None:
    model = _small()
    unused = nn.ReLU()
    model.unused = unused
    with pytest.raises(ValueError, match="not called"):
        LayerGradCamPlusPlus(model, unused).attribute(_images(), target=0)
    assert _hook_count(model) == 0


def test_minmax_reaches_exactly_one_and_constant_maps_give_zeros() -> None:
    from captum_cams._utils.maps import minmax_normalize

    maps = torch.tensor(
        [[[[1.0, 3.0], [2.0, 5.0]]], [[[2.0, 2.0], [2.0, 2.0]]]], dtype=torch.float64
    )
    out = minmax_normalize(maps)
    assert out[0].flatten().tolist() == [0.0, 0.5, 0.25, 1.0]
    assert out[1].abs().sum() == 0 and not torch.isnan(out).any()


@pytest.mark.parametrize("method", METHODS, ids=IDS)
def test_batch_norm_statistics_untouched_in_train_mode(method: type) -> None:
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    ).train()
    before = {name: b.clone() for name, b in model.named_buffers()}
    method(model, model[2]).attribute(_images(), target=[0, 1, 2])
    for name, buffer in model.named_buffers():
        assert torch.equal(buffer, before[name]), name
    assert model.training
