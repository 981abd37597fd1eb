#!/usr/bin/env python3
r"""ROAD, remove and debias (Rong, Leemann, Borisov, Kasneci & Kasneci, "A Consistent and
Efficient Evaluation Strategy for Attribution Methods", ICML 2022,
https://arxiv.org/abs/2202.00449).

Removing pixels by painting them a constant colour makes inputs the model never saw;
the drop in its score then mixes the pixels' relevance with the shift in distribution,
and the mask's shape leaks class information. ROAD fills the removed pixels by *noisy
linear imputation* instead: each removed pixel equals the weighted mean of its eight
neighbours (1/6 for the four edge neighbours, 1/12 for the four diagonal ones;
neighbours outside the image are left out), all removed pixels of an image solved
jointly as one sparse linear system per channel, plus Gaussian noise of standard
deviation ``noise`` (0.01) on every imputed value.

At each percentage ``k`` the ``k %`` most relevant (MoRF) or least relevant (LeRF)
pixels of ``mm(up(I))`` are removed and imputed, and the model scores the target
class. A good map makes the MoRF score fall fast and the LeRF score stay high.
"""

from typing import Any, Callable, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from captum._utils.typing import TargetType
from captum.log import log_usage
from scipy.sparse import coo_matrix
from scipy.sparse.linalg import spsolve
from torch import Tensor

from captum_cams._utils.batching import progress_bar, select_rows
from captum_cams._utils.guards import (
    check_choice,
    check_image_batch,
    preserved_model_state,
)
from captum_cams._utils.masking import prepare_maps
from captum_cams._utils.metric_scoring import check_metric_args, original_scores, perturbed_scores
from captum_cams._utils.seeding import check_seed, seeded_generator
from captum_cams._utils.thresholding import count_of_fraction, pixel_ranks

#: ``((row offset, column offset), weight)`` of the eight neighbours in the imputation.
NEIGHBOUR_WEIGHTS: Tuple[Tuple[Tuple[int, int], float], ...] = (
    ((-1, 0), 1 / 6),
    ((1, 0), 1 / 6),
    ((0, -1), 1 / 6),
    ((0, 1), 1 / 6),
    ((-1, -1), 1 / 12),
    ((-1, 1), 1 / 12),
    ((1, -1), 1 / 12),
    ((1, 1), 1 / 12),
)

#: pytorch-grad-cam's percentiles (``ROADMostRelevantFirstAverage``), here the
#: percentages of pixels removed.
ROAD_PERCENTAGES: Tuple[int, ...] = (10, 20, 30, 40, 50, 60, 70, 80, 90)

ORDERS = ("morf", "lerf")
SELECTIONS = ("rank", "threshold")


def _linear_imputation(image: np.ndarray, removed: np.ndarray) -> np.ndarray:
    r"""The noiseless imputed values ``R x C`` (float64) of one ``C x H x W`` image."""
    channels, height, width = image.shape
    flat_removed = removed.reshape(-1)
    unknown = np.flatnonzero(flat_removed)
    position = np.full(height * width, -1, dtype=np.int64)
    position[unknown] = np.arange(unknown.size)
    pixels = image.reshape(channels, -1).astype(np.float64)
    rows_y, rows_x = np.divmod(unknown, width)
    equation = np.arange(unknown.size)
    diagonal = np.zeros(unknown.size)
    right_hand = np.zeros((unknown.size, channels))
    coupled_rows, coupled_cols, coupled_weights = [], [], []
    for (dy, dx), weight in NEIGHBOUR_WEIGHTS:
        y, x = rows_y + dy, rows_x + dx
        inside = (y >= 0) & (y < height) & (x >= 0) & (x < width)
        neighbour = y[inside] * width + x[inside]
        rows = equation[inside]
        diagonal[rows] += weight
        also_removed = flat_removed[neighbour]
        coupled_rows.append(rows[also_removed])
        coupled_cols.append(position[neighbour[also_removed]])
        coupled_weights.append(np.full(int(also_removed.sum()), -weight))
        known = ~also_removed
        np.add.at(right_hand, rows[known], weight * pixels[:, neighbour[known]].T)
    # (sum of the inside neighbours' weights) x_i - sum over removed neighbours w x_j
    #   = sum over known neighbours w x_j: x_i is its neighbours' weighted mean
    row_index = np.concatenate([equation, *coupled_rows])
    col_index = np.concatenate([equation, *coupled_cols])
    values = np.concatenate([diagonal, *coupled_weights])
    system = coo_matrix((values, (row_index, col_index)), shape=(unknown.size,) * 2).tocsc()
    solution = spsolve(system, right_hand)
    return np.asarray(solution, dtype=np.float64).reshape(unknown.size, channels)


def noisy_linear_imputation(
    inputs: Tensor,
    removed: Tensor,
    noise: float = 0.01,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    r"""
    ROAD's noisy linear imputation of the removed pixels of every image.

    For each image, every removed pixel is the weighted mean of its eight neighbours
    (1/6 edge, 1/12 diagonal; neighbours outside the image are left out and the
    weights of the others renormalised), all removed pixels solved jointly as one
    sparse linear system (``scipy.sparse``, float64, every channel at once); then
    ``noise * N(0, 1)`` is added to every imputed value. Kept pixels are unchanged.
    Equal to pytorch-grad-cam's and Quantus's ``NoisyLinearImputer`` (tested).

    Args:
        inputs (Tensor): ``N x C x H x W`` images.
        removed (Tensor): ``N x H x W`` or ``N x 1 x H x W`` bool (or 0/1) masks,
                    True where a pixel is removed.
        noise (float, optional): standard deviation of the noise. Default: 0.01.
        generator (torch.Generator, optional): the noise's generator (on the CPU);
                    None: the global one. The noise of each image is drawn as one
                    ``C x R`` tensor (``R`` removed pixels, row-major), image by image.
                    Default: None.

    Returns:
        *Tensor*: the imputed images, dtype and device of ``inputs``.

    Raises:
        ValueError: an image whose every pixel is removed (nothing to impute from).

    Examples::

        >>> removed = torch.zeros(1, 8, 8, dtype=torch.bool)
        >>> removed[0, 2:5, 3:6] = True
        >>> filled = noisy_linear_imputation(images[:1], removed, noise=0.0)
    """
    check_image_batch(inputs)
    if removed.dim() == 4 and removed.shape[1] == 1:
        removed = removed[:, 0]
    if removed.shape != (inputs.shape[0], *inputs.shape[-2:]):
        raise ValueError(
            f"removed must be N x H x W (or N x 1 x H x W) for inputs of shape "
            f"{tuple(inputs.shape)}; got {tuple(removed.shape)}"
        )
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not noise >= 0:
        raise ValueError(f"noise must be a number >= 0; got {noise!r}")
    images = inputs.detach().cpu()
    masks = removed.detach().cpu().bool()
    result = images.clone()
    channels = images.shape[1]
    for index in range(images.shape[0]):
        mask = masks[index].numpy()
        if not mask.any():
            continue
        if mask.all():
            raise ValueError(
                f"every pixel of image {index} is removed: noisy linear imputation needs "
                "at least one kept pixel"
            )
        solved = _linear_imputation(images[index].double().numpy(), mask)
        values = torch.from_numpy(solved.T).to(images.dtype)  # C x R
        if noise > 0:
            values = values + noise * torch.randn(
                values.shape, generator=generator, dtype=images.dtype
            )
        flat = result[index].view(channels, -1)
        flat[:, torch.from_numpy(np.flatnonzero(mask.reshape(-1)))] = values
    return result.to(inputs.device)


class ROADResult(NamedTuple):
    r"""
    Result of :func:`road` with ``return_curves=True``.

    Attributes:
        scores (Tensor): ``(N,)`` the mean target score over the percentages.
        curves (Tensor): ``N x P`` the target score at each percentage.
        percentages (Tensor): ``(P,)`` the percentages of pixels removed.
        original (Tensor): ``(N,)`` the target score of the unperturbed inputs
                    (pytorch-grad-cam's ROAD reports ``curves - original``).

    Examples::

        >>> result = road(net, x, maps, target=3, return_curves=True)
        >>> plt.plot(result.percentages, result.curves[0])
    """

    scores: Tensor
    curves: Tensor
    percentages: Tensor
    original: Tensor


def _check_percentages(percentages: Any) -> Tuple[float, ...]:
    if isinstance(percentages, (str, bytes)) or not isinstance(percentages, Sequence):
        raise TypeError("percentages must be a sequence of numbers in (0, 100)")
    checked = []
    for value in percentages:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 100:
            raise ValueError(f"percentages must lie strictly between 0 and 100; got {value!r}")
        checked.append(float(value))
    if not checked:
        raise ValueError("percentages must not be empty")
    return tuple(checked)


def _removal_masks(
    maps: Tensor, percentages: Tuple[float, ...], order: str, selection: str
) -> Callable[[Tensor, Tensor], Tensor]:
    r"""``removed(examples, steps)``: the ``B x H x W`` bool masks of the jobs."""
    num, _, height, width = maps.shape
    flat = maps.flatten(1)
    if selection == "rank":
        ranks = pixel_ranks(maps if order == "morf" else -maps)
        counts = torch.tensor(
            [count_of_fraction(p / 100, height * width) for p in percentages], device=maps.device
        )

        def by_rank(examples: Tensor, steps: Tensor) -> Tensor:
            removed = select_rows(ranks, examples) < counts[steps].unsqueeze(1)
            return removed.view(-1, height, width)

        return by_rank
    # pytorch-grad-cam: keep ``m < percentile(m, 100 - k)`` (MoRF) or
    # ``1 - m < percentile(1 - m, 100 - k)`` (LeRF), linear interpolation as numpy
    values = (flat if order == "morf" else 1 - flat).double()
    quantiles = torch.tensor([1 - p / 100 for p in percentages], dtype=torch.float64)
    thresholds = torch.quantile(values, quantiles.to(values.device), dim=1).T  # N x P

    def by_threshold(examples: Tensor, steps: Tensor) -> Tensor:
        removed = select_rows(values, examples) >= thresholds[examples, steps].unsqueeze(1)
        return removed.view(-1, height, width)

    return by_threshold


@log_usage(part_of_slo=True)
def road(
    forward_func: Callable,
    inputs: Tensor,
    attributions: Tensor,
    target: TargetType = None,
    additional_forward_args: Any = None,
    max_examples_per_batch: Optional[int] = None,
    order: str = "morf",
    percentages: Sequence[float] = ROAD_PERCENTAGES,
    selection: str = "rank",
    noise: float = 0.01,
    seed: Optional[int] = 0,
    score: str = "probability",
    return_curves: bool = False,
    show_progress: bool = False,
) -> Union[Tensor, ROADResult]:
    r"""
    ROAD (remove and debias): the target score after the most (MoRF) or least (LeRF)
    relevant pixels are removed and filled by noisy linear imputation, averaged over
    the percentages removed.

    For every example and every percentage ``k``, the ``k %`` highest (MoRF) or lowest
    (LeRF) pixels of ``mm(up(I))`` are removed from all channels and imputed by
    :func:`noisy_linear_imputation`; the model scores the imputed image. The ``N x P``
    imputed images are built and scored in chunks of ``max_examples_per_batch`` by the
    package's chunk loop, under ``torch.no_grad()``. MoRF: lower is better; LeRF:
    higher is better.

    ``selection="rank"`` removes exactly ``round(k·H·W/100)`` pixels, ranked by value
    (ties by row-major index), the paper's fraction. ``selection="threshold"`` is
    pytorch-grad-cam's rule: the pixels at or above the map's ``(100 - k)``-th
    percentile (MoRF; for LeRF the same on ``1 - m``), which removes tied pixels
    together (a map that is 0 on most of the image removes them all at once) —
    equal to pytorch-grad-cam's ``ROADMostRelevantFirst(100 - k)`` /
    ``ROADLeastRelevantFirst(100 - k)`` with the same noise draws (tested; its
    percentile is the share of pixels kept, ours the share removed).

    Args:
        forward_func (Callable): the model, returning ``N x num_classes`` logits.
        inputs (Tensor): ``N x C x H x W`` images; left unchanged.
        attributions (Tensor): maps ``N x (1 x) h x w`` of any spatial size,
                    upsampled to ``H x W`` and min-max normalised.
        target (int, list[int], Tensor, optional): class per example. None: the
                    predicted class. Default: None
        additional_forward_args (Any, optional): further model arguments; tensors
                    whose first dimension is ``N`` follow their example. Default: None
        max_examples_per_batch (int, optional): most imputed images per forward
                    pass. Default: None (as many as the pass budget allows,
                    :func:`~captum_cams.get_pass_budget`)
        order (str, optional): ``"morf"`` (most relevant first) or ``"lerf"``.
                    Default: ``"morf"``
        percentages (sequence of float, optional): the percentages of pixels removed,
                    each in (0, 100). Default: 10, 20, …, 90 (pytorch-grad-cam's)
        selection (str, optional): ``"rank"`` or ``"threshold"`` (pytorch-grad-cam's).
                    Default: ``"rank"``
        noise (float, optional): the imputation noise's standard deviation, in the
                    inputs' units. Default: 0.01 (the paper's)
        seed (int, optional): seed of the noise's own CPU generator (drawn job by
                    job, example-major, so results do not depend on the chunk size);
                    None: fresh entropy. Default: 0
        score (str, optional): ``"probability"`` or ``"logit"`` (pytorch-grad-cam's
                    ``ClassifierOutputTarget``). Default: ``"probability"``
        return_curves (bool, optional): return a :class:`ROADResult` with the
                    curves. Default: False
        show_progress (bool, optional): a progress bar over the forward passes.
                    Default: False

    Returns:
        *Tensor* of shape ``(N,)``: the mean target score over the percentages; with
        ``return_curves``, a :class:`ROADResult`.

    Examples::

        >>> maps = LayerGradCamPlusPlus(net, net.layer4).attribute(x, target=3)
        >>> morf = road(net, x, maps, target=3)                 # lower is better
        >>> lerf = road(net, x, maps, target=3, order="lerf")   # higher is better
    """
    check_image_batch(inputs)
    check_metric_args(max_examples_per_batch, score)
    check_choice(order, ORDERS, "order")
    check_choice(selection, SELECTIONS, "selection")
    steps = _check_percentages(percentages)
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not noise >= 0:
        raise ValueError(f"noise must be a number >= 0; got {noise!r}")
    check_seed(seed)
    generator = seeded_generator(torch.device("cpu"), seed)
    with progress_bar(show_progress, "road"), torch.no_grad(), preserved_model_state(forward_func):
        x = inputs.detach()
        maps = prepare_maps(attributions, x.shape[-2:], x.shape[0], dtype=x.dtype, device=x.device)
        removed_of = _removal_masks(maps, steps, order, selection)
        original, idx, _ = original_scores(
            forward_func, x, target, additional_forward_args, max_examples_per_batch, score
        )

        def build(examples: Tensor, jobs: Tensor) -> Tensor:
            removed = removed_of(examples, jobs)
            empty = removed.flatten(1).all(dim=1)
            if bool(empty.any()):
                job = int(torch.nonzero(empty)[0])
                raise ValueError(
                    f"ROAD at {steps[int(jobs[job])]:g} % removes every pixel of example "
                    f"{int(examples[job])} (its map is constant there, and the threshold "
                    "takes ties together); use selection='rank'"
                )
            return noisy_linear_imputation(select_rows(x, examples), removed, noise, generator)

        curves = perturbed_scores(
            forward_func, x, len(steps), build, idx, additional_forward_args,
            max_examples_per_batch, score,
        )  # fmt: skip
    result = curves.mean(dim=1)
    if return_curves:
        return ROADResult(
            scores=result,
            curves=curves,
            percentages=torch.tensor(steps, dtype=curves.dtype, device=curves.device),
            original=original,
        )
    return result


__all__ = [
    "NEIGHBOUR_WEIGHTS",
    "ROADResult",
    "ROAD_PERCENTAGES",
    "noisy_linear_imputation",
    "road",
]
