#!/usr/bin/env python3
r"""pytorch-grad-cam's two smoothing options, for every method on the shared core.

* ``eigen_smooth``: the map is the projection of its ``N x K x h x w`` terms (``w_k A_k``,
  or a method's own terms) on their first principal direction, instead of their sum over
  the channels (:func:`principal_component`);
* ``aug_smooth``: the map is the mean, over six test-time augmentations of the input
  (horizontal flip or not, times a brightness factor 0.9, 1.0 or 1.1), of each
  augmentation's min-max normalised map, flipped back (:func:`augmentation_smoothed`).

Both follow pytorch-grad-cam 1.5.7 (``BaseCAM.get_cam_image`` with ``eigen_smooth``,
``BaseCAM.forward_augmentation_smoothing`` with its default ttach transforms); what
differs is said where it differs.
"""

from typing import Any, Callable, List, Tuple, Union

import torch
from captum._utils.common import _format_additional_forward_args, _format_tensor_into_tuples
from captum._utils.typing import TargetType
from torch import Tensor

from captum_cams._utils.guards import format_target, target_indices
from captum_cams._utils.maps import minmax_normalize

#: The brightness factors of pytorch-grad-cam's default ``aug_smooth`` (ttach's
#: ``Multiply(factors=[0.9, 1, 1.1])``), each with and without a horizontal flip.
AUGMENTATION_FACTORS: Tuple[float, ...] = (0.9, 1.0, 1.1)


def principal_component(terms: Tensor) -> Tuple[Tensor, Tensor]:
    r"""
    The projection of each example's terms on their first principal direction.

    Per example, the ``K x h x w`` terms are read as ``h·w`` rows of ``K`` values, centred
    over the rows (each channel's spatial mean subtracted) and projected on the first
    right-singular vector ``v`` of that ``h·w x K`` matrix: ``p = (X - mean) v``, as
    pytorch-grad-cam's ``get_2d_projection``. A singular vector's sign is not defined
    (numpy's LAPACK and torch's MKL pick different signs for the same matrix), so it is
    fixed here by the rule of pytorch-grad-cam's
    ``get_2d_projection_with_sign_correction`` (Seg-Eigen-CAM, Eq. 13): ``v`` is
    negated when ``|min p| > |max p|``, which makes the strongest response positive.

    Args:
        terms (Tensor): ``N x K x h x w``.

    Returns:
        (*Tensor*, *Tensor*): the projections ``N x 1 x h x w`` and the directions
        ``v``, ``N x K`` (unit vectors, sign-corrected).

    Raises:
        ValueError: for ``1 x 1`` terms, which have nothing to project (a 0 map).

    Examples::

        >>> projection, direction = principal_component(torch.randn(2, 8, 7, 7))
        >>> projection.shape, direction.shape
        (torch.Size([2, 1, 7, 7]), torch.Size([2, 8]))
    """
    if terms.dim() != 4:
        raise ValueError(f"terms must be N x K x h x w; got shape {tuple(terms.shape)}")
    num, channels, height, width = terms.shape
    if height * width < 2:
        raise ValueError(
            "a principal-component projection needs at least 2 positions; the layer's "
            f"maps are {height} x {width} (choose an earlier layer, or pass a larger input)"
        )
    rows = terms.flatten(2).transpose(1, 2)  # N x hw x K
    centred = rows - rows.mean(dim=1, keepdim=True)
    # only the right-singular vectors are needed; the reduced SVD is enough
    _, _, right = torch.linalg.svd(centred, full_matrices=False)
    direction = right[:, 0, :]  # N x K
    projection = torch.bmm(centred, direction.unsqueeze(2)).squeeze(2)  # N x hw
    flip = projection.amin(dim=1).abs() > projection.amax(dim=1).abs()
    sign = torch.where(flip, -1.0, 1.0).to(projection.dtype)
    projection = projection * sign[:, None]
    direction = direction * sign[:, None]
    return projection.view(num, 1, height, width), direction


def check_smoothing_options(
    eigen_smooth: Any, aug_smooth: Any, return_weights: bool, attr_dim_summation: bool
) -> None:
    r"""The checks of ``eigen_smooth`` / ``aug_smooth`` and the options they exclude."""
    for value, name in ((eigen_smooth, "eigen_smooth"), (aug_smooth, "aug_smooth")):
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be a bool; got {type(value).__name__}")
    if aug_smooth and return_weights:
        raise ValueError(
            "return_weights cannot be combined with aug_smooth: each of the six augmented "
            "inputs has weights of its own"
        )
    if (aug_smooth or eigen_smooth) and not attr_dim_summation:
        raise ValueError(
            "attr_dim_summation=False (the weighted channels, unsummed) cannot be combined "
            "with eigen_smooth or aug_smooth, which both return one map per example"
        )


def _flip(images: Tensor) -> Tensor:
    return torch.flip(images, dims=(-1,))


def augmentation_smoothed(
    maps_of: Callable[[Union[Tensor, Tuple[Tensor, ...]], Tensor], Tensor],
    forward_func: Callable,
    inputs: Union[Tensor, Tuple[Tensor, ...]],
    target: TargetType,
    additional_forward_args: Any,
) -> Tensor:
    r"""
    pytorch-grad-cam's ``aug_smooth``: the mean of six augmentations' normalised maps.

    The image batch (the first input) is flipped horizontally or not and multiplied by
    0.9, 1.0 or 1.1; each augmented batch's maps are min-max normalised per example
    (:func:`~captum_cams._utils.maps.minmax_normalize`, as pytorch-grad-cam scales every
    map before it averages) and flipped back; the six are averaged. Other inputs and
    ``additional_forward_args`` are passed unchanged.

    ``target=None`` is the class predicted for the unaugmented inputs, one forward pass
    more; pytorch-grad-cam instead takes each augmented input's own prediction, which
    may average maps of different classes.

    Args:
        maps_of (Callable): ``maps_of(augmented_inputs, target_indices)`` returns the
                    ``N x 1 x h x w`` maps of one augmented batch.
        forward_func (Callable): the model (for ``target=None``).
        inputs (Tensor or tuple[Tensor, ...]): the image batch first.
        target (int, list, Tensor or None): as Captum takes it.
        additional_forward_args (Any): the model's further arguments.

    Returns:
        *Tensor*: ``N x 1 x h x w`` maps in ``[0, 1]``.

    Examples::

        >>> cam = LayerGradCamPlusPlus(net, net.layer4)
        >>> maps = cam.attribute(images, target=labels, aug_smooth=True)
    """
    formatted = _format_tensor_into_tuples(inputs)
    images = formatted[0]
    if target is None:
        extra = _format_additional_forward_args(additional_forward_args) or ()
        with torch.no_grad():
            outputs = forward_func(*formatted, *extra)
        if not isinstance(outputs, Tensor):
            raise TypeError(f"forward_func must return a tensor; got {type(outputs).__name__}")
        target_index = target_indices(None, outputs)
    else:  # the class range is checked by each augmented batch's capture
        target_index = format_target(target, images.shape[0], images.device)
    total: List[Tensor] = []
    for flipped in (False, True):
        for factor in AUGMENTATION_FACTORS:
            augmented = _flip(images) if flipped else images
            augmented = augmented * factor
            batch: Union[Tensor, Tuple[Tensor, ...]] = (
                (augmented, *formatted[1:]) if isinstance(inputs, tuple) else augmented
            )
            maps = minmax_normalize(maps_of(batch, target_index))
            total.append(_flip(maps) if flipped else maps)
    return torch.stack(total).mean(dim=0)


__all__ = [
    "AUGMENTATION_FACTORS",
    "augmentation_smoothed",
    "check_smoothing_options",
    "principal_component",
]
