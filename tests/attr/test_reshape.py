#!/usr/bin/env python3
"""reshape_transform on every method: a vision transformer's tokens (Grad-CAM and
Grad-CAM++ equal pytorch-grad-cam's with the same transform), a channels-last layer
(every method equals itself on the channels-first layer of the same model), the head
methods putting modified maps back (the CLS token kept), and the refusals."""

import warnings
from typing import Any, Dict, Tuple

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch import Tensor

import captum_cams as cc
from captum_cams._utils.maps import minmax_normalize
from captum_cams.attr._reshape import gather_index, restore_layer_values

timm = pytest.importorskip("timm")


def _tiny_vit() -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    return VisionTransformer(
        img_size=32, patch_size=8, depth=1, embed_dim=16, num_heads=2, num_classes=10
    ).eval()


X = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
TARGETS = [1, 4, 7]


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


# ---------------------------------------------------------------------- transforms
def test_ready_transforms_lay_tokens_and_channels_last_maps_on_their_grid() -> None:
    tokens = torch.randn(2, 1 + 6, 5)
    grid = cc.vit_reshape_transform(tokens, grid_size=(2, 3))
    assert grid.shape == (2, 5, 2, 3)
    torch.testing.assert_close(grid[:, :, 1, 2], tokens[:, 1 + 5])  # row-major patches
    deit = cc.vit_reshape_transform(torch.randn(2, 2 + 16, 5), num_prefix_tokens=2)
    assert deit.shape == (2, 5, 4, 4)
    channels_last = torch.randn(2, 3, 4, 5)
    assert torch.equal(cc.swin_reshape_transform(channels_last), channels_last.permute(0, 3, 1, 2))
    swin_tokens = torch.randn(2, 9, 5)
    assert torch.equal(cc.swin_reshape_transform(swin_tokens)[:, :, 2, 1], swin_tokens[:, 7])
    with pytest.raises(ValueError, match="square grid: pass grid_size"):
        cc.vit_reshape_transform(torch.randn(2, 1 + 6, 5))
    with pytest.raises(ValueError, match="N x L x C"):
        cc.vit_reshape_transform(torch.randn(2, 5))
    with pytest.raises(ValueError, match="num_prefix_tokens"):
        cc.vit_reshape_transform(tokens, num_prefix_tokens=7)


def test_gather_index_inverts_selections_and_refuses_computed_values() -> None:
    tokens = torch.randn(2, 1 + 9, 4)
    index = gather_index(cc.vit_reshape_transform, tokens)
    assert index is not None and index.numel() == 9 * 4
    maps = cc.vit_reshape_transform(tokens)
    assert torch.equal(restore_layer_values(maps, tokens, index), tokens)
    changed = restore_layer_values(torch.zeros_like(maps), tokens, index)
    assert torch.equal(changed[:, 0], tokens[:, 0]) and not changed[:, 1:].any()  # CLS kept
    assert gather_index(cc.swin_reshape_transform, torch.randn(2, 3, 3, 4)).numel() == 36
    for computed in (
        lambda t: cc.vit_reshape_transform(t) * 2,  # new values
        lambda t: torch.cat([cc.vit_reshape_transform(t)] * 2, dim=1),  # repeated values
        lambda t: cc.vit_reshape_transform(t.flip(0)),  # mixes examples
    ):
        assert gather_index(computed, tokens) is None


# ---------------------------------------------------------------------- a ViT
@pytest.mark.parametrize("method", ["GradCAM", "GradCAMPlusPlus"])
def test_vit_grad_cam_and_grad_cam_plus_plus_equal_pytorch_grad_cams(method: str) -> None:
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    vit = _tiny_vit()
    layer = vit.blocks[-1].norm1
    ours_class = {"GradCAM": cc.LayerGradCam, "GradCAMPlusPlus": cc.LayerGradCamPlusPlus}[method]
    cam = ours_class(vit, layer, reshape_transform=cc.vit_reshape_transform)
    ours = minmax_normalize(cam.attribute(X, target=TARGETS, relu_attributions=True))
    peer_class = getattr(pytorch_grad_cam, method)
    with peer_class(vit, [layer], reshape_transform=cc.vit_reshape_transform) as peer:
        peer.get_target_width_height = lambda _inputs: None  # keep layer resolution
        theirs = peer(input_tensor=X, targets=[ClassifierOutputTarget(t) for t in TARGETS])
    assert ours.shape == (3, 1, 4, 4) and float(ours.amax()) > 0
    np.testing.assert_allclose(ours[:, 0].detach().numpy(), theirs, atol=1e-4, rtol=0)


def _vit_methods(reshape: Any) -> Dict[str, Tuple[Any, Dict[str, Any]]]:
    return {
        "Grad-CAM": (cc.LayerGradCam, {"relu_attributions": True}),
        "Grad-CAM++": (cc.LayerGradCamPlusPlus, {}),
        "XGrad-CAM": (cc.LayerXGradCam, {}),
        "Layer-CAM": (cc.LayerCam, {}),
        "Score-CAM": (cc.LayerScoreCam, {}),
        "Ablation-CAM": (cc.LayerAblationCam, {}),
        "SHAP-CAM": (cc.LayerShapCam, {"num_permutations": 2}),
        "IG-CAM": (cc.LayerIntegratedGradCam, {"n_steps": 3}),
    }


def test_every_method_runs_on_a_vit_and_leaves_it_as_it_was() -> None:
    vit = _tiny_vit()
    layer = vit.blocks[-1].norm1
    hooks, flags = _hooks(vit), [p.requires_grad for p in vit.parameters()]
    for name, (method, options) in _vit_methods(cc.vit_reshape_transform).items():
        cam = method(vit, layer, reshape_transform=cc.vit_reshape_transform)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the head methods' whole-model fallback
            maps = cam.attribute(X, target=TARGETS, **options)
        assert maps.shape == (3, 1, 4, 4) and torch.isfinite(maps).all(), name
        assert float(maps.abs().max()) > 0, name
    reference = cc.ReferenceLibrary.build(
        vit, layer, [(X, torch.tensor(TARGETS))], 10, tau=0.2, progress=False,
        reshape_transform=cc.vit_reshape_transform,
    )  # fmt: skip
    libra = cc.LayerLibraCam(
        vit, layer, library=reference, reshape_transform=cc.vit_reshape_transform
    )
    target = [c for c in range(10) if reference.counts()[c]][:1] * 3
    assert libra.attribute(X, target=target).shape == (3, 1, 32, 32)
    assert _hooks(vit) == hooks and [p.requires_grad for p in vit.parameters()] == flags
    assert all(p.grad is None for p in vit.parameters())


def test_vit_ablation_zeroes_a_patch_channel_and_keeps_the_cls_token() -> None:
    # the exact Ablation-CAM weights, from whole-model passes with embedding dim k of
    # the patch tokens (not the CLS token) at the layer's output set to 0
    vit = _tiny_vit().double()
    layer = vit.blocks[-1].norm1
    x = X.double()
    cam = cc.LayerAblationCam(vit, layer, reshape_transform=cc.vit_reshape_transform)
    with pytest.warns(RuntimeWarning, match="head="):  # norm1 has the residual around it
        _, weights = cam.attribute(x, target=TARGETS, return_weights=True)
    with torch.no_grad():
        outputs = vit(x)
        expected = torch.empty(3, 16, dtype=torch.float64)
        for k in range(16):

            def ablate(_m: nn.Module, _i: Any, out: Tensor, k: int = k) -> Tensor:
                out = out.clone()
                out[:, 1:, k] = 0
                return out

            handle = layer.register_forward_hook(ablate)
            ablated = vit(x)
            handle.remove()
            for i, c in enumerate(TARGETS):
                expected[i, k] = (outputs[i, c] - ablated[i, c]) / outputs[i, c]
    torch.testing.assert_close(weights, expected, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------------- channels last
class ChannelsLast(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.permute(0, 2, 3, 1)


class ChannelsFirst(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.permute(0, 3, 1, 2)


def _channels_last_model() -> nn.Sequential:
    torch.manual_seed(0)
    return (
        nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1, stride=2),
            nn.ReLU(),
            ChannelsLast(),  # the layer a channels-last network (Swin) offers: N x h x w x K
            ChannelsFirst(),
            nn.Conv2d(6, 6, 1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(6, 5),
        )
        .double()
        .eval()
    )


METHODS: Dict[str, Tuple[type, Dict[str, Any]]] = {
    "Grad-CAM": (cc.LayerGradCam, {"relu_attributions": True}),
    "Grad-CAM++": (cc.LayerGradCamPlusPlus, {}),
    "XGrad-CAM": (cc.LayerXGradCam, {}),
    "Layer-CAM": (cc.LayerCam, {}),
    "Score-CAM": (cc.LayerScoreCam, {}),
    "Ablation-CAM": (cc.LayerAblationCam, {}),
    "LIFT-CAM": (cc.LayerLiftCam, {}),
    "SHAP-CAM": (cc.LayerShapCam, {"num_permutations": 3}),
    "IG-CAM": (cc.LayerIntegratedGradCam, {"n_steps": 3}),
    "HiResCAM": (cc.LayerHiResCam, {}),
    "Grad-CAM EW": (cc.LayerGradCamElementWise, {}),
    "Eigen-CAM": (cc.LayerEigenCam, {}),
    "Eigen-Grad-CAM": (cc.LayerEigenGradCam, {}),
    "SS-CAM": (cc.LayerSSCam, {"num_samples": 2, "seed": 0}),
    "IS-CAM": (cc.LayerISCam, {"num_samples": 2}),
    "Smooth Grad-CAM++": (cc.LayerSmoothGradCamPlusPlus, {"num_samples": 2, "seed": 0}),
    "Relevance-CAM": (cc.LayerRelevanceCam, {}),
}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_a_channels_last_layer_through_the_transform_equals_the_channels_first_layer(
    name: str,
) -> None:
    method, options = METHODS[name]
    model = _channels_last_model()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    target = [1, 3]
    expected = method(model, model[1]).attribute(x, target=target, **options)
    ours = method(model, model[2], reshape_transform=cc.swin_reshape_transform).attribute(
        x, target=target, **options
    )
    assert float(expected.abs().max()) > 0
    torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-12)
    # the same values as the next module's input (attribute_to_layer_input)
    from_input = method(model, model[3], reshape_transform=cc.swin_reshape_transform).attribute(
        x, target=target, attribute_to_layer_input=True, **options
    )
    torch.testing.assert_close(from_input, expected, rtol=1e-10, atol=1e-12)


def test_libra_cam_and_its_library_through_the_transform() -> None:
    model = _channels_last_model()
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    loader = [(x, torch.tensor([0, 1, 2, 3]))]
    plain = cc.ReferenceLibrary.build(model, model[1], loader, 5, tau=0.3, progress=False)
    reshaped = cc.ReferenceLibrary.build(
        model, model[2], loader, 5, tau=0.3, progress=False,
        reshape_transform=cc.swin_reshape_transform,
    )  # fmt: skip
    assert torch.equal(plain.activations, reshaped.activations)
    target = [c for c in range(5) if plain.counts()[c]][:1] * 4
    expected = cc.LayerLibraCam(model, model[1], library=plain).attribute(x, target=target)
    ours = cc.LayerLibraCam(
        model, model[2], library=reshaped, reshape_transform=cc.swin_reshape_transform
    ).attribute(x, target=target)
    # the same maths; the permuted layout only changes the order of the channel sums
    torch.testing.assert_close(ours, expected, rtol=1e-8, atol=1e-9)


# ---------------------------------------------------------------------- refusals
class TokenModel(nn.Module):
    r"""Patch embedding, a CLS token, a token layer, the mean over all tokens: no skip
    connection around the layer, so the head splits with torch.fx."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 4, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, 4))
        self.layer = nn.LayerNorm(4)
        self.fc = nn.Linear(4, 5)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.embed(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], dim=1)
        return self.fc(torch.relu(self.layer(tokens)).mean(dim=1))


def test_head_methods_use_the_fx_head_and_refuse_what_they_cannot_put_back() -> None:
    torch.manual_seed(0)
    model = TokenModel().double().eval()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    ablation = cc.LayerAblationCam(model, model.layer, reshape_transform=cc.vit_reshape_transform)
    assert ablation.head.source == "fx"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        maps = ablation.attribute(x, target=[0, 2])
    assert maps.shape == (2, 1, 2, 2)
    lift = cc.LayerLiftCam(model, model.layer, reshape_transform=cc.vit_reshape_transform)
    with pytest.raises(ValueError, match="keeps 16 of 20 per example") as caught:
        lift.attribute(x, target=[0, 2])
    assert "\n" not in str(caught.value)

    def doubled(tokens: Tensor) -> Tensor:
        return cc.vit_reshape_transform(tokens) * 2

    cam = cc.LayerAblationCam(model, model.layer, reshape_transform=doubled)
    with pytest.raises(ValueError, match="only selects and reorders") as caught:
        cam.attribute(x, target=[0, 2])
    assert "\n" not in str(caught.value)
    # a gradient method takes any transform, as pytorch-grad-cam does
    assert cc.LayerGradCam(model, model.layer, reshape_transform=doubled).attribute(
        x, target=0
    ).shape == (2, 1, 2, 2)


def test_a_token_layer_without_a_transform_names_the_argument() -> None:
    vit = _tiny_vit()
    with pytest.raises(ValueError, match=r"got shape \(3, 17, 16\): pass reshape_transform="):
        cc.LayerGradCam(vit, vit.blocks[-1].norm1).attribute(X, target=1)
    with pytest.raises(ValueError, match="reshape_transform must turn the layer's output"):
        cc.LayerGradCam(vit, vit.blocks[-1].norm1, reshape_transform=lambda t: t).attribute(
            X, target=1
        )
    with pytest.raises(TypeError, match="reshape_transform must be a callable"):
        cc.LayerScoreCam(vit, vit.blocks[-1].norm1, reshape_transform="vit")


def test_threshold_fine_tuning_wraps_a_method_with_a_transform() -> None:
    vit = _tiny_vit().double()
    x = X.double()
    cam = cc.LayerGradCam(vit, vit.blocks[-1].norm1, reshape_transform=cc.vit_reshape_transform)
    tuned, details = cc.ThresholdFineTuned(cam).attribute(x, target=TARGETS, return_details=True)
    maps = cam.attribute(x, target=TARGETS)
    expected = cc.threshold_fine_tuning(vit, x, maps, target=TARGETS)
    torch.testing.assert_close(tuned, expected.tuned_maps)
    assert tuned.shape == (3, 1, 32, 32)
