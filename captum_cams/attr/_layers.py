#!/usr/bin/env python3
r"""Which layer to explain: the last spatial map of a model that its output depends on.

:func:`find_cam_layer` runs the model once on a sample, with a backward pass from
the target score, and returns the module that finishes last among those whose output
is a spatial map the target depends on at more than one position:

* a feature map ``N x K x h x w`` (CNNs: ``layer4`` of a ResNet);
* a channels-last map ``N x h x w x K`` (Swin, told apart by the input's aspect
  ratio), returned with :func:`~captum_cams.swin_reshape_transform`;
* tokens ``N x L x C`` of a module that keeps its input's shape (a transformer
  block or its norms), returned with :func:`~captum_cams.vit_reshape_transform` set
  to the number of prefix tokens and the patch grid.

The gradient test is what finds the right layer in a vision transformer that
classifies from its CLS token: after the last block's attention no patch token
reaches the output any more, so the last block's output (and the final norm) would
give blank maps; the last module whose patch tokens still matter is the last block's
``norm1``, pytorch-grad-cam's recommendation. Pooling, dropout and identity modules
are skipped (they only repeat another module's map).
"""

import functools
import math
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import torch
import torch.nn as nn
from captum._utils.typing import TargetType
from torch import Tensor

from captum_cams._utils.guards import (
    check_image_batch,
    check_output_tensor,
    parameters_without_grad,
    preserved_model_state,
    target_positions,
    target_values,
)
from captum_cams.attr._reshape import (
    ReshapeTransform,
    swin_reshape_transform,
    vit_reshape_transform,
)

#: Modules whose output only repeats (or pools) another module's map.
SKIPPED_MODULES: Tuple[type, ...] = (
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.AvgPool2d,
    nn.MaxPool2d,
    nn.Dropout,
    nn.Dropout2d,
    nn.Identity,
    nn.Softmax,  # attention probabilities, N x heads x L x L: not a map of the image
    nn.Softmax2d,
)

#: The most leading tokens that are not patches (CLS, distillation, registers).
MAX_PREFIX_TOKENS = 16


class CamLayer(NamedTuple):
    r"""
    The layer :func:`find_cam_layer` found.

    Attributes:
        name (str): its name in ``model.named_modules()``.
        layer (nn.Module): the module.
        reshape_transform (Callable or None): what to pass as the methods'
                    ``reshape_transform`` (None for an ``N x K x h x w`` map).
        shape (tuple[int, ...]): the module's output shape on the sample.

    Examples::

        >>> found = find_cam_layer(vit, torch.randn(1, 3, 224, 224))
        >>> found.name, found.shape
        ('blocks.11.norm1', (1, 197, 192))
        >>> LayerGradCam(vit, found.layer, reshape_transform=found.reshape_transform)
    """

    name: str
    layer: nn.Module
    reshape_transform: Optional[ReshapeTransform]
    shape: Tuple[int, ...]


def _aspect_matches(height: int, width: int, image: Tuple[int, int]) -> bool:
    r"""Whether an ``h x w`` grid has the image's aspect ratio (within rounding)."""
    if height < 1 or width < 1:
        return False
    return abs(math.log((height / width) / (image[0] / image[1]))) <= math.log(1.5)


def _token_grid(length: int, image: Tuple[int, int]) -> Optional[Tuple[int, int, int]]:
    r"""``(prefix tokens, h, w)`` laying ``length`` tokens on a grid of the image's aspect."""
    for prefix in range(min(MAX_PREFIX_TOKENS, length - 2) + 1):
        patches = length - prefix
        height = round(math.sqrt(patches * image[0] / image[1]))
        if height >= 1 and patches % height == 0 and patches // height >= 1:
            width = patches // height
            if height * width > 1 and _aspect_matches(height, width, image):
                return prefix, height, width
    return None


def _layout(
    output: Tensor, module_input: Any, batch: int, image: Tuple[int, int], allow_reshape: bool
) -> Optional[Tuple[Optional[ReshapeTransform]]]:
    r"""
    ``(reshape_transform,)`` of a module's output if it is a spatial map of the batch
    (``N x K x h x w``, ``N x h x w x K`` or shape-keeping tokens), else None.
    """
    shape = tuple(output.shape)
    if not output.is_floating_point() or len(shape) not in (3, 4) or shape[0] != batch:
        return None
    if len(shape) == 4:
        if shape[2] * shape[3] > 1 and _aspect_matches(shape[2], shape[3], image):
            return (None,)
        if not allow_reshape:
            return None
        if shape[1] * shape[2] > 1 and _aspect_matches(shape[1], shape[2], image):
            return (swin_reshape_transform,)
        return None
    if not allow_reshape:
        return None
    first = module_input[0] if isinstance(module_input, tuple) and module_input else None
    if not isinstance(first, Tensor) or tuple(first.shape) != shape:
        return None  # tokens count only where a block keeps their shape
    grid = _token_grid(shape[1], image)
    if grid is None:
        return None
    prefix, height, width = grid
    transform = functools.partial(
        vit_reshape_transform, num_prefix_tokens=prefix, grid_size=(height, width)
    )
    return (transform,)


def find_cam_layer(
    model: nn.Module,
    inputs: Tensor,
    target: TargetType = None,
    additional_forward_args: Any = None,
    allow_reshape: bool = True,
) -> CamLayer:
    r"""
    The layer to explain: the module that finishes last among those whose output is
    a spatial map (see the module) that the target depends on at two positions or
    more, with the ``reshape_transform`` it needs.

    One forward and one backward pass on ``inputs`` (gradients with respect to the
    modules' outputs only: the parameters' ``.grad`` are untouched, the model's
    state is restored, every hook removed).

    Args:
        model (nn.Module): the model (a module: its submodules are the candidates;
                    wrap a model whose output is not a tensor in
                    :class:`~captum_cams.OutputAdapter`).
        inputs (Tensor): a sample batch ``N x C x H x W`` (one image is enough).
        target (int, tuple, list or Tensor, optional): the target, as the methods
                    take it. Default: None (the predicted class)
        additional_forward_args (Any, optional): further arguments of the model.
                    Default: None
        allow_reshape (bool, optional): also consider channels-last maps and
                    tokens (which need a ``reshape_transform``); False: only
                    ``N x K x h x w`` outputs. Default: True

    Returns:
        *CamLayer*: ``(name, layer, reshape_transform, shape)``.

    Raises:
        ValueError: no module gives such a map; the message says to name one.

    Examples::

        >>> net = torchvision.models.resnet18().eval()
        >>> find_cam_layer(net, torch.randn(1, 3, 224, 224)).name
        'layer4'
        >>> vit = timm.create_model("vit_tiny_patch16_224").eval()
        >>> found = find_cam_layer(vit, torch.randn(1, 3, 224, 224))
        >>> found.name                      # pytorch-grad-cam's choice for ViT
        'blocks.11.norm1'
        >>> cam = LayerGradCam(vit, found.layer, reshape_transform=found.reshape_transform)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module; got {type(model).__name__}")
    check_image_batch(inputs)
    if additional_forward_args is None:
        extra: Tuple[Any, ...] = ()
    elif isinstance(additional_forward_args, tuple):
        extra = additional_forward_args
    else:
        extra = (additional_forward_args,)
    batch, image = inputs.shape[0], (int(inputs.shape[2]), int(inputs.shape[3]))
    found: List[Tuple[str, nn.Module, Tensor, Optional[ReshapeTransform]]] = []
    names: Dict[int, str] = {}

    def record(module: nn.Module, module_input: Any, output: Any) -> None:
        if not isinstance(output, Tensor) or not output.requires_grad:
            return
        layout = _layout(output, module_input, batch, image, allow_reshape)
        if layout is not None:
            found.append((names[id(module)], module, output, layout[0]))

    handles = []
    for name, module in model.named_modules():
        if name and not isinstance(module, SKIPPED_MODULES):
            names[id(module)] = name
            handles.append(module.register_forward_hook(record))
    try:
        with preserved_model_state(model), parameters_without_grad(model):
            with torch.enable_grad():
                outputs = check_output_tensor(
                    model(inputs.detach().requires_grad_(), *extra), "model"
                )
                score = target_values(outputs, target_positions(target, outputs)).sum()
                gradients = torch.autograd.grad(
                    score, [entry[2] for entry in found], allow_unused=True
                )
    finally:
        for handle in handles:
            handle.remove()
    for (name, module, output, transform), gradient in zip(reversed(found), reversed(gradients)):
        if gradient is None:
            continue
        # positions of the map (prefix tokens dropped), as the methods will see them
        grid = gradient if transform is None else transform(gradient)
        if int((grid.abs().sum(dim=(0, 1)) > 0).sum()) >= 2:
            return CamLayer(name, module, transform, tuple(output.shape))
    kinds = "maps or tokens" if allow_reshape else "N x K x h x w maps"
    raise ValueError(
        f"no module of the model gives spatial {kinds} that the target depends on at more "
        "than one position (does the output depend on the input at all? torchvision's "
        "ViT starts with a zero classifier); name the layer yourself"
    )


__all__ = ["CamLayer", "find_cam_layer"]
