#!/usr/bin/env python3
"""Captum's signatures on every attribution class, and the behaviour behind them.

Each class's ``__init__`` and ``attribute`` are compared with a Captum counterpart's
(``inspect.signature``); then tuple targets, ``attribute_to_layer_input``, the
convergence deltas and ``additional_forward_args`` used after the layer are checked
on tiny float64 models against hand computations.
"""

import inspect
from typing import Any, Callable, Dict, List, Tuple

import captum.attr as captum_attr
import pytest
import torch
import torch.nn as nn

import captum_cams
from captum_cams.attr import (
    LayerAblationCam,
    LayerCam,
    LayerEigenCam,
    LayerEigenGradCam,
    LayerGradCam,
    LayerGradCamElementWise,
    LayerGradCamPlusPlus,
    LayerHiResCam,
    LayerIntegratedGradCam,
    LayerISCam,
    LayerLibraCam,
    LayerLiftCam,
    LayerRelevanceCam,
    LayerScoreCam,
    LayerShapCam,
    LayerSmoothGradCamPlusPlus,
    LayerSSCam,
    LayerXGradCam,
)
from captum_cams.calm import CALM, CALMAttribution

#: Our class -> its Captum counterpart.
COUNTERPARTS: Dict[type, type] = {
    LayerGradCam: captum_attr.LayerGradCam,
    LayerGradCamPlusPlus: captum_attr.LayerGradCam,
    LayerXGradCam: captum_attr.LayerGradCam,
    LayerCam: captum_attr.LayerGradCam,
    LayerLibraCam: captum_attr.LayerGradCam,
    LayerAblationCam: captum_attr.LayerFeatureAblation,
    LayerScoreCam: captum_attr.LayerFeatureAblation,
    LayerShapCam: captum_attr.LayerGradientShap,
    LayerLiftCam: captum_attr.LayerDeepLift,
    LayerIntegratedGradCam: captum_attr.LayerIntegratedGradients,
    CALMAttribution: captum_attr.LayerGradCam,
    LayerHiResCam: captum_attr.LayerGradCam,
    LayerGradCamElementWise: captum_attr.LayerGradCam,
    LayerEigenCam: captum_attr.LayerGradCam,
    LayerEigenGradCam: captum_attr.LayerGradCam,
    LayerSmoothGradCamPlusPlus: captum_attr.LayerGradCam,
    LayerSSCam: captum_attr.LayerFeatureAblation,
    LayerISCam: captum_attr.LayerFeatureAblation,
    LayerRelevanceCam: captum_attr.LayerLRP,
}

#: Parameters whose Captum default differs on purpose (documented in the class).
DOCUMENTED_DEFAULTS = {
    # CALM's layer is optional: the backbone unless another is given
    (CALMAttribution, "__init__", "layer"),
    # the paper's right Riemann sum, not Captum's Gauss-Legendre
    (LayerIntegratedGradCam, "attribute", "method"),
}


def _parameters(function: Callable) -> List[inspect.Parameter]:
    return [p for p in inspect.signature(function).parameters.values() if p.name != "self"]


@pytest.mark.parametrize("ours", list(COUNTERPARTS), ids=lambda c: c.__name__)
@pytest.mark.parametrize("method", ["__init__", "attribute"])
def test_shared_parameters_in_captums_order_with_captums_defaults(ours: type, method: str) -> None:
    theirs = COUNTERPARTS[ours]
    mine = _parameters(getattr(ours, method))
    captums = _parameters(getattr(theirs, method))
    captum_names = [p.name for p in captums]
    if method == "__init__" and captum_names[0] == "model":
        captum_names[0] = "forward_func"  # LayerDeepLift calls it model
    shared = [p for p in mine if p.name in captum_names]
    # the leading parameters: Captum's, in Captum's order
    assert [p.name for p in mine[: len(shared)]] == [p.name for p in shared]
    order = [captum_names.index(p.name) for p in shared]
    if ours in (LayerLiftCam, LayerRelevanceCam) and method == "attribute":
        # LIFT-CAM has no baselines (its reference is 0 at the layer): it keeps the
        # package's positional argument 4, attribute_to_layer_input, before the delta;
        # Relevance-CAM likewise (Captum's LayerLRP puts the delta first)
        order.remove(captum_names.index("return_convergence_delta"))
    assert order == sorted(order), f"{ours.__name__}.{method}: {[p.name for p in shared]}"
    by_name = {p.name: p for p in captums}
    for parameter in shared:
        theirs_p = by_name.get(parameter.name)
        if theirs_p is None or (ours, method, parameter.name) in DOCUMENTED_DEFAULTS:
            continue
        if parameter.name == "relu_attributions" and ours is not LayerGradCam:
            # the other methods share no name with Captum: their map is the paper's,
            # ReLU'd; only the drop-in LayerGradCam has Captum's relu default
            continue
        assert parameter.default == theirs_p.default, (ours.__name__, method, parameter.name)
    # every extra parameter comes after the shared ones and has a default
    for parameter in mine[len(shared) :]:
        if parameter.kind is not inspect.Parameter.VAR_KEYWORD:
            assert parameter.default is not inspect.Parameter.empty, parameter.name


@pytest.mark.parametrize("ours", list(COUNTERPARTS), ids=lambda c: c.__name__)
def test_every_class_has_the_package_wide_leading_parameters(ours: type) -> None:
    init = [p.name for p in _parameters(ours.__init__)]
    assert init[:3] == ["forward_func", "layer", "device_ids"]
    attribute = [p.name for p in _parameters(ours.attribute)]
    if ours is LayerIntegratedGradCam:
        assert attribute[:4] == ["inputs", "baselines", "target", "additional_forward_args"]
    else:
        assert attribute[:4] == [
            "inputs",
            "target",
            "additional_forward_args",
            "attribute_to_layer_input",
        ]
    assert "attribute_to_layer_input" in attribute


def test_only_layer_grad_cam_shares_a_name_with_captum_and_it_is_a_drop_in() -> None:
    ours = {name for name in captum_cams.__all__}
    assert ours & set(dir(captum_attr)) == {"LayerGradCam"}


def _tiny_net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return (
        nn.Sequential(
            nn.Conv2d(2, 3, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(3, 4, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4, 5),
        )
        .double()
        .eval()
    )


def test_layer_grad_cam_equals_captums_with_the_default_arguments() -> None:
    net = _tiny_net()
    x = torch.randn(3, 2, 6, 6, dtype=torch.float64)
    for kwargs in ({}, {"attr_dim_summation": False}, {"relu_attributions": True}):
        ours = LayerGradCam(net, net[2]).attribute(x, [1, 4, 0], **kwargs)
        theirs = captum_attr.LayerGradCam(net, net[2]).attribute(x, [1, 4, 0], **kwargs)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-14)
    # and the map is signed by default, as Captum's
    assert bool((LayerGradCam(net, net[2]).attribute(x, 2) < 0).any())


def _calm() -> CALM:
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU())
    model = CALM(backbone, in_channels=4, num_classes=5).double().eval()
    nn.init.normal_(model.attention.weight)
    return model


#: (build from model and layer, attribute keyword arguments): every class.
CASES: Dict[str, Tuple[Callable[[nn.Module, nn.Module], Any], Dict[str, Any]]] = {
    "gradcam": (LayerGradCam, {}),
    "gradcam++": (LayerGradCamPlusPlus, {}),
    "xgradcam": (LayerXGradCam, {}),
    "layercam": (LayerCam, {}),
    "ablationcam": (LayerAblationCam, {}),
    "scorecam": (LayerScoreCam, {}),
    "liftcam": (LayerLiftCam, {}),
    "shapcam": (LayerShapCam, {"num_permutations": 3}),
    "igcam": (LayerIntegratedGradCam, {"n_steps": 3}),
    "libracam": (LayerLibraCam, {"use_references": False}),
    "hirescam": (LayerHiResCam, {}),
    "elementwise": (LayerGradCamElementWise, {}),
    "eigencam": (LayerEigenCam, {}),
    "eigengradcam": (LayerEigenGradCam, {}),
    "sscam": (LayerSSCam, {"num_samples": 2}),
    "iscam": (LayerISCam, {"num_samples": 2}),
    "smoothgradcam++": (LayerSmoothGradCamPlusPlus, {"num_samples": 2}),
    "relevancecam": (LayerRelevanceCam, {}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_tuple_target_is_one_index_for_every_example(name: str) -> None:
    net = _tiny_net()
    x = torch.randn(2, 2, 6, 6, dtype=torch.float64)
    build, kwargs = CASES[name]
    tupled = build(net, net[2]).attribute(x, target=(3,), **kwargs)
    listed = build(net, net[2]).attribute(x, target=[3, 3], **kwargs)
    per_example = build(net, net[2]).attribute(x, target=[(3,), (1,)], **kwargs)
    torch.testing.assert_close(tupled, listed)
    torch.testing.assert_close(per_example[:1], listed[:1])
    other = build(net, net[2]).attribute(x, target=[1, 1], **kwargs)
    torch.testing.assert_close(per_example[1:], other[1:])
    with pytest.raises(ValueError, match="tuple is one index"):
        build(net, net[2]).attribute(x, target=(1, 3), **kwargs)


@pytest.mark.parametrize("name", list(CASES))
def test_attribute_to_layer_input_is_the_map_at_the_layers_input(name: str) -> None:
    # the input of net[2] is net[1]'s output: the same method on a twin whose
    # layer is an identity right after net[1], at its output
    net = _tiny_net()
    x = torch.randn(2, 2, 6, 6, dtype=torch.float64)
    build, kwargs = CASES[name]
    at_input = build(net, net[2]).attribute(
        x, target=[1, 4], attribute_to_layer_input=True, **kwargs
    )
    twin = nn.Sequential(net[0], net[1], nn.Identity(), *net[2:]).eval()
    expected = build(twin, twin[2]).attribute(x, target=[1, 4], **kwargs)
    torch.testing.assert_close(at_input, expected)
    at_output = build(net, net[2]).attribute(x, target=[1, 4], **kwargs)
    assert at_output.shape == at_input.shape  # same h x w here, different values
    assert not torch.allclose(at_output, at_input)


def test_attribute_to_layer_input_by_hand_for_grad_cam() -> None:
    net = _tiny_net()
    x = torch.randn(2, 2, 6, 6, dtype=torch.float64)
    a = net[1](net[0](x)).detach().requires_grad_()
    y = net[2:](a)
    (grad,) = torch.autograd.grad(y[:, 2].sum(), a)
    expected = (grad.mean(dim=(2, 3), keepdim=True) * a).sum(1, keepdim=True).detach()
    ours = LayerGradCam(net, net[2]).attribute(x, 2, None, True)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-14)


def test_lift_cam_delta_is_zero_in_float64_and_sums_to_the_head_difference() -> None:
    net = _tiny_net()
    x = torch.randn(3, 2, 6, 6, dtype=torch.float64)
    lift = LayerLiftCam(net, net[2])
    assert lift.has_convergence_delta()
    maps, weights, delta = lift.attribute(
        x, [0, 1, 2], return_convergence_delta=True, return_weights=True
    )
    a = net[:3](x).detach()
    rows = torch.arange(3)
    difference = net[3:](a)[rows, [0, 1, 2]] - net[3:](torch.zeros_like(a))[rows, [0, 1, 2]]
    torch.testing.assert_close(weights.sum(1), difference.detach(), rtol=1e-10, atol=1e-12)
    assert delta.shape == (3,)
    assert float(delta.abs().max()) < 1e-12
    plain = lift.attribute(x, [0, 1, 2])
    torch.testing.assert_close(plain, maps)
    # the same at the layer's input
    _, delta_in = lift.attribute(x, [0, 1, 2], None, True, True)
    assert float(delta_in.abs().max()) < 1e-12


def test_integrated_grad_cam_delta_closed_form_on_a_linear_model() -> None:
    # conv (linear) -> GAP -> linear: A(γ(α)) - A(x') = α (A(x) - A(x')) and
    # w_k = W_ck / hw, so the signed map sums to Σ_t s_t α_t · (y(x) - y(x'))
    torch.manual_seed(1)
    conv = nn.Conv2d(2, 3, 3, padding=1)
    net = nn.Sequential(conv, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 4)).double()
    net.eval()
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    baseline = torch.randn(1, 2, 5, 5, dtype=torch.float64)
    cam = LayerIntegratedGradCam(net, conv)
    assert cam.has_convergence_delta()
    steps = 4
    maps, delta = cam.attribute(
        x, baseline, [1, 3], n_steps=steps, return_convergence_delta=True,
        relu_attributions=False,
    )  # fmt: skip
    rows = torch.arange(2)
    dy = (net(x)[rows, [1, 3]] - net(baseline.expand_as(x))[rows, [1, 3]]).detach()
    factor = sum((t / steps) / steps for t in range(1, steps + 1))  # Σ s_t α_t
    torch.testing.assert_close(maps.sum(dim=(1, 2, 3)), factor * dy, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(delta, (factor - 1) * dy, rtol=1e-10, atol=1e-12)
    assert maps.shape == (2, 1, 5, 5)


class _TemperatureNet(nn.Module):
    r"""An extra forward argument used after the layer: the logits' temperature."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.body = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 4))

    def forward(self, x: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x)) / temperature


def test_calm_passes_additional_forward_args_and_reads_features_at_the_layer_input() -> None:
    model = _calm()
    x = torch.randn(2, 2, 6, 6, dtype=torch.float64)
    plain = CALMAttribution(model).attribute(x, target=[1, 3])
    # CALM's forward takes log_probs, used after the backbone: it reaches the model
    logged = CALMAttribution(model).attribute(x, [1, 3], (True,))
    torch.testing.assert_close(logged, plain)
    at_classifier = CALMAttribution(model, model.classifier).attribute(x, [1, 3], None, True)
    torch.testing.assert_close(at_classifier, plain)
    # completeness by hand: the joint map sums to p(y | x)
    torch.testing.assert_close(
        plain.flatten(1).sum(1), model(x)[torch.arange(2), [1, 3]], rtol=1e-10, atol=1e-12
    )
    with pytest.raises(ValueError, match="attribute_to_layer_input must be"):
        CALMAttribution(model).attribute(x, [1, 3], None, True)
    with pytest.raises(ValueError, match="layer must be"):
        CALMAttribution(model, model.backbone[0])


def test_additional_forward_args_after_the_layer_reach_the_head_methods() -> None:
    # the temperature is used after the layer: the fx head takes it as an argument
    net = _TemperatureNet().double().eval()
    x = torch.randn(2, 2, 6, 6, dtype=torch.float64)
    temperature = torch.tensor([[2.0], [4.0]], dtype=torch.float64)
    scaled = LayerGradCam(net, net.body).attribute(x, [0, 2], (temperature,))
    reference = LayerGradCam(net, net.body).attribute(x, [0, 2], (torch.ones_like(temperature),))
    torch.testing.assert_close(scaled, reference / temperature.view(2, 1, 1, 1))
    # SHAP-CAM's Shapley values scale with 1 / temperature
    shap_cam = LayerShapCam(net, net.body)
    assert shap_cam.head.source == "fx"
    shap = shap_cam.attribute(x, [0, 2], (temperature,), return_weights=True, num_permutations=2)[1]
    unit = shap_cam.attribute(
        x, [0, 2], (torch.ones_like(temperature),), return_weights=True, num_permutations=2
    )[1]
    torch.testing.assert_close(shap, unit / temperature)
    # and the whole-model fallback (a plain callable is not split) gives the same
    fallback = LayerShapCam(lambda *args: net(*args), net.body)
    assert fallback.head.source == "fallback"
    again = fallback.attribute(x, [0, 2], (temperature,), return_weights=True, num_permutations=2)[
        1
    ]
    torch.testing.assert_close(again, shap)


class _TemperatureAfterConv(nn.Module):
    r"""A ReLU head after a 1x1 conv layer, the logits divided by an extra argument."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.body = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU())
        self.conv = nn.Conv2d(3, 3, 1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(3, 4)

    def forward(self, x: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
        return self.fc(self.relu(self.conv(self.body(x))).mean((2, 3))) / temperature


@pytest.mark.parametrize("layer_input", [False, True])
def test_lift_cam_takes_additional_forward_args_used_after_the_layer(layer_input: bool) -> None:
    net = _TemperatureAfterConv().double().eval()
    x = torch.randn(2, 2, 6, 6, dtype=torch.float64)
    temperature = torch.tensor([[2.0], [4.0]], dtype=torch.float64)
    lift = LayerLiftCam(net, net.conv)  # split with torch.fx: the head takes the temperature
    assert lift.head.source == "fx"
    _, weights, delta = lift.attribute(
        x, [0, 2], (temperature,), layer_input, True, return_weights=True
    )
    _, unit, _ = lift.attribute(
        x, [0, 2], (torch.ones_like(temperature),), layer_input, True, return_weights=True
    )
    # DeepLIFT's multipliers do not depend on a constant scale of the output
    torch.testing.assert_close(weights, unit / temperature, rtol=1e-12, atol=1e-14)
    assert float(delta.abs().max()) < 1e-12
    # completeness by hand at the layer's output
    if not layer_input:
        a = net.body(x).detach()
        out = net.conv(a)
        full = net.fc(net.relu(out).mean((2, 3))) / temperature
        zero = net.fc(net.relu(torch.zeros_like(out)).mean((2, 3))) / temperature
        rows = torch.arange(2)
        torch.testing.assert_close(
            weights.sum(1), (full - zero)[rows, [0, 2]].detach(), rtol=1e-10, atol=1e-12
        )


def test_targets_select_what_captums_select_targets_selects() -> None:
    from captum._utils.common import _select_targets

    from captum_cams._utils.guards import target_indices

    outputs = torch.randn(3, 5, dtype=torch.float64)
    forms = [
        2,
        (4,),
        [0, 4, 1],
        [(1,), (3,), (0,)],
        torch.tensor(3),
        torch.tensor([2]),
        torch.tensor([1, 1, 4]),
    ]
    for target in forms:
        ours = outputs.gather(1, target_indices(target, outputs)[:, None]).squeeze(1)
        torch.testing.assert_close(ours, _select_targets(outputs, target), rtol=0, atol=0)
    with pytest.raises(ValueError, match="tuple is one index"):
        target_indices((1, 3), outputs)
    with pytest.raises(ValueError, match="one int per example"):
        target_indices([1, 3], outputs)
