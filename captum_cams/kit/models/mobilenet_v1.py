#!/usr/bin/env python3
r"""MobileNetV1 (Howard et al. 2017, https://arxiv.org/abs/1704.04861), as TF-slim built it.

The definition of the shared ImageNet network (``../shared/data/imagenet``: width 0.75,
192 × 192 inputs, batch norm folded into the convolutions' biases): a plain stack of
convolutions like the VGG-16 most CAM papers evaluate on. TensorFlow's ``"SAME"`` padding
of a stride-2 convolution adds its extra row and column at the bottom and right, so those
convolutions get an explicit ``ZeroPad2d((0, 1, 0, 1))`` and no padding of their own.
"""

import os
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

#: The pointwise widths of the 13 depthwise-separable pairs at width 1.0 … 0.75 (the shared
#: network's): 48, 96, 96, 192, 192, 384 ×6, 768, 768 at width 0.75.
POINTWISE_WIDTHS_075: Tuple[int, ...] = (
    48,
    96,
    96,
    192,
    192,
    384,
    384,
    384,
    384,
    384,
    384,
    768,
    768,
)
#: The strides of the 13 depthwise convolutions.
DEPTHWISE_STRIDES: Tuple[int, ...] = (1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1)


def _block(
    in_channels: int, out_channels: int, kernel_size: int, stride: int, groups: int
) -> nn.Sequential:
    if stride == 2:
        pad: nn.Module = nn.ZeroPad2d((0, 1, 0, 1))
        padding = 0
    else:
        pad = nn.Identity()
        padding = kernel_size // 2
    conv = nn.Conv2d(
        in_channels, out_channels, kernel_size, stride=stride, padding=padding, groups=groups,
        bias=True,
    )  # fmt: skip
    return nn.Sequential(pad, conv, nn.ReLU6())


class MobileNetV1(nn.Module):
    r"""
    MobileNetV1 with batch norm folded into the convolutions (TF-slim's layout).

    ``features`` holds 27 blocks ``Sequential(pad, conv, ReLU6)``: the stem (3 × 3,
    stride 2), then 13 depthwise (3 × 3) / pointwise (1 × 1) pairs; ``classifier`` is
    ``Sequential(AdaptiveAvgPool2d(1), Conv2d(C, num_classes, 1), Flatten())``. The CAM
    layer is ``features[-1]``; its head (pooling and a 1 × 1 convolution) is linear, and
    ``features[-3]`` has a non-linear head (a depthwise and a pointwise block).

    Args:
        num_classes (int, optional): outputs. Default: 1000.
        stem_width (int, optional): channels of the stem. Default: 24 (width 0.75).
        pointwise_widths (sequence of int, optional): channels of the 13 pointwise
                    convolutions. Default: :data:`POINTWISE_WIDTHS_075`.
        depthwise_strides (sequence of int, optional): strides of the 13 depthwise
                    convolutions. Default: :data:`DEPTHWISE_STRIDES`.

    Examples::

        >>> net = MobileNetV1().eval()
        >>> net(torch.zeros(1, 3, 192, 192)).shape
        torch.Size([1, 1000])
        >>> net.features[-1]          # the CAM layer: 768 x 6 x 6 at 192 px
    """

    def __init__(
        self,
        num_classes: int = 1000,
        stem_width: int = 24,
        pointwise_widths: Sequence[int] = POINTWISE_WIDTHS_075,
        depthwise_strides: Sequence[int] = DEPTHWISE_STRIDES,
    ) -> None:
        super().__init__()
        if len(pointwise_widths) != len(depthwise_strides):
            raise ValueError(
                "pointwise_widths and depthwise_strides must have one entry per pair; got "
                f"{len(pointwise_widths)} and {len(depthwise_strides)}"
            )
        blocks: List[nn.Module] = [_block(3, stem_width, 3, 2, 1)]
        channels = stem_width
        for width, stride in zip(pointwise_widths, depthwise_strides):
            blocks.append(_block(channels, channels, 3, stride, channels))
            blocks.append(_block(channels, width, 1, 1, 1))
            channels = width
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, num_classes, 1, bias=True), nn.Flatten()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


#: How the shared network's inputs are made, as attributes of the module
#: :func:`mobilenet_v1_075_192` returns (the command line reads them, see
#: ``captum_cams.kit.inputs.FACTORY_ATTRIBUTES``): ``Resize(219)``, ``CenterCrop(192)``,
#: pixels scaled to ``[-1, 1]``; its class names are ImageNet-1k's, in torchvision's order.
MOBILENET_V1_075_192_INPUTS: Dict[str, object] = {
    "input_size": 192,
    "resize_size": 219,
    "mean": (0.5, 0.5, 0.5),
    "std": (0.5, 0.5, 0.5),
}


def imagenet_categories() -> List[str]:
    r"""
    The 1,000 ImageNet-1k class names in torchvision's order (from its weights' metadata,
    shipped with torchvision: nothing is downloaded).

    Returns:
        *list[str]*: ``"tench"``, ``"goldfish"``, …

    Examples::

        >>> imagenet_categories()[1]
        'goldfish'
    """
    from torchvision.models import MobileNet_V2_Weights

    return list(MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"])


def mobilenet_v1_075_192(
    weights: Optional[Union[str, "os.PathLike[str]"]] = None,
) -> MobileNetV1:
    r"""
    The shared ImageNet MobileNetV1 (width 0.75, 192 px), in eval mode.

    Usable as a command-line model factory:
    ``--model captum_cams.kit.models.mobilenet_v1:mobilenet_v1_075_192 --weights FILE``; the
    module carries its preprocessing (:data:`MOBILENET_V1_075_192_INPUTS`) and class
    names (``categories``) as attributes, so the command line needs no further option.

    Args:
        weights (str or PathLike, optional): a state dict (``mobilenet_v1_075_192.pth``),
                    loaded with ``weights_only=True``. None: random weights. Default: None.

    Returns:
        *MobileNetV1*: the network.

    Examples::

        >>> from captum_cams.kit.datasets import imagenet_root
        >>> net = mobilenet_v1_075_192(imagenet_root() / "mobilenet_v1_075_192.pth")
        >>> net.input_size, net.categories[1]
        (192, 'goldfish')
    """
    model = MobileNetV1()
    if weights is not None:
        state = torch.load(os.fspath(weights), map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    for name, value in MOBILENET_V1_075_192_INPUTS.items():
        setattr(model, name, value)
    setattr(model, "categories", imagenet_categories())  # noqa: B010
    return model.eval()


__all__ = [
    "DEPTHWISE_STRIDES",
    "MOBILENET_V1_075_192_INPUTS",
    "MobileNetV1",
    "POINTWISE_WIDTHS_075",
    "imagenet_categories",
    "mobilenet_v1_075_192",
]
