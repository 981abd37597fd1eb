#!/usr/bin/env python3
"""torchvision's classification CNNs at the layers the README recommends
(benchmarks/architectures.py's registry): the fx split of every builder, the cheap
methods and one head method run on the small ones, DenseNet-121's in-place head
(every method's map is relu(Σ w·A) of the layer's real output, on every call), and
the Sequential(Normalize, resnet18) wrapper whose Normalize fx cannot trace.

Random weights and small inputs; the heavy builders are only built on the meta
device and split, which is what a torchvision release could break."""

import importlib.util
import warnings
from pathlib import Path
from typing import Any, Dict, Tuple

import pytest
import torch
import torch.nn as nn
from torch import Tensor

import captum_cams as cc
from captum_cams.attr._deeplift_head import UnsupportedNonLinearityError, deeplift_head
from captum_cams.attr._head import LayerHead, split_head

_SPEC = importlib.util.spec_from_file_location(
    "architectures", Path(__file__).resolve().parents[2] / "benchmarks" / "architectures.py"
)
assert _SPEC is not None and _SPEC.loader is not None
architectures = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(architectures)
REGISTRY = {arch.name: arch for arch in architectures.ARCHITECTURES}

#: Run for real (they build in well under a second); the others are split on meta.
RUN = (
    "resnet18",
    "mobilenet_v2",
    "efficientnet_b0",
    "squeezenet1_1",
    "googlenet",
    "shufflenet_v2_x1_0",
)
SPLIT_ONLY = tuple(
    name
    for name in REGISTRY
    if name not in RUN and name not in ("densenet121", "Sequential(Normalize, resnet18)")
)


def _build(name: str, device: str = "cpu") -> nn.Module:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's init_weights notices
        try:
            with torch.device(device):
                return REGISTRY[name].build().eval()
        except NotImplementedError:  # RegNet computes its widths with tensors
            return REGISTRY[name].build().eval()


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def _weighted(weights: Tensor, activations: Tensor) -> Tensor:
    w = weights if weights.dim() == 4 else weights[:, :, None, None]
    return (w * activations).sum(dim=1, keepdim=True)


@pytest.mark.parametrize("name", SPLIT_ONLY)
def test_heavy_builders_split_after_their_layer(name: str) -> None:
    model = _build(name, device="meta")
    layer = model.get_submodule(REGISTRY[name].layer)
    head = split_head(model, layer)
    assert head is not None
    assert not any(n.op == "placeholder" and n.name != "activation" for n in head.graph.nodes)
    # LIFT-CAM's preparation: every head is supported, ConvNeXt's only with its
    # LayerNorm scale fixed (refused by default, naming the option)
    if name == "convnext_tiny":
        with pytest.raises(UnsupportedNonLinearityError, match="fixed_layer_norm=True"):
            deeplift_head(head)
    deeplift_head(head, fixed_layer_norm=name == "convnext_tiny")


@pytest.mark.parametrize("name", RUN)
def test_small_builders_cheap_methods_and_a_head_method(name: str) -> None:
    model = _build(name)
    layer = model.get_submodule(REGISTRY[name].layer)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    activations, outputs = architectures.capture(model, layer, x)
    target = outputs.argmax(dim=1)
    hooks, flags = _hooks(model), [p.requires_grad for p in model.parameters()]

    ablation = cc.LayerAblationCam(model, layer)
    assert ablation.head.source == "fx"  # the split, not whole-model passes
    for cam in (cc.LayerGradCam(model, layer), ablation):
        maps, weights = cam.attribute(x, target=target, relu_attributions=True, return_weights=True)
        assert maps.shape == (2, 1) + activations.shape[-2:]
        assert torch.isfinite(maps).all()
        expected = torch.relu(_weighted(weights, activations))
        torch.testing.assert_close(maps, expected, rtol=1e-4, atol=1e-5 * float(expected.max()))
    again = ablation.attribute(x, target=target)
    torch.testing.assert_close(again, maps, rtol=0, atol=0)  # the check ran once, harmlessly
    assert _hooks(model) == hooks and [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())


def _densenet_methods() -> Dict[str, Tuple[Any, Dict[str, Any]]]:
    return {
        "Grad-CAM": (cc.LayerGradCam, {"relu_attributions": True}),
        "Grad-CAM++": (cc.LayerGradCamPlusPlus, {}),
        "XGrad-CAM": (cc.LayerXGradCam, {}),
        "Layer-CAM": (cc.LayerCam, {}),
        "Ablation-CAM": (cc.LayerAblationCam, {}),
        "LIFT-CAM": (cc.LayerLiftCam, {}),
        "SHAP-CAM": (cc.LayerShapCam, {"num_permutations": 2}),
    }


def test_densenet_maps_weight_the_layers_own_output_on_every_call() -> None:
    # DenseNet's head begins with an in-place ReLU on the layer's output; no method
    # may weight relu(A) instead of A, on the first call or any later one. (Score-CAM
    # needs no head, and 2 x 1024 whole-model passes: the matrix checks it.)
    model = _build("densenet121").double()
    layer = model.features.norm5
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    activations, outputs = architectures.capture(model, layer, x)
    assert (activations < 0).any()  # otherwise the in-place ReLU would change nothing
    target = torch.tensor([3, 7])
    weights = {}
    for name, (method, options) in _densenet_methods().items():
        cam = method(model, layer)
        first, weights[name] = cam.attribute(x, target=target, return_weights=True, **options)
        torch.testing.assert_close(first, torch.relu(_weighted(weights[name], activations)))
        if name in ("Ablation-CAM", "LIFT-CAM", "SHAP-CAM"):  # the head methods
            raw, again = cam.attribute(
                x, target=target, return_weights=True, relu_attributions=False, **options
            )
            torch.testing.assert_close(raw, _weighted(again, activations))
            torch.testing.assert_close(again, weights[name], rtol=0, atol=0)
            assert raw.abs().max() > 0, name
    # LIFT-CAM's completeness on the real A: sum_k alpha_k = F_c(A) - F_c(0)
    alpha = weights["LIFT-CAM"]
    at_zero = architectures.zero_layer_outputs(model, layer, x)
    index = torch.arange(2)
    torch.testing.assert_close(
        alpha.sum(dim=1), outputs[index, target] - at_zero[index, target], rtol=1e-9, atol=1e-9
    )


def test_normalize_wrapper_is_split_around_the_untraceable_normalize() -> None:
    model = _build("Sequential(Normalize, resnet18)")
    normalise, net = model[0], model[1]
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([3, 7])
    for method in (cc.LayerAblationCam, cc.LayerLiftCam, cc.LayerShapCam):
        wrapped = method(model, net.layer4)
        assert wrapped.head.source == "fx", method.__name__
        # the same maps as on the bare network fed the normalised images
        expected = method(net, net.layer4).attribute(normalise(x), target=target)
        torch.testing.assert_close(wrapped.attribute(x, target=target), expected)


class _Untraceable(nn.Module):
    r"""Data-dependent control flow: torch.fx cannot trace it."""

    def forward(self, x: Tensor) -> Tensor:
        return x * 2 if x.sum() > 0 else x - 1


def test_untraceable_modules_become_single_calls_before_and_after_the_layer() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        _Untraceable(),
        nn.Conv2d(3, 4, 3),
        nn.ReLU(),
        _Untraceable(),
        nn.Flatten(),
        nn.Linear(64, 3),
    ).eval()
    x = torch.randn(2, 3, 6, 6)
    head = split_head(model, model[2])
    assert head is not None
    calls = [n.target for n in head.graph.nodes if n.op == "call_module"]
    assert calls == ["3", "4", "5"]  # the untraceable module after the layer, as one call
    activations, outputs = architectures.capture(model, model[2], x)
    torch.testing.assert_close(head(activations), outputs)
    layer_head = LayerHead(model, model[1])
    assert layer_head.source == "fx"
    # LIFT-CAM must see inside every head operation: a clear refusal naming head=
    with pytest.raises(UnsupportedNonLinearityError, match="head="):
        cc.LayerLiftCam(model, model[2])
