#!/usr/bin/env python3
"""The peers' methods equal the peers, in the peers' own conventions.

HiResCAM, element-wise Grad-CAM, Eigen-CAM and Eigen-Grad-CAM against pytorch-grad-cam
(min-max normalised at layer resolution; torchvision ResNet-18, random weights from a
fixed seed, eval, at ``layer3`` and ``layer4``). IS-CAM, SS-CAM and Smooth Grad-CAM++
against torchcam are in their own files (``test_is_cam.py``, ``test_ss_cam.py``,
``test_smooth_grad_cam_plus_plus.py``). The singular vector's sign, which LAPACK leaves
open, is handled explicitly: pytorch-grad-cam's own projections decide per example which
sign its map took.
"""

from typing import Any, Dict, Tuple

import numpy as np
import pytest
import torch
import torch.nn as nn
import torchvision
from pytorch_grad_cam import (
    EigenCAM,
    EigenGradCAM,
    GradCAMElementWise,
    GradCAMPlusPlus,
    HiResCAM,
)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.svd_on_activations import (
    get_2d_projection,
    get_2d_projection_with_sign_correction,
)

from captum_cams import (
    LayerEigenCam,
    LayerEigenGradCam,
    LayerGradCam,
    LayerGradCamElementWise,
    LayerGradCamPlusPlus,
    LayerHiResCam,
)
from captum_cams._utils.maps import minmax_normalize

TARGETS = [3, 512]
LAYERS = ["layer3", "layer4"]


@pytest.fixture(scope="module")
def resnet18() -> nn.Module:
    torch.manual_seed(1)
    return torchvision.models.resnet18(weights=None).eval()


def _inputs(size: int = 96, num: int = 2) -> torch.Tensor:
    # 96 px: layer3 is 6 x 6, layer4 3 x 3
    return torch.randn(num, 3, size, size, generator=torch.Generator().manual_seed(3))


def _pgc(peer_class: Any, model: nn.Module, layer: nn.Module, x: torch.Tensor, **call: Any):  # type: ignore[no-untyped-def]
    with peer_class(model=model, target_layers=[layer]) as peer:
        peer.get_target_width_height = lambda _inputs: None  # stay at layer resolution
        return peer(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in TARGETS], **call)


def _mm(maps: torch.Tensor) -> np.ndarray:
    return minmax_normalize(maps.detach())[:, 0].numpy()


def _np_mm(maps: np.ndarray) -> np.ndarray:
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    return (maps - low) / np.where(span > 0, span, 1.0)


@pytest.fixture(scope="module")
def captured(resnet18: nn.Module) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    r"""Per layer, A and dy_c/dA by an own hook and autograd (no code of the package)."""
    store: Dict[str, torch.Tensor] = {}
    handles = []
    for name in LAYERS:

        def hook(_m: nn.Module, _i: Any, out: torch.Tensor, name: str = name) -> None:
            out.retain_grad()
            store[name] = out

        handles.append(getattr(resnet18, name).register_forward_hook(hook))
    try:
        logits = resnet18(_inputs())
    finally:
        for handle in handles:
            handle.remove()
    logits[torch.arange(len(TARGETS)), TARGETS].sum().backward()
    resnet18.zero_grad()
    result = {}
    for name, a in store.items():
        assert a.grad is not None
        result[name] = (a.detach().numpy(), a.grad.numpy())
    return result


@pytest.mark.parametrize("layer_name", LAYERS)
def test_hires_and_element_wise_equal_pytorch_grad_cam(
    resnet18: nn.Module, layer_name: str
) -> None:
    layer = getattr(resnet18, layer_name)
    x = _inputs()
    hires = LayerHiResCam(resnet18, layer).attribute(x, target=TARGETS)
    element_wise = LayerGradCamElementWise(resnet18, layer).attribute(x, target=TARGETS)
    for ours, peer_class in ((hires, HiResCAM), (element_wise, GradCAMElementWise)):
        peer = _pgc(peer_class, resnet18, layer, x)
        assert ours.shape[-2:] == peer.shape[-2:] and float(ours.max()) > 0
        np.testing.assert_allclose(_mm(ours), peer, atol=1e-4, rtol=0)
    assert bool((element_wise >= hires - 1e-6).all())  # sum of relu >= relu of sum
    assert not torch.allclose(hires, element_wise)


def _signs(ours_projection: np.ndarray, peer_projection: np.ndarray) -> np.ndarray:
    r"""Per example, +1 where pytorch-grad-cam's LAPACK picked our sign, else -1."""
    dots = (ours_projection * peer_projection).sum(axis=(1, 2))
    assert bool((np.abs(dots) > 0).all())
    return np.sign(dots)[:, None, None]


@pytest.mark.parametrize("layer_name", LAYERS)
def test_eigen_cam_equals_pytorch_grad_cam_up_to_the_singular_vectors_sign(
    resnet18: nn.Module, captured: Dict[str, Tuple[np.ndarray, np.ndarray]], layer_name: str
) -> None:
    layer = getattr(resnet18, layer_name)
    x = _inputs()
    activations, _ = captured[layer_name]
    cam = LayerEigenCam(resnet18, layer)
    projection = cam.attribute(x, relu_attributions=False)[:, 0].detach().numpy()
    # our sign rule is pytorch-grad-cam's sign-corrected projection, to the value
    corrected = get_2d_projection_with_sign_correction(activations)
    scale = np.abs(corrected).max()
    np.testing.assert_allclose(projection, corrected, atol=1e-4 * scale, rtol=0)
    # pytorch-grad-cam's EigenCAM maps: ReLU of whichever sign its LAPACK returned
    signs = _signs(projection, get_2d_projection(activations))
    peer = _pgc(EigenCAM, resnet18, layer, x)
    np.testing.assert_allclose(_np_mm(np.maximum(signs * projection, 0)), peer, atol=1e-3)
    ours = _mm(cam.attribute(x))
    np.testing.assert_allclose(ours, _np_mm(np.maximum(corrected, 0)), atol=1e-3, rtol=0)


@pytest.mark.parametrize(
    "ours_class, peer_class, eigen_smooth, relu_terms, layer_name",
    [
        (LayerEigenGradCam, EigenGradCAM, False, False, "layer3"),
        (LayerEigenGradCam, EigenGradCAM, False, False, "layer4"),
        (LayerHiResCam, HiResCAM, True, False, "layer4"),
        (LayerGradCamElementWise, GradCAMElementWise, True, True, "layer4"),
    ],
    ids=[
        "eigengradcam-layer3",
        "eigengradcam-layer4",
        "hires-eigen_smooth",
        "elementwise-eigen_smooth",
    ],
)
def test_gradient_projections_equal_pytorch_grad_cam_up_to_the_sign(
    resnet18: nn.Module,
    captured: Dict[str, Tuple[np.ndarray, np.ndarray]],
    ours_class: Any,
    peer_class: Any,
    eigen_smooth: bool,
    relu_terms: bool,
    layer_name: str,
) -> None:
    layer = getattr(resnet18, layer_name)
    x = _inputs()
    activations, gradients = captured[layer_name]
    terms = gradients * activations
    if relu_terms:
        terms = np.maximum(terms, 0)
    kwargs = {"eigen_smooth": True} if eigen_smooth else {}
    projection = (
        ours_class(resnet18, layer)
        .attribute(x, target=TARGETS, relu_attributions=False, **kwargs)[:, 0]
        .detach()
        .numpy()
    )
    corrected = get_2d_projection_with_sign_correction(terms)
    np.testing.assert_allclose(projection, corrected, atol=1e-4 * np.abs(corrected).max())
    signs = _signs(projection, get_2d_projection(terms))
    peer = _pgc(peer_class, resnet18, layer, x, eigen_smooth=eigen_smooth)
    np.testing.assert_allclose(_np_mm(np.maximum(signs * projection, 0)), peer, atol=1e-3)


def test_the_sign_rule_makes_the_largest_magnitude_positive(
    resnet18: nn.Module, captured: Dict[str, Tuple[np.ndarray, np.ndarray]]
) -> None:
    x = _inputs()
    maps, direction = LayerEigenCam(resnet18, resnet18.layer3).attribute(
        x, relu_attributions=False, return_weights=True
    )
    flat = maps.flatten(1)
    assert bool((flat.amax(dim=1) >= flat.amin(dim=1).abs()).all())
    # v is the direction of that projection: sum_k v_k (A_k - mean A_k), a unit vector
    a = torch.from_numpy(captured["layer3"][0])
    rebuilt = (direction[:, :, None, None] * (a - a.mean(dim=(2, 3), keepdim=True))).sum(1)
    torch.testing.assert_close(maps[:, 0], rebuilt, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(direction.norm(dim=1), torch.ones(2), atol=1e-5, rtol=0)


def test_a_one_by_one_layer_is_refused_by_the_projection() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    x = torch.randn(2, 3, 5, 5)
    with pytest.raises(ValueError, match="at least 2 positions"):
        LayerEigenCam(net.eval(), net[1]).attribute(x)


@pytest.mark.parametrize(
    "ours_class, peer_class",
    [(LayerHiResCam, HiResCAM), (LayerGradCamPlusPlus, GradCAMPlusPlus)],
    ids=["hirescam", "gradcam++"],
)
def test_aug_smooth_equals_pytorch_grad_cam(
    resnet18: nn.Module, ours_class: Any, peer_class: Any
) -> None:
    x = _inputs(48)
    ours = ours_class(resnet18, resnet18.layer3).attribute(x, target=TARGETS, aug_smooth=True)
    peer = _pgc(peer_class, resnet18, resnet18.layer3, x, aug_smooth=True)
    assert float(ours.min()) >= 0 and float(ours.max()) <= 1
    np.testing.assert_allclose(ours[:, 0].detach().numpy(), peer, atol=1e-4, rtol=0)
    plain = _mm(ours_class(resnet18, resnet18.layer3).attribute(x, target=TARGETS))
    assert not np.allclose(ours[:, 0].detach().numpy(), plain, atol=1e-3)


def test_aug_smooth_with_no_target_explains_the_unaugmented_prediction(
    resnet18: nn.Module,
) -> None:
    x = _inputs(32)
    predicted = resnet18(x).argmax(dim=1)
    cam = LayerHiResCam(resnet18, resnet18.layer3)
    torch.testing.assert_close(
        cam.attribute(x, aug_smooth=True), cam.attribute(x, target=predicted, aug_smooth=True)
    )


def test_smoothing_options_refuse_what_they_cannot_return(resnet18: nn.Module) -> None:
    x = _inputs(32, 1)
    cam = LayerHiResCam(resnet18, resnet18.layer3)
    with pytest.raises(ValueError, match="return_weights cannot be combined with aug_smooth"):
        cam.attribute(x, target=1, aug_smooth=True, return_weights=True)
    with pytest.raises(TypeError, match="eigen_smooth must be a bool"):
        cam.attribute(x, target=1, eigen_smooth="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="attr_dim_summation=False"):
        LayerGradCam(resnet18, resnet18.layer3).attribute(
            x, 1, attr_dim_summation=False, eigen_smooth=True
        )
