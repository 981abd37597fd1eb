#!/usr/bin/env python3
r"""The CALM model: a probabilistic head on a fully-convolutional backbone.

Kim, Choe, Akata & Oh, "Keep CALM and Improve Visual Feature Attribution", ICCV 2021.
https://arxiv.org/abs/2106.07861

For a feature map ``F = backbone(x)`` of shape ``N x D x h x w`` and a location
``z`` (one of the ``h·w`` cells):

- branch g, a 1×1 convolution ``D → C`` then a softmax over the classes at every
  location: ``p(y | x, z) = g_yz``;
- branch h, a 1×1 convolution ``D → 1`` then softplus (the paper; ``"relu"`` as in
  the authors' code), L1-normalised over the locations: ``p(z | x) = h_z / Σ_z' h_z'``;
- joint ``p(y, z | x) = g_yz · p(z | x)`` and prediction ``p(y | x) = Σ_z p(y, z | x)``.

Everything is computed in log space (``log g`` by ``log_softmax``, ``log p(z|x)``
from ``log h`` and a ``logsumexp``), so neither probabilities that underflow nor an
attention map that is zero everywhere gives NaN or ``-inf`` losses.
"""

import copy
from typing import NamedTuple, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

#: Activations of the attention branch h: softplus (the paper) or ReLU (the authors' code).
ATTENTION_ACTIVATIONS = ("softplus", "relu")

# Below this pre-activation log(softplus(a)) = a - exp(a)/2 + ... equals a to float64
# rounding (exp(-40)/2 < 1e-17), and softplus(a) itself would underflow in float32.
_SOFTPLUS_LOG_CUTOFF = -40.0


class CALMOutput(NamedTuple):
    r"""
    The factors of a CALM model's joint distribution, in log space.

    Attributes:
        log_conditional (Tensor): ``N x C x h x w``, ``log p(y | x, z)`` (the log of
                    branch g); sums to one over ``C`` after ``exp``.
        log_saliency (Tensor): ``N x 1 x h x w``, ``log p(z | x)`` (the log of the
                    normalised branch h); sums to one over ``h x w`` after ``exp``.

    Examples::

        >>> out = calm_model.components(torch.randn(2, 3, 32, 32))
        >>> out.log_probs.exp().sum(1)   # tensor([1., 1.])
    """

    log_conditional: Tensor
    log_saliency: Tensor

    @property
    def log_joint(self) -> Tensor:
        r"""``N x C x h x w``, ``log p(y, z | x) = log p(y | x, z) + log p(z | x)``."""
        return self.log_conditional + self.log_saliency

    @property
    def log_probs(self) -> Tensor:
        r"""``N x C``, ``log p(y | x) = logsumexp_z log p(y, z | x)``."""
        return torch.logsumexp(self.log_joint.flatten(2), dim=2)


def _log_attention(pre: Tensor, activation: str) -> Tensor:
    r"""``log h`` for the pre-activations ``pre`` of branch h, without NaN in value or grad."""
    if activation == "softplus":
        safe = pre.clamp_min(_SOFTPLUS_LOG_CUTOFF)
        return torch.where(pre > _SOFTPLUS_LOG_CUTOFF, torch.log(F.softplus(safe)), pre)
    # ReLU: log h = log(a) where a > 0, -inf elsewhere (h_z = 0 exactly).
    tiny = torch.finfo(pre.dtype).tiny
    return torch.where(pre > 0, torch.log(pre.clamp_min(tiny)), float("-inf"))


def log_saliency_from_attention(
    pre: Tensor, activation: str = "softplus", detach_normalizer: bool = False
) -> Tensor:
    r"""
    ``log p(z | x)`` from the pre-activations of branch h (``N x 1 x h x w``).

    ``p(z | x) = h_z / Σ_z' h_z'``. Where ``h`` is zero at every location (possible
    with ReLU), the limit of a constant ``h → 0`` is used: ``p(z | x)`` uniform,
    ``1 / (h·w)``, so nothing is NaN.

    Args:
        pre (Tensor): ``N x 1 x h x w`` outputs of the 1×1 convolution of branch h.
        activation (str, optional): ``"softplus"`` or ``"relu"``. Default: ``"softplus"``.
        detach_normalizer (bool, optional): divide by ``Σ_z' h_z'`` detached, as the
                    authors' training code does (``h / sum(h).detach()``): the same
                    values, but no gradient through the normaliser. False gives the
                    paper's gradient of ``h / Σ h``. Default: False.

    Returns:
        *Tensor*: ``N x 1 x h x w`` log-probabilities over the ``h·w`` locations.

    Examples::

        >>> log_p = log_saliency_from_attention(torch.randn(2, 1, 8, 8))
        >>> log_p.exp().flatten(1).sum(1)   # tensor([1., 1.])
    """
    if activation not in ATTENTION_ACTIVATIONS:
        raise ValueError(
            f"attention_activation must be one of {ATTENTION_ACTIVATIONS}; got {activation!r}"
        )
    log_h = _log_attention(pre, activation)
    flat = log_h.flatten(1)
    all_zero = torch.isneginf(flat).all(dim=1, keepdim=True)
    flat = torch.where(all_zero, torch.zeros_like(flat), flat)
    log_normalizer = torch.logsumexp(flat, dim=1, keepdim=True)
    if detach_normalizer:
        log_normalizer = log_normalizer.detach()
    log_p = flat - log_normalizer
    return log_p.reshape(log_h.shape)


class CALM(nn.Module):
    r"""
    Class activation latent mapping (CALM): a probabilistic head with a latent cue
    location ``z`` on any fully-convolutional backbone.

    ``forward(inputs)`` returns the class probabilities ``p(y | x) = Σ_z p(y, z | x)``
    (``N x C``, rows sum to one), or their logarithm when ``log_output=True``
    (constructor) or ``forward(inputs, log_probs=True)``. The log output is what a
    classifier's loss and the metrics of :mod:`captum_cams.metrics` want: the
    negative log-likelihood of it is the CALM_ML loss (``F.nll_loss``, or
    ``F.cross_entropy``, since ``softmax(log p) = p``), and softmax-based metrics see
    exactly ``p(y | x)``. Argmax predictions are the same either way.
    :meth:`components` gives ``log p(y | x, z)`` and ``log p(z | x)`` for the losses of
    :mod:`captum_cams.calm.losses` and for :class:`CALMAttribution`.

    Paper: Kim, Choe, Akata & Oh, "Keep CALM and Improve Visual Feature
    Attribution", ICCV 2021. https://arxiv.org/abs/2106.07861

    Args:
        backbone (torch.nn.Module): maps ``N x 3 x H x W`` inputs to ``N x D x h x w``
                    features (fully convolutional: no pooling to a vector).
        in_channels (int): ``D``, the channels of the backbone's output.
        num_classes (int): ``C``.
        attention_activation (str, optional): the non-negative activation of branch
                    h: ``"softplus"`` (the paper) or ``"relu"`` (the authors' code).
                    Default: ``"softplus"``.
        log_output (bool, optional): make ``forward`` return ``log p(y | x)``.
                    Default: False.
        detach_attention_normalizer (bool, optional): normalise h by
                    ``Σ_z h_z`` detached, the gradient of the authors' training code
                    (``h / sum(h).detach()``); the values, and so every prediction
                    and map, are the same, only the attention branch's gradient
                    differs. False: the paper's ``p(z | x) = h / Σ h``, differentiated
                    through the sum. Default: False.

    Attributes:
        backbone (nn.Module): the feature extractor.
        classifier (nn.Conv2d): branch g, ``D → C``, 1×1.
        attention (nn.Conv2d): branch h, ``D → 1``, 1×1; starts with zero weights and
                    bias, so ``p(z | x)`` starts uniform.

    Examples::

        >>> backbone = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU())
        >>> model = CALM(backbone, in_channels=16, num_classes=10).eval()
        >>> probs = model(torch.randn(2, 3, 32, 32))   # p(y|x), rows sum to 1
        >>> log_probs = model(torch.randn(2, 3, 32, 32), log_probs=True)
        >>> loss = F.nll_loss(log_probs, torch.tensor([3, 7]))   # CALM_ML
    """

    def __init__(
        self,
        backbone: nn.Module,
        in_channels: int,
        num_classes: int,
        attention_activation: str = "softplus",
        log_output: bool = False,
        detach_attention_normalizer: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(backbone, nn.Module):
            raise TypeError(f"backbone must be a torch.nn.Module; got {type(backbone).__name__}")
        for name, value in (("in_channels", in_channels), ("num_classes", num_classes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int; got {value!r}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2; got {num_classes}")
        if attention_activation not in ATTENTION_ACTIVATIONS:
            raise ValueError(
                f"attention_activation must be one of {ATTENTION_ACTIVATIONS}; "
                f"got {attention_activation!r}"
            )
        self.backbone = backbone
        self.classifier = nn.Conv2d(in_channels, num_classes, kernel_size=1)
        self.attention = nn.Conv2d(in_channels, 1, kernel_size=1)
        nn.init.zeros_(self.attention.weight)
        nn.init.zeros_(self.attention.bias)  # type: ignore[arg-type]
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.attention_activation = attention_activation
        self.log_output = bool(log_output)
        self.detach_attention_normalizer = bool(detach_attention_normalizer)

    def features(self, inputs: Tensor) -> Tensor:
        r"""The backbone's ``N x D x h x w`` features, checked."""
        feats = self.backbone(inputs)
        if not isinstance(feats, Tensor) or feats.dim() != 4:
            shape = tuple(feats.shape) if isinstance(feats, Tensor) else type(feats).__name__
            raise ValueError(
                "the backbone must return N x D x h x w features (fully convolutional); "
                f"got {shape}"
            )
        if feats.shape[1] != self.in_channels:
            raise ValueError(
                f"the backbone returns {feats.shape[1]} channels but in_channels is "
                f"{self.in_channels}"
            )
        return feats

    def components_from_features(self, features: Tensor) -> CALMOutput:
        r"""``log p(y | x, z)`` and ``log p(z | x)`` from backbone features."""
        log_conditional = F.log_softmax(self.classifier(features), dim=1)
        log_saliency = log_saliency_from_attention(
            self.attention(features), self.attention_activation, self.detach_attention_normalizer
        )
        return CALMOutput(log_conditional, log_saliency)

    def components(self, inputs: Tensor) -> CALMOutput:
        r"""
        The two factors of ``p(y, z | x)`` in log space.

        Args:
            inputs (Tensor): ``N x 3 x H x W`` images.

        Returns:
            *CALMOutput*: ``log_conditional`` (``N x C x h x w``), ``log_saliency``
            (``N x 1 x h x w``) and the derived ``log_joint`` and ``log_probs``.
        """
        return self.components_from_features(self.features(inputs))

    def forward(self, inputs: Tensor, log_probs: Optional[bool] = None) -> Tensor:
        r"""
        Class probabilities ``p(y | x)`` (``N x C``), or ``log p(y | x)``.

        Args:
            inputs (Tensor): ``N x 3 x H x W`` images.
            log_probs (bool, optional): return the log-probabilities. Default: None
                        (the constructor's ``log_output``).

        Returns:
            *Tensor*: ``N x C``.
        """
        log_p = self.components(inputs).log_probs
        use_log = self.log_output if log_probs is None else bool(log_probs)
        return log_p if use_log else log_p.exp()

    @classmethod
    def from_torchvision(
        cls,
        resnet: nn.Module,
        num_classes: int,
        attention_activation: str = "softplus",
        copy_classifier: Optional[bool] = False,
        log_output: bool = False,
    ) -> "CALM":
        r"""
        CALM on a torchvision ResNet: the backbone is ``conv1 … layer4`` (stride 32,
        ``fc.in_features`` channels), a deep copy, so the given model is untouched.

        Args:
            resnet (torch.nn.Module): a ``torchvision.models.ResNet``.
            num_classes (int): classes of the CALM head.
            attention_activation (str, optional): see :class:`CALM`. Default: ``"softplus"``.
            copy_classifier (bool, optional): start branch g from ``resnet.fc`` (then
                        g at every location is the CAM classifier). None: when
                        ``num_classes`` equals ``fc.out_features``. Default: False
                        (the paper trains the heads from scratch).
            log_output (bool, optional): see :class:`CALM`. Default: False.

        Returns:
            *CALM*: the model, in the resnet's train/eval mode.

        Examples::

            >>> resnet = torchvision.models.resnet50(weights="IMAGENET1K_V2")
            >>> model = CALM.from_torchvision(resnet, num_classes=200)
        """
        return cls._from_parts(
            resnet,
            "resnet",
            "a torchvision ResNet",
            ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"),
            "fc",
            num_classes,
            attention_activation,
            copy_classifier,
            log_output,
        )

    @classmethod
    def from_cifar_resnet(
        cls,
        model: nn.Module,
        num_classes: int = 10,
        attention_activation: str = "softplus",
        copy_classifier: Optional[bool] = False,
        log_output: bool = False,
    ) -> "CALM":
        r"""
        CALM on a CIFAR ResNet (:class:`~captum_cams.kit.models.cifar_resnet.CifarResNet`,
        e.g. ResNet-20 from :func:`~captum_cams.kit.models.load_cifar_resnet`): the
        backbone is ``conv1, bn1, relu, layer1, layer2, layer3`` (``64 x 8 x 8`` for
        32 × 32 inputs), a deep copy.

        Args:
            model (torch.nn.Module): the CIFAR ResNet.
            num_classes (int, optional): classes of the CALM head. Default: 10.
            attention_activation (str, optional): see :class:`CALM`. Default: ``"softplus"``.
            copy_classifier (bool, optional): start branch g from ``model.linear``.
                        None: when the class counts match. Default: False (the
                        paper trains the heads from scratch).
            log_output (bool, optional): see :class:`CALM`. Default: False.

        Returns:
            *CALM*: the model, in the given model's train/eval mode.

        Examples::

            >>> resnet20 = load_cifar_resnet(cifar10_root() / "resnet20-12fca82f.th")
            >>> model = CALM.from_cifar_resnet(resnet20)
        """
        return cls._from_parts(
            model,
            "model",
            "a CIFAR ResNet",
            ("conv1", "bn1", "relu", "layer1", "layer2", "layer3"),
            "linear",
            num_classes,
            attention_activation,
            copy_classifier,
            log_output,
        )

    @classmethod
    def _from_parts(
        cls,
        source: nn.Module,
        argument: str,
        kind: str,
        backbone_names: Tuple[str, ...],
        classifier_name: str,
        num_classes: int,
        attention_activation: str,
        copy_classifier: Optional[bool],
        log_output: bool,
    ) -> "CALM":
        r"""CALM on deep copies of ``source``'s children ``backbone_names`` (in order),
        branch g optionally started from its linear classifier ``classifier_name``."""
        missing = [n for n in backbone_names + (classifier_name,) if not hasattr(source, n)]
        if missing:
            raise TypeError(
                f"{argument} must be {kind} ({backbone_names[0]} ... {backbone_names[-1]}, "
                f"{classifier_name}); missing {missing}"
            )
        backbone = nn.Sequential(*(copy.deepcopy(getattr(source, n)) for n in backbone_names))
        fc = getattr(source, classifier_name)
        if not isinstance(fc, nn.Linear):
            raise TypeError(
                f"{argument}.{classifier_name} must be an nn.Linear; got {type(fc).__name__}"
            )
        model = cls(backbone, fc.in_features, num_classes, attention_activation, log_output)
        matches = fc.out_features == num_classes
        if copy_classifier is None:
            copy_classifier = matches
        if copy_classifier:
            if not matches:
                raise ValueError(
                    f"copy_classifier=True needs num_classes == {fc.out_features} "
                    f"(the source classifier's outputs); got {num_classes}"
                )
            with torch.no_grad():
                model.classifier.weight.copy_(fc.weight.reshape(num_classes, -1, 1, 1))
                if fc.bias is not None:
                    model.classifier.bias.copy_(fc.bias)  # type: ignore[union-attr]
                else:
                    model.classifier.bias.zero_()
        parameter = next(source.parameters(), None)
        if parameter is not None:
            model.to(device=parameter.device, dtype=parameter.dtype)
        return model.train(source.training)
