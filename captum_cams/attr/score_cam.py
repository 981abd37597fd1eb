#!/usr/bin/env python3
from typing import Any, Optional, Tuple, Union

import torch
from captum.log import log_usage
from torch import Tensor

from captum_cams._utils.batching import take_examples
from captum_cams._utils.guards import TargetLike, check_positive_int
from captum_cams._utils.maps import minmax_normalize, upsample
from captum_cams._utils.scores import check_score, scores_of
from captum_cams.attr._base import (
    CamContext,
    CamOutput,
    PerturbationCamBase,
    batched_target_scores,
)


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

    Examples::

        >>> net = torchvision.models.resnet18().eval()
        >>> maps = LayerScoreCam(net, net.layer4).attribute(
        ...     torch.randn(2, 3, 224, 224), target=[3, 7], internal_batch_size=64)
    """

    def _weights(self, context: CamContext) -> Tensor:
        images = context.inputs[0]
        activations = context.activations
        num_examples, num_channels = activations.shape[:2]
        device = activations.device
        score = context.options["score"]
        # A constant channel (e.g. all zero after a ReLU) normalises to the zero mask,
        # so all constant channels of an example mask its input to the same image:
        # that image is evaluated once per example and its score shared.
        flat = activations.flatten(2)
        constant_2d = flat.amax(dim=2) == flat.amin(dim=2)  # N x K
        first_2d = constant_2d & (constant_2d.long().cumsum(dim=1) == 1)
        constant, first_constant = constant_2d.flatten(), first_2d.flatten()
        all_example = torch.arange(num_examples, device=device).repeat_interleave(num_channels)
        all_channel = torch.arange(num_channels, device=device).repeat(num_examples)
        evaluated = ~constant | first_constant  # rows in example-major order
        row_example, row_channel = all_example[evaluated], all_channel[evaluated]

        def masked_outputs(rows: Tensor) -> Tensor:
            examples = row_example[rows]
            masks = minmax_normalize(activations[examples, row_channel[rows]][:, None])
            masks = upsample(masks, images.shape[-2:]).to(images.dtype)
            masked = images[examples] * masks
            others = take_examples(context.inputs[1:], examples, num_examples)
            extra = take_examples(context.additional_forward_args, examples, num_examples)
            outputs = self.forward_func(masked, *others, *extra)
            return scores_of(outputs, score)

        evaluated_scores = batched_target_scores(
            masked_outputs,
            row_example,
            context.target,
            context.options["internal_batch_size"],
            row=images[0],
            model=self.forward_func,
        )
        scores = evaluated_scores.new_empty(num_examples * num_channels)
        scores[evaluated] = evaluated_scores
        shared = constant & ~first_constant
        if bool(shared.any()):
            zero_mask_score = evaluated_scores.new_empty(num_examples)
            zero_mask_score[all_example[first_constant]] = scores[first_constant]
            scores[shared] = zero_mask_score[all_example[shared]]
        return scores.view(num_examples, num_channels).softmax(dim=1)

    @log_usage()
    def attribute(
        self,
        inputs: Union[Tensor, Tuple[Tensor, ...]],
        target: TargetLike = None,
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
