#!/usr/bin/env python3
r"""Localisation metrics: no model needed, only maps and ground truth.

Ground truth (argument ``masks``) is given either as

- boxes: an ``N x 4`` tensor of ``(x1, y1, x2, y2)`` per example, or a list of ``N``
  tensors ``K_i x 4`` (the union of an example's boxes), in **0-based, inclusive
  pixel coordinates**: pixel (row ``r``, column ``c``) is inside when
  ``x1 ≤ c ≤ x2`` and ``y1 ≤ r ≤ y2``. Boxes must lie in the image:
  ``0 ≤ x1 ≤ x2 ≤ W − 1`` and ``0 ≤ y1 ≤ y2 ≤ H − 1``. Their image size is
  ``image_size`` (default: the attributions' size);
- masks: ``N x H x W`` or ``N x 1 x H x W``, bool or 0/1 numbers; the image size
  is the masks' size.

The maps are brought to the image size as everywhere else: ``S = mm(up(I))``.
"""

from typing import Iterable, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from captum_cams._utils.maps import as_maps, boxes_to_masks, check_image_size
from captum_cams._utils.masking import prepare_maps
from captum_cams._utils.thresholding import check_thresholds, first_argmax, pixel_ranks

GroundTruth = Union[Tensor, Sequence[Tensor]]

#: PxAP's default thresholds: 0, 0.01, ..., 1.0 (as wsolevaluation's CAM curve).
DEFAULT_PXAP_THRESHOLDS: Tuple[float, ...] = tuple(i / 100 for i in range(101))


def _ground_truth(
    masks: GroundTruth,
    batch_size: int,
    default_size: Sequence[int],
    image_size: Optional[Sequence[int]],
    allow_empty: bool = False,
    name: str = "masks",
) -> Tensor:
    r"""Ground truth as ``N x 1 x H x W`` bool masks, checked."""
    is_boxes = (isinstance(masks, Tensor) and masks.dim() == 2) or isinstance(masks, (list, tuple))
    if is_boxes:
        size = check_image_size(image_size) if image_size is not None else default_size
        gt = boxes_to_masks(masks, size, name=name)
    elif isinstance(masks, Tensor):
        if masks.dim() == 3:
            gt = masks.unsqueeze(1)
        elif masks.dim() == 4 and masks.shape[1] == 1:
            gt = masks
        else:
            raise ValueError(
                f"{name} must be N x 4 boxes, N x H x W or N x 1 x H x W masks; got shape "
                f"{tuple(masks.shape)}"
            )
        if gt.dtype != torch.bool:
            if torch.isnan(gt).any() if gt.is_floating_point() else False:
                raise ValueError(f"{name} contains NaN")
            if not bool(((gt == 0) | (gt == 1)).all()):
                raise ValueError(f"{name} must be binary (bool or 0/1 values)")
            gt = gt != 0
        if image_size is not None and tuple(image_size) != tuple(gt.shape[-2:]):
            raise ValueError(
                f"image_size {tuple(image_size)} does not match the size of {name} "
                f"{tuple(gt.shape[-2:])}"
            )
    else:
        raise TypeError(f"{name} must be a tensor of boxes or masks, or a list of boxes")
    if gt.shape[0] != batch_size:
        raise ValueError(
            f"{name} must hold one ground truth per example of attributions ({batch_size}); "
            f"got {gt.shape[0]}"
        )
    if not allow_empty:
        empty = ~gt.flatten(1).any(dim=1)
        if bool(empty.any()):
            examples = empty.nonzero().flatten().tolist()
            raise ValueError(f"{name} is empty (no pixel inside) for examples {examples}")
    return gt


def _maps_and_truth(
    attributions: Tensor,
    masks: GroundTruth,
    image_size: Optional[Tuple[int, int]],
    allow_empty: bool = False,
) -> Tuple[Tensor, Tensor]:
    maps = as_maps(attributions)
    gt = _ground_truth(
        masks, maps.shape[0], tuple(maps.shape[-2:]), image_size, allow_empty=allow_empty
    )
    dtype = maps.dtype if maps.is_floating_point() else torch.get_default_dtype()
    scores = prepare_maps(maps, tuple(gt.shape[-2:]), maps.shape[0], dtype=dtype)
    return scores, gt.to(scores.device)


def energy_pointing_game(
    attributions: Tensor,
    masks: GroundTruth,
    image_size: Optional[Tuple[int, int]] = None,
) -> Tensor:
    r"""
    Energy-based pointing game (Score-CAM; used by LIFT-CAM and Integrated Grad-CAM):
    the share of the map's energy inside the ground truth, ``Σ(S ⊙ G) / Σ S``.

    A constant map (all zeros after ``mm``) has no energy; its score is 0.

    Args:
        attributions (Tensor): ``N x (1 x) h x w`` maps of any size; NaN is refused.
        masks (Tensor or list[Tensor]): boxes or masks, see the module docs.
        image_size (tuple[int, int], optional): the ``(H, W)`` boxes refer to.
                    Default: None (the attributions' size, or the masks' size)

    Returns:
        *Tensor* of shape ``(N,)`` in ``[0, 1]``.

    Examples::

        >>> maps = LayerGradCam(net, net.conv4).attribute(x, target=3)
        >>> energy_pointing_game(maps, boxes, image_size=(224, 224))
    """
    with torch.no_grad():
        maps, gt = _maps_and_truth(attributions, masks, image_size)
        total = maps.flatten(1).sum(1)
        inside = (maps * gt.to(maps.dtype)).flatten(1).sum(1)
        return torch.where(total > 0, inside / torch.where(total > 0, total, 1), 0.0)


def bbox_score(
    attributions: Tensor,
    masks: GroundTruth,
    image_size: Optional[Tuple[int, int]] = None,
) -> Tensor:
    r"""
    Bbox metric (Integrated Grad-CAM): with ``n = |G|`` ground-truth pixels, the
    fraction of the ``n`` highest pixels of ``S`` that lie inside ``G``. Ties in ``S``
    are ranked by row-major pixel index.

    Args:
        attributions (Tensor): ``N x (1 x) h x w`` maps of any size; NaN is refused.
        masks (Tensor or list[Tensor]): boxes or masks, see the module docs.
        image_size (tuple[int, int], optional): the ``(H, W)`` boxes refer to.
                    Default: None

    Returns:
        *Tensor* of shape ``(N,)`` in ``[0, 1]``.

    Examples::

        >>> bbox_score(maps, torch.tensor([[10, 20, 80, 120]]), image_size=(224, 224))
    """
    with torch.no_grad():
        maps, gt = _maps_and_truth(attributions, masks, image_size)
        flat_gt = gt.flatten(1)
        n = flat_gt.sum(1)
        top = pixel_ranks(maps) < n.unsqueeze(1)
        hits = (top & flat_gt).sum(1)
        return hits.to(maps.dtype) / n.to(maps.dtype)


def pointing_game(
    attributions: Tensor,
    masks: GroundTruth,
    tolerance: float = 15,
    image_size: Optional[Tuple[int, int]] = None,
) -> Tensor:
    r"""
    Pointing game (Zhang et al.; TorchRay's protocol): a hit when the map's maximum
    lies within ``tolerance`` pixels (Euclidean) of a ground-truth pixel. Among tied
    maxima the first in row-major order is taken.

    Args:
        attributions (Tensor): ``N x (1 x) h x w`` maps of any size; NaN is refused.
        masks (Tensor or list[Tensor]): boxes or masks, see the module docs.
        tolerance (float, optional): radius in pixels at image size. Default: 15
        image_size (tuple[int, int], optional): the ``(H, W)`` boxes refer to.
                    Default: None

    Returns:
        *Tensor* of shape ``(N,)``: 1.0 for a hit, 0.0 for a miss.

    Examples::

        >>> pointing_game(maps, masks, tolerance=15).mean()   # the accuracy
    """
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not tolerance >= 0:
        raise ValueError(f"tolerance must be a number >= 0; got {tolerance!r}")
    with torch.no_grad():
        maps, gt = _maps_and_truth(attributions, masks, image_size)
        height, width = maps.shape[-2:]
        peak = torch.argmax((pixel_ranks(maps) == 0).to(torch.uint8), dim=1)
        peak_r = torch.div(peak, width, rounding_mode="floor")
        peak_c = peak - peak_r * width
        rows = torch.arange(height, device=maps.device).reshape(1, height, 1)
        cols = torch.arange(width, device=maps.device).reshape(1, 1, width)
        dist2 = (rows - peak_r.reshape(-1, 1, 1)) ** 2 + (cols - peak_c.reshape(-1, 1, 1)) ** 2
        near = dist2.to(torch.float64) <= float(tolerance) ** 2
        return (near & gt[:, 0]).flatten(1).any(1).to(maps.dtype)


def pixel_average_precision(
    attributions: Tensor,
    masks: GroundTruth,
    thresholds: Sequence[float] = DEFAULT_PXAP_THRESHOLDS,
    image_size: Optional[Tuple[int, int]] = None,
) -> Tensor:
    r"""
    Pixel-wise average precision, PxAP (Choe et al., "Evaluating weakly supervised
    object localization methods right", CVPR 2020; used by CALM), of one set of maps.

    All pixels of all examples are pooled. For every threshold ``t`` a pixel is
    predicted positive when ``S ≥ t``; ``P(t) = TP/(TP + FP)`` (0 when nothing is
    predicted) and ``R(t) = TP / |G|``. Going through the thresholds from the highest
    to the lowest, ``PxAP = Σ_t P(t) · (R(t) − R(t_prev))`` with ``R = 0`` before the
    first threshold. With the default thresholds this is wsolevaluation's ``MaskEvaluator``.

    Examples may have empty masks (they contribute negatives only), but the set must
    hold at least one ground-truth pixel.

    Args:
        attributions (Tensor): ``N x (1 x) h x w`` maps of any size; NaN is refused.
        masks (Tensor or list[Tensor]): boxes or masks, see the module docs.
        thresholds (sequence of float, optional): Default: ``0, 0.01, ..., 1.0``
        image_size (tuple[int, int], optional): the ``(H, W)`` boxes refer to.
                    Default: None

    Returns:
        *Tensor*: a scalar in ``[0, 1]`` for the whole set.

    Examples::

        >>> pixel_average_precision(maps, masks)
        tensor(0.6125)
    """
    values = check_thresholds(thresholds, allow_zero=True)
    with torch.no_grad():
        maps, gt = _maps_and_truth(attributions, masks, image_size, allow_empty=True)
        flat_gt = gt.flatten()
        if not bool(flat_gt.any()):
            raise ValueError("masks is empty for every example: PxAP needs ground-truth pixels")
        t = torch.tensor(values, dtype=maps.dtype, device=maps.device)
        # bucket b = number of thresholds <= score; S >= t_j  <=>  b >= j + 1
        buckets = torch.bucketize(maps.flatten(), t, right=True)
        size = t.shape[0] + 1
        pos_hist = torch.bincount(buckets[flat_gt], minlength=size)
        neg_hist = torch.bincount(buckets[~flat_gt], minlength=size)
        # counts at thresholds t_{T-1}, ..., t_0 (descending)
        tp = pos_hist.flip(0).cumsum(0)[:-1].to(maps.dtype)
        fp = neg_hist.flip(0).cumsum(0)[:-1].to(maps.dtype)
        predicted = tp + fp
        precision = torch.where(predicted > 0, tp / torch.where(predicted > 0, predicted, 1), 0.0)
        recall = tp / flat_gt.sum().to(maps.dtype)
        gains = torch.diff(recall, prepend=recall.new_zeros(1))
        return (precision * gains).sum()


def mean_pixel_average_precision(
    sets: Iterable[Tuple[Tensor, GroundTruth]],
    thresholds: Sequence[float] = DEFAULT_PXAP_THRESHOLDS,
    image_size: Optional[Tuple[int, int]] = None,
) -> Tensor:
    r"""
    mPxAP: the mean of :func:`pixel_average_precision` over several sets, e.g. CALM's
    class pairs (one set of counterfactual maps and masks per pair).

    Args:
        sets (iterable of (Tensor, masks)): ``(attributions, masks)`` per set.
        thresholds (sequence of float, optional): Default: ``0, 0.01, ..., 1.0``
        image_size (tuple[int, int], optional): the ``(H, W)`` boxes refer to.
                    Default: None

    Returns:
        *Tensor*: a scalar.

    Examples::

        >>> mean_pixel_average_precision([(maps_a, masks_a), (maps_b, masks_b)])
    """
    values = [
        pixel_average_precision(attr, gt, thresholds=thresholds, image_size=image_size)
        for attr, gt in sets
    ]
    if not values:
        raise ValueError("sets must hold at least one (attributions, masks) pair")
    return torch.stack([v.to(values[0].dtype) for v in values]).mean()


#: Where the predicted box of :func:`box_accuracy` comes from.
BOX_SOURCES: Tuple[str, ...] = ("largest_component", "all")


class BoxAccuracyResult(NamedTuple):
    r"""
    Result of :func:`box_accuracy`.

    Attributes:
        thresholds (Tensor): ``(T,)`` the map thresholds, ascending.
        iou (Tensor): ``N x T`` IoU of each example's predicted box with its best
                    matching ground-truth box (0 where no pixel reaches the threshold).
        correct (Tensor): ``N x T``, 1.0 where ``iou ≥ iou_threshold``.
        accuracy (Tensor): ``(T,)`` mean of ``correct``: box accuracy per threshold.
        max_accuracy (Tensor): scalar, the best of ``accuracy`` (WSOL's MaxBoxAcc).
        best_threshold (Tensor): scalar, the lowest threshold reaching ``max_accuracy``.

    Examples::

        >>> result = box_accuracy(maps, boxes)
        >>> result.max_accuracy, result.best_threshold
    """

    thresholds: Tensor
    iou: Tensor
    correct: Tensor
    accuracy: Tensor
    max_accuracy: Tensor
    best_threshold: Tensor


def _largest_component_boxes(binary: Tensor) -> Tuple[Tensor, Tensor]:
    r"""
    Boxes around the largest 8-connected component of each ``B x H x W`` bool mask.

    One ``scipy.ndimage.label`` call labels the whole stack (the structure does not
    connect neighbouring masks); ties between equally large components go to the
    one whose first pixel in row-major order comes first.
    """
    from scipy import ndimage

    masks = binary.detach().cpu().numpy()
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = True
    labels, count = ndimage.label(masks, structure=structure)
    batch = masks.shape[0]
    boxes = torch.zeros(batch, 4, dtype=torch.long)
    found = torch.zeros(batch, dtype=torch.bool)
    if count == 0:
        return boxes.to(binary.device), found.to(binary.device)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    slices = ndimage.find_objects(labels)
    planes = np.array([s[0].start for s in slices])
    # per plane: the largest component, then the lowest label (first in row-major order)
    order = np.lexsort((np.arange(count), -sizes, planes))
    first = np.ones(count, dtype=bool)
    first[1:] = planes[order][1:] != planes[order][:-1]
    for label in order[first]:
        plane, rows, cols = slices[label]
        boxes[plane.start] = torch.tensor([cols.start, rows.start, cols.stop - 1, rows.stop - 1])
        found[plane.start] = True
    return boxes.to(binary.device), found.to(binary.device)


def _boxes_of(selected: Tensor) -> Tuple[Tensor, Tensor]:
    r"""Tight inclusive boxes ``B x 4`` of ``B x H x W`` bool masks, and which are non-empty."""
    height, width = selected.shape[-2:]
    rows, cols = selected.any(dim=2), selected.any(dim=1)
    y1 = rows.to(torch.uint8).argmax(dim=1)
    y2 = height - 1 - rows.flip(1).to(torch.uint8).argmax(dim=1)
    x1 = cols.to(torch.uint8).argmax(dim=1)
    x2 = width - 1 - cols.flip(1).to(torch.uint8).argmax(dim=1)
    return torch.stack([x1, y1, x2, y2], dim=1), rows.any(dim=1)


def _predicted_boxes(binary: Tensor, box_from: str) -> Tuple[Tensor, Tensor]:
    if box_from == "largest_component":
        return _largest_component_boxes(binary)
    return _boxes_of(binary)


def _iou(pred: Tensor, truth: Tensor) -> Tensor:
    r"""IoU of inclusive boxes ``B x 4`` with ``B x K x 4`` -> ``B x K``."""
    pred = pred.unsqueeze(1).to(torch.float64)
    truth = truth.to(torch.float64)
    iw = (
        torch.minimum(pred[..., 2], truth[..., 2]) - torch.maximum(pred[..., 0], truth[..., 0]) + 1
    ).clamp_min(0)
    ih = (
        torch.minimum(pred[..., 3], truth[..., 3]) - torch.maximum(pred[..., 1], truth[..., 1]) + 1
    ).clamp_min(0)
    inter = iw * ih
    area_p = (pred[..., 2] - pred[..., 0] + 1) * (pred[..., 3] - pred[..., 1] + 1)
    area_t = (truth[..., 2] - truth[..., 0] + 1) * (truth[..., 3] - truth[..., 1] + 1)
    return inter / (area_p + area_t - inter)


def box_accuracy(
    attributions: Tensor,
    boxes: Union[Tensor, Sequence[Tensor]],
    thresholds: Sequence[float] = DEFAULT_PXAP_THRESHOLDS,
    iou_threshold: float = 0.5,
    image_size: Optional[Tuple[int, int]] = None,
    box_from: str = "largest_component",
) -> BoxAccuracyResult:
    r"""
    Box accuracy of weakly-supervised localisation (WSOL; Choe et al., "Evaluating
    weakly supervised object localization methods right", CVPR 2020, MaxBoxAcc;
    used by CALM, Table 3) at every threshold, and its best value.

    For each threshold ``t`` the map ``S = mm(up(I))`` is binarised as ``S ≥ t``;
    the predicted box is the tight box around the largest 8-connected component
    of it (``box_from="largest_component"``, the WSOL protocol, components from
    ``scipy.ndimage.label``; ties between equally large components go to the one
    whose first row-major pixel comes first) or around all its pixels
    (``box_from="all"``). An example is correct
    when the IoU of the predicted box with one of its ground-truth boxes is
    ``≥ iou_threshold``; with no pixel at ``t`` there is no box and it is wrong.
    Components are counted in pixels (wsolevaluation uses OpenCV's contour area,
    which can rank two components of nearly equal size differently).

    Args:
        attributions (Tensor): ``N x (1 x) h x w`` maps of any size; NaN is refused.
        boxes (Tensor or list[Tensor]): ``N x 4`` boxes ``(x1, y1, x2, y2)`` or a list
                    of ``N`` tensors ``K_i x 4`` (``K_i ≥ 1``), 0-based, inclusive.
        thresholds (sequence of float, optional): Default: ``0, 0.01, ..., 1.0``
        iou_threshold (float, optional): IoU needed for a hit, in ``(0, 1]``.
                    Default: 0.5
        image_size (tuple[int, int], optional): the ``(H, W)`` boxes refer to.
                    Default: None (the attributions' size)
        box_from (str, optional): ``"largest_component"`` or ``"all"``.
                    Default: ``"largest_component"``

    Returns:
        *BoxAccuracyResult*: IoU and hits per example and threshold, accuracy per
        threshold, the best accuracy and its threshold.

    Examples::

        >>> result = box_accuracy(maps, boxes, image_size=(224, 224))
        >>> result.max_accuracy, result.best_threshold
    """
    if box_from not in BOX_SOURCES:
        raise ValueError(f"box_from must be one of {BOX_SOURCES}; got {box_from!r}")
    values = check_thresholds(thresholds, allow_zero=True)
    if (
        isinstance(iou_threshold, bool)
        or not isinstance(iou_threshold, (int, float))
        or not 0 < iou_threshold <= 1
    ):
        raise ValueError(f"iou_threshold must be in (0, 1]; got {iou_threshold!r}")
    with torch.no_grad():
        maps = as_maps(attributions)
        num = maps.shape[0]
        size = check_image_size(image_size) if image_size is not None else tuple(maps.shape[-2:])
        if isinstance(boxes, Tensor):
            if boxes.dim() != 2 or boxes.shape[1] != 4:
                raise ValueError(
                    f"boxes must be N x 4 (x1, y1, x2, y2); got shape {tuple(boxes.shape)}"
                )
            per_example = [boxes[i : i + 1] for i in range(boxes.shape[0])]
        elif isinstance(boxes, (list, tuple)):
            per_example = [torch.as_tensor(b).reshape(-1, 4) for b in boxes]
        else:
            raise TypeError("boxes must be an N x 4 tensor or a list of K x 4 tensors")
        if len(per_example) != num:
            raise ValueError(
                f"boxes must hold ground truth for every example of attributions ({num}); "
                f"got {len(per_example)}"
            )
        if any(b.shape[0] == 0 for b in per_example):
            raise ValueError("boxes must hold at least one box per example")
        boxes_to_masks(per_example, size, name="boxes")  # checks range and order
        most = max(b.shape[0] for b in per_example)
        # pad with copies of the first box: the max IoU is unchanged
        truth = torch.stack(
            [torch.cat([b, b[:1].expand(most - b.shape[0], 4)]) for b in per_example]
        ).to(device=maps.device, dtype=torch.float64)
        dtype = maps.dtype if maps.is_floating_point() else torch.get_default_dtype()
        scores = prepare_maps(maps, size, num, dtype=dtype)[:, 0]
        t = torch.tensor(values, dtype=torch.float64)
        iou = torch.zeros(num, t.shape[0], dtype=torch.float64, device=scores.device)
        for i in range(num):  # all thresholds of one example at once
            stack = scores[i].unsqueeze(0) >= t.to(scores).reshape(-1, 1, 1)
            pred, found = _predicted_boxes(stack, box_from)
            best = _iou(pred, truth[i].expand(t.shape[0], -1, -1)).max(dim=1).values
            iou[i] = torch.where(found, best, 0.0)
        correct = (iou >= iou_threshold).to(scores.dtype)
        accuracy = correct.mean(0)
        position = int(first_argmax(accuracy[None])[0])  # ties: the lowest threshold
        return BoxAccuracyResult(
            thresholds=t.to(scores.dtype),
            iou=iou.to(scores.dtype),
            correct=correct,
            accuracy=accuracy,
            max_accuracy=accuracy[position],
            best_threshold=t[position].to(scores.dtype),
        )
