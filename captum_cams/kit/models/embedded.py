#!/usr/bin/env python3
"""The embedded default model: a small CNN trained on :class:`GroundTruthShapes`.

It ships with the package (``models/weights/ground_truth_cnn.pt``) so that
tutorials, tests and benchmarks have a trained model whose attributions can be
checked against exact object and part masks, without downloads. Every call site
of a non-linearity is its own out-of-place module and the network traces with
``torch.fx``; after the CAM layer (:func:`embedded_default_layer`) the model is
global average pooling, ``Flatten`` and one ``Linear``, so its head is linear.

Train it again with ``python -m captum_cams.kit.models.train_embedded`` (see
``docs/embedded_default.md``).
"""

import os
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from torch import Tensor

from captum_cams._utils.files import atomic_path

#: Path of the shipped checkpoint: ``{"state_dict": ..., "meta": {...}}`` saved with
#: ``torch.save``; it loads with ``torch.load(..., weights_only=True)``.
EMBEDDED_DEFAULT_CHECKPOINT: str = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "weights", "ground_truth_cnn.pt"
)

#: Path of the main job's checkpoint, a :class:`ShapesNet` trained on
#: :class:`~captum_cams.kit.datasets.ClutteredShapes` (``--task cluttered``).
EMBEDDED_CLUTTERED_CHECKPOINT: str = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "weights", "cluttered_cnn.pt"
)

#: ``(out_channels, stride)`` of the convolution blocks of :class:`ShapesNet`.
DEFAULT_BLOCKS: Tuple[Tuple[int, int], ...] = (
    (32, 2),
    (32, 1),
    (64, 2),
    (64, 1),
    (64, 1),
    (64, 1),
)


class ConvBlock(nn.Module):
    r"""
    conv3x3 (no bias) - BatchNorm - ReLU, the ReLU its own out-of-place module.

    Args:
        in_channels (int): input channels.
        out_channels (int): output channels.
        stride (int, optional): the convolution's stride. Default: 1.

    Examples::

        >>> ConvBlock(3, 16, stride=2)(torch.randn(1, 3, 32, 32)).shape
        torch.Size([1, 16, 16, 16])
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn(self.conv(x)))


class ShapesNet(nn.Module):
    r"""
    A small CNN for :class:`~captum_cams.kit.datasets.GroundTruthShapes`.

    ``features`` is a stack of :class:`ConvBlock` s; with the default blocks a
    ``3 x 64 x 64`` input becomes ``64 x 16 x 16`` (stride 4), and the last block,
    ``features[-1]``, is the CAM layer. Then ``avgpool`` (``AdaptiveAvgPool2d(1)``),
    ``flatten`` and ``fc`` (``Linear``). Inputs are images in ``[0, 1]`` without
    normalisation.

    Args:
        num_classes (int, optional): outputs of ``fc``. Default: 10.
        blocks (sequence of (int, int), optional): ``(out_channels, stride)`` of
                    each block. Default: :data:`DEFAULT_BLOCKS`.
        in_channels (int, optional): input channels. Default: 3.
        cam_block (int, optional): index into ``features`` of the CAM layer
                    (:func:`embedded_default_layer`); ``-2`` leaves a convolution
                    block in the head, so the head is non-linear. Default: -1.

    Examples::

        >>> model = ShapesNet().eval()
        >>> model(torch.zeros(2, 3, 64, 64)).shape
        torch.Size([2, 10])
        >>> model.features[-1](torch.zeros(1, 64, 16, 16)).shape  # the CAM layer
        torch.Size([1, 64, 16, 16])
    """

    def __init__(
        self,
        num_classes: int = 10,
        blocks: Sequence[Tuple[int, int]] = DEFAULT_BLOCKS,
        in_channels: int = 3,
        cam_block: int = -1,
    ) -> None:
        super().__init__()
        if len(blocks) == 0:
            raise ValueError("blocks must hold at least one (out_channels, stride) pair")
        if isinstance(cam_block, bool) or not -len(blocks) <= int(cam_block) < len(blocks):
            raise ValueError(
                f"cam_block must index one of the {len(blocks)} blocks; got {cam_block!r}"
            )
        self.cam_block = int(cam_block)
        layers = []
        channels = in_channels
        for out_channels, stride in blocks:
            layers.append(ConvBlock(channels, int(out_channels), int(stride)))
            channels = int(out_channels)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.flatten(self.avgpool(self.features(x))))


def embedded_default_layer(model: ShapesNet) -> nn.Module:
    r"""
    The CAM layer of a :class:`ShapesNet`: its last feature block (``64 x 16 x 16``
    for 64 x 64 inputs), the output of its last ReLU.

    Args:
        model (ShapesNet): the model, e.g. from :func:`load_embedded_default`.

    Returns:
        *nn.Module*: ``model.features[-1]``.

    Examples::

        >>> model = load_embedded_default()
        >>> layer = embedded_default_layer(model)
    """
    if not isinstance(model, ShapesNet):
        raise TypeError(f"model must be a ShapesNet; got {type(model).__name__}")
    return model.features[model.cam_block]


def _check_plain(value: Any, name: str) -> None:
    # Exact types: subclasses such as torch.torch_version.TorchVersion (a str)
    # would be pickled as their class and refused by weights_only=True loading.
    if type(value) in (str, int, float, bool, type(None)):
        return
    if type(value) in (list, tuple):
        for i, item in enumerate(value):
            _check_plain(item, f"{name}[{i}]")
        return
    if type(value) is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise TypeError(f"{name} keys must be str; got {type(key).__name__}")
            _check_plain(item, f"{name}[{key!r}]")
        return
    raise TypeError(
        f"{name} must hold only plain str/int/float/bool/None/list/tuple/dict values "
        f"(weights_only loading refuses others); got {type(value).__name__}"
    )


def save_checkpoint(
    model: ShapesNet,
    path: Union[str, "os.PathLike[str]"],
    meta: Optional[Dict[str, Any]] = None,
) -> None:
    r"""
    Writes ``{"state_dict": ..., "meta": meta}`` atomically: to a temporary file in
    the same folder, then ``os.replace``; a crash never leaves half a checkpoint.

    Args:
        model (ShapesNet): the model to save.
        path (str or PathLike): the checkpoint path.
        meta (dict, optional): metadata of exact plain types (str, int, float,
                    bool, None, lists, tuples, dicts with str keys); anything else
                    is a ``TypeError``, since ``weights_only=True`` could not load it.
                    Default: None.

    Examples::

        >>> save_checkpoint(ShapesNet(num_classes=8), "net.pt", meta={"task": "cluttered"})
    """
    meta = dict(meta or {})
    _check_plain(meta, "meta")
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    with atomic_path(path) as temporary:
        torch.save({"state_dict": state, "meta": meta}, temporary)


def architecture_of(meta: Dict[str, Any]) -> ShapesNet:
    r"""
    A freshly initialised :class:`ShapesNet` of the architecture a checkpoint's
    metadata describes (classes, blocks, CAM block; the tutorials' defaults where
    absent).

    Args:
        meta (dict): a checkpoint's ``"meta"`` (e.g. ``model.meta``).

    Returns:
        *ShapesNet*: random weights, in training mode as any new module.

    Examples::

        >>> untrained = architecture_of(load_embedded_cluttered().meta)
    """
    blocks = meta.get("blocks", DEFAULT_BLOCKS)
    return ShapesNet(
        num_classes=int(meta.get("num_classes", 10)),
        blocks=[(int(c), int(s)) for c, s in blocks],
        cam_block=int(meta.get("cam_block", -1)),
    )


def load_embedded_default(
    checkpoint: Union[str, "os.PathLike[str]", None] = None,
) -> ShapesNet:
    r"""
    The trained embedded default model, in eval mode on the CPU.

    The checkpoint is read with ``weights_only=True`` (it cannot run code).

    Args:
        checkpoint (str or PathLike, optional): another checkpoint written by
                    ``python -m captum_cams.kit.models.train_embedded``.
                    Default: :data:`EMBEDDED_DEFAULT_CHECKPOINT`.

    Returns:
        *ShapesNet*: the trained model, in eval mode. ``model.meta`` holds the
        checkpoint's metadata (training command, test accuracy, ...).

    Examples::

        >>> from captum_cams.kit.datasets import make_batch
        >>> model = load_embedded_default()
        >>> images, labels, masks, boxes = make_batch(8)
        >>> model(images).argmax(1)
    """
    path = os.fspath(EMBEDDED_DEFAULT_CHECKPOINT if checkpoint is None else checkpoint)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or not isinstance(payload.get("state_dict"), dict):
        raise ValueError(f"checkpoint {path!r} holds no state_dict")
    meta = payload.get("meta") or {}
    model = architecture_of(meta)
    model.load_state_dict(payload["state_dict"])
    model.meta = dict(meta)  # type: ignore[assignment]
    return model.eval()


def load_embedded_cluttered() -> ShapesNet:
    r"""
    The main job's model: a :class:`ShapesNet` trained on
    :class:`~captum_cams.kit.datasets.ClutteredShapes`, in eval mode on the CPU. Its CAM
    layer (:func:`embedded_default_layer`) is the second-to-last block, so its head
    (a convolution block, pooling and a linear layer) is non-linear.

    Returns:
        *ShapesNet*: the trained model; ``model.meta`` holds how it was trained.

    Examples::

        >>> model = load_embedded_cluttered()
        >>> layer = embedded_default_layer(model)
    """
    return load_embedded_default(EMBEDDED_CLUTTERED_CHECKPOINT)
