#!/usr/bin/env python3
"""The peers' methods equal the peers, in the peers' own conventions.

HiResCAM, element-wise Grad-CAM, Eigen-CAM and Eigen-Grad-CAM against pytorch-grad-cam
(min-max normalised at layer resolution; torchvision ResNet-18, random weights from a
fixed seed, eval, at ``layer3`` and ``layer4``); IS-CAM, SS-CAM (the same noise draws)
and Smooth Grad-CAM++ (its weights, the same noise draws, where the maths coincide)
against torchcam. The singular vector's sign, which LAPACK leaves open, is handled
explicitly: pytorch-grad-cam's own projections decide per example which sign its map
took.
"""

from typing import Any, Dict, List, Tuple

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
    LayerISCam,
    LayerSmoothGradCamPlusPlus,
    LayerSSCam,
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


# ---------------------------------------------------------------- torchcam's methods
def _small_resnet() -> Tuple[nn.Module, nn.Module, torch.Tensor]:
    # layer1 (64 channels, 8 x 8 at 32 x 32) keeps the peers' K·N forwards cheap;
    # 32·32 is a multiple of 16, so torch draws the noise chunk by chunk as in one piece
    torch.manual_seed(1)
    model = torchvision.models.resnet18(weights=None).eval()
    return model, model.layer1, _inputs(32, 2)


def test_is_cam_equals_torchcam() -> None:
    from torchcam.methods import ISCAM

    model, layer, x = _small_resnet()
    targets = TARGETS
    ours = LayerISCam(model, layer).attribute(
        x, target=targets, num_samples=3, internal_batch_size=64
    )
    with ISCAM(
        model, target_layer=layer, batch_size=64, num_samples=3, input_shape=x.shape[1:]
    ) as peer:
        with torch.no_grad():
            scores = model(x)
        (peer_maps,) = peer(class_idx=targets, scores=scores)
    assert float(ours.amax()) > 0
    torch.testing.assert_close(minmax_normalize(ours)[:, 0], peer_maps, atol=1e-4, rtol=0)


def test_ss_cam_equals_torchcam_with_the_same_noise() -> None:
    from torchcam.methods import SSCAM

    model, layer, x = _small_resnet()
    targets = TARGETS
    ours = LayerSSCam(model, layer).attribute(
        x, target=targets, num_samples=2, seed=5, internal_batch_size=96
    )
    with SSCAM(
        model, target_layer=layer, batch_size=64, num_samples=2, std=2.0, input_shape=x.shape[1:]
    ) as peer:
        with torch.no_grad():
            scores = model(x)
        torch.manual_seed(5)  # torchcam draws from the global generator
        (peer_maps,) = peer(class_idx=targets, scores=scores)
    torch.testing.assert_close(minmax_normalize(ours)[:, 0], peer_maps, atol=1e-4, rtol=0)
    # another seed is another draw
    other = LayerSSCam(model, layer).attribute(x, target=targets, num_samples=2, seed=6)
    assert not torch.allclose(minmax_normalize(other), minmax_normalize(ours), atol=1e-3)


def test_ss_cam_leaves_the_global_random_state_alone() -> None:
    model, layer, x = _small_resnet()
    state = torch.get_rng_state()
    LayerSSCam(model, layer).attribute(x[:1], target=1, num_samples=1, internal_batch_size=None)
    assert torch.equal(state, torch.get_rng_state())


class _PooledMLP(nn.Module):
    r"""A global average pool, then a non-linear head: ``dy/dA`` is the same at every
    position of a channel but depends on the input (so the noise matters)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 6, 3, padding=1), nn.ReLU()
        )
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 10), nn.Tanh(), nn.Linear(10, 5)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _torchcam_smooth_weights(
    model: nn.Module, layer: nn.Module, x: torch.Tensor, targets: List[int], samples: int, seed: int
) -> torch.Tensor:
    from torchcam.methods import SmoothGradCAMpp

    with SmoothGradCAMpp(
        model, target_layer=layer, num_samples=samples, input_shape=x.shape[1:]
    ) as peer:
        scores = model(x)
        torch.manual_seed(seed)
        (weights,) = peer._get_weights(targets, scores)
    return weights


def test_smooth_grad_cam_plus_plus_weights_equal_torchcam_where_the_maths_coincide() -> None:
    # ResNet-18 layer4: dy/dA is constant over the positions and the input (a linear
    # head), so torchcam's two formula differences vanish, for any number of samples
    torch.manual_seed(1)
    model = torchvision.models.resnet18(weights=None).eval()
    x = _inputs(64, 2)
    _, ours = LayerSmoothGradCamPlusPlus(model, model.layer4).attribute(
        x, target=TARGETS, seed=5, return_weights=True
    )
    theirs = _torchcam_smooth_weights(model, model.layer4, x, TARGETS, 4, 5)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7 * float(ours.abs().max()))
    # a non-linear head after the pool: the noise changes dy/dA; with one sample the
    # last sample's gradient is the mean, so the draws themselves are compared
    net = _PooledMLP().eval()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    _, ours = LayerSmoothGradCamPlusPlus(net, net.body[3]).attribute(
        x, target=[1, 4], seed=7, num_samples=1, return_weights=True
    )
    theirs = _torchcam_smooth_weights(net, net.body[3], x, [1, 4], 1, 7)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-8)
    _, other_seed = LayerSmoothGradCamPlusPlus(net, net.body[3]).attribute(
        x, target=[1, 4], seed=8, num_samples=1, return_weights=True
    )
    assert not torch.allclose(other_seed, ours)


def test_smooth_grad_cam_plus_plus_by_hand_in_float64() -> None:
    # the paper's averages of g, g^2, g^3 over the noisy inputs, by plain autograd
    net = _PooledMLP().double().eval()
    body = nn.Sequential(net.body[0], net.body[1], nn.Conv2d(8, 6, 3, padding=1))
    body[2].load_state_dict(net.body[2].state_dict())
    body = body.double()
    head = nn.Sequential(nn.ReLU(), net.head)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    target = [1, 4]
    maps, weights = LayerSmoothGradCamPlusPlus(net, net.body[2]).attribute(
        x, target=target, seed=11, num_samples=3, stdevs=0.5, return_weights=True
    )
    generator = torch.Generator().manual_seed(11)
    grads = []
    for _ in range(3):
        noisy = x + 0.5 * torch.randn(x.shape, generator=generator, dtype=torch.float64)
        a = body(noisy).detach().requires_grad_()
        head(a)[[0, 1], target].sum().backward()
        grads.append(a.grad)
    g = torch.stack(grads)
    g1, g2, g3 = g.mean(0), g.pow(2).mean(0), g.pow(3).mean(0)
    a_clean = body(x).detach()
    alpha = g2 / (2 * g2 + a_clean.sum(dim=(2, 3), keepdim=True) * g3 + 1e-8)
    alpha = torch.where(g2 != 0, alpha, torch.zeros_like(alpha))
    expected = (g1.clamp_min(0) * alpha).sum(dim=(2, 3))
    torch.testing.assert_close(weights, expected, rtol=1e-10, atol=1e-14)
    expected_map = (expected[:, :, None, None] * a_clean).sum(1, keepdim=True).clamp_min(0)
    torch.testing.assert_close(maps, expected_map, rtol=1e-10, atol=1e-14)
