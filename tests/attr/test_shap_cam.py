#!/usr/bin/env python3
"""SHAP-CAM: exact completeness per permutation, convergence to the exact Shapley
values, seeding, chunking and argument checks, and equality with Captum's
ShapleyValueSampling / ShapleyValues on the head, on tiny float64 models."""

from typing import List, Tuple

import pytest
import torch
import torch.nn as nn
from _captum_references import captum_channel_shapley, exact_channel_shapley
from captum.attr import ShapleyValues, ShapleyValueSampling
from torch import Tensor

from captum_cams import LayerShapCam
from captum_cams.attr._head import LayerHead
from captum_cams.attr.shap_cam import permutation_orders, sampled_channel_shapley

K = 6


def _model(seed: int = 0) -> Tuple[nn.Module, nn.Module, nn.Module]:
    torch.manual_seed(seed)
    body = nn.Sequential(nn.Conv2d(3, K, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
    head = nn.Sequential(
        nn.Conv2d(K, 12, 1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(12, 12, 1),
        nn.Tanh(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(12, 10),
    )
    return nn.Sequential(body, head).double().eval(), body, head


def _inputs(n: int = 3, seed: int = 1) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return 3 * torch.randn(n, 3, 8, 8, generator=generator, dtype=torch.float64)


def _activations(model: nn.Module, layer: nn.Module, x: Tensor) -> Tensor:
    store: List[Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: store.append(out.detach()))
    with torch.no_grad():
        model(x)
    handle.remove()
    return store[0]


def test_completeness_for_every_single_permutation() -> None:
    model, body, head = _model()
    x = _inputs()
    target = torch.tensor([0, 5, 9])
    A = _activations(model, body, x)
    with torch.no_grad():
        gap = (head(A) - head(torch.zeros_like(A))).gather(1, target[:, None]).squeeze(1)
    shap = LayerShapCam(model, body)
    for seed in range(6):
        _, alpha = shap.attribute(
            x, target=target, num_permutations=1, seed=seed, return_weights=True
        )
        torch.testing.assert_close(alpha.sum(dim=1), gap, rtol=1e-12, atol=1e-13)


def test_converges_to_exact_shapley() -> None:
    model, body, head = _model()
    x = _inputs(4)
    with torch.no_grad():
        target = model(x).argmax(dim=1)
        phi = exact_channel_shapley(head, _activations(model, body, x), target)
    shap = LayerShapCam(model, body)
    errors = []
    for num_permutations in (4, 16, 64, 256):
        runs = [
            shap.attribute(
                x,
                target=target,
                num_permutations=num_permutations,
                seed=seed,
                return_weights=True,
                internal_batch_size=None,
            )[1]
            for seed in range(8)
        ]
        errors.append(torch.stack([(w - phi).norm(dim=1) for w in runs]).mean().item())
    # each 4x more permutations halves the error (1/sqrt(|Pi|)), within sampling noise
    for coarse, fine in zip(errors, errors[1:]):
        assert 1.4 < coarse / fine < 3.0, errors
    assert errors[-1] < 0.1 * phi.norm(dim=1).mean().item()


def test_exact_shapley_efficiency_and_symmetry() -> None:
    # a head where two channels play identical roles gets identical values
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2)).double()
    with torch.no_grad():
        head[2].weight.copy_(torch.tensor([[1.0, 1.0, -2.0], [0.5, 0.0, 1.0]]))
        head[2].bias.zero_()
    A = torch.ones(1, 3, 2, 2, dtype=torch.float64)
    phi = exact_channel_shapley(head, A, torch.tensor([0]))
    torch.testing.assert_close(phi, torch.tensor([[1.0, 1.0, -2.0]], dtype=torch.float64))


def test_seeded_reproducible_and_global_rng_untouched() -> None:
    model, body, _ = _model()
    x = _inputs()
    shap = LayerShapCam(model, body)
    state = torch.get_rng_state()
    first = shap.attribute(x, target=1, num_permutations=3, seed=7, return_weights=True)[1]
    assert torch.equal(torch.get_rng_state(), state)
    again = shap.attribute(x, target=1, num_permutations=3, seed=7, return_weights=True)[1]
    other = shap.attribute(x, target=1, num_permutations=3, seed=8, return_weights=True)[1]
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_internal_batch_size_does_not_change_the_result() -> None:
    model, body, _ = _model()
    x = _inputs()
    shap = LayerShapCam(model, body)
    results = [
        shap.attribute(
            x, target=[1, 2, 3], num_permutations=5, return_weights=True, internal_batch_size=size
        )
        for size in (None, 1, 7, 64)
    ]
    for maps, weights in results[1:]:
        torch.testing.assert_close(maps, results[0][0], rtol=1e-12, atol=1e-13)
        torch.testing.assert_close(weights, results[0][1], rtol=1e-12, atol=1e-13)


def test_first_example_is_batch_invariant_and_map_is_weighted_sum() -> None:
    model, body, _ = _model()
    x = _inputs(3)
    shap = LayerShapCam(model, body)
    maps, alpha = shap.attribute(x, target=4, num_permutations=4, return_weights=True)
    _, one_alpha = shap.attribute(x[:1], target=4, num_permutations=4, return_weights=True)
    torch.testing.assert_close(one_alpha, alpha[:1], rtol=1e-12, atol=1e-13)
    A = _activations(model, body, x)
    expected = torch.relu((alpha[:, :, None, None] * A).sum(1, keepdim=True))
    torch.testing.assert_close(maps, expected)
    assert maps.dtype == torch.float64 and maps.shape == (3, 1, 4, 4)


def test_whole_model_fallback_head(skip_model: nn.Module) -> None:
    # a skip connection around the layer: no fx split, the model is re-run with the
    # layer's output substituted; completeness still holds
    model = skip_model
    shap = LayerShapCam(model, model.layer)
    assert shap.head.source == "fallback"
    x = _inputs(2)
    _, alpha = shap.attribute(x, target=3, num_permutations=1, return_weights=True)
    A = _activations(model, model.layer, x)
    with torch.no_grad():
        full = model(x)[:, 3]
        handle = model.layer.register_forward_hook(lambda _m, _i, out: torch.zeros_like(out))
        empty = model(x)[:, 3]
        handle.remove()
    assert A.shape[1] == K
    torch.testing.assert_close(alpha.sum(1), full - empty, rtol=1e-12, atol=1e-13)


def test_bad_arguments() -> None:
    model, body, head = _model()
    shap = LayerShapCam(model, body)
    with pytest.raises(ValueError, match="num_permutations"):
        shap.attribute(_inputs(), target=0, num_permutations=0)
    with pytest.raises(ValueError, match="internal_batch_size"):
        shap.attribute(_inputs(), target=0, internal_batch_size=0)
    with pytest.raises(TypeError, match="seed"):
        shap.attribute(_inputs(), target=0, seed=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="target out of range"):
        shap.attribute(_inputs(), target=10)
    with pytest.raises(ValueError, match="4-D"):
        shap.attribute(torch.zeros(2, 8, 8, dtype=torch.float64))
    wrong = _model(seed=3)[2]
    with pytest.raises(ValueError, match="does not reproduce"):
        LayerShapCam(model, body, head=wrong).attribute(_inputs(), target=0)
    with pytest.raises(ValueError, match="K = 17"):
        exact_channel_shapley(head, torch.zeros(1, 17, 2, 2), torch.tensor([0]))
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
    assert hooks == 0
    assert all(p.grad is None for p in model.parameters())


# Captum's ShapleyValueSampling and ShapleyValues accumulate their attributions in
# float32 whatever the inputs' dtype, so equality with them is to float32 rounding.
CAPTUM_RTOL = 1e-6


def _assert_close_to_float32_rounding(actual: Tensor, expected: Tensor) -> None:
    scale = expected.abs().max().item()
    torch.testing.assert_close(
        actual.to(torch.float64), expected, rtol=CAPTUM_RTOL, atol=CAPTUM_RTOL * scale
    )


def test_weights_equal_captum_shapley_value_sampling_on_the_head() -> None:
    model, body, head = _model()
    x = _inputs(3)
    target = torch.tensor([2, 7, 9])
    num_permutations, seed = 4, 5
    _, alpha = LayerShapCam(model, body).attribute(
        x, target=target, num_permutations=num_permutations, seed=seed, return_weights=True
    )
    # the documented scheme: per example, argsort of torch.rand from an own generator
    generator = torch.Generator().manual_seed(seed)
    orders = torch.rand(3, num_permutations, K, generator=generator).argsort(dim=-1)
    A = _activations(model, body, x)
    expected = []
    for n in range(3):
        sampler = ShapleyValueSampling(head)
        sampler.permutation_generator = lambda _k, _p, n=n: iter(orders[n].tolist())
        values = sampler.attribute(
            A[n : n + 1],
            baselines=0.0,
            target=target[n : n + 1],
            feature_mask=torch.arange(K).view(1, K, 1, 1),
            n_samples=num_permutations,
        )
        expected.append(values[:, :, 0, 0].to(torch.float64))
    assert alpha.dtype == torch.float64
    _assert_close_to_float32_rounding(alpha, torch.cat(expected))


def test_exact_shapley_equals_captum_shapley_values() -> None:
    torch.manual_seed(0)
    head = nn.Sequential(
        nn.Conv2d(4, 6, 1), nn.ReLU(), nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(6, 3)
    ).double()
    A = torch.rand(2, 4, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    target = torch.tensor([0, 2])
    expected = ShapleyValues(head).attribute(
        A, baselines=0.0, target=target, feature_mask=torch.arange(4).view(1, 4, 1, 1)
    )[:, :, 0, 0]
    phi = exact_channel_shapley(head, A, target)
    assert phi.dtype == torch.float64
    _assert_close_to_float32_rounding(phi, expected.to(torch.float64))
    _assert_close_to_float32_rounding(
        captum_channel_shapley(lambda a, _index: head(a), A, target, None, 5), phi
    )


@pytest.mark.parametrize("internal_batch_size", [None, 1, 4, 64])
def test_captum_path_equals_own_loop_with_the_fallback_head(
    skip_model: nn.Module, internal_batch_size: int
) -> None:
    model = skip_model  # whole-model passes: a wrong example changes the skip term
    head = LayerHead(model, model.layer)
    assert head.source == "fallback"
    x = _inputs(3)
    head.bind((x,), ())
    A = _activations(model, model.layer, x)
    target = torch.tensor([1, 4, 8])
    orders = permutation_orders(3, 3, K, seed=11)
    own = sampled_channel_shapley(head, A, target, orders, internal_batch_size)
    captum = captum_channel_shapley(head, A, target, orders, internal_batch_size)
    assert captum.dtype == torch.float64 and captum.shape == (3, K)
    _assert_close_to_float32_rounding(captum, own)
    # Captum's own scheme: the same orders for the whole batch, in one call
    shared = captum_channel_shapley(head, A, target, orders[1], internal_batch_size)
    own_shared = sampled_channel_shapley(
        head, A, target, orders[1].expand(3, -1, -1), internal_batch_size
    )
    _assert_close_to_float32_rounding(shared, own_shared)
