#!/usr/bin/env python3
from typing import Any, Literal, Optional, Tuple, Union, overload

import torch
from captum._utils.typing import TargetType
from captum.log import log_usage
from torch import Tensor

from captum_cams._utils.guards import check_positive_int
from captum_cams._utils.scores import check_score, scores_of
from captum_cams._utils.seeding import check_seed, seeded_generator
from captum_cams.attr._base import CamContext, CamOutput, PerturbationCamBase
from captum_cams.attr._channel_masks import (
    channel_masks,
    check_stdevs,
    masked_target_scores,
)


class LayerSSCam(PerturbationCamBase):
    r"""
    SS-CAM (smoothed Score-CAM): Score-CAM whose channel score is averaged over
    ``num_samples`` noisy masks. With ``M_k = up(mm(A_k))`` (min-max normalised at
    layer resolution, then upsampled) and ``delta ~ N(0, stdevs^2)`` drawn per
    sample, channel and input pixel,
    ``w = softmax_k(mean_s y_c(x * (M_k + delta_s,k)) - y_c(x))``; map
    ``relu(sum_k w_k A_k)``.

    As torchcam's ``SSCAM``: the noise is added to the normalised, upsampled mask (at
    input resolution), the score is the logit (``score="probability"`` for the
    softmax), the unmasked input's score is subtracted (which the softmax over
    channels does not see). The noise comes from a generator of its own, seeded with
    ``seed`` on the inputs' device, drawn sample by sample and, within a sample,
    example by example and channel by channel — torchcam's order, so on the CPU and
    in float32 the same seed gives torchcam's draws (tested) wherever the input's
    ``H·W`` is a multiple of 16 (torch's normal sampler then draws chunk by chunk as
    in one piece). ``num_samples · N · K`` masked inputs are evaluated, in chunks of
    ``internal_batch_size``.

    Paper: Wang et al., "SS-CAM: Smoothed Score-CAM for Sharper Visual Feature
    Localization", 2020. https://arxiv.org/abs/2006.14255

    Args:
        forward_func (Callable or torch.nn.Module): the model or any modification of it.
        layer (torch.nn.Module): the convolutional layer whose output ``A``
                    (``N x K x h x w``) the map is computed on.
        device_ids (list[int], optional): device ids for a model wrapped in
                    ``DataParallel``, as in Captum. Default: None.

    Examples::

        >>> net = torchvision.models.resnet18().eval()
        >>> maps = LayerSSCam(net, net.layer4).attribute(
        ...     torch.randn(2, 3, 224, 224), target=[3, 7], num_samples=8,
        ...     internal_batch_size=128)
    """

    def _weights(self, context: CamContext) -> Tensor:
        images = context.inputs[0]
        activations = context.activations
        num_examples, num_channels = activations.shape[:2]
        num_samples = context.options["num_samples"]
        stdevs = context.options["stdevs"]
        device = activations.device
        pairs = num_examples * num_channels
        # rows in torchcam's order: sample, then example, then channel
        row_example = torch.arange(num_examples, device=device).repeat_interleave(num_channels)
        row_example = row_example.repeat(num_samples)
        row_channel = torch.arange(num_channels, device=device).repeat(num_examples * num_samples)
        generator = seeded_generator(images.device, context.options["seed"])
        size = images.shape[-2:]

        def noisy_masks(rows: Tensor) -> Tensor:
            masks = channel_masks(activations, row_example[rows], row_channel[rows], size)
            noise = torch.randn(
                masks.shape, generator=generator, dtype=images.dtype, device=images.device
            )
            return masks.to(images.dtype) + stdevs * noise

        scores = masked_target_scores(
            self.forward_func,
            context,
            row_example,
            noisy_masks,
            context.options["internal_batch_size"],
            context.options["score"],
        )
        mean = scores.view(num_samples, pairs).mean(dim=0).view(num_examples, num_channels)
        baseline = scores_of(context.outputs, context.options["score"])
        return (mean - baseline.gather(1, context.target[:, None]).to(mean.dtype)).softmax(dim=1)

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
        num_samples: int = 35,
        stdevs: float = 2.0,
        seed: Optional[int] = 0,
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
        num_samples: int = 35,
        stdevs: float = 2.0,
        seed: Optional[int] = 0,
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
        num_samples: int = 35,
        stdevs: float = 2.0,
        seed: Optional[int] = 0,
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
            num_samples (int, optional): noisy masks per channel. Default: 35
                        (torchcam's).
            stdevs (float, optional): the noise's standard deviation, added to masks
                        in ``[0, 1]``. Default: 2.0 (torchcam's).
            seed (int, optional): seed of the noise's own generator; ``None`` draws a
                        fresh seed. Default: 0.
            show_progress (bool, optional): a progress bar over the masked
                        inputs. Default: False.

        Returns:
            *Tensor* or (*Tensor*, *Tensor*): the maps ``N x 1 x h x w`` at layer
            resolution, and the weights when ``return_weights`` is set.

        Examples::

            >>> maps = LayerSSCam(net, net.layer4).attribute(images, target=labels, seed=1)
        """
        check_positive_int(internal_batch_size, "internal_batch_size")
        check_positive_int(num_samples, "num_samples", allow_none=False)
        check_score(score)
        check_seed(seed)
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
            stdevs=check_stdevs(stdevs),
            seed=seed,
        )
