#!/usr/bin/env python3
"""Threshold fine-tuning: RPI curves and τ* worked out by hand on a 2 x 2 pixel-linear
model and by a direct per-example, per-threshold loop on a small CNN; unchanged maps,
ties, batching, input safety, the wrapper around Captum's and this package's CAMs, and
argument errors."""

import math
from typing import Callable, List

import pytest
import torch
import torch.nn.functional as F
from captum.attr import LayerGradCam as CaptumLayerGradCam
from torch import Tensor, nn

import captum_cams
from captum_cams import LayerAblationCam, LayerCam, LayerGradCamPlusPlus
from captum_cams.metrics import threshold_sweep
from captum_cams.tuning import (
    DEFAULT_TFT_THRESHOLDS,
    TFTResult,
    ThresholdFineTuned,
    threshold_fine_tuning,
)


class PixelLinear(nn.Module):
    r"""Two classes: logit 0 = ``Σ w ⊙ x``, logit 1 = 0."""

    def __init__(self) -> None:
        super().__init__()
        weight = torch.tensor([[[0.1, 0.2], [0.3, 0.4]]], dtype=torch.float64)
        self.weight = nn.Parameter(weight, requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        z0 = (x * self.weight).flatten(1).sum(1)
        return torch.stack([z0, torch.zeros_like(z0)], dim=1)


def sig(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def batch(n: int = 4, size: int = 8, map_size: int = 4, seed: int = 1) -> tuple:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, size, size, generator=gen, dtype=torch.float64)
    maps = torch.rand(n, 1, map_size, map_size, generator=gen, dtype=torch.float64)
    return x, maps


def least_likely(model: nn.Module, x: Tensor) -> List[int]:
    with torch.no_grad():
        return model(x).argmin(dim=1).tolist()


# x = [[1, 2], [3, 4]]: contributions w ⊙ x = [[0.1, 0.4], [0.9, 1.6]], logit 3.0.
# The map [[0, 1], [2, 4]] normalises exactly to I = [[0, .25], [.5, 1]]; kept pixels:
# τ ∈ {0.1, 0.2}: {.25, .5, 1} (logit 2.9), τ ∈ {0.3, 0.4, 0.5}: {.5, 1} (2.5),
# τ ≥ 0.6: {1} (1.6). Class 1 has probability sig(−z0): it rises as pixels go.
X22 = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]], dtype=torch.float64)
MAP22 = torch.tensor([[[[0.0, 1.0], [2.0, 4.0]]]], dtype=torch.float64)
I22 = torch.tensor([[[[0.0, 0.25], [0.5, 1.0]]]], dtype=torch.float64)
KEPT_LOGIT = [2.9, 2.9, 2.5, 2.5, 2.5, 1.6, 1.6, 1.6, 1.6, 1.6]


def test_rpi_curves_and_tau_by_hand_with_ties_and_unchanged_map():
    x, maps = X22.repeat(2, 1, 1, 1), MAP22.repeat(2, 1, 1, 1)
    result = threshold_fine_tuning(PixelLinear(), x, maps, target=[1, 0])
    assert isinstance(result, TFTResult)
    assert result.grid.tolist() == list(DEFAULT_TFT_THRESHOLDS)
    y1 = sig(-3.0)
    expected = torch.tensor([(sig(-z) - y1) / y1 for z in KEPT_LOGIT], dtype=torch.float64)
    torch.testing.assert_close(result.rpi_curves[0], expected, rtol=1e-12, atol=0)
    # class 0 only loses probability: every RPI is 0
    assert result.rpi_curves[1].eq(0).all()
    # τ = 0.6 ... 1.0 keep the same pixel and tie exactly: the smallest wins
    assert result.thresholds[0].item() == 0.6
    assert torch.isnan(result.thresholds[1])
    assert torch.equal(result.tuned_maps[0], I22[0] * (I22[0] >= 0.6))
    assert torch.equal(result.tuned_maps[1], I22[0])  # unchanged: I itself
    assert result.tuned_maps.shape == (2, 1, 2, 2)


def test_soft_masks_by_hand():
    # I_τ ⊙ x keeps 0.25·0.4 + 0.5·0.9 + 1.6 = 2.15, then 0.5·0.9 + 1.6 = 2.05, then 1.6
    result = threshold_fine_tuning(PixelLinear(), X22, MAP22, target=1, soft=True)
    y1 = sig(-3.0)
    logits = [2.15] * 2 + [2.05] * 3 + [1.6] * 5
    expected = torch.tensor([(sig(-z) - y1) / y1 for z in logits], dtype=torch.float64)
    torch.testing.assert_close(result.rpi_curves[0], expected, rtol=1e-12, atol=0)
    assert result.thresholds.tolist() == [0.6]
    assert torch.equal(result.tuned_maps, I22 * (I22 >= 0.6))


def test_ties_go_to_the_smallest_threshold_whatever_the_given_order():
    # 0.7 and 0.9 keep the same pixel as 0.6; the grid is sorted before the sweep
    result = threshold_fine_tuning(PixelLinear(), X22, MAP22, target=1, thresholds=[0.9, 0.7, 0.2])
    assert result.grid.tolist() == [0.2, 0.7, 0.9]
    assert result.rpi_curves[0, 1] == result.rpi_curves[0, 2]
    assert result.thresholds.tolist() == [0.7]


def _kept_map(image: Tensor, order: List[int], tau: float, mode: str) -> Tensor:
    r"""``I_τ``: ``I ⊙ 1[I ≥ τ]``, or for ranks ``I`` on its ``floor(τ·H·W + 0.5)``
    highest pixels (``order``: pixels by value descending, ties by index)."""
    if mode == "value":
        return image * (image >= tau)
    top = torch.zeros(image.numel(), dtype=image.dtype)
    top[order[: int(math.floor(tau * image.numel() + 0.5))]] = 1
    return image * top.reshape(image.shape)


def _direct_tft(
    model: nn.Module, x: Tensor, maps: Tensor, target: List[int], mode: str = "value"
) -> tuple:
    r"""TFT written out: one example, one threshold, one forward at a time."""
    grid = sorted(DEFAULT_TFT_THRESHOLDS, reverse=mode == "rank")
    taus, curves, tuned = [], [], []
    for i in range(x.shape[0]):
        m = F.interpolate(maps[i : i + 1], size=x.shape[-2:], mode="bilinear", align_corners=False)
        low, high = m.min(), m.max()
        image = (m - low) / torch.clamp(high - low, min=1e-7)
        order = sorted(range(image.numel()), key=lambda p: (-image.flatten()[p].item(), p))
        with torch.no_grad():
            y = torch.softmax(model(x[i : i + 1]), dim=1)[0, target[i]]
            row = []
            for tau in grid:
                mask = (_kept_map(image, order, tau, mode) != 0).to(x.dtype)
                o = torch.softmax(model(mask * x[i : i + 1]), dim=1)[0, target[i]]
                row.append(max((o - y).item(), 0.0) / y.item())
        candidates = [_kept_map(image, order, tau, mode) for tau in grid]
        _choose(row, candidates, list(grid), image, taus, tuned)
        curves.append(row)
    return taus, torch.tensor(curves, dtype=x.dtype), torch.cat(tuned)


def _choose(row, candidates, grid, image, taus, tuned) -> None:
    r"""τ* = the first arg-max of a positive RPI row; the untouched map otherwise."""
    best = max(row)
    if best > 0:
        tuned.append(candidates[row.index(best)])
        taus.append(grid[row.index(best)])
    else:
        tuned.append(image)
        taus.append(math.nan)


def test_equals_a_direct_per_example_per_threshold_loop(small_cnn: Callable[[], nn.Module]):
    model = small_cnn()
    x, maps = batch(n=5)
    target = least_likely(model, x)
    result = threshold_fine_tuning(model, x, maps, target=target)
    taus, curves, tuned = _direct_tft(model, x, maps, target)
    torch.testing.assert_close(result.rpi_curves, curves, rtol=1e-10, atol=1e-12)
    assert result.thresholds.tolist() == pytest.approx(taus, nan_ok=True)
    torch.testing.assert_close(result.tuned_maps, tuned, rtol=0, atol=1e-15)
    assert any(not math.isnan(t) for t in taus)  # the test exercises real tuning
    # the curves are the sweep's binary API (TFT's RPI), from one batched sweep
    sweep = threshold_sweep(
        model, x, maps, target=target, thresholds=DEFAULT_TFT_THRESHOLDS, binary=True
    )
    assert torch.equal(result.rpi_curves, sweep.api)


def test_rank_thresholds_equal_a_direct_loop(small_cnn: Callable[[], nn.Module]):
    model = small_cnn()
    x, maps = batch(n=5, seed=2)
    target = least_likely(model, x)
    result = threshold_fine_tuning(model, x, maps, target=target, threshold_mode="rank")
    taus, curves, tuned = _direct_tft(model, x, maps, target, mode="rank")
    assert result.grid.tolist() == sorted(DEFAULT_TFT_THRESHOLDS, reverse=True)
    torch.testing.assert_close(result.rpi_curves, curves, rtol=1e-10, atol=1e-12)
    assert result.thresholds.tolist() == pytest.approx(taus, nan_ok=True)
    torch.testing.assert_close(result.tuned_maps, tuned, rtol=0, atol=1e-15)
    assert any(not math.isnan(t) for t in taus)


def _direct_authors_tft(model: nn.Module, x: Tensor, maps: Tensor, target: List[int]) -> tuple:
    r"""
    The authors' AFT code written out: for i = 1..9 zero the lowest int(0.1·i·N)
    pixels of I, mask softly, RPI on one softmax; one example, one forward at a time.
    """
    taus, curves, tuned = [], [], []
    for i in range(x.shape[0]):
        m = F.interpolate(maps[i : i + 1], size=x.shape[-2:], mode="bilinear", align_corners=False)
        low, high = m.min(), m.max()
        image = (m - low) / torch.clamp(high - low, min=1e-7)
        n = image.numel()
        lowest_first = sorted(range(n), key=lambda p: (image.flatten()[p].item(), -p))
        candidates = []
        with torch.no_grad():
            y = torch.softmax(model(x[i : i + 1]), dim=1)[0, target[i]]
            row = []
            for step in range(1, 10):
                keep = torch.ones(n, dtype=x.dtype)
                keep[lowest_first[: int(0.1 * step * n)]] = 0
                kept = image * keep.reshape(image.shape)
                o = torch.softmax(model(kept * x[i : i + 1]), dim=1)[0, target[i]]
                row.append(max((o - y).item(), 0.0) / y.item())
                candidates.append(kept)
        _choose(row, candidates, AUTHORS_FRACTIONS, image, taus, tuned)
        curves.append(row)
    return taus, torch.tensor(curves, dtype=x.dtype), torch.cat(tuned)


def test_authors_variant_equals_their_loop(small_cnn: Callable[[], nn.Module]):
    model = small_cnn()
    x, maps = batch(n=6, seed=3)
    target = least_likely(model, x)
    result = threshold_fine_tuning(model, x, maps, target=target, variant="authors")
    taus, curves, tuned = _direct_authors_tft(model, x, maps, target)
    assert result.grid.tolist() == pytest.approx([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1])
    torch.testing.assert_close(result.rpi_curves, curves, rtol=1e-10, atol=1e-12)
    assert result.thresholds.tolist() == pytest.approx(taus, nan_ok=True)
    torch.testing.assert_close(result.tuned_maps, tuned, rtol=0, atol=1e-15)
    assert any(not math.isnan(t) for t in taus)
    # their truncated counts are not the rank mode's rounded ones (64 pixels: 52 vs 51
    # kept at 0.8, ...), so the preset is not rank mode with soft masks
    rounded = threshold_fine_tuning(
        model, x, maps, target=target, thresholds=AUTHORS_FRACTIONS, soft=True,
        threshold_mode="rank",
    )  # fmt: skip
    assert not torch.allclose(result.rpi_curves, rounded.rpi_curves)
    wrapped = ThresholdFineTuned(CaptumLayerGradCam(model, model[2])).attribute(
        x, target=target, variant="authors"
    )
    direct = threshold_fine_tuning(
        model, x, CaptumLayerGradCam(model, model[2]).attribute(x, target=target),
        target=target, variant="authors",
    )  # fmt: skip
    torch.testing.assert_close(wrapped, direct.tuned_maps, rtol=0, atol=0)
    for bad in ({"soft": True}, {"threshold_mode": "rank"}, {"thresholds": [0.5]}):
        with pytest.raises(ValueError, match="variant='authors' fixes"):
            threshold_fine_tuning(model, x, maps, target=target, variant="authors", **bad)
    with pytest.raises(ValueError, match="variant"):
        threshold_fine_tuning(model, x, maps, target=target, variant="notebook")


AUTHORS_FRACTIONS = [round(1 - i / 10, 1) for i in range(1, 10)]


def test_rank_thresholds_by_hand():
    # I = [0, .25, .5, 1]: fractions kept 1.0 ... 0.1 keep round(4τ) = 4, 4, 3, 3, 2, 2,
    # 2, 1, 1, 0 pixels; the zero pixel never enters M = 1[I_τ ≠ 0]
    result = threshold_fine_tuning(PixelLinear(), X22, MAP22, target=1, threshold_mode="rank")
    y1 = sig(-3.0)
    logits = [2.9] * 4 + [2.5] * 3 + [1.6] * 2 + [0.0]
    expected = torch.tensor([(sig(-z) - y1) / y1 for z in logits], dtype=torch.float64)
    torch.testing.assert_close(result.rpi_curves[0], expected, rtol=1e-12, atol=0)
    assert result.thresholds.tolist() == [0.1]  # nothing kept: the empty mask wins
    assert result.tuned_maps.eq(0).all()
    # without 0.1, fractions 0.3 and 0.2 keep the same pixel and tie: the larger
    # fraction (the larger mask) wins
    tied = threshold_fine_tuning(
        PixelLinear(), X22, MAP22, target=1, threshold_mode="rank", thresholds=(0.2, 0.3, 0.6)
    )
    assert tied.grid.tolist() == [0.6, 0.3, 0.2]
    assert tied.thresholds.tolist() == [0.3]
    assert torch.equal(tied.tuned_maps, I22 * (I22 >= 1.0))


@pytest.mark.parametrize("threshold_mode", ["value", "rank"])
def test_batching_gives_identical_results_and_leaves_inputs_alone(
    threshold_mode, small_cnn: Callable[[], nn.Module]
):
    model = small_cnn()
    x, maps = batch(n=3)
    x.requires_grad_(True)
    maps.requires_grad_(True)
    x_before, maps_before = x.detach().clone(), maps.detach().clone()
    target = least_likely(model, x.detach())
    results = [
        threshold_fine_tuning(
            model,
            x,
            maps,
            target=target,
            max_examples_per_batch=size,
            threshold_mode=threshold_mode,
        )
        for size in (1, 2, None)
    ]
    for other in results[1:]:
        torch.testing.assert_close(other.rpi_curves, results[0].rpi_curves, rtol=1e-12, atol=0)
        assert torch.equal(other.tuned_maps, results[0].tuned_maps)
        assert torch.equal(other.thresholds.nan_to_num(-1), results[0].thresholds.nan_to_num(-1))
    assert torch.equal(x.detach(), x_before) and torch.equal(maps.detach(), maps_before)
    for tensor in results[0]:
        assert not tensor.requires_grad and tensor.grad_fn is None
    assert x.grad is None and maps.grad is None
    assert all(p.grad is None for p in model.parameters())


def test_predicted_class_is_the_default_target(small_cnn: Callable[[], nn.Module]):
    model = small_cnn()
    x, maps = batch(n=3)
    predicted = model(x).argmax(dim=1).tolist()
    default = threshold_fine_tuning(model, x, maps)
    explicit = threshold_fine_tuning(model, x, maps, target=predicted)
    assert torch.equal(default.rpi_curves, explicit.rpi_curves)


@pytest.mark.parametrize(
    "make_method",
    [
        lambda model: CaptumLayerGradCam(model, model[2]),
        lambda model: LayerGradCamPlusPlus(model, model[2]),
        lambda model: LayerCam(model, model[2]),
        lambda model: LayerAblationCam(model, model[2]),
    ],
    ids=["captum-grad-cam", "grad-cam++", "layer-cam", "ablation-cam"],
)
def test_wrapper_equals_method_then_tft(make_method, small_cnn: Callable[[], nn.Module]):
    model = small_cnn()
    x, _ = batch(n=3)
    target = least_likely(model, x)
    method = make_method(model)
    maps = method.attribute(x, target=target)
    expected = threshold_fine_tuning(model, x, maps, target=target, max_examples_per_batch=4)
    tuned_method = ThresholdFineTuned(method)
    tuned, details = tuned_method.attribute(
        x, target=target, max_examples_per_batch=4, return_details=True
    )
    assert tuned.shape == (3, 1, 8, 8)
    assert torch.equal(tuned, expected.tuned_maps)
    assert torch.equal(details.rpi_curves, expected.rpi_curves)
    assert torch.equal(details.thresholds.nan_to_num(-1), expected.thresholds.nan_to_num(-1))
    assert torch.equal(tuned_method.attribute(x, target=target), tuned)


def test_wrapper_passes_method_options_and_resolves_the_default_target_once(
    small_cnn: Callable[[], nn.Module],
):
    model = small_cnn()
    x, _ = batch(n=3)
    predicted = model(x).argmax(dim=1).tolist()
    method = CaptumLayerGradCam(model, model[2])
    maps = method.attribute(x, target=predicted, relu_attributions=True)
    expected = threshold_fine_tuning(model, x, maps, target=predicted, thresholds=(0.3, 0.6))
    # Captum's Grad-CAM cannot take target=None on an N x 5 output; the wrapper
    # gives it (and TFT) the predicted class
    tuned = ThresholdFineTuned(method).attribute(x, thresholds=(0.3, 0.6), relu_attributions=True)
    assert torch.equal(tuned, expected.tuned_maps)


def test_wrapper_refuses_what_it_cannot_wrap(small_cnn: Callable[[], nn.Module]):
    model = small_cnn()
    with pytest.raises(TypeError, match="attribution"):
        ThresholdFineTuned(model)  # type: ignore[arg-type]
    x, _ = batch(n=2)
    tuned = ThresholdFineTuned(LayerCam(model, model[2]))
    with pytest.raises(TypeError, match="one tensor of maps"):
        tuned.attribute(x, target=0, return_weights=True)
    with pytest.raises(ValueError, match="thresholds"):
        tuned.attribute(x, target=0, thresholds=(0.0, 0.5))


def test_exported_from_the_package():
    assert captum_cams.threshold_fine_tuning is threshold_fine_tuning
    assert captum_cams.ThresholdFineTuned is ThresholdFineTuned
    assert captum_cams.TFTResult is TFTResult


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"thresholds": ()}, "thresholds"),
        ({"thresholds": (0.0, 0.5)}, "thresholds"),
        ({"thresholds": (0.5, 1.2)}, "thresholds"),
        ({"thresholds": (-0.1,)}, "thresholds"),
        ({"thresholds": (float("nan"),)}, "thresholds"),
        ({"threshold_mode": "Value"}, "threshold_mode"),
        ({"threshold_mode": "pixels"}, "threshold_mode"),
        ({"max_examples_per_batch": 0}, "max_examples_per_batch"),
    ],
)
def test_bad_options_name_the_argument(kwargs, match, small_cnn: Callable[[], nn.Module]):
    x, maps = batch(n=2)
    with pytest.raises(ValueError, match=match):
        threshold_fine_tuning(small_cnn(), x, maps, target=0, **kwargs)


def test_bad_maps_name_the_argument(small_cnn: Callable[[], nn.Module]):
    model = small_cnn()
    x, maps = batch(n=2)
    with pytest.raises(ValueError, match="attributions"):
        threshold_fine_tuning(model, x, maps[:1], target=0)
    nan_maps = maps.clone()
    nan_maps[1, 0, 2, 2] = math.nan
    with pytest.raises(ValueError, match="attributions contains NaN"):
        threshold_fine_tuning(model, x, nan_maps, target=0)
    with pytest.raises(ValueError, match="inputs"):
        threshold_fine_tuning(model, x[:, :, 0], maps, target=0)
    with pytest.raises(ValueError, match="target"):
        threshold_fine_tuning(model, x, maps, target=[0, 1, 2])


def test_float32_keeps_its_dtype_and_counts_rank_pixels_from_the_exact_fractions():
    # 5 pixels at 70 % kept: round(3.5) = 4 pixels; float32(0.7)·5 = 3.49999... would
    # give 3. Class 1 gains when the lowest pixel (I = 0, positive logit) goes.
    weight = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5]).reshape(1, 1, 1, 5)

    def model(x: Tensor) -> Tensor:
        z0 = (x * weight).flatten(1).sum(1)
        return torch.stack([z0, torch.zeros_like(z0)], dim=1)

    x = torch.ones(1, 1, 1, 5)
    maps = torch.arange(1.0, 6.0).reshape(1, 1, 1, 5)
    result = threshold_fine_tuning(
        model, x, maps, target=1, thresholds=(0.7,), threshold_mode="rank"
    )
    assert result.tuned_maps.dtype == torch.float32 and result.rpi_curves.dtype == torch.float32
    assert result.rpi_curves[0, 0] > 0
    # the top 4 pixels: I's 0 is the one left out, so the tuned map is I itself
    expected = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]).reshape(1, 1, 1, 5)
    torch.testing.assert_close(result.tuned_maps, expected)


def _count_forwards(model: nn.Module) -> tuple:
    r"""Batch sizes of every call of ``model`` (a list) and the hook's handle."""
    sizes: List[int] = []
    handle = model.register_forward_pre_hook(lambda _m, args: sizes.append(args[0].shape[0]))
    return sizes, handle


@pytest.mark.parametrize("given_target", [True, False], ids=["target", "predicted"])
def test_wrapper_adds_only_the_masked_passes_to_the_method(
    given_target, small_cnn: Callable[[], nn.Module]
):
    # y_c comes from a forward the wrapper makes anyway: the wrapped CAM's own
    # forward of x (target given) or the forward that finds the predicted class
    model = small_cnn()
    x, _ = batch(n=3)
    target = least_likely(model, x) if given_target else None
    explained = target if given_target else model(x).argmax(dim=1).tolist()
    method = LayerGradCamPlusPlus(model, model[2])
    expected = threshold_fine_tuning(
        model, x, method.attribute(x, target=explained), target=explained
    )
    sizes, handle = _count_forwards(model)
    try:
        tuned, details = ThresholdFineTuned(method).attribute(
            x, target=target, max_examples_per_batch=12, return_details=True
        )
    finally:
        handle.remove()
    # the method's one pass of the 3 images (after the pass that finds the predicted
    # class), then the 3 x 10 masked copies in chunks of 12: no pass of x for y_c
    assert sizes == [3] * (1 if given_target else 2) + [12, 12, 6]
    assert torch.equal(tuned, expected.tuned_maps)
    assert torch.equal(details.rpi_curves, expected.rpi_curves)
    assert method.forward_observer is None  # the observer is removed again


def test_wrapper_passes_attribute_to_layer_input_to_a_layer_method(
    small_cnn: Callable[[], nn.Module],
):
    # model[3] is the ReLU after the second convolution: its input holds negative
    # pre-activations, so the maps of its input and output differ
    model = small_cnn()
    x, _ = batch(n=3)
    target = least_likely(model, x)
    method = CaptumLayerGradCam(model, model[3])
    of_input = method.attribute(x, target=target, attribute_to_layer_input=True)
    of_output = method.attribute(x, target=target)
    assert not torch.equal(of_input, of_output)
    expected = threshold_fine_tuning(model, x, of_input, target=target)
    tuned = ThresholdFineTuned(method).attribute(x, target, None, True)
    assert torch.equal(tuned, expected.tuned_maps)
    default = ThresholdFineTuned(method).attribute(x, target=target)
    assert torch.equal(default, threshold_fine_tuning(model, x, of_output, target=target)[0])
    assert not torch.equal(tuned, default)


def test_wrapper_refuses_attribute_to_layer_input_a_method_cannot_take(
    small_cnn: Callable[[], nn.Module],
):
    from captum.attr import Saliency

    model = small_cnn()
    x, _ = batch(n=2)
    tuned = ThresholdFineTuned(Saliency(model))
    with pytest.raises(ValueError, match="attribute_to_layer_input=True: the wrapped Saliency"):
        tuned.attribute(x, target=0, attribute_to_layer_input=True)
    with pytest.raises(TypeError, match="attribute_to_layer_input must be a bool"):
        tuned.attribute(x, target=0, attribute_to_layer_input=1)  # type: ignore[arg-type]
    # left at False it is not handed on (Saliency.attribute would refuse the keyword)
    maps = Saliency(model).attribute(x, target=0)
    expected = threshold_fine_tuning(model, x, maps, target=0)
    assert torch.equal(tuned.attribute(x, target=0), expected.tuned_maps)


def test_rpi_stays_exact_where_the_target_probability_underflows():
    # PixelLinear in float32 on x = -100 everywhere: z0 = -100 * (0.1 + 0.2 + 0.3 + 0.4)
    # = -100, so y = sigmoid(-100) ~ 3.7e-44 is subnormal (2 % steps). The map is the
    # weights, mm'd to 0, 1/3, 2/3, 1: tau = 0.5 keeps the pixels of weight 0.3 and
    # 0.4 (z0 = -70), tau = 1 the one of 0.4 (z0 = -40). RPI = (1 + e^100)/(1 + e^-z0) - 1
    # = e^30 - 1 and e^60 - 1 (to 1e-30), as threshold_sweep's api gives them.
    model = PixelLinear().float()
    x = torch.full((1, 1, 2, 2), -100.0)
    maps = torch.tensor([[[[0.1, 0.2], [0.3, 0.4]]]])
    expected = torch.tensor([[math.expm1(30.0), math.expm1(60.0)]])
    result = threshold_fine_tuning(model, x, maps, target=0, thresholds=(0.5, 1.0))
    assert torch.allclose(result.rpi_curves, expected, rtol=1e-6, atol=0)
    assert torch.equal(
        result.rpi_curves,
        threshold_sweep(model, x, maps, 0, thresholds=(0.5, 1.0), binary=True).api,
    )
    assert result.thresholds.tolist() == [1.0]
    # at x = -1000 the increase e^600 exceeds float32: an error naming the input
    with pytest.raises(ValueError, match=r"inputs \[0\] underflows"):
        threshold_fine_tuning(model, x * 10, maps, target=0, thresholds=(0.5, 1.0))
