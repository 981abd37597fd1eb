#!/usr/bin/env python3
"""box_accuracy (WSOL's MaxBoxAcc): boxes and IoUs worked out by hand, the largest
component against a plain flood fill, errors."""

import numpy as np
import pytest
import torch

from captum_cams.metrics import box_accuracy, boxes_to_masks, pixel_average_precision
from captum_cams.metrics.localization import _largest_component_boxes


def _two_blobs() -> torch.Tensor:
    # A: value 1.0, 6 pixels, rows 1-2, cols 1-3; B: value 0.6, 12 pixels, rows 4-7, cols 5-7
    m = torch.zeros(8, 8, dtype=torch.float64)
    m[1:3, 1:4] = 1.0
    m[4:8, 5:8] = 0.6
    return m


def test_boxes_and_ious_by_hand():
    maps = torch.stack([_two_blobs(), _two_blobs()]).unsqueeze(1)
    truth = torch.tensor([[5, 4, 7, 7], [1, 1, 3, 2]])
    res = box_accuracy(maps, truth, thresholds=[0.8, 0.0, 0.5])
    assert res.thresholds.tolist() == [0.0, 0.5, 0.8]
    # t=0: the whole image (64 px) holds the 12 px and 6 px boxes; t=0.5: the larger
    # component B; t=0.8: only A
    expected_iou = [[12 / 64, 1.0, 0.0], [6 / 64, 0.0, 1.0]]
    torch.testing.assert_close(res.iou, torch.tensor(expected_iou, dtype=torch.float64))
    assert res.correct.tolist() == [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    assert res.accuracy.tolist() == [0.0, 0.5, 0.5]
    assert res.max_accuracy.item() == 0.5 and res.best_threshold.item() == 0.5
    # the box around all pixels >= 0.5 is (1, 1, 7, 7): 49 px, 12 of them B's box
    every = box_accuracy(maps, truth, thresholds=[0.5], box_from="all")
    torch.testing.assert_close(
        every.iou[:, 0], torch.tensor([12 / 49, 6 / 49], dtype=torch.float64)
    )
    # a stricter IoU: 12/64 < 0.15 fails, a looser one counts it
    loose = box_accuracy(maps[:1], truth[:1], thresholds=[0.0], iou_threshold=0.15)
    assert loose.correct.tolist() == [[1.0]]


def test_several_boxes_take_the_best_and_no_pixel_is_a_miss():
    maps = _two_blobs().reshape(1, 1, 8, 8)
    res = box_accuracy(maps, [torch.tensor([[0, 0, 0, 0], [5, 4, 7, 7]])], thresholds=[0.5])
    assert res.iou.tolist() == [[1.0]]
    # a constant map is all zeros after mm: nothing reaches 0.5
    flat = box_accuracy(torch.ones(1, 1, 8, 8), torch.tensor([[0, 0, 7, 7]]), thresholds=[0.0, 0.5])
    assert flat.iou.tolist() == [[1.0, 0.0]]


def test_low_resolution_maps_are_upsampled():
    # a 2 x 2 map with one hot cell, upsampled to 8 x 8: the top-left quadrant and its
    # bilinear spill-over; at t = 1 only the pixels at the cell's peak remain
    coarse = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]], dtype=torch.float64)
    res = box_accuracy(coarse, torch.tensor([[0, 0, 3, 3]]), image_size=(8, 8), thresholds=[0.99])
    # bilinear (align_corners=False) of a 2x2 map to 8x8 is 1.0 exactly on rows/cols 0-1
    assert res.iou.tolist() == [[4 / 16]]


def _flood_fill_box(mask):
    r"""Box of the largest 8-connected component by breadth-first search (ties: first found)."""
    height, width = len(mask), len(mask[0])
    seen, best = set(), None
    for r in range(height):
        for c in range(width):
            if not mask[r][c] or (r, c) in seen:
                continue
            queue, component = [(r, c)], []
            seen.add((r, c))
            while queue:
                y, x = queue.pop()
                component.append((y, x))
                for dy in (-1, 0, 1):
                    for dx in (-1, 0, 1):
                        ny, nx = y + dy, x + dx
                        inside = 0 <= ny < height and 0 <= nx < width
                        if inside and mask[ny][nx] and (ny, nx) not in seen:
                            seen.add((ny, nx))
                            queue.append((ny, nx))
            if best is None or len(component) > len(best):
                best = component
    if best is None:
        return None
    ys, xs = [p[0] for p in best], [p[1] for p in best]
    return [min(xs), min(ys), max(xs), max(ys)]


def test_largest_component_matches_a_flood_fill():
    generator = torch.Generator().manual_seed(0)
    masks = torch.rand(12, 9, 11, generator=generator) > torch.linspace(0.3, 0.8, 12).reshape(
        -1, 1, 1
    )
    masks[3] = False
    boxes, found = _largest_component_boxes(masks)
    for i in range(masks.shape[0]):
        expected = _flood_fill_box(masks[i].tolist())
        assert bool(found[i]) == (expected is not None)
        if expected is not None:
            assert boxes[i].tolist() == expected
    # diagonal neighbours connect (8-connectivity); of two equal components the first wins
    diagonal = torch.zeros(1, 5, 5, dtype=torch.bool)
    diagonal[0, 0, 0] = diagonal[0, 1, 1] = diagonal[0, 2, 2] = True
    diagonal[0, 4, 3] = diagonal[0, 4, 4] = True
    assert _largest_component_boxes(diagonal)[0].tolist() == [[0, 0, 2, 2]]
    tie = torch.zeros(1, 4, 6, dtype=torch.bool)
    tie[0, 3, 0:2] = True
    tie[0, 0, 4:6] = True
    assert _largest_component_boxes(tie)[0].tolist() == [[4, 0, 5, 0]]


def test_errors():
    maps = torch.rand(2, 1, 8, 8)
    boxes = torch.tensor([[0, 0, 3, 3], [1, 1, 2, 2]])
    with pytest.raises(ValueError, match="box_from"):
        box_accuracy(maps, boxes, box_from="contour")
    with pytest.raises(ValueError, match="iou_threshold"):
        box_accuracy(maps, boxes, iou_threshold=0)
    with pytest.raises(ValueError, match="thresholds"):
        box_accuracy(maps, boxes, thresholds=[])
    with pytest.raises(ValueError, match="every example"):
        box_accuracy(maps, boxes[:1])
    with pytest.raises(ValueError, match="outside"):
        box_accuracy(maps, torch.tensor([[0, 0, 8, 3], [1, 1, 2, 2]]))
    with pytest.raises(ValueError, match="at least one box"):
        box_accuracy(maps, [torch.zeros(0, 4), boxes[1]])
    with pytest.raises(ValueError, match="NaN"):
        box_accuracy(torch.full((2, 1, 8, 8), float("nan")), boxes)


def _pxap(maps: torch.Tensor, boxes: torch.Tensor, thresholds: object) -> object:
    return pixel_average_precision(maps, boxes_to_masks(boxes, (8, 8)), thresholds=thresholds)


def _box(maps: torch.Tensor, boxes: torch.Tensor, thresholds: object) -> object:
    return box_accuracy(maps, boxes, thresholds=thresholds)


@pytest.mark.parametrize("metric", [_pxap, _box], ids=["pxap", "box_accuracy"])
@pytest.mark.parametrize(
    "thresholds, position",
    [
        ([0.5, 1.5], 1),
        ([-0.01], 0),
        ([0.2, float("nan")], 1),
        ([float("inf")], 0),
        ([-float("inf"), 0.5], 0),
        (torch.tensor([0.0, 0.5, 2.0]), 2),
        (np.array([0.1, np.nan]), 1),
    ],
)
def test_thresholds_outside_the_unit_interval_are_refused(
    metric: object, thresholds: object, position: int
) -> None:
    maps = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    boxes = torch.tensor([[0, 0, 3, 3], [1, 1, 2, 2]])
    with pytest.raises(ValueError, match=rf"^thresholds\[{position}\] must be in \[0, 1\]"):
        metric(maps, boxes, thresholds)  # type: ignore[operator]


@pytest.mark.parametrize("metric", [_pxap, _box], ids=["pxap", "box_accuracy"])
@pytest.mark.parametrize(
    "thresholds", [0.5, "0.5", torch.tensor(0.5), [0.5, "x"], [None], [True, 0.5]]
)
def test_thresholds_that_are_not_numbers_are_refused(metric: object, thresholds: object) -> None:
    maps = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    boxes = torch.tensor([[0, 0, 3, 3], [1, 1, 2, 2]])
    with pytest.raises(TypeError, match=r"^thresholds(\[\d\])? must be a"):
        metric(maps, boxes, thresholds)  # type: ignore[operator]


@pytest.mark.parametrize("metric", [_pxap, _box], ids=["pxap", "box_accuracy"])
def test_thresholds_as_tensors_and_arrays_in_range_are_accepted(metric: object) -> None:
    maps = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    boxes = torch.tensor([[0, 0, 3, 3], [1, 1, 2, 2]])
    as_list = metric(maps, boxes, [0.0, 0.25, 1.0])  # type: ignore[operator]
    for other in (torch.tensor([1.0, 0.25, 0.0]), np.array([0.25, 0.0, 1.0])):
        again = metric(maps, boxes, other)  # type: ignore[operator]
        if isinstance(as_list, torch.Tensor):
            assert torch.equal(as_list, again)
        else:
            assert torch.equal(as_list.accuracy, again.accuracy)
