#!/usr/bin/env python3
from typing import Any, Literal, Optional, Tuple, Union, overload

import torch
from captum._utils.typing import TargetType
from captum.log import log_usage
from torch import Tensor

from captum_cams._utils.guards import check_positive_int
from captum_cams._utils.scores import check_score, scores_of
from captum_cams.attr._base import CamContext, CamOutput, PerturbationCamBase
from captum_cams.attr._channel_masks import channel_masks, channel_scores, masked_target_scores


class LayerISCam(PerturbationCamBase):
    r"""
    IS-CAM (integrated Score-CAM): Score-CAM whose channel score integrates the mask's
    strength. With ``M_k = up(mm(A_k))`` and ``c_i = sum_{j=1..i} j / n`` for
    ``i = 1..n`` (``n = num_samples``),
    ``w = softmax_k((1/n) sum_i y_c(x * c_i M_k) - y_c(x))``; map
    ``relu(sum_k w_k A_k)``.

    As torchcam's ``ISCAM`` (tested equal): the logit as score (``score="probability"``
    for the softmax), the unmasked input's score subtracted (which the softmax does
    not see), and torchcam's coefficients ``c_i``, which grow to ``(n + 1) / 2``.
    Constant channels (the zero mask) are evaluated once per example, as in
    :class:`LayerScoreCam`; the ``n`` scaled copies of each other channel's masked
    input are evaluated in chunks of ``internal_batch_size`` (by default as many as
    the pass budget allows, :func:`~captum_cams.get_pass_budget`).

    Paper: Naidu et al., "IS-CAM: Integrated Score-CAM for axiomatic-based
    explanations", 2020. https://arxiv.org/abs/2010.03023

    Args:
        forward_func (Callable or torch.nn.Module): the model or any modification of it.
        layer (torch.nn.Module): the convolutional layer whose output ``A``
                    (``N x K x h x w``) the map is computed on.
        device_ids (list[int], optional): device ids for a model wrapped in
                    ``DataParallel``, as in Captum. Default: None.

    Examples::

        >>> net = torchvision.models.resnet18().eval()
        >>> maps = LayerISCam(net, net.layer4).attribute(
        ...     torch.randn(2, 3, 224, 224), target=[3, 7], internal_batch_size=128)
    """

    def _weights(self, context: CamContext) -> Tensor:
        activations = context.activations
        steps = context.options["num_samples"]
        size = context.inputs[0].shape[-2:]
        score = context.options["score"]
        # c_i = sum_{j <= i} j / n, accumulated in float64 as torchcam's Python float
        coefficients = torch.arange(1, steps + 1, dtype=torch.float64).div(steps).cumsum(0)
        coefficients = coefficients.to(device=activations.device)

        def pair_scores(examples: Tensor, channels: Tensor) -> Tensor:
            num_pairs = examples.shape[0]
            row_pair = torch.arange(num_pairs, device=examples.device).repeat_interleave(steps)
            row_step = torch.arange(steps, device=examples.device).repeat(num_pairs)

            def scaled_masks(rows: Tensor) -> Tensor:
                pair = row_pair[rows]
                masks = channel_masks(activations, examples[pair], channels[pair], size)
                return coefficients[row_step[rows]].to(masks.dtype)[:, None, None, None] * masks

            scores = masked_target_scores(
                self.forward_func,
                context,
                examples[row_pair],
                scaled_masks,
                context.options["internal_batch_size"],
                score,
            )
            return scores.view(num_pairs, steps).mean(dim=1)

        mean = channel_scores(activations, pair_scores)
        baseline = scores_of(context.outputs, score).gather(1, context.target[:, None])
        return (mean - baseline.to(mean.dtype)).softmax(dim=1)

    @overload
    def attribute(
        self,
        inputs: Union[Tensor, Tuple[Tensor, ...]],
        target: TargetType = None,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
        relu_attributions: bool = True,
        return_weights: Literal[False] = False,
        internal_batch_size: Optional[int] = None,
        score: str = "logit",
        num_samples: int = 10,
        show_progress: bool = False,
    ) -> Tensor: ...

    @overload
    def attribute(
        self,
        inputs: Union[Tensor, Tuple[Tensor, ...]],
        target: TargetType = None,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
        relu_attributions: bool = True,
        *,
        return_weights: Literal[True],
        internal_batch_size: Optional[int] = None,
        score: str = "logit",
        num_samples: int = 10,
        show_progress: bool = False,
    ) -> Tuple[Tensor, Tensor]: ...

    @log_usage(part_of_slo=True)
    def attribute(
        self,
        inputs: Union[Tensor, Tuple[Tensor, ...]],
        target: TargetType = None,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
        relu_attributions: bool = True,
        return_weights: bool = False,
        internal_batch_size: Optional[int] = None,
        score: str = "logit",
        num_samples: int = 10,
        show_progress: bool = False,
    ) -> CamOutput:
        r"""
        Args:
            inputs (Tensor or tuple[Tensor, ...]): the image batch ``N x C x H x W``
                        (first, when the model takes several inputs).
            target (int, list[int], Tensor, optional): the class per example, as in
                        Captum. ``None`` takes each example's predicted class.
                        Default: None.
            additional_forward_args (Any, optional): further arguments of
                        ``forward_func``, after the inputs. Default: None.
            attribute_to_layer_input (bool, optional): the layer's input channels make
                        the masks. Default: False.
            relu_attributions (bool, optional): apply ReLU to the map. Default: True.
            return_weights (bool, optional): also return the ``N x K`` channel
                        weights. Default: False.
            internal_batch_size (int, optional): masked inputs evaluated at once;
                        ``None``: as many as the pass budget allows
                        (:func:`~captum_cams.get_pass_budget`). Default: None.
            score (str, optional): ``"logit"`` (torchcam) or ``"probability"``.
                        Default: ``"logit"``.
            num_samples (int, optional): ``n``, the integration steps. Default: 10
                        (torchcam's).
            show_progress (bool, optional): a progress bar over the masked
                        inputs. Default: False.

        Returns:
            *Tensor* or (*Tensor*, *Tensor*): the maps ``N x 1 x h x w`` at layer
            resolution, and the weights when ``return_weights`` is set.

        Examples::

            >>> maps = LayerISCam(net, net.layer4).attribute(images, target=labels)
        """
        check_positive_int(internal_batch_size, "internal_batch_size")
        check_positive_int(num_samples, "num_samples", allow_none=False)
        check_score(score)
        return self._attribute_cam(
            inputs,
            target,
            additional_forward_args,
            attribute_to_layer_input,
            relu_attributions,
            return_weights,
            show_progress=show_progress,
            internal_batch_size=internal_batch_size,
            score=score,
            num_samples=num_samples,
        )
