#!/usr/bin/env python3
"""Ablation-CAM against Captum's FeatureAblation on the head and a closed form, and its
Captum path against its own loop, on tiny float64 models."""

from typing import Tuple

import pytest
import torch
import torch.nn as nn
from _captum_references import captum_ablation_differences
from captum.attr import FeatureAblation
from torch import Tensor

from captum_cams import LayerAblationCam
from captum_cams.attr._head import LayerHead
from captum_cams.attr.ablation_cam import ablated_target_scores

K = 5


def _model(seed: int = 0) -> Tuple[nn.Module, nn.Module, nn.Module]:
    # signed activations (batch norm last in the body), a GELU / max-pool head
    torch.manual_seed(seed)
    body = nn.Sequential(nn.Conv2d(3, K, 3, padding=1), nn.BatchNorm2d(K))
    head = nn.Sequential(
        nn.Conv2d(K, 7, 1), nn.GELU(), nn.AdaptiveMaxPool2d(2), nn.Flatten(), nn.Linear(28, 6)
    )
    model = nn.Sequential(body, head).double().eval()
    with torch.no_grad():  # non-trivial running statistics
        body[1].running_mean.uniform_(-0.5, 0.5)
        body[1].running_var.uniform_(0.5, 2.0)
    return model, body, head


def _inputs(n: int = 3, seed: int = 1) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return 3 * torch.randn(n, 3, 8, 8, generator=generator, dtype=torch.float64)


def test_weights_equal_captum_feature_ablation_on_the_head() -> None:
    model, body, head = _model()
    x = _inputs()
    target = torch.tensor([0, 3, 5])
    with torch.no_grad():
        A = body(x)
        y = model(x).gather(1, target[:, None])
    # Captum's own class on the head: one feature per channel, ablated to 0
    differences = FeatureAblation(head).attribute(
        A, baselines=0.0, target=target, feature_mask=torch.arange(K).view(1, K, 1, 1)
    )
    expected = differences[:, :, 0, 0] / y
    for internal_batch_size in (None, 1, 4, 256):
        maps, weights = LayerAblationCam(model, body).attribute(
            x, target=target, return_weights=True, internal_batch_size=internal_batch_size
        )
        assert weights.dtype == torch.float64
        torch.testing.assert_close(weights, expected, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(
        maps, torch.relu((expected[:, :, None, None] * A).sum(1, keepdim=True))
    )


def test_linear_head_closed_form() -> None:
    # head = mean over positions, then Linear: y_c - y_c^(k) = W_ck * mean_ij A_k
    torch.manual_seed(0)
    body = nn.Conv2d(3, K, 3, padding=1)
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(K, 4))
    model = nn.Sequential(body, head).double().eval()
    x = _inputs(2)
    target = torch.tensor([1, 2])
    with torch.no_grad():
        A = body(x)
        y = model(x).gather(1, target[:, None])
    expected = head[2].weight.detach()[target] * A.mean(dim=(2, 3)) / y
    _, weights = LayerAblationCam(model, body).attribute(x, target=target, return_weights=True)
    torch.testing.assert_close(weights, expected, rtol=1e-12, atol=1e-13)


@pytest.mark.filterwarnings("ignore:the model could not be split:RuntimeWarning")
@pytest.mark.parametrize("internal_batch_size", [None, 1, 4, 7, 64])
@pytest.mark.parametrize("source", ["fx", "fallback"])
def test_captum_path_equals_own_loop(
    skip_model: nn.Module, source: str, internal_batch_size: int
) -> None:
    if source == "fx":
        model, layer, _ = _model()
    else:  # whole-model passes: a wrong example changes the skip term
        model, layer = skip_model, skip_model.layer
    x = _inputs(3)
    target = torch.tensor([4, 0, 2])
    head = LayerHead(model, layer)
    assert head.source == source
    store = []
    handle = layer.register_forward_hook(lambda _m, _i, out: store.append(out.detach()))
    with torch.no_grad():
        outputs = model(x)
    handle.remove()
    A = store[0]
    head.bind((x,), ())
    head.verify(A, outputs)
    own = outputs.gather(1, target[:, None]) - ablated_target_scores(
        head, A, target, internal_batch_size
    )
    captum = captum_ablation_differences(head, A, target, internal_batch_size)
    assert captum.shape == A.shape[:2] and captum.dtype == torch.float64
    torch.testing.assert_close(captum, own, rtol=1e-10, atol=1e-12)


def test_captum_path_keeps_activations_under_an_in_place_head() -> None:
    # a head that begins with an in-place ReLU on the layer's (signed) output
    torch.manual_seed(0)
    head = nn.Sequential(
        nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(K, 3)
    ).double()
    A = torch.randn(2, K, 3, 3, dtype=torch.float64)
    before = A.clone()
    target = torch.tensor([0, 2])
    captum = captum_ablation_differences(lambda a, _index: head(a), A, target, 4)
    assert torch.equal(A, before)
    own = head(A.clone()).gather(1, target[:, None]) - ablated_target_scores(
        lambda a, _index: head(a), A, target, 4
    )
    torch.testing.assert_close(captum, own, rtol=1e-12, atol=1e-13)
