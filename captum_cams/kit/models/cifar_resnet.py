#!/usr/bin/env python3
"""ResNets for CIFAR-10 (He et al. 2016, option-A shortcuts).

The definition matches the checkpoints in ``../shared/data/cifar10`` (ResNet-20 and
ResNet-56 by Yerlan Idelbayev, BSD-2-Clause). It is written so that every call site
of a non-linearity is its own out-of-place module and the whole network traces with
``torch.fx``, which the head extraction of :mod:`captum_cams.attr` relies on.
"""

import os
from typing import List, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


class OptionAShortcut(nn.Module):
    r"""
    Parameter-free shortcut: ``x[:, :, ::2, ::2]`` zero-padded with ``pad_channels``
    channels on each side (the CIFAR ResNet paper's option A).

    Args:
        pad_channels (int): channels of zeros added before and after.

    Examples::

        >>> OptionAShortcut(pad_channels=8)(torch.randn(1, 16, 32, 32)).shape
        torch.Size([1, 32, 16, 16])
    """

    def __init__(self, pad_channels: int) -> None:
        super().__init__()
        self.pad_channels = pad_channels

    def forward(self, x: Tensor) -> Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad_channels, self.pad_channels))


class BasicBlock(nn.Module):
    r"""
    conv3x3-bn-ReLU-conv3x3-bn, plus the shortcut, then ReLU.

    Args:
        in_planes (int): input channels.
        planes (int): output channels.
        stride (int, optional): stride of the first convolution (2 halves the
                    resolution, with an :class:`OptionAShortcut`). Default: 1.

    Examples::

        >>> BasicBlock(16, 32, stride=2)(torch.randn(1, 16, 32, 32)).shape
        torch.Size([1, 32, 16, 16])
    """

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = OptionAShortcut(planes // 4)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class CifarResNet(nn.Module):
    r"""
    The CIFAR-10 ResNet: ``conv1``-``bn1``-ReLU, three stages of ``num_blocks``
    BasicBlocks with 16, 32 and 64 channels, global average pooling, ``linear``.

    Args:
        num_blocks (list[int]): blocks per stage (``[3, 3, 3]`` is ResNet-20).
        num_classes (int, optional): outputs of the final layer. Default: 10.

    Examples::

        >>> model = CifarResNet([3, 3, 3]).eval()
        >>> model(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(self, num_blocks: List[int], num_classes: int = 10) -> None:
        super().__init__()
        self.in_planes = 16
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        self.layer1 = self._make_layer(16, num_blocks[0], 1)
        self.layer2 = self._make_layer(32, num_blocks[1], 2)
        self.layer3 = self._make_layer(64, num_blocks[2], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.linear = nn.Linear(64, num_classes)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                nn.init.kaiming_normal_(module.weight)

    def _make_layer(self, planes: int, num_blocks: int, stride: int) -> nn.Sequential:
        blocks = []
        for block_stride in [stride] + [1] * (num_blocks - 1):
            blocks.append(BasicBlock(self.in_planes, planes, block_stride))
            self.in_planes = planes
        return nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.linear(self.flatten(self.avgpool(out)))


def resnet20(num_classes: int = 10) -> CifarResNet:
    r"""
    ResNet-20 for CIFAR (0.27 M parameters), untrained.

    Args:
        num_classes (int, optional): outputs of the last layer. Default: 10.

    Returns:
        *CifarResNet*: the network, randomly initialised.

    Examples::

        >>> resnet20()(torch.zeros(1, 3, 32, 32)).shape
        torch.Size([1, 10])
    """
    return CifarResNet([3, 3, 3], num_classes)


def resnet56(num_classes: int = 10) -> CifarResNet:
    r"""
    ResNet-56 for CIFAR (0.85 M parameters), untrained.

    Args:
        num_classes (int, optional): outputs of the last layer. Default: 10.

    Returns:
        *CifarResNet*: the network, randomly initialised.

    Examples::

        >>> resnet56()(torch.zeros(1, 3, 32, 32)).shape
        torch.Size([1, 10])
    """
    return CifarResNet([9, 9, 9], num_classes)


_ARCHITECTURES = {"resnet20": resnet20, "resnet56": resnet56}


def load_cifar_resnet(
    checkpoint: Union[str, "os.PathLike[str]"], arch: Union[str, None] = None
) -> CifarResNet:
    r"""
    Builds a CIFAR ResNet and loads one of the shared checkpoints into it.

    The file is read with ``weights_only=True`` (it cannot run code); the
    ``module.`` prefix of the keys is stripped. The returned model is in eval mode.

    Args:
        checkpoint (str or PathLike): path of ``resnet20-*.th`` or ``resnet56-*.th``.
        arch (str, optional): ``"resnet20"`` or ``"resnet56"``; taken from the file
                    name when omitted. Default: None.

    Returns:
        *CifarResNet*: the trained model, in eval mode.

    Examples::

        >>> from captum_cams.kit.datasets import cifar10_root
        >>> model = load_cifar_resnet(cifar10_root() / "resnet20-12fca82f.th")
    """
    name = os.path.basename(os.fspath(checkpoint))
    if arch is None:
        arch = next((a for a in _ARCHITECTURES if name.startswith(a)), None)
        if arch is None:
            raise ValueError(
                f"cannot tell the architecture from checkpoint name {name!r}; "
                f"pass arch= one of {sorted(_ARCHITECTURES)}"
            )
    if arch not in _ARCHITECTURES:
        raise ValueError(f"arch must be one of {sorted(_ARCHITECTURES)}; got {arch!r}")
    if not os.path.isfile(checkpoint):
        raise FileNotFoundError(f"checkpoint not found: {os.fspath(checkpoint)}")
    payload = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state = payload.get("state_dict", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {name!r} holds no state_dict")
    state = {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state.items()}
    model = _ARCHITECTURES[arch]()
    model.load_state_dict(state)
    return model.eval()
