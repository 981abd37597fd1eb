#!/usr/bin/env python3
"""Libra-CAM's threshold calibration as a metrics-style function: the chosen t* and
maps equal a direct per-example, per-threshold loop (value and rank thresholds,
probability and logit), ties go to the largest mask, chunking changes nothing, and
arguments are checked."""

from typing import Callable, List, Tuple

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from captum_cams import LayerGradCam, threshold_calibration
from captum_cams.tuning import DEFAULT_CALIBRATION_THRESHOLDS
from captum_cams.tuning.threshold_calibration import threshold_calibration_authors


def _normalised(maps: Tensor, size: Tuple[int, int]) -> Tensor:
    up = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
    flat = up.flatten(1)
    low, high = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    return ((flat - low) / (high - low).clamp_min(1e-7)).reshape(up.shape)


@torch.no_grad()
def _direct(
    model: nn.Module,
    x: Tensor,
    maps: Tensor,
    target: List[int],
    mode: str,
    score: str,
    normalize: bool = True,
) -> Tuple[Tensor, Tensor]:
    r"""One example, one threshold, one forward at a time."""
    chosen, out = [], []
    for i in range(x.shape[0]):
        if normalize:
            L = _normalised(maps[i : i + 1], tuple(x.shape[-2:]))[0, 0]
        else:
            L = F.interpolate(
                maps[i : i + 1], size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False
            )[0, 0]
        candidates = []
        grid = (
            DEFAULT_CALIBRATION_THRESHOLDS
            if mode == "value"
            else sorted(DEFAULT_CALIBRATION_THRESHOLDS, reverse=True)
        )
        for t in grid:
            if mode == "value":
                Lt = L * (L >= t).double()
            else:
                count = int(t * L.numel() + 0.5)
                order = torch.argsort(L.flatten(), descending=True, stable=True)
                top = torch.zeros(L.numel(), dtype=torch.float64)
                top[order[:count]] = 1
                Lt = L * top.reshape(L.shape)
            logits = model(x[i : i + 1] * Lt)[0]
            value = (
                torch.softmax(logits, 0)[target[i]] if score == "probability" else logits[target[i]]
            )
            candidates.append((float(value), t, Lt))
        best = candidates[0]
        for candidate in candidates[1:]:
            if candidate[0] > best[0]:  # strict: ties keep the earlier (larger mask)
                best = candidate
        chosen.append(best[1])
        out.append(best[2])
    return torch.tensor(chosen, dtype=torch.float64), torch.stack(out).unsqueeze(1)


@pytest.mark.parametrize("mode", ["value", "rank"])
@pytest.mark.parametrize("score", ["probability", "logit"])
def test_choice_equals_direct_recomputation(
    mode: str, score: str, small_cnn: Callable[[], nn.Module]
) -> None:
    model = small_cnn()
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    target = [0, 3, 1, 4]
    maps = LayerGradCam(model, model[2]).attribute(x, target=target).detach()
    result = threshold_calibration(
        model, x, maps, target=target, max_examples_per_batch=7, threshold_mode=mode, score=score
    )
    expected_t, expected_maps = _direct(model, x, maps, target, mode, score)
    torch.testing.assert_close(result.thresholds, expected_t)
    torch.testing.assert_close(result.calibrated_maps, expected_maps, rtol=0, atol=1e-12)
    assert result.scores.shape == (4, 10)
    # the scores are those of the chosen column
    best = result.scores.max(1).values
    column = (result.grid.unsqueeze(0) == result.thresholds.unsqueeze(1)).double().argmax(1)
    torch.testing.assert_close(result.scores.gather(1, column[:, None]).squeeze(1), best)


@pytest.mark.parametrize("mode", ["value", "rank"])
def test_unnormalised_maps_are_thresholded_as_given(
    mode: str, small_cnn: Callable[[], nn.Module]
) -> None:
    # Algorithm 1 on Libra-CAM's L: a map in [0, 0.8] is thresholded as it is
    model = small_cnn()
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    target = [0, 3, 1, 4]
    maps = 0.8 * torch.rand(
        4, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2)
    )
    result = threshold_calibration(
        model, x, maps, target=target, threshold_mode=mode, normalize=False
    )
    expected_t, expected_maps = _direct(model, x, maps, target, mode, "probability", False)
    torch.testing.assert_close(result.thresholds, expected_t, rtol=0, atol=0)
    torch.testing.assert_close(result.calibrated_maps, expected_maps, rtol=0, atol=1e-12)
    if mode == "value":  # t = 0.9 and 1.0 keep nothing of a map below 0.8
        assert bool((result.scores[:, -1] == result.scores[:, -2]).all())


class PositiveLinear(nn.Module):
    r"""Two classes: logit 0 = ``Σ x`` (more kept pixels, higher score), logit 1 = 0."""

    def forward(self, x: Tensor) -> Tensor:
        z0 = x.flatten(1).sum(1)
        return torch.stack([z0, torch.zeros_like(z0)], dim=1)


def test_ties_go_to_the_smallest_threshold() -> None:
    x = torch.full((1, 1, 8, 8), 0.3, dtype=torch.float64)
    # values 0, 0.55 and 1 only: t = 0.1 ... 0.5 give the same, largest mask; the
    # score grows with the mask, so these five tie for the maximum
    maps = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    maps[..., :4, :] = 0.55
    maps[..., :2, :2] = 1.0
    result = threshold_calibration(PositiveLinear(), x, maps, target=0)
    assert torch.equal(result.scores[0, :5], result.scores[0, :1].expand(5))
    assert bool((result.scores[0, 5:] < result.scores[0, 0]).all())
    assert float(result.thresholds[0]) == pytest.approx(0.1)
    torch.testing.assert_close(result.calibrated_maps, maps)
    ranked = threshold_calibration(PositiveLinear(), x, maps, target=0, threshold_mode="rank")
    assert float(ranked.thresholds[0]) == pytest.approx(1.0)  # all pixels kept


def test_authors_calibration_returns_one_decile_past_the_best() -> None:
    # the score grows with the kept mass, so every masked input scores below x: all
    # clipped increases are 0, the first (keep 0 %) wins, and the authors' code
    # returns the map one decile past it: the int(0.1 * 64) = 6 highest pixels
    x = torch.full((1, 1, 8, 8), 0.3, dtype=torch.float64)
    maps = torch.arange(64, dtype=torch.float64).reshape(1, 1, 8, 8) / 100
    result = threshold_calibration_authors(PositiveLinear(), x, maps, target=0)
    assert torch.equal(result.scores, torch.zeros(1, 10, dtype=torch.float64))
    assert result.grid.tolist() == [i / 10 for i in range(10)]
    assert float(result.thresholds[0]) == pytest.approx(0.1)
    expected = torch.zeros(64, dtype=torch.float64)
    expected[-6:] = maps.flatten()[-6:]  # not re-normalised
    torch.testing.assert_close(result.calibrated_maps.flatten(), expected, rtol=0, atol=0)


def test_chunking_changes_nothing_and_inputs_untouched(small_cnn: Callable[[], nn.Module]) -> None:
    model = small_cnn()
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    copy = x.clone()
    maps = torch.rand(3, 1, 4, 4, dtype=torch.float64)
    whole = threshold_calibration(model, x, maps)
    chunked = threshold_calibration(model, x, maps, max_examples_per_batch=4)
    assert torch.equal(whole.thresholds, chunked.thresholds)
    torch.testing.assert_close(whole.calibrated_maps, chunked.calibrated_maps)
    assert torch.equal(x, copy)
    assert ((whole.calibrated_maps >= 0) & (whole.calibrated_maps <= 1)).all()


def test_argument_errors(small_cnn: Callable[[], nn.Module]) -> None:
    model = small_cnn()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    maps = torch.rand(2, 1, 4, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="threshold_mode"):
        threshold_calibration(model, x, maps, threshold_mode="percent")
    with pytest.raises(ValueError, match="score"):
        threshold_calibration(model, x, maps, score="energy")
    with pytest.raises(ValueError, match="thresholds"):
        threshold_calibration(model, x, maps, thresholds=[])
    with pytest.raises(ValueError, match="max_examples_per_batch"):
        threshold_calibration(model, x, maps, max_examples_per_batch=0)
    with pytest.raises(ValueError, match="attributions"):
        threshold_calibration(model, x, maps[:1])


def test_a_given_target_needs_only_the_masked_passes_and_is_range_checked(
    small_cnn: Callable[[], nn.Module],
):
    # C_t does not use the unmasked input's score: with a given target only the
    # N x T masked copies are evaluated, and the target is still checked
    model = small_cnn()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    maps = torch.rand(2, 1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    sizes: List[int] = []
    handle = model.register_forward_pre_hook(lambda _m, args: sizes.append(args[0].shape[0]))
    try:
        threshold_calibration(model, x, maps, target=[1, 3], max_examples_per_batch=8)
        assert sizes == [8, 8, 4]
        sizes.clear()
        threshold_calibration(model, x, maps, max_examples_per_batch=8)
        assert sizes == [2, 8, 8, 4]  # the predicted class needs the unmasked pass
    finally:
        handle.remove()
    with pytest.raises(ValueError, match="target out of range"):
        threshold_calibration(model, x, maps, target=[1, 5])
