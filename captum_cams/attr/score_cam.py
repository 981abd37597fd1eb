#!/usr/bin/env python3
from typing import Any, Literal, Optional, Tuple, Union, overload

from captum._utils.typing import TargetType
from captum.log import log_usage
from torch import Tensor

from captum_cams._utils.guards import check_positive_int
from captum_cams._utils.scores import check_score
from captum_cams.attr._base import CamContext, CamOutput, PerturbationCamBase
from captum_cams.attr._channel_masks import channel_masks, channel_scores, masked_target_scores


class LayerScoreCam(PerturbationCamBase):
    r"""
    Score-CAM: every channel, min-max normalised at layer resolution and upsampled
    (``M_k = up(mm(A_k))``), masks the input; its weight is the softmax over
    channels of the target score of the masked input, ``w = softmax_k(y_c(x * M_k))``;
    map ``relu(sum_k w_k A_k)``.

    The ``N x K`` masked inputs are built and evaluated in chunks of
    ``internal_batch_size`` (by default as many as the pass budget allows,
    :func:`~captum_cams.get_pass_budget`). Constant channels (all zero after a ReLU, say) all
    give the zero mask, so their masked input is evaluated once per example. The
    score is the logit, as torchcam and pytorch-grad-cam use; ``score="probability"``
    gives the paper's softmax score.
    Equal to torchcam's ``ScoreCAM`` (tested to 1e-4).

    Paper: Wang et al., "Score-CAM: Score-Weighted Visual Explanations for
    Convolutional Neural Networks", CVPR Workshops 2020. https://arxiv.org/abs/1910.01279

    Args:
        forward_func (Callable or torch.nn.Module): the model or any modification of it.
        layer (torch.nn.Module): the convolutional layer whose output ``A``
                    (``N x K x h x w``) the map is computed on.
        device_ids (list[int], optional): device ids for a model wrapped in
                    ``DataParallel``, as in Captum. Default: None.
        reshape_transform (Callable, optional): turns the layer's output into
                    ``N x K x h x w`` (pytorch-grad-cam's argument), whose
                    channels make the masks, e.g.
                    :func:`~captum_cams.vit_reshape_transform` for a vision
                    transformer's tokens. Default: None.

    Examples::

        >>> net = torchvision.models.resnet18().eval()
        >>> maps = LayerScoreCam(net, net.layer4).attribute(
        ...     torch.randn(2, 3, 224, 224), target=[3, 7], internal_batch_size=64)
    """

    def _weights(self, context: CamContext) -> Tensor:
        activations = context.activations
        size = context.inputs[0].shape[-2:]

        def pair_scores(examples: Tensor, channels: Tensor) -> Tensor:
            return masked_target_scores(
                self.forward_func,
                context,
                examples,
                lambda rows: channel_masks(activations, examples[rows], channels[rows], size),
                context.options["internal_batch_size"],
                context.options["score"],
            )

        return channel_scores(activations, pair_scores).softmax(dim=1)

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
            attribute_to_layer_input (bool, optional): compute the map on the
                        layer's input instead of its output (its channels make the
                        masks). Default: False.
            relu_attributions (bool, optional): apply ReLU to the map. Default: True.
            return_weights (bool, optional): also return the ``N x K`` channel
                        weights. Default: False.
            internal_batch_size (int, optional): masked inputs evaluated per
                        forward pass; ``None``: as many as the pass budget allows
                        (:func:`~captum_cams.get_pass_budget`). Default: None.
            score (str, optional): ``"logit"`` or ``"probability"`` (softmax of the
                        output, the paper's choice). Default: ``"logit"``.
            show_progress (bool, optional): a progress bar over the masked
                        inputs. Default: False.

        Returns:
            *Tensor* or (*Tensor*, *Tensor*): the maps ``N x 1 x h x w`` at layer
            resolution, and the weights when ``return_weights`` is set.

        Examples::

            >>> maps = LayerScoreCam(net, net.layer4).attribute(images, target=labels)
        """
        check_positive_int(internal_batch_size, "internal_batch_size")
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
        )
