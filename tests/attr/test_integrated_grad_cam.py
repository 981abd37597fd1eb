#!/usr/bin/env python3
"""Integrated Grad-CAM: chunking, the one-step limit, convergence, baselines, targets,
approximation methods against a hand-rolled float64 sum, and argument errors.

The models are tiny ``Sequential(features, head)`` CNNs in float64, so that the
reference sums can evaluate ``features`` and ``head`` separately with autograd,
without any hook.
"""

import functools
from typing import List, Optional, Sequence

import pytest
import torch
import torch.nn.functional as F
from captum.attr._utils.approximation_methods import SUPPORTED_METHODS
from torch import Tensor, nn

from captum_cams import LayerGradCam, LayerIntegratedGradCam

NUM_CLASSES = 4


def _model(act: type = nn.Tanh, seed: int = 0) -> nn.Sequential:
    r"""Bias-free features (so ``A(0) = 0`` for ReLU/Tanh) and a non-linear head."""
    torch.manual_seed(seed)
    features = nn.Sequential(
        nn.Conv2d(3, 4, 3, bias=False), act(), nn.Conv2d(4, 6, 3, bias=False), act()
    )
    head = nn.Sequential(
        nn.Conv2d(6, 6, 1), nn.Tanh(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(6, NUM_CLASSES),
    )  # fmt: skip
    return nn.Sequential(features, head).double().eval()


def _inputs(n: int = 3, seed: int = 1) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 9, 9, dtype=torch.float64, generator=generator)


def _reference(
    model: nn.Sequential,
    x: Tensor,
    baseline: Tensor,
    target: Sequence[int],
    alphas: Sequence[float],
    steps: Sequence[float],
    subtract: bool = True,
    relu: bool = True,
) -> Tensor:
    r"""``Σ_t s_t relu(Σ_k w_k(γ_t) (A_k(γ_t) − A_k(x')))`` by hand, one point at a time."""
    features, head = model[0], model[1]
    rows = torch.arange(x.shape[0])
    with torch.no_grad():
        start = features(baseline)
    total = torch.zeros(x.shape[0], 1, *start.shape[-2:], dtype=x.dtype)
    for alpha, step in zip(alphas, steps):
        point = baseline + alpha * (x - baseline)
        activations = features(point).detach().requires_grad_(True)
        score = head(activations)[rows, list(target)].sum()
        (grad,) = torch.autograd.grad(score, activations)
        weights = grad.mean(dim=(2, 3), keepdim=True)
        delta = activations.detach() - start if subtract else activations.detach()
        cam = (weights * delta).sum(dim=1, keepdim=True)
        total += step * (F.relu(cam) if relu else cam)
    return total


def _hooks(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        + len(getattr(m, "_backward_pre_hooks", {}))
        for m in model.modules()
    )  # fmt: skip


# --- chunking ---------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Internal batch size cannot be less")
@pytest.mark.parametrize("baselines", ["zeros", "several"])
def test_independent_of_internal_batch_size(baselines: str) -> None:
    model = _model()
    x = _inputs()
    base = None if baselines == "zeros" else _inputs(3 * 2, seed=5).reshape(3, 2, 3, 9, 9)
    cam = LayerIntegratedGradCam(model, model[0])
    n_steps = 12
    whole = cam.attribute(x, base, target=[0, 1, 3], n_steps=n_steps)
    assert float(whole.amax()) > 0
    for size in (1, 7, n_steps, 100):
        chunked = cam.attribute(
            x, base, target=[0, 1, 3], n_steps=n_steps, internal_batch_size=size
        )
        torch.testing.assert_close(chunked, whole, atol=1e-6, rtol=0)


# --- the one-step limit and convergence ---------------------------------------------------


def test_one_step_right_riemann_is_relu_grad_cam() -> None:
    model = _model(nn.ReLU)
    x = _inputs()
    layer = model[0]
    assert torch.equal(layer(torch.zeros_like(x)), torch.zeros(3, 6, 5, 5, dtype=torch.float64))
    ours = LayerIntegratedGradCam(model, layer).attribute(
        x, target=[2, 0, 1], n_steps=1, method="riemann_right"
    )
    grad_cam = LayerGradCam(model, layer).attribute(x, target=[2, 0, 1], relu_attributions=True)
    assert float(grad_cam.amax()) > 0
    torch.testing.assert_close(ours, grad_cam, atol=1e-12, rtol=0)


def test_converges_as_n_steps_grows() -> None:
    model = _model()
    x = _inputs()
    cam = LayerIntegratedGradCam(model, model[0])
    maps = {n: cam.attribute(x, target=[0, 1, 2], n_steps=n) for n in (10, 20, 100, 200)}
    coarse = float((maps[10] - maps[20]).abs().max())
    fine = float((maps[100] - maps[200]).abs().max())
    assert coarse > 0
    assert fine < 0.2 * coarse  # riemann_right: error ~ 1/n, so about a tenth


# --- baselines and targets ----------------------------------------------------------------


def test_several_baselines_and_per_example_targets_match_a_loop() -> None:
    model = _model()
    x = _inputs()
    base = _inputs(3 * 4, seed=7).reshape(3, 4, 3, 9, 9) * 0.5
    target = torch.tensor([3, 0, 2])
    cam = LayerIntegratedGradCam(model, model[0])
    ours = cam.attribute(x, base, target=target, n_steps=8)
    expected = torch.cat(
        [
            torch.stack(
                [
                    cam.attribute(x[i : i + 1], base[i, b][None], target=int(target[i]), n_steps=8)
                    for b in range(4)
                ]
            ).mean(dim=0)
            for i in range(3)
        ]
    )
    assert float(ours.amax()) > 0
    torch.testing.assert_close(ours, expected, atol=1e-12, rtol=0)
    # one set of baselines shared by all examples: a leading dimension of 1
    shared = cam.attribute(x, base[:1], target=target, n_steps=8)
    looped = torch.cat(
        [cam.attribute(x[i : i + 1], base[:1], target=int(target[i]), n_steps=8) for i in range(3)]
    )
    torch.testing.assert_close(shared, looped, atol=1e-12, rtol=0)


class _Scaled(nn.Module):
    r"""A model with a per-example extra argument (output scale)."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = _model()

    def forward(self, x: Tensor, scale: Tensor) -> Tensor:
        return self.inner(x) * scale[:, None]


@pytest.mark.filterwarnings("ignore:Internal batch size cannot be less")
def test_additional_forward_args_follow_their_examples() -> None:
    model = _Scaled().double()
    x = _inputs()
    scale = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    base = _inputs(6, seed=9).reshape(3, 2, 3, 9, 9)
    cam = LayerIntegratedGradCam(model, model.inner[0])
    ours = cam.attribute(x, base, 1, scale, n_steps=5, internal_batch_size=4)
    looped = torch.cat(
        [
            cam.attribute(x[i : i + 1], base[i : i + 1], 1, scale[i : i + 1], n_steps=5)
            for i in range(3)
        ]
    )
    torch.testing.assert_close(ours, looped, atol=1e-12, rtol=0)


def test_baseline_forms_agree() -> None:
    model = _model()
    x = _inputs()
    cam = LayerIntegratedGradCam(model, model[0])
    value = torch.tensor([0.2, -0.1, 0.4], dtype=torch.float64)
    full = value.view(1, 3, 1, 1).expand(3, 3, 9, 9).clone()
    expected = cam.attribute(x, full, target=1, n_steps=6)
    for form in (value.view(3, 1, 1), value.view(1, 3, 1, 1), value.view(1, 1, 3, 1, 1)):
        torch.testing.assert_close(cam.attribute(x, form, target=1, n_steps=6), expected)
    zeros = cam.attribute(x, torch.zeros_like(x), target=1, n_steps=6)
    torch.testing.assert_close(cam.attribute(x, None, target=1, n_steps=6), zeros)
    torch.testing.assert_close(cam.attribute(x, 0, target=1, n_steps=6), zeros)
    half = cam.attribute(x, torch.full_like(x, 0.5), target=1, n_steps=6)
    torch.testing.assert_close(cam.attribute(x, 0.5, target=1, n_steps=6), half)


def test_target_none_is_the_prediction_at_the_input() -> None:
    model = _model()
    x = _inputs()
    predicted = model(x).argmax(dim=1)
    cam = LayerIntegratedGradCam(model, model[0])
    torch.testing.assert_close(
        cam.attribute(x, n_steps=6), cam.attribute(x, target=predicted, n_steps=6)
    )


# --- approximation methods ----------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _fine_reference() -> Tensor:
    r"""The integral for the methods' test, by hand: 300 midpoints, batched."""
    x = _inputs()
    m = 300
    model = _model()
    features, head = model[0], model[1]
    alphas = torch.tensor([(t + 0.5) / m for t in range(m)], dtype=torch.float64)
    points = (alphas.view(-1, 1, 1, 1, 1) * x).reshape(-1, *x.shape[1:])  # baseline zeros
    activations = features(points).detach().requires_grad_(True)
    target = torch.tensor([0, 1, 2]).repeat(m)
    score = head(activations)[torch.arange(points.shape[0]), target].sum()
    (grad,) = torch.autograd.grad(score, activations)
    cams = F.relu((grad.mean(dim=(2, 3), keepdim=True) * activations.detach()).sum(1, keepdim=True))
    return cams.reshape(m, 3, 1, 5, 5).mean(dim=0)


@pytest.mark.parametrize("method", SUPPORTED_METHODS)
def test_every_captum_method_is_accepted(method: str) -> None:
    model = _model()
    x = _inputs()
    cam = LayerIntegratedGradCam(model, model[0])
    fine = _fine_reference()
    maps = cam.attribute(x, target=[0, 1, 2], n_steps=24, method=method)
    assert maps.shape == (3, 1, 5, 5) and maps.dtype == torch.float64
    assert torch.isfinite(maps).all()
    # all rules approximate the same integral
    assert float((maps - fine).abs().max()) < 0.05 * float(fine.abs().max())


def _rule(method: str, m: int) -> "tuple[List[float], List[float]]":
    if method == "riemann_right":
        return [t / m for t in range(1, m + 1)], [1 / m] * m
    if method == "riemann_left":
        return [t / m for t in range(m)], [1 / m] * m
    assert method == "riemann_trapezoid"
    steps = [1 / m] * m
    steps[0] = steps[-1] = 1 / (2 * m)
    return [t / (m - 1) for t in range(m)], steps


@pytest.mark.parametrize("method", ["riemann_right", "riemann_trapezoid"])
@pytest.mark.parametrize("subtract", [True, False])
@pytest.mark.parametrize("relu", [True, False])
def test_equals_a_hand_rolled_sum(method: str, subtract: bool, relu: bool) -> None:
    model = _model()
    x = _inputs()
    base = 0.3 * _inputs(seed=4)
    alphas, steps = _rule(method, 7)
    expected = _reference(model, x, base, [1, 3, 0], alphas, steps, subtract, relu)
    ours = LayerIntegratedGradCam(model, model[0]).attribute(
        x, base, target=[1, 3, 0], n_steps=7, method=method,
        subtract_baseline_activation=subtract, relu_attributions=relu,
    )  # fmt: skip
    assert float(expected.abs().amax()) > 0
    if not relu:
        assert float(expected.amin()) < 0  # the signed variant really is signed here
    # Captum builds its alphas with float32 linspace: ~1e-8 relative differences
    torch.testing.assert_close(ours, expected, atol=1e-9, rtol=1e-6)


def test_authors_notebook_convention() -> None:
    r"""No ``− A(x')``, α = 0..(m−1)/m, plain sum: ``n_steps ×`` riemann_left."""
    model = _model()
    x = _inputs()
    m = 9
    notebook = _reference(
        model, x, torch.zeros_like(x), [0, 0, 2], [t / m for t in range(m)], [1.0] * m,
        subtract=False,
    )  # fmt: skip
    ours = LayerIntegratedGradCam(model, model[0]).attribute(
        x, target=[0, 0, 2], n_steps=m, method="riemann_left",
        subtract_baseline_activation=False,
    )  # fmt: skip
    torch.testing.assert_close(m * ours, notebook, atol=1e-9, rtol=1e-6)


def test_dtype_is_kept() -> None:
    model = _model().float()
    x = _inputs().float()
    maps = LayerIntegratedGradCam(model, model[0]).attribute(x, 0.0, target=0, n_steps=4)
    assert maps.dtype == torch.float32


# --- errors, hooks and model state ---------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(inputs="rank"), ValueError, "inputs must be a 4-D"),
        (dict(inputs="nan"), ValueError, "inputs contains NaN"),
        (dict(inputs="pair"), ValueError, "inputs must be one image tensor"),
        (dict(target=NUM_CLASSES), ValueError, "target out of range"),
        (dict(target=[0, 1]), ValueError, "target given as a list"),
        (dict(n_steps=0), ValueError, "n_steps must be a positive int"),
        (dict(n_steps=2.5), ValueError, "n_steps must be a positive int"),
        (dict(n_steps=True), ValueError, "n_steps must be a positive int"),
        (dict(n_steps=1, method="riemann_trapezoid"), ValueError, "n_steps must be at least 2"),
        (dict(method="simpson"), ValueError, "method must be one of"),
        (dict(internal_batch_size=0), ValueError, "internal_batch_size must be a positive int"),
        (dict(baselines="rows"), ValueError, "baselines has 2 rows"),
        (dict(baselines="size"), ValueError, "baselines of shape .* cannot be broadcast"),
        (dict(baselines="rank"), ValueError, "baselines must be broadcastable"),
        (dict(baselines="5d"), ValueError, "baselines given as a 5-D tensor"),
        (dict(baselines="nan"), ValueError, "baselines contains NaN"),
        (dict(baselines="+inf"), ValueError, r"baselines contains \+Inf \(1 of"),
        (dict(baselines="-inf"), ValueError, r"baselines contains -Inf \(81 of"),
        (dict(baselines="mixed"), ValueError, r"baselines contains NaN and \+Inf and -Inf"),
        (dict(baselines="scalar nan"), ValueError, "baselines must be a finite number; got nan"),
        (dict(baselines="scalar inf"), ValueError, "baselines must be a finite number; got inf"),
        (dict(baselines="scalar -inf"), ValueError, "baselines must be a finite number; got -inf"),
        (dict(baselines="text"), TypeError, "baselines must be None, a number or a tensor"),
    ],
)
@pytest.mark.parametrize("training", [False, True])
def test_bad_arguments_name_themselves(
    kwargs: dict, error: type, message: str, training: bool
) -> None:
    kwargs = dict(kwargs)  # the parametrised dict is shared between runs
    model = _model()
    model.train(training)
    x = _inputs()
    inputs = {
        "rank": x[0],
        "nan": torch.where(x > 0.5, x, torch.full_like(x, float("nan"))),
        "pair": (x, x),
    }.get(kwargs.pop("inputs", None), x)
    baselines: Optional[object] = {
        "rows": torch.zeros(2, 3, 9, 9, dtype=torch.float64),
        "size": torch.zeros(3, 3, 5, 5, dtype=torch.float64),
        "rank": torch.zeros(1, 1, 1, 3, 9, 9, dtype=torch.float64),
        "5d": torch.zeros(2, 2, 3, 9, 9, dtype=torch.float64),
        "nan": torch.full((3, 9, 9), float("nan"), dtype=torch.float64),
        "+inf": torch.zeros(3, 9, 9, dtype=torch.float64).index_put_(
            (torch.tensor([1]), torch.tensor([4]), torch.tensor([5])),
            torch.tensor(float("inf"), dtype=torch.float64),
        ),
        "-inf": torch.zeros(3, 9, 9, dtype=torch.float64).index_fill_(0, torch.tensor([2]), -1e400),
        "mixed": torch.tensor(
            [float("nan"), float("inf"), -float("inf")], dtype=torch.float64
        ).reshape(3, 1, 1),
        "scalar nan": float("nan"),
        "scalar inf": float("inf"),
        "scalar -inf": -float("inf"),
        "text": "blur",
    }.get(kwargs.pop("baselines", None))
    kwargs.setdefault("target", 0)
    cam = LayerIntegratedGradCam(model, model[0])
    with pytest.raises(error, match=message):
        cam.attribute(inputs, baselines, **kwargs)
    assert _hooks(model) == 0
    assert model.training is training and all(m.training is training for m in model.modules())


def test_model_state_and_gradients_are_kept() -> None:
    model = _model().train()
    model[1][0].weight.requires_grad_(False)
    flags = [p.requires_grad for p in model.parameters()]
    x = _inputs().requires_grad_(True)
    LayerIntegratedGradCam(model, model[0]).attribute(x, target=1, n_steps=5, internal_batch_size=6)
    assert _hooks(model) == 0
    assert all(m.training for m in model.modules())
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert x.grad is None


def test_layer_must_be_in_the_model() -> None:
    model = _model()
    with pytest.raises(ValueError, match="layer is not a submodule"):
        LayerIntegratedGradCam(model, nn.Conv2d(3, 3, 1))


def test_a_given_target_costs_no_forward_at_the_input() -> None:
    model, x = _model(), _inputs()
    forwards: List[int] = []
    handle = model.register_forward_hook(lambda _m, inp, _o: forwards.append(inp[0].shape[0]))
    try:
        given = LayerIntegratedGradCam(model, model[0]).attribute(
            x, target=[0, 1, 2], n_steps=4, internal_batch_size=6
        )
        # the baselines (3 rows), then the 12 path rows in chunks of 6
        assert forwards == [3, 6, 6]
        forwards.clear()
        predicted = model(x).argmax(1).tolist()
        forwards.clear()
        found = LayerIntegratedGradCam(model, model[0]).attribute(
            x, n_steps=4, internal_batch_size=6
        )
        assert forwards == [3, 3, 6, 6]  # target None: one forward at the input first
    finally:
        handle.remove()
    if predicted == [0, 1, 2]:
        torch.testing.assert_close(found, given, rtol=0, atol=0)
    expected = LayerIntegratedGradCam(model, model[0]).attribute(x, target=predicted, n_steps=4)
    torch.testing.assert_close(found, expected, rtol=1e-12, atol=1e-12)
