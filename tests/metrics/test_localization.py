#!/usr/bin/env python3
"""Localisation metrics: hand-computed values, boxes vs masks, PxAP against an
independent histogram implementation (wsolevaluation's recipe), and errors."""

import numpy as np
import pytest
import torch

from captum_cams._utils.maps import upsample
from captum_cams.metrics import (
    bbox_score,
    boxes_to_masks,
    energy_pointing_game,
    mean_pixel_average_precision,
    pixel_average_precision,
    pointing_game,
)

MAP = torch.tensor([[[[0.0, 1.0], [2.0, 4.0]]]], dtype=torch.float64)
RIGHT_COLUMN = torch.tensor([[1, 0, 1, 1]])  # x1, y1, x2, y2 (inclusive)


def test_boxes_to_masks():
    masks = boxes_to_masks(torch.tensor([[1, 0, 2, 1], [0, 2, 0, 2]]), (3, 4))
    assert masks.shape == (2, 1, 3, 4) and masks.dtype == torch.bool
    assert masks[0, 0].int().tolist() == [[0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]]
    assert masks[1, 0].int().tolist() == [[0, 0, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0]]
    union = boxes_to_masks([torch.tensor([[0, 0, 0, 0], [3, 2, 3, 2]])], (3, 4))
    assert union[0, 0].int().tolist() == [[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]]


def test_energy_pointing_game_by_hand():
    # S = c [[0, 1/4], [1/2, 1]]; the right column holds 1/4 + 1 of 7/4 -> 5/7
    got = energy_pointing_game(MAP, RIGHT_COLUMN)
    assert got.tolist() == pytest.approx([5 / 7], rel=1e-12)
    mask = boxes_to_masks(RIGHT_COLUMN, (2, 2))
    assert torch.equal(energy_pointing_game(MAP, mask), got)
    assert torch.equal(energy_pointing_game(MAP, mask[:, 0].float()), got)
    # a constant map has no energy
    assert energy_pointing_game(torch.ones(1, 2, 2), RIGHT_COLUMN).item() == 0.0


def test_bbox_score_by_hand():
    # |G| = 2; the two highest pixels are 4 (inside) and 2 (outside) -> 1/2
    assert bbox_score(MAP, RIGHT_COLUMN).tolist() == [0.5]
    bottom_row = torch.tensor([[0, 1, 1, 1]])
    assert bbox_score(MAP, bottom_row).tolist() == [1.0]
    top_left = torch.tensor([[0, 0, 0, 0]])
    assert bbox_score(MAP, top_left).tolist() == [0.0]


def test_pointing_game_by_hand():
    heat = torch.zeros(1, 5, 5, dtype=torch.float64)
    heat[0, 0, 0] = 1.0
    box = torch.tensor([[3, 3, 4, 4]])  # nearest pixel (3, 3): distance sqrt(18) = 4.24
    assert pointing_game(heat, box, tolerance=4).tolist() == [0.0]
    assert pointing_game(heat, box, tolerance=4.25).tolist() == [1.0]
    assert pointing_game(heat, torch.tensor([[0, 0, 0, 0]]), tolerance=0).tolist() == [1.0]
    # ties: the first maximum in row-major order is the point
    tied = torch.zeros(1, 5, 5)
    tied[0, 0, 4] = tied[0, 4, 4] = 1.0
    assert pointing_game(tied, box, tolerance=1).tolist() == [0.0]


def test_low_resolution_maps_are_upsampled_to_the_image():
    gen = torch.Generator().manual_seed(0)
    low = torch.rand(2, 1, 3, 3, generator=gen, dtype=torch.float64)
    boxes = torch.tensor([[1, 2, 6, 7], [0, 0, 3, 3]])
    big = upsample(low, (9, 9))
    for metric in (energy_pointing_game, bbox_score, pointing_game):
        assert torch.equal(metric(low, boxes, image_size=(9, 9)), metric(big, boxes))
    assert torch.equal(
        pixel_average_precision(low, boxes, image_size=(9, 9)), pixel_average_precision(big, boxes)
    )


def test_pixel_average_precision_by_hand():
    # scores (after mm, x 1/(1 + 1e-7)) 0, .305, .755, 1 with labels 0, 1, 0, 1:
    # t in (.755, 1): TP 1 FP 0 -> P 1, R .5; (.305, .755]: P .5, R .5;
    # (0, .305]: P 2/3, R 1; t = 0: P .5, R 1  ->  AP = 1 * .5 + 2/3 * .5 = 5/6
    maps = torch.tensor([[[0.0, 0.305, 0.755, 1.0]]], dtype=torch.float64)
    masks = torch.tensor([[[0, 1, 0, 1]]])
    assert pixel_average_precision(maps, masks).item() == pytest.approx(5 / 6, rel=1e-12)
    # a perfect separation gives 1
    assert pixel_average_precision(maps, torch.tensor([[[0, 0, 1, 1]]])).item() == pytest.approx(
        1.0
    )
    # mPxAP is the mean over sets
    m = mean_pixel_average_precision([(maps, masks), (maps, torch.tensor([[[0, 0, 1, 1]]]))])
    assert m.item() == pytest.approx((5 / 6 + 1) / 2, rel=1e-12)


def _pxap_reference(scoremaps: np.ndarray, gts: np.ndarray) -> float:
    """wsolevaluation's MaskEvaluator recipe, written out with numpy histograms."""
    thresholds = np.arange(0, 1, 0.01)
    edges = np.append(thresholds, [1.0, 2.0, 3.0])
    pos = np.zeros(len(edges) - 1)
    neg = np.zeros(len(edges) - 1)
    for s, g in zip(scoremaps, gts):
        pos += np.histogram(s[g == 1], bins=edges)[0]
        neg += np.histogram(s[g == 0], bins=edges)[0]
    tp = pos[::-1].cumsum()
    fp = neg[::-1].cumsum()
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
    recall = tp / pos.sum()
    return float((precision[1:] * np.diff(recall)).sum())


def test_pixel_average_precision_matches_histogram_reference():
    gen = torch.Generator().manual_seed(2)
    maps = torch.rand(4, 1, 12, 12, generator=gen, dtype=torch.float64)
    masks = torch.rand(4, 1, 12, 12, generator=gen) < 0.3
    masks[0] = False  # an image without object is allowed in a set
    mm = maps.flatten(1)
    mm = (mm - mm.min(1, keepdim=True).values) / (
        mm.max(1, keepdim=True).values - mm.min(1, keepdim=True).values
    )  # the maps are not constant, so mm is the plain min-max scaling
    ref = _pxap_reference(mm.reshape(4, 12, 12).numpy(), masks[:, 0].numpy().astype(int))
    assert pixel_average_precision(maps, masks).item() == pytest.approx(ref, abs=1e-12)


def test_no_grad_and_unchanged():
    maps = torch.rand(2, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    before = maps.detach().clone()
    boxes = torch.tensor([[0, 0, 1, 1], [2, 2, 3, 3]])
    for metric in (energy_pointing_game, bbox_score, pointing_game, pixel_average_precision):
        out = metric(maps, boxes)
        assert out.grad_fn is None
    assert torch.equal(maps.detach(), before)


@pytest.mark.parametrize(
    "metric", [energy_pointing_game, bbox_score, pointing_game, pixel_average_precision]
)
def test_errors_name_the_argument(metric):
    maps = torch.rand(2, 1, 4, 4)
    with pytest.raises(ValueError, match="masks of example 1 lie outside"):
        metric(maps, torch.tensor([[0, 0, 1, 1], [2, 2, 4, 3]]))
    with pytest.raises(ValueError, match="masks of example 0 lie outside"):
        metric(maps, torch.tensor([[-1, 0, 1, 1], [0, 0, 1, 1]]))
    with pytest.raises(ValueError, match="x1 <= x2"):
        metric(maps, torch.tensor([[2, 0, 1, 1], [0, 0, 1, 1]]))
    with pytest.raises(ValueError, match="masks must hold one ground truth per example"):
        metric(maps, torch.tensor([[0, 0, 1, 1]]))
    with pytest.raises(ValueError, match="attributions contains NaN"):
        metric(torch.full((2, 1, 4, 4), float("nan")), torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1]]))
    with pytest.raises(ValueError, match="masks must be binary"):
        metric(maps, torch.full((2, 4, 4), 0.5))
    with pytest.raises(ValueError, match="image_size"):
        metric(maps, torch.ones(2, 4, 4), image_size=(8, 8))
    empty = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    if metric is pixel_average_precision:
        with pytest.raises(ValueError, match="masks is empty for every example"):
            metric(maps, empty)
    else:
        empty[0, 0, 1, 1] = True
        with pytest.raises(ValueError, match=r"masks is empty .* examples \[1\]"):
            metric(maps, empty)


def test_other_errors():
    with pytest.raises(ValueError, match="tolerance"):
        pointing_game(torch.rand(1, 2, 2), torch.tensor([[0, 0, 1, 1]]), tolerance=-1)
    with pytest.raises(ValueError, match="sets"):
        mean_pixel_average_precision([])
    with pytest.raises(ValueError, match="image_size"):
        boxes_to_masks(torch.tensor([[0, 0, 1, 1]]), (0, 3))
