#!/usr/bin/env python3
"""The shared core of every class-activation map.

One pipeline does what every CAM needs:

1. check the arguments, and keep the model as it was (:mod:`captum_cams._utils.guards`);
2. one forward (and, for gradient methods, one backward to the layer) that captures the
   layer's activations ``A``, the gradients ``g = dy_c/dA`` and the outputs, reusing
   Captum's ``compute_layer_gradients_and_eval`` / ``_forward_layer_eval`` (their hooks
   are removed in ``finally``);
3. the method's weights — the one override point, :meth:`CamBase._weights`;
4. ``map = relu(sum_k w_k * A_k)`` in :meth:`CamBase._weighted_sum` — the one place a
   map is weighted.

Methods that need many extra evaluations (of the head, or of the model on masked
inputs) use :func:`batched_target_scores`, the one chunked evaluation loop.
"""

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from captum._utils.common import (
    _format_additional_forward_args,
    _format_tensor_into_tuples,
)
from captum._utils.gradient import (
    _forward_layer_eval,
    compute_layer_gradients_and_eval,
)
from captum.attr._utils.attribution import (
    GradientAttribution,
    LayerAttribution,
    PerturbationAttribution,
)
from captum.log import log_usage
from torch import Tensor
from torch.nn import Module

from captum_cams._utils.batching import evaluate_in_chunks, progress_bar
from captum_cams._utils.guards import (
    TargetLike,
    check_finite,
    check_image_batch,
    check_layer_in_model,
    describe_forward_failure,
    parameters_without_grad,
    preserved_model_state,
    target_indices,
)
from captum_cams._utils.scores import scores_of
from captum_cams.attr._head import LayerHead

CamOutput = Union[Tensor, Tuple[Tensor, Tensor]]


@dataclass
class CamContext:
    r"""
    Everything a method's :meth:`CamBase._weights` may need about one batch.

    Attributes:
        inputs (tuple[Tensor, ...]): the formatted inputs (the image batch first).
        additional_forward_args (tuple): the formatted extra forward arguments.
        target (Tensor): ``(N,)`` class index per example.
        outputs (Tensor): ``N x C`` model outputs (logits), detached.
        activations (Tensor): ``N x K x h x w`` layer activations, detached.
        gradients (Tensor or None): ``dy_c/dA`` of the same shape, for gradient methods.
        options (dict): the method's own keyword arguments of this call.
        attribute_to_layer_input (bool): the activations are the layer's input
                    (Captum's ``attribute_to_layer_input``), not its output.

    Examples::

        >>> class MeanGradientCam(GradientCamBase):   # Grad-CAM's weights, from the context
        ...     def _weights(self, context: CamContext) -> Tensor:
        ...         return context.gradients.mean(dim=(2, 3))
    """

    inputs: Tuple[Tensor, ...]
    additional_forward_args: Tuple[Any, ...]
    target: Tensor
    outputs: Tensor
    activations: Tensor
    gradients: Optional[Tensor]
    options: Dict[str, Any] = field(default_factory=dict)
    attribute_to_layer_input: bool = False

    @property
    def target_scores(self) -> Tensor:
        r"""``(N,)`` the target logits ``y_c``."""
        return self.outputs.gather(1, self.target[:, None]).squeeze(1)


def batched_target_scores(
    evaluate: Callable[[Tensor], Tensor],
    row_example: Tensor,
    target: Tensor,
    internal_batch_size: Optional[int],
    row: Optional[Tensor] = None,
    model: Any = None,
    head: bool = False,
) -> Tensor:
    r"""
    Evaluates many modified copies of a batch in chunks and keeps each row's target score.

    Args:
        evaluate (Callable): maps a ``LongTensor`` of row indices to the model (or
                    head) outputs ``M x C`` for those rows.
        row_example (Tensor): ``(R,)`` the example each of the ``R`` rows belongs to.
        target (Tensor): ``(N,)`` class index per example.
        internal_batch_size (int, optional): rows per evaluation; ``None``: from the
                    pass budget (:func:`captum_cams.get_pass_budget`).
        row (Tensor, optional): one row's input as the model (or head) gets it, which
                    sizes the passes when ``internal_batch_size`` is None.
        model (Any, optional): what the rows go through, under which their measured
                    size is remembered. Default: None.
        head (bool, optional): the rows go through a model's head only (see
                    :func:`~captum_cams._utils.batching.rows_per_pass`). Default: False.

    Returns:
        *Tensor*: ``(R,)`` score of each row's target class.

    Examples::

        >>> scores = batched_target_scores(
        ...     lambda rows: net(images[row_example[rows]] * masks[rows]), row_example,
        ...     target, None, row=images[0], model=net)
    """

    def target_scores(rows: Tensor) -> Tensor:
        outputs = evaluate(rows)
        selected = target[row_example[rows]].to(outputs.device)
        return outputs.gather(1, selected[:, None]).squeeze(1)

    with torch.no_grad():
        return evaluate_in_chunks(
            target_scores,
            row_example.shape[0],
            internal_batch_size,
            row_example.device,
            row=row,
            model=model,
            head=head,
        )


def head_model(head: Callable[..., Tensor]) -> Any:
    r"""
    What a head's rows go through, under which the pass sizes of
    :func:`batched_target_scores` remember the rows' measured size: a
    :class:`LayerHead`'s module (its fx split is shared by every method object on
    the same model and layer), else the head itself.

    Args:
        head (Callable): a :class:`LayerHead` or any callable head.

    Returns:
        *Any*: the module or callable.

    Examples::

        >>> head_model(LayerHead(net, net.layer4))   # the fx split of net after layer4
    """
    module = getattr(head, "module", None)
    return module if module is not None else head


class CamBase(LayerAttribution):
    r"""
    Base of the channel-weighted class-activation maps of this package.

    A subclass sets :attr:`uses_gradients` and implements :meth:`_weights`; its
    ``attribute`` documents the arguments and calls :meth:`_attribute_cam`.

    Args:
        forward_func (Callable): the model (an ``nn.Module`` or any callable).
        layer (nn.Module): the layer whose activations are weighted; a module of
                    the model.
        device_ids (list[int], optional): as Captum's ``LayerAttribution`` (for
                    ``DataParallel`` models). Default: None.

    Examples::

        >>> class LayerMeanCam(CamBase):      # every channel weighted by 1/K
        ...     uses_gradients = False
        ...     def _weights(self, context):
        ...         n, k = context.activations.shape[:2]
        ...         return context.activations.new_full((n, k), 1.0 / k)
        ...     def attribute(self, inputs, target=None, additional_forward_args=None):
        ...         return self._attribute_cam(inputs, target, additional_forward_args)
    """

    #: Whether :meth:`_weights` needs ``dy_c/dA`` (one backward to the layer).
    uses_gradients: bool = True

    #: Called as ``forward_observer(inputs, outputs)`` after every forward pass of
    #: :meth:`_capture` (formatted inputs, detached model outputs), so that a caller
    #: can reuse a forward pass the method made anyway (TFT takes the unmasked
    #: probabilities from it). None: nothing is called.
    forward_observer: Optional[Callable[[Tuple[Tensor, ...], Tensor], None]] = None

    def __init__(
        self,
        forward_func: Callable,
        layer: Module,
        device_ids: Union[None, List[int]] = None,
    ) -> None:
        if not callable(forward_func):
            raise TypeError(f"forward_func must be callable; got {type(forward_func).__name__}")
        check_layer_in_model(forward_func, layer)
        LayerAttribution.__init__(self, forward_func, layer, device_ids)

    # ------------------------------------------------------------------ override
    def _weights(self, context: CamContext) -> Tensor:
        r"""
        The method's weights: ``N x K`` channel weights, or ``N x K x h x w``
        per-position weights (Layer-CAM).
        """
        raise NotImplementedError

    # ------------------------------------------------------------------ pipeline
    def _attribute_cam(
        self,
        inputs: Union[Tensor, Tuple[Tensor, ...]],
        target: TargetLike,
        additional_forward_args: Any,
        attribute_to_layer_input: bool,
        relu_attributions: bool,
        return_weights: bool,
        attr_dim_summation: bool = True,
        grad_kwargs: Optional[Dict[str, Any]] = None,
        show_progress: bool = False,
        **options: Any,
    ) -> CamOutput:
        r"""
        The pipeline: capture, :meth:`_weights`, :meth:`_weighted_sum`, ReLU.

        ``attr_dim_summation=False`` keeps the weighted channels apart
        (``N x K x h x w``, as Captum's ``LayerGradCam``); ``grad_kwargs`` go to
        ``torch.autograd.grad`` (gradient methods only); ``show_progress`` shows a
        bar over the passes of the chunked loop; ``options`` reach :meth:`_weights`
        as ``context.options``.
        """
        if not isinstance(attribute_to_layer_input, bool):
            raise TypeError(
                "attribute_to_layer_input must be a bool; got "
                f"{type(attribute_to_layer_input).__name__}"
            )
        formatted_inputs, formatted_args = self._format_cam_inputs(inputs, additional_forward_args)
        bar = progress_bar(show_progress, type(self).__name__)
        with bar, preserved_model_state(self.forward_func):
            context = self._capture(
                formatted_inputs,
                target,
                formatted_args,
                attribute_to_layer_input,
                grad_kwargs=grad_kwargs,
            )
            context.options = options
            weights = self._weights(context)
        cam = self._map(weights, context.activations, relu_attributions, attr_dim_summation)
        if return_weights:
            return cam, weights
        return cam

    @staticmethod
    def _format_cam_inputs(
        inputs: Union[Tensor, Tuple[Tensor, ...]], additional_forward_args: Any
    ) -> Tuple[Tuple[Tensor, ...], Tuple[Any, ...]]:
        r"""Formats and checks ``inputs`` (the image batch first) and the extra arguments."""
        if isinstance(inputs, tuple) and not inputs:
            raise ValueError("inputs must hold at least one tensor")
        check_image_batch(inputs[0] if isinstance(inputs, tuple) else inputs, "inputs")
        formatted_inputs = _format_tensor_into_tuples(inputs)
        for position, extra in enumerate(formatted_inputs[1:], start=1):
            if isinstance(extra, Tensor):
                check_finite(extra, f"inputs[{position}]")
        formatted_args = _format_additional_forward_args(additional_forward_args) or ()
        return formatted_inputs, formatted_args

    def _capture(
        self,
        inputs: Tuple[Tensor, ...],
        target: TargetLike,
        additional_forward_args: Tuple[Any, ...],
        attribute_to_layer_input: bool,
        with_gradients: Optional[bool] = None,
        score: str = "logit",
        grad_kwargs: Optional[Dict[str, Any]] = None,
    ) -> CamContext:
        r"""
        One forward (and, with gradients, one backward to the layer) of ``inputs``.

        ``score="probability"`` differentiates the softmax probability of the target
        instead of its logit (Libra-CAM); ``context.outputs`` are the logits either way.

        ``with_gradients`` overrides :attr:`uses_gradients` for this pass (a gradient
        method may need forward-only passes too, e.g. Integrated Grad-CAM's
        activations at the baseline); None keeps the class's setting.
        """
        if with_gradients is None:
            with_gradients = self.uses_gradients
        record: Dict[str, Tensor] = {}

        def target_logit(*args: Any) -> Tensor:
            outputs = self.forward_func(*args)
            if not isinstance(outputs, Tensor):
                raise TypeError(f"forward_func must return a tensor; got {type(outputs).__name__}")
            record["target"] = target_indices(target, outputs)
            record["outputs"] = outputs.detach()
            scores = scores_of(outputs, score)
            return scores.gather(1, record["target"][:, None]).squeeze(1)

        gradients: Optional[Tensor] = None
        try:
            if with_gradients:
                # dy_c/dA needs no parameter gradients: without them no graph is
                # recorded before the layer (the gradients are the same)
                with parameters_without_grad(self.forward_func):
                    layer_gradients, layer_evals = compute_layer_gradients_and_eval(
                        target_logit,
                        self.layer,
                        inputs,
                        None,
                        additional_forward_args,
                        device_ids=self.device_ids,
                        attribute_to_layer_input=attribute_to_layer_input,
                        grad_kwargs=grad_kwargs,
                    )
                gradients = layer_gradients[0].detach()
            else:
                with torch.no_grad():
                    layer_evals = _forward_layer_eval(
                        target_logit,
                        inputs,
                        self.layer,
                        additional_forward_args,
                        device_ids=self.device_ids,
                        attribute_to_layer_input=attribute_to_layer_input,
                    )
        except RuntimeError as error:
            explained = describe_forward_failure(
                self.forward_func, inputs[0], additional_forward_args, error
            )
            if explained is None:
                raise
            raise explained from error
        except AssertionError as error:
            if "did not obtain any outputs" in str(error):
                raise ValueError(
                    "layer was not called by forward_func: it is not on the path from "
                    "the inputs to the output"
                ) from error
            raise
        if len(layer_evals) != 1:
            raise ValueError(
                f"the layer must produce a single tensor; it produced {len(layer_evals)}"
            )
        if self.forward_observer is not None:
            self.forward_observer(inputs, record["outputs"])
        activations = layer_evals[0].detach()
        if activations.dim() != 4:
            raise ValueError(
                "the layer's output must be 4-D (N, K, h, w) for a class-activation "
                f"map; got shape {tuple(activations.shape)}"
            )
        return CamContext(
            inputs=inputs,
            additional_forward_args=additional_forward_args,
            target=record["target"],
            outputs=record["outputs"],
            activations=activations,
            gradients=gradients,
            attribute_to_layer_input=attribute_to_layer_input,
        )

    @classmethod
    def _map(
        cls,
        weights: Tensor,
        activations: Tensor,
        relu_attributions: bool,
        attr_dim_summation: bool = True,
    ) -> Tensor:
        r"""The map from the weights: :meth:`_weighted_sum`, then the optional ReLU."""
        cam = cls._weighted_sum(weights, activations, attr_dim_summation)
        return F.relu(cam) if relu_attributions else cam

    @staticmethod
    def _weighted_sum_many(weights: Tensor, activations: Tensor) -> Tensor:
        r"""
        ``sum_k w_k * A_r,k`` of one example's positional weights ``K x h x w`` with
        ``R`` activations ``R x K x h x w`` (one contraction over the channels);
        ``R x 1 x h x w``. Libra-CAM weights every reference activation this way.
        """
        return torch.einsum("khw,rkhw->rhw", weights, activations).unsqueeze(1)

    @staticmethod
    def _weighted_sum(
        weights: Tensor, activations: Tensor, attr_dim_summation: bool = True
    ) -> Tensor:
        r"""
        ``sum_k w_k * A_k`` for channel (``N x K``) or positional weights; the
        ``N x K x h x w`` terms ``w_k * A_k`` without ``attr_dim_summation``.
        """
        if weights.dim() == 2:
            weights = weights[:, :, None, None]
        weighted = weights.to(activations.dtype) * activations
        if not attr_dim_summation:
            return weighted
        return weighted.sum(dim=1, keepdim=True)


class GradientCamBase(CamBase, GradientAttribution):
    r"""Base of the CAMs whose weights come from ``dy_c/dA`` (one backward to the layer)."""

    uses_gradients = True

    def __init__(
        self,
        forward_func: Callable,
        layer: Module,
        device_ids: Union[None, List[int]] = None,
    ) -> None:
        CamBase.__init__(self, forward_func, layer, device_ids)
        GradientAttribution.__init__(self, forward_func)

    @log_usage()
    def attribute(
        self,
        inputs: Union[Tensor, Tuple[Tensor, ...]],
        target: TargetLike = None,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
        relu_attributions: bool = True,
        return_weights: bool = False,
    ) -> CamOutput:
        r"""
        Args:
            inputs (Tensor or tuple[Tensor, ...]): the image batch ``N x C x H x W``
                        (first, when the model takes several inputs).
            target (int, list[int], Tensor, optional): the class per example, as in
                        Captum. ``None`` takes each example's predicted class, as
                        pytorch-grad-cam and torchcam do. Default: None.
            additional_forward_args (Any, optional): further arguments of
                        ``forward_func``, after the inputs. Default: None.
            attribute_to_layer_input (bool, optional): use the layer's input instead
                        of its output. Default: False.
            relu_attributions (bool, optional): apply ReLU to the map, as the
                        methods' papers do. Default: True.
            return_weights (bool, optional): also return the weights (``N x K``,
                        or ``N x K x h x w`` for positional weights). Default: False.

        Returns:
            *Tensor* or (*Tensor*, *Tensor*): the maps ``N x 1 x h x w`` at layer
            resolution, and the weights when ``return_weights`` is set.

        Examples::

            >>> net = torchvision.models.resnet18().eval()
            >>> cam = LayerGradCamPlusPlus(net, net.layer4)
            >>> maps = cam.attribute(torch.randn(2, 3, 224, 224), target=[3, 7])
            >>> maps.shape
            torch.Size([2, 1, 7, 7])
        """
        return self._attribute_cam(
            inputs,
            target,
            additional_forward_args,
            attribute_to_layer_input,
            relu_attributions,
            return_weights,
        )


class PerturbationCamBase(CamBase, PerturbationAttribution):
    r"""Base of the CAMs whose weights come from extra forward evaluations only."""

    uses_gradients = False

    def __init__(
        self,
        forward_func: Callable,
        layer: Module,
        device_ids: Union[None, List[int]] = None,
    ) -> None:
        CamBase.__init__(self, forward_func, layer, device_ids)
        PerturbationAttribution.__init__(self, forward_func)


class HeadCamBase(PerturbationCamBase):
    r"""
    Base of the CAMs that evaluate only the model's head on modified activations
    (Ablation-CAM; LIFT-CAM and SHAP-CAM build on the same :class:`LayerHead`).

    The head is ``head=`` when given, else split from the model with ``torch.fx``,
    else the whole model with the layer's output substituted; it is checked once
    against the model (``head(A(x)) == f(x)``) before it is used.
    """

    def __init__(
        self,
        forward_func: Callable,
        layer: Module,
        device_ids: Union[None, List[int]] = None,
        head: Optional[Module] = None,
    ) -> None:
        PerturbationCamBase.__init__(self, forward_func, layer, device_ids)
        self.head = LayerHead(forward_func, layer, head)
        self._input_head: Optional[LayerHead] = None

    def _head_for(self, attribute_to_layer_input: bool) -> LayerHead:
        r"""
        The head from the layer's output, or with ``attribute_to_layer_input`` the
        head from the layer's input (the layer, then the head), made on first use.
        """
        if not attribute_to_layer_input:
            return self.head
        if self._input_head is None:
            self._input_head = LayerHead(
                self.forward_func, self.layer, self.head.module, to_layer_input=True
            )
            self._input_head.source = self.head.source
        return self._input_head

    def _verified_head(self, context: CamContext) -> LayerHead:
        r"""The head, bound to this batch and checked against the model's outputs."""
        head = self._head_for(context.attribute_to_layer_input)
        head.bind(context.inputs, context.additional_forward_args)
        head.verify(context.activations, context.outputs)
        return head


__all__ = [
    "CamBase",
    "CamContext",
    "GradientCamBase",
    "HeadCamBase",
    "PerturbationCamBase",
    "batched_target_scores",
    "head_model",
]
