#!/usr/bin/env python3
r"""Maps of several layers fused into one: pytorch-grad-cam's list of target layers and
torchcam's ``fuse_cams`` (as the Layer-CAM paper fuses shallow and deep layers)."""

from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import torch
from captum._utils.typing import TargetType
from captum.attr._utils.attribution import Attribution
from captum.log import log_usage
from torch import Tensor
from torch.nn import Module

from captum_cams._utils.guards import check_choice, check_layer_in_model
from captum_cams._utils.maps import as_maps, minmax_normalize, upsample

#: How :func:`fuse_maps` combines the normalised maps.
FUSIONS = ("max", "mean")


def fuse_maps(
    maps: Sequence[Tensor], fusion: str = "max", size: Optional[Tuple[int, int]] = None
) -> Tensor:
    r"""
    Fuses maps of different resolutions into one.

    Each map is min-max normalised per example at its own resolution, then upsampled
    bilinearly (``align_corners=False``) to ``size``: ``up(mm(map))``, the order both
    torchcam and pytorch-grad-cam use. ``fusion="max"`` takes their element-wise maximum
    (torchcam's ``fuse_cams``); ``fusion="mean"`` their mean, min-max normalised again
    (pytorch-grad-cam's aggregation of several ``target_layers``).

    Args:
        maps (sequence of Tensor): ``N x 1 x h_l x w_l`` (or ``N x h_l x w_l``) maps
                    of the same ``N`` examples.
        fusion (str, optional): ``"max"`` or ``"mean"``. Default: ``"max"``.
        size (tuple[int, int], optional): the fused map's ``(H, W)``. Default: None
                    (the largest height and width among the maps, as torchcam).

    Returns:
        *Tensor*: ``N x 1 x H x W`` in ``[0, 1]``.

    Examples::

        >>> shallow = LayerCam(net, net.layer3).attribute(images, target=labels)
        >>> deep = LayerCam(net, net.layer4).attribute(images, target=labels)
        >>> fuse_maps([shallow, deep]).shape          # the larger (layer3) resolution
        torch.Size([2, 1, 14, 14])
    """
    check_choice(fusion, FUSIONS, "fusion")
    if isinstance(maps, Tensor) or len(maps) == 0:
        raise ValueError("maps must be a non-empty sequence of tensors, one per layer")
    checked = [as_maps(m, f"maps[{i}]") for i, m in enumerate(maps)]
    if len({m.shape[0] for m in checked}) != 1:
        raise ValueError(
            f"maps must hold the same examples; got batch sizes {[m.shape[0] for m in checked]}"
        )
    if size is None:
        size = (max(m.shape[-2] for m in checked), max(m.shape[-1] for m in checked))
    if len(size) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in size):
        raise ValueError(f"size must be two positive ints (H, W); got {size!r}")
    scaled = [upsample(minmax_normalize(m), size) for m in checked]
    if fusion == "max":
        fused = scaled[0]
        for m in scaled[1:]:
            fused = torch.maximum(fused, m)
        return fused
    return minmax_normalize(torch.stack(scaled).mean(dim=0))


class MultiLayerCam(Attribution):
    r"""
    One CAM method on several layers, its maps fused by :func:`fuse_maps`.

    Each layer gets its own instance of ``method`` (``method(forward_func, layer)``); an
    ``attribute`` call runs each on the inputs (one capture per layer) and fuses the maps:
    element-wise maximum of ``up(mm(map))`` by default (torchcam's ``fuse_cams``), or
    their normalised mean (pytorch-grad-cam with several ``target_layers``). Any method
    of this package works, gradient-based or not; ``attribute``'s further keyword
    arguments reach every layer's ``attribute`` (e.g. ``relu_attributions=True`` for
    ``LayerGradCam``, whose Captum default is no ReLU, or ``aug_smooth=True``).

    Args:
        forward_func (Callable or torch.nn.Module): the model.
        layers (sequence of torch.nn.Module): the layers, each a module of the model.
        method (Callable): a class of this package (``LayerCam``, ``LayerGradCamPlusPlus``,
                    …) or any ``(forward_func, layer) -> attribution`` factory.
        fusion (str, optional): ``"max"`` or ``"mean"``. Default: ``"max"``.

    Examples::

        >>> net = torchvision.models.resnet18().eval()
        >>> fused = MultiLayerCam(net, [net.layer2, net.layer3, net.layer4], LayerCam)
        >>> fused.attribute(torch.randn(2, 3, 224, 224), target=[3, 7]).shape
        torch.Size([2, 1, 28, 28])
    """

    def __init__(
        self,
        forward_func: Callable,
        layers: Sequence[Module],
        method: Callable[[Callable, Module], Any],
        fusion: str = "max",
    ) -> None:
        if isinstance(layers, Module) or not isinstance(layers, (list, tuple)) or not layers:
            raise TypeError("layers must be a non-empty list or tuple of modules")
        for index, layer in enumerate(layers):
            check_layer_in_model(forward_func, layer, f"layers[{index}]")
        if not callable(method):
            raise TypeError(f"method must be a class or factory; got {type(method).__name__}")
        check_choice(fusion, FUSIONS, "fusion")
        super().__init__(forward_func)
        self.layers = list(layers)
        self.fusion = fusion
        self.methods: List[Any] = [method(forward_func, layer) for layer in self.layers]

    @log_usage(part_of_slo=True)
    def attribute(
        self,
        inputs: Union[Tensor, Tuple[Tensor, ...]],
        target: TargetType = None,
        additional_forward_args: Any = None,
        size: Optional[Tuple[int, int]] = None,
        **kwargs: Any,
    ) -> Tensor:
        r"""
        Args:
            inputs (Tensor or tuple[Tensor, ...]): the image batch ``N x C x H x W``
                        (first, when the model takes several inputs).
            target (int, list[int], Tensor, optional): the class per example, as in
                        Captum; ``None``: the predicted class. Default: None.
            additional_forward_args (Any, optional): further arguments of
                        ``forward_func``. Default: None.
            size (tuple[int, int], optional): the fused map's ``(H, W)``, e.g.
                        ``inputs.shape[-2:]`` as pytorch-grad-cam. Default: None (the
                        largest layer resolution, as torchcam).
            **kwargs: further ``attribute`` arguments of every layer's method.

        Returns:
            *Tensor*: the fused maps, ``N x 1 x H x W`` in ``[0, 1]``.

        Examples::

            >>> fused = MultiLayerCam(net, [net.layer3, net.layer4], LayerGradCamPlusPlus,
            ...                       fusion="mean")
            >>> maps = fused.attribute(images, target=labels, size=images.shape[-2:])
        """
        if kwargs.get("return_weights"):
            raise ValueError("return_weights is not available: each layer has its own weights")
        if size is not None:
            size = tuple(size)  # type: ignore[assignment]
        maps = [
            method.attribute(
                inputs, target=target, additional_forward_args=additional_forward_args, **kwargs
            )
            for method in self.methods
        ]
        return fuse_maps(maps, self.fusion, size)


__all__ = ["FUSIONS", "MultiLayerCam", "fuse_maps"]
