#!/usr/bin/env python3
"""The model's head: the cached fx split, and no hooks or caches piling up over calls."""

import gc
import warnings
import weakref

import _captum_references
import pytest
import torch
import torch.fx.graph_module as fx_graph_module
import torch.nn as nn

from captum_cams import (
    LayerAblationCam,
    LayerCam,
    LayerGradCam,
    LayerGradCamPlusPlus,
    LayerIntegratedGradCam,
    LayerLiftCam,
    LayerScoreCam,
    LayerShapCam,
    LayerXGradCam,
)
from captum_cams.attr import _deeplift_head, _head
from captum_cams.attr._head import cached_split_head, split_head


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 5, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.pool(self.relu2(self.conv2(self.relu1(self.conv1(x)))))))


def _tiny() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet().eval()


def _images() -> torch.Tensor:
    return torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(1))


def _all_hooks(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks)
        + len(m._forward_pre_hooks)
        + len(m._backward_hooks)
        + len(m._backward_pre_hooks)
        for m in model.modules()
    )


def _collect() -> None:
    gc.collect()  # the weak dictionaries drop entries in the callbacks of a first pass
    gc.collect()


def test_cached_split_is_reused_and_rebuilt_when_a_module_is_replaced() -> None:
    model = _tiny()
    x = _images()
    first = cached_split_head(model, model.relu2)
    assert first is not None
    assert cached_split_head(model, model.relu2) is first
    assert split_head(model, model.relu2) is not first  # the uncached split is fresh
    activations = model.relu2(model.conv2(model.relu1(model.conv1(x))))
    with torch.no_grad():
        model.fc.weight.mul_(2)  # in-place: the cached head shares the parameters
        torch.testing.assert_close(first(activations), model(x), rtol=0, atol=0)
        model.fc = nn.Linear(5, 3)  # a new module: the cached head would be stale
        second = cached_split_head(model, model.relu2)
        assert second is not first
        torch.testing.assert_close(second(activations), model(x), rtol=0, atol=0)
    assert len(_head._SPLIT_CACHE[model]) == 1  # one entry per layer name


def test_cache_does_not_keep_the_model_alive() -> None:
    model = _tiny()
    LayerLiftCam(model, model.relu2).attribute(_images(), target=1)
    alive = weakref.ref(model)
    del model
    _collect()
    assert alive() is None


def test_many_calls_leave_no_hooks_and_bounded_caches() -> None:
    model = _tiny()
    layer = model.relu2
    x = _images()
    calls = [
        lambda: LayerGradCam(model, layer).attribute(x, target=1),
        lambda: LayerGradCamPlusPlus(model, layer).attribute(x, target=1),
        lambda: LayerXGradCam(model, layer).attribute(x, target=1),
        lambda: LayerCam(model, layer).attribute(x, target=1),
        lambda: LayerAblationCam(model, layer).attribute(x, target=1),
        lambda: LayerScoreCam(model, layer).attribute(x, target=1),
        lambda: LayerLiftCam(model, layer).attribute(x, target=1),
        lambda: LayerShapCam(model, layer).attribute(x, target=1, num_permutations=1),
        lambda: LayerIntegratedGradCam(model, layer).attribute(x, target=1, n_steps=2),
    ]
    for call in calls:  # first calls: the split and the DeepLIFT rewrite are made once
        call()
    generated_code = len(fx_graph_module._loader.eval_cache)
    for _ in range(15):  # benchmarks/memory.py runs 1000 calls per method for RSS
        for call in calls:
            call()
    assert _all_hooks(model) == 0
    assert len(_head._SPLIT_CACHE[model]) == 1
    assert len(_deeplift_head._PREPARED_CACHE) <= 2  # this head, maybe one of an earlier test
    # torch.fx keeps every generated GraphModule's code: no new graphs per call
    assert len(fx_graph_module._loader.eval_cache) == generated_code
    assert all(p.grad is None and p.requires_grad for p in model.parameters())


class _SkipAround(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc((self.conv(x) + x).mean(dim=(2, 3)))


def test_whole_model_fallback_warns_once_naming_head() -> None:
    torch.manual_seed(0)
    model = _SkipAround().eval()  # a skip connection around conv: no fx split
    ablation = LayerAblationCam(model, model.conv)
    assert ablation.head.source == "fallback"
    with pytest.warns(RuntimeWarning, match="head="):
        ablation.attribute(_images(), target=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ablation.attribute(_images(), target=0)  # once per method object

        tiny = _tiny()
        LayerAblationCam(tiny, tiny.relu2).attribute(_images(), target=0)  # fx: no warning


def test_captum_batching_helpers() -> None:
    # perturbations_per_eval: at most internal_batch_size rows (N per perturbation)
    assert _captum_references.perturbations_per_eval(256, 3, 512) == 85
    assert _captum_references.perturbations_per_eval(2, 3, 512) == 1  # never fewer than one
    assert _captum_references.perturbations_per_eval(None, 3, 7) == 7  # all at once
    mask = _captum_references.channel_feature_mask(torch.zeros(2, 4, 3, 3))
    assert mask.shape == (1, 4, 1, 1) and mask.flatten().tolist() == [0, 1, 2, 3]
