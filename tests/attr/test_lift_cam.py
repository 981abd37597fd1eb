#!/usr/bin/env python3
"""LIFT-CAM: completeness, the closed form on affine heads, closeness to the exact
Shapley values, the DeepLIFT head rewrite and the argument checks.

Tiny float64 models: a body (the layer) from the image to ``K`` channels and a head
from there to 10 logits.
"""

from typing import Callable, Dict, List, Tuple

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from _captum_references import exact_channel_shapley
from torch import Tensor

from captum_cams import LayerGradCam, LayerLiftCam
from captum_cams.attr._deeplift_head import UnsupportedNonLinearityError, deeplift_head
from captum_cams.attr._deeplift_rules import RESCALE_RULES, RescaleDeepLift
from captum_cams.attr._head import split_head
from captum_cams.kit.models.cifar_resnet import resnet20
from captum_cams.metrics import coefficient_cosine_similarity

K = 8

pytestmark = pytest.mark.filterwarnings("ignore:Setting forward, backward hooks")


def _body(channels: int = K) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))


class FunctionalHead(nn.Module):
    """Functional non-linearities and one in-place ReLU module called twice."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(K, 12, 1)
        self.conv2 = nn.Conv2d(12, 12, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(12, 10)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.conv1(x))
        out = torch.relu(self.conv2(out) - 0.1) + F.relu6(out).sigmoid()
        out = F.max_pool2d(self.relu(2 * out.tanh() - 0.5), 2)
        out = F.leaky_relu(out, 0.2) + F.silu(out) + F.hardswish(out)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


def _conv_act_head(activation: nn.Module) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(K, 16, 1),
        activation,
        nn.Conv2d(16, 12, 1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.3),
        nn.Linear(12, 10),
    )


def _steep(head: nn.Sequential, factor: float = 4.0) -> nn.Sequential:
    """Scales the first convolution so that pre-activations span a wider range."""
    with torch.no_grad():
        head[0].weight.mul_(factor)
    return head


HEADS: Dict[str, Callable[[], nn.Module]] = {
    "affine": lambda: nn.Sequential(
        nn.Conv2d(K, 12, 1),
        nn.AvgPool2d(2),
        nn.BatchNorm2d(12),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(12, 10),
    ),
    "relu": lambda: _conv_act_head(nn.ReLU()),
    "relu6": lambda: _steep(_conv_act_head(nn.ReLU6())),  # clips at 6 too
    "leaky_relu": lambda: _conv_act_head(nn.LeakyReLU(0.1)),
    "maxpool": lambda: nn.Sequential(
        nn.Conv2d(K, 12, 1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(12, 12, 1),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(12, 10),
    ),
    "hardswish": lambda: _conv_act_head(nn.Hardswish()),
    "hardsigmoid": lambda: _conv_act_head(nn.Hardsigmoid()),
    "silu": lambda: _conv_act_head(nn.SiLU()),
    "sigmoid": lambda: _conv_act_head(nn.Sigmoid()),
    "tanh": lambda: _conv_act_head(nn.Tanh()),
    "elu": lambda: _conv_act_head(nn.ELU()),
    "gelu": lambda: _conv_act_head(nn.GELU()),
    "mish": lambda: _conv_act_head(nn.Mish()),
    "celu": lambda: _conv_act_head(nn.CELU(0.5)),
    "selu": lambda: _conv_act_head(nn.SELU()),
    "softsign": lambda: _conv_act_head(nn.Softsign()),
    "softplus": lambda: _conv_act_head(nn.Softplus(beta=2.0)),
    "hardtanh": lambda: _conv_act_head(nn.Hardtanh(-0.5, 2.0)),
    "prelu": lambda: _conv_act_head(nn.PReLU(16, init=0.3)),
    "functional_and_shared": FunctionalHead,
}


def _model(head_name: str, seed: int = 0) -> Tuple[nn.Module, nn.Module, nn.Module]:
    torch.manual_seed(seed)
    body, head = _body(), HEADS[head_name]()
    model = nn.Sequential(body, head).double().eval()
    return model, body, head


def _inputs(n: int = 3, seed: int = 1, size: int = 8) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return 3 * torch.randn(n, 3, size, size, generator=generator, dtype=torch.float64)


def _activations(model: nn.Module, layer: nn.Module, x: Tensor) -> Tensor:
    store: List[Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: store.append(out.detach()))
    with torch.no_grad():
        model(x)
    handle.remove()
    return store[0]


def _hook_count(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )


@pytest.mark.parametrize("head_name", sorted(HEADS))
def test_completeness(head_name: str) -> None:
    model, body, head = _model(head_name)
    x = _inputs()
    target = torch.tensor([0, 4, 9])
    _, alpha = LayerLiftCam(model, body).attribute(x, target=target, return_weights=True)
    A = _activations(model, body, x)
    with torch.no_grad():
        gap = (head(A) - head(torch.zeros_like(A))).gather(1, target[:, None]).squeeze(1)
    assert alpha.dtype == torch.float64 and alpha.shape == (3, K)
    torch.testing.assert_close(alpha.sum(dim=1), gap, rtol=1e-5, atol=1e-10)


def test_affine_head_uses_gradient_times_activation_equal_to_deeplift() -> None:
    model, body, _ = _model("affine")
    lift = LayerLiftCam(model, body)
    assert lift.head_is_affine and not lift.uses_gradients  # no backward through the body
    x = _inputs()
    _, fast = lift.attribute(x, target=2, return_weights=True)
    A = _activations(model, body, x).requires_grad_()
    slow = RescaleDeepLift(lift.deeplift_head).attribute(A, baselines=torch.zeros_like(A), target=2)
    torch.testing.assert_close(fast, slow.detach().sum(dim=(2, 3)), rtol=1e-10, atol=1e-12)
    assert not LayerLiftCam(*_model("relu")[:2]).head_is_affine


def test_resnet18_layer4_closed_form() -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).double().eval()
    x = _inputs(2, size=64)
    target = torch.tensor([3, 512])
    maps, alpha = LayerLiftCam(model, model.layer4).attribute(x, target=target, return_weights=True)
    A = _activations(model, model.layer4, x)
    expected = model.fc.weight[target].detach() * A.mean(dim=(2, 3))
    torch.testing.assert_close(alpha, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(maps, F.relu((alpha[:, :, None, None] * A).sum(1, keepdim=True)))


def test_cifar_resnet20_layer3_closed_form() -> None:
    torch.manual_seed(0)
    model = resnet20().double().eval()
    x = _inputs(2, size=32)
    target = torch.tensor([1, 7])
    _, alpha = LayerLiftCam(model, model.layer3).attribute(x, target=target, return_weights=True)
    A = _activations(model, model.layer3, x)
    expected = model.linear.weight[target].detach() * A.mean(dim=(2, 3))
    torch.testing.assert_close(alpha, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("head_name", ["relu", "relu6", "maxpool", "silu", "functional_and_shared"])
def test_close_to_exact_shapley_and_closer_than_grad_cam(head_name: str) -> None:
    lift_scores, grad_scores = [], []
    for seed in range(4):
        model, body, head = _model(head_name, seed)
        x = _inputs(4, seed=seed + 10)
        with torch.no_grad():
            target = model(x).argmax(dim=1)
        _, alpha = LayerLiftCam(model, body).attribute(x, target=target, return_weights=True)
        _, grad_w = LayerGradCam(model, body).attribute(x, target=target, return_weights=True)
        with torch.no_grad():
            phi = exact_channel_shapley(head, _activations(model, body, x), target)
        lift_scores.append(coefficient_cosine_similarity(alpha, phi))
        grad_scores.append(coefficient_cosine_similarity(grad_w, phi))
    lift_mean = torch.cat(lift_scores).mean().item()
    grad_mean = torch.cat(grad_scores).mean().item()
    assert lift_mean >= 0.9, lift_mean
    assert lift_mean > grad_mean, (lift_mean, grad_mean)


def test_resnet18_head_with_shared_inplace_relu() -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).double().eval()
    x = _inputs(2, size=64)
    A = _activations(model, model.layer4[0], x)
    head = split_head(model, model.layer4[0])
    assert head is not None
    prepared, is_affine = deeplift_head(head)
    assert not is_affine
    with torch.no_grad():
        torch.testing.assert_close(prepared(A), head(A), rtol=0, atol=0)
    sites = [m for m in prepared.modules() if type(m) in RESCALE_RULES]
    assert len(sites) == len(set(map(id, sites))) >= 2
    assert all(not getattr(m, "inplace", False) for m in sites)
    target = torch.tensor([5, 900])
    _, alpha = LayerLiftCam(model, model.layer4[0]).attribute(x, target=target, return_weights=True)
    with torch.no_grad():
        gap = (head(A) - head(torch.zeros_like(A))).gather(1, target[:, None]).squeeze(1)
    torch.testing.assert_close(alpha.sum(1), gap, rtol=1e-5, atol=1e-10)


def _torchvision_case(name: str) -> Tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    if name == "vgg11":
        model = torchvision.models.vgg11(weights=None)
        layer = model.features[-3]
    else:
        model = getattr(torchvision.models, name)(weights=None)
        layer = model.features[-2]
    with torch.no_grad():  # batch-norm that is not the identity, so activations vary
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 2.0)
                module.bias.normal_(0.0, 1.0)
                module.running_mean.normal_(0.0, 0.5)
    return model.double().eval(), layer


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "vgg11"])
def test_torchvision_heads_rewrite_and_completeness(name: str) -> None:
    # The heads of torchvision models after their second-to-last block (ReLU6,
    # Hardswish, SiLU, MaxPool2d, functional pooling): rewritten, they compute the
    # same, and DeepLIFT on them is complete. Head only (a full float64 forward of
    # these models is slow on a CPU): activations are drawn at the layer.
    model, layer = _torchvision_case(name)
    head = split_head(model, layer)
    assert head is not None
    prepared, is_affine = deeplift_head(head)
    assert not is_affine
    channels = next(m for m in reversed(list(layer.modules())) if isinstance(m, nn.Conv2d))
    generator = torch.Generator().manual_seed(5)
    A = 4 * torch.rand(2, channels.out_channels, 2, 2, generator=generator, dtype=torch.float64)
    zeros = torch.zeros_like(A)
    with torch.no_grad():
        torch.testing.assert_close(prepared(A), head(A), rtol=0, atol=0)
        gap = (head(A) - head(zeros))[:, 7]
    contributions = RescaleDeepLift(prepared).attribute(
        A.clone().requires_grad_(), baselines=zeros, target=7
    )
    assert gap.abs().min() > 1e-6
    torch.testing.assert_close(contributions.sum(dim=(1, 2, 3)), gap, rtol=1e-5, atol=0)


def test_squeeze_excitation_is_refused() -> None:
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v3_small(weights=None).eval()
    with pytest.raises(UnsupportedNonLinearityError, match="multiplies"):
        LayerLiftCam(model, model.features[-3])


@pytest.mark.parametrize(
    "module, name",
    [
        (nn.Softmax(dim=1), "Softmax"),
        (nn.AdaptiveMaxPool2d(1), "AdaptiveMaxPool2d"),
        (nn.Upsample(scale_factor=2), "Upsample"),
    ],
)
def test_unsupported_non_linearity_is_named(module: nn.Module, name: str) -> None:
    head = nn.Sequential(nn.Conv2d(K, 10, 1), module, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    model = nn.Sequential(_body(), head).eval()
    with pytest.raises(UnsupportedNonLinearityError, match=name):
        LayerLiftCam(model, model[0])


def test_batch_invariance() -> None:
    model, body, _ = _model("functional_and_shared")
    x = _inputs(4)
    target = [1, 2, 3, 4]
    lift = LayerLiftCam(model, body)
    maps, alpha = lift.attribute(x, target=target, return_weights=True)
    for i in range(4):
        one_map, one_alpha = lift.attribute(x[i : i + 1], target=target[i], return_weights=True)
        torch.testing.assert_close(one_alpha, alpha[i : i + 1], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(one_map, maps[i : i + 1], rtol=1e-10, atol=1e-12)


def test_given_head_and_mismatched_head() -> None:
    model, body, head = _model("relu")
    x = _inputs()
    _, given = LayerLiftCam(model, body, head=head).attribute(x, target=1, return_weights=True)
    _, split = LayerLiftCam(model, body).attribute(x, target=1, return_weights=True)
    torch.testing.assert_close(given, split)
    wrong = _conv_act_head(nn.ReLU()).double().eval()
    with pytest.raises(ValueError, match="does not reproduce"):
        LayerLiftCam(model, body, head=wrong).attribute(x, target=1)


def test_bad_inputs() -> None:
    model, body, _ = _model("relu")
    lift = LayerLiftCam(model, body)
    with pytest.raises(ValueError, match="4-D"):
        lift.attribute(torch.zeros(3, 8, 8, dtype=torch.float64))
    with pytest.raises(ValueError, match="target out of range"):
        lift.attribute(_inputs(), target=10)
    with pytest.raises(ValueError, match="NaN"):
        lift.attribute(torch.full((1, 3, 8, 8), float("nan"), dtype=torch.float64))
    with pytest.raises(ValueError, match="not a submodule"):
        LayerLiftCam(model, nn.Conv2d(3, 3, 1))


def test_model_without_a_split_needs_head() -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    with pytest.raises(ValueError, match="head="):
        LayerLiftCam(model, model.layer4[0].bn1)  # a skip connection goes around it


def test_training_mode_is_refused() -> None:
    model, body, _ = _model("affine")
    model.train()
    with pytest.raises(ValueError):
        LayerLiftCam(model, body).attribute(_inputs(), target=0)
    assert model.training


def test_hooks_released_and_model_unchanged() -> None:
    model, body, _ = _model("functional_and_shared")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]
    before = _hook_count(model)
    lift = LayerLiftCam(model, body)
    lift.attribute(_inputs(), target=3)
    with pytest.raises(ValueError):
        lift.attribute(_inputs(), target=99)
    assert _hook_count(model) == before
    assert _hook_count(lift.deeplift_head) == 0
    assert all(p.grad is None for p in model.parameters())
    assert [p.requires_grad for p in model.parameters()] == flags
    assert not model.training
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)


class ShapeArithmeticHead(nn.Module):
    """Reshapes with products of sizes: shape arithmetic is not a product of activations."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(K * 4 * 4, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu6(x * 2.0 - 1.0)
        return self.fc(x.view(x.size(0), x.size(1) * x.shape[2] * x.shape[3]))


def test_shape_arithmetic_is_not_mistaken_for_a_product() -> None:
    torch.manual_seed(0)
    body = _body()
    model = nn.Sequential(body, ShapeArithmeticHead()).double().eval()
    x = _inputs()
    _, alpha = LayerLiftCam(model, body).attribute(x, target=2, return_weights=True)
    A = _activations(model, body, x)
    with torch.no_grad():
        gap = model[1](A)[:, 2] - model[1](torch.zeros_like(A))[:, 2]
    torch.testing.assert_close(alpha.sum(1), gap, rtol=1e-5, atol=1e-10)


class AssertingHead(ShapeArithmeticHead):
    """timm's BatchNormAct2d checks ``torch._assert(x.ndim == 4, ...)`` first."""

    def forward(self, x: Tensor) -> Tensor:
        torch._assert(x.ndim == 4, "expected a 4-D input")
        return super().forward(x)


def test_an_ndim_assertion_is_no_operation_on_the_activations() -> None:
    torch.manual_seed(0)
    body = _body()
    model = nn.Sequential(body, AssertingHead()).double().eval()
    x = _inputs()
    _, alpha = LayerLiftCam(model, body).attribute(x, target=2, return_weights=True)
    A = _activations(model, body, x)
    with torch.no_grad():
        gap = model[1](A)[:, 2] - model[1](torch.zeros_like(A))[:, 2]
    torch.testing.assert_close(alpha.sum(1), gap, rtol=1e-5, atol=1e-10)


def test_prepared_head_shares_the_model_parameters() -> None:
    model, body, _ = _model("prelu")
    lift = LayerLiftCam(model, body)
    model_parameters = {id(p) for p in model.parameters()}
    assert {id(p) for p in lift.deeplift_head.parameters()} <= model_parameters
    assert any(isinstance(m, nn.PReLU) for m in lift.deeplift_head.modules())


class LayerNormHead(nn.Module):
    """ConvNeXt's classifier: average pool, LayerNorm over channels, linear."""

    def __init__(self, functional: bool, then_relu: bool = False) -> None:
        super().__init__()
        self.functional = functional
        self.norm = nn.LayerNorm(K, eps=1e-6)
        self.fc = nn.Linear(K, 10)
        self.then_relu = then_relu
        with torch.no_grad():  # not the trivial weight 1, bias 0
            self.norm.weight.uniform_(0.5, 1.5)
            self.norm.bias.uniform_(-0.5, 0.5)

    def forward(self, a: Tensor) -> Tensor:
        p = a.mean(dim=(2, 3))
        if self.functional:
            n = self.norm
            p = F.layer_norm(p, n.normalized_shape, n.weight, n.bias, n.eps)
        else:
            p = self.norm(p)
        return self.fc(F.relu(p) if self.then_relu else p)


@pytest.mark.parametrize("functional", [False, True])
def test_layer_norm_head_with_fixed_scale_closed_form(functional: bool) -> None:
    torch.manual_seed(0)
    body, head = _body(), LayerNormHead(functional)
    model = nn.Sequential(body, head).double().eval()
    x = _inputs()
    with pytest.raises(UnsupportedNonLinearityError, match="fixed_layer_norm=True"):
        LayerLiftCam(model, body)  # refused by default, naming the option
    _, alpha = LayerLiftCam(model, body, fixed_layer_norm=True).attribute(
        x, target=[0, 4, 9], return_weights=True
    )
    # closed form: with the scale s = 1/sqrt(var(p) + eps) held, the head is
    # W ((p - mean p) s g + beta) + b, so alpha_k = p_k s (v_k - mean v), v = W_t * g
    p = _activations(model, body, x).mean(dim=(2, 3))
    s = (p.var(dim=1, unbiased=False, keepdim=True) + 1e-6).rsqrt()
    v = head.fc.weight[[0, 4, 9]] * head.norm.weight
    expected = p * s * (v - v.mean(dim=1, keepdim=True))
    torch.testing.assert_close(alpha, expected.detach())
    # complete for the real head: F(0) = W beta + b, as LayerNorm(0) = beta
    with torch.no_grad():
        logits = model(x)
        at_zero = head.fc(head.norm.bias)
    gap = logits[[0, 1, 2], [0, 4, 9]] - at_zero[[0, 4, 9]]
    torch.testing.assert_close(alpha.sum(dim=1), gap)


def test_fixed_layer_norm_needs_an_otherwise_affine_head() -> None:
    torch.manual_seed(0)
    body = _body()
    model = nn.Sequential(body, LayerNormHead(False, then_relu=True)).double().eval()
    with pytest.raises(UnsupportedNonLinearityError, match="rest of the head is affine"):
        LayerLiftCam(model, body, fixed_layer_norm=True)
    with pytest.raises(TypeError, match="fixed_layer_norm"):
        LayerLiftCam(model, body, fixed_layer_norm="yes")  # type: ignore[arg-type]
