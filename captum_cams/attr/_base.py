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
from typing import Any, Callable, Dict, List, Literal, Optional, Tuple, Union, cast, overload

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
from captum._utils.typing import TargetType
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
    check_additional_forward_args,
    check_finite,
    check_image_batch,
    check_layer_in_model,
    check_output_tensor,
    parameters_without_grad,
    preserved_model_state,
    target_positions,
    target_values,
)
from captum_cams._utils.scores import scores_of
from captum_cams.attr._head import LayerHead
from captum_cams.attr._reshape import (
    ReshapeTransform,
    check_reshape_transform,
    gather_index,
    reshaped,
    restore_layer_values,
)
from captum_cams.attr._smoothing import (
    augmentation_smoothed,
    check_smoothing_options,
    principal_component,
)

CamOutput = Union[Tensor, Tuple[Tensor, Tensor]]


@dataclass
class CamContext:
    r"""
    Everything a method's :meth:`CamBase._weights` may need about one batch.

    Attributes:
        inputs (tuple[Tensor, ...]): the formatted inputs (the image batch first).
        additional_forward_args (tuple): the formatted extra forward arguments.
        target (Tensor): ``(N,)`` class index per example, or ``N x D`` indices
                    into outputs with ``D`` dimensions after the batch (a tuple
                    target, :func:`~captum_cams._utils.guards.target_positions`).
        outputs (Tensor): the model outputs (``N x C`` logits for a classifier),
                    detached.
        activations (Tensor): ``N x K x h x w`` layer activations, detached.
        gradients (Tensor or None): ``dy_c/dA`` of the same shape, for gradient methods.
        options (dict): the method's own keyword arguments of this call.
        attribute_to_layer_input (bool): the activations are the layer's input
                    (Captum's ``attribute_to_layer_input``), not its output.
        raw_activations (Tensor or None): the layer's output (or input) as the
                    layer gave it, before the method's ``reshape_transform``
                    (``activations`` itself without one), detached.

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
    raw_activations: Optional[Tensor] = None

    @property
    def target_scores(self) -> Tensor:
        r"""``(N,)`` the target logits ``y_c`` (the values ``target`` points at)."""
        return target_values(self.outputs, self.target)


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
        target (Tensor): ``(N,)`` class index per example (or ``N x D`` indices,
                    :func:`~captum_cams._utils.guards.target_values`).
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
        return target_values(outputs, target[row_example[rows]])

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
        reshape_transform (Callable, optional): turns the layer's output into
                    ``N x K x h x w`` (pytorch-grad-cam's argument): applied to the
                    captured activations and to the gradient taken with respect to
                    the layer's real output, e.g. :func:`~captum_cams.vit_reshape_transform`
                    for a vision transformer's tokens. Default: None (the output is
                    already ``N x K x h x w``).

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

    #: Turns the layer's output into ``N x K x h x w`` in :meth:`_capture`; None
    #: when it already is (a class attribute too, so a subclass whose own
    #: ``__init__`` does not pass it on still has one).
    reshape_transform: Optional[ReshapeTransform] = None

    def __init__(
        self,
        forward_func: Callable,
        layer: Module,
        device_ids: Union[None, List[int]] = None,
        reshape_transform: Optional[ReshapeTransform] = None,
    ) -> None:
        if not callable(forward_func):
            raise TypeError(f"forward_func must be callable; got {type(forward_func).__name__}")
        check_layer_in_model(forward_func, layer)
        LayerAttribution.__init__(self, forward_func, layer, device_ids)
        self.reshape_transform = check_reshape_transform(reshape_transform)

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
        target: TargetType,
        additional_forward_args: Any,
        attribute_to_layer_input: bool,
        relu_attributions: bool,
        return_weights: bool,
        attr_dim_summation: bool = True,
        grad_kwargs: Optional[Dict[str, Any]] = None,
        eigen_smooth: bool = False,
        aug_smooth: bool = False,
        show_progress: bool = False,
        **options: Any,
    ) -> CamOutput:
        r"""
        The pipeline: capture, :meth:`_weights`, :meth:`_map` (the channel sum of
        :meth:`_terms`), ReLU.

        ``attr_dim_summation=False`` keeps the weighted channels apart
        (``N x K x h x w``, as Captum's ``LayerGradCam``); ``grad_kwargs`` go to
        ``torch.autograd.grad`` (gradient methods only); ``eigen_smooth`` and
        ``aug_smooth`` are pytorch-grad-cam's options (:mod:`._smoothing`);
        ``show_progress`` shows a bar over the passes of the chunked loop;
        ``options`` reach :meth:`_weights` as ``context.options``.
        """
        if not isinstance(attribute_to_layer_input, bool):
            raise TypeError(
                "attribute_to_layer_input must be a bool; got "
                f"{type(attribute_to_layer_input).__name__}"
            )
        check_smoothing_options(eigen_smooth, aug_smooth, return_weights, attr_dim_summation)
        if aug_smooth:

            def maps_of(augmented: Union[Tensor, Tuple[Tensor, ...]], indices: Tensor) -> Tensor:
                return cast(
                    Tensor,
                    self._attribute_cam(
                        augmented, indices, additional_forward_args, attribute_to_layer_input,
                        relu_attributions, False, grad_kwargs=grad_kwargs,
                        eigen_smooth=eigen_smooth, show_progress=show_progress, **options,
                    ),
                )  # fmt: skip

            return augmentation_smoothed(
                maps_of, self.forward_func, inputs, target, additional_forward_args
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
        cam = self._map(
            weights, context.activations, relu_attributions, attr_dim_summation, eigen_smooth
        )
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
        check_additional_forward_args(formatted_args, formatted_inputs[0].shape[0])
        return formatted_inputs, formatted_args

    def _capture(
        self,
        inputs: Tuple[Tensor, ...],
        target: TargetType,
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
            outputs = check_output_tensor(self.forward_func(*args))
            record["target"] = target_positions(target, outputs)
            record["outputs"] = outputs.detach()
            if score != "logit" and outputs.dim() < 2:
                raise ValueError(
                    f'score="{score}" needs class scores (a softmax over dimension 1); '
                    f"the model returns one value per example, shape {tuple(outputs.shape)}"
                )
            return target_values(scores_of(outputs, score), record["target"])

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
        raw_activations = activations = layer_evals[0].detach()
        if self.reshape_transform is not None:
            # as pytorch-grad-cam: the gradient is taken with respect to the layer's
            # real output, then reshaped the same way as the activations
            what = "the layer's input" if attribute_to_layer_input else "the layer's output"
            activations = reshaped(self.reshape_transform, raw_activations, what)
            if gradients is not None:
                gradients = reshaped(self.reshape_transform, gradients, "its gradient")
        elif activations.dim() != 4:
            raise ValueError(
                "the layer's output must be 4-D (N, K, h, w) for a class-activation "
                f"map; got shape {tuple(activations.shape)}: pass reshape_transform= "
                "(captum_cams.vit_reshape_transform for a vision transformer's tokens, "
                "captum_cams.swin_reshape_transform for channels-last Swin stages)"
            )
        return CamContext(
            inputs=inputs,
            additional_forward_args=additional_forward_args,
            target=record["target"],
            outputs=record["outputs"],
            activations=activations,
            gradients=gradients,
            attribute_to_layer_input=attribute_to_layer_input,
            raw_activations=raw_activations,
        )

    @classmethod
    def _terms(cls, weights: Tensor, activations: Tensor) -> Tensor:
        r"""
        The ``N x K x h x w`` terms whose sum over the channels is the map: ``w_k A_k``
        (:meth:`_weighted_sum`); a method whose map is not a weighted sum of the
        activations (element-wise Grad-CAM's ``relu(g_k A_k)``) overrides this.
        """
        return cls._weighted_sum(weights, activations, attr_dim_summation=False)

    @classmethod
    def _map(
        cls,
        weights: Tensor,
        activations: Tensor,
        relu_attributions: bool,
        attr_dim_summation: bool = True,
        eigen_smooth: bool = False,
    ) -> Tensor:
        r"""
        The map from the weights: the channel sum of :meth:`_terms` (or, with
        ``eigen_smooth``, their projection on the first principal direction), then
        the optional ReLU.
        """
        terms = cls._terms(weights, activations)
        if eigen_smooth:
            cam = principal_component(terms)[0]
        elif attr_dim_summation:
            cam = terms.sum(dim=1, keepdim=True)
        else:
            cam = terms
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
        reshape_transform: Optional[ReshapeTransform] = None,
    ) -> None:
        CamBase.__init__(self, forward_func, layer, device_ids, reshape_transform)
        GradientAttribution.__init__(self, forward_func)

    @overload
    def attribute(
        self,
        inputs: Union[Tensor, Tuple[Tensor, ...]],
        target: TargetType = None,
        additional_forward_args: Any = None,
        attribute_to_layer_input: bool = False,
        relu_attributions: bool = True,
        return_weights: Literal[False] = False,
        eigen_smooth: bool = False,
        aug_smooth: bool = False,
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
        eigen_smooth: bool = False,
        aug_smooth: bool = False,
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
        eigen_smooth: bool = False,
        aug_smooth: bool = False,
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
            eigen_smooth (bool, optional): pytorch-grad-cam's ``eigen_smooth``: the
                        map is the projection of the terms ``w_k A_k`` on their first
                        principal direction instead of their sum. Default: False.
            aug_smooth (bool, optional): pytorch-grad-cam's ``aug_smooth``: the mean
                        of the min-max normalised maps of six augmented inputs
                        (horizontal flip or not, times 0.9, 1.0, 1.1), flipped back;
                        maps in ``[0, 1]``, six captures. Default: False.

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
            eigen_smooth=eigen_smooth,
            aug_smooth=aug_smooth,
        )


class PerturbationCamBase(CamBase, PerturbationAttribution):
    r"""Base of the CAMs whose weights come from extra forward evaluations only."""

    uses_gradients = False

    def __init__(
        self,
        forward_func: Callable,
        layer: Module,
        device_ids: Union[None, List[int]] = None,
        reshape_transform: Optional[ReshapeTransform] = None,
    ) -> None:
        CamBase.__init__(self, forward_func, layer, device_ids, reshape_transform)
        PerturbationAttribution.__init__(self, forward_func)


class HeadCamBase(PerturbationCamBase):
    r"""
    Base of the CAMs that evaluate only the model's head on modified activations
    (Ablation-CAM; LIFT-CAM and SHAP-CAM build on the same :class:`LayerHead`).

    The head is ``head=`` when given, else split from the model with ``torch.fx``,
    else the whole model with the layer's output substituted; it is checked once
    against the model (``head(A(x)) == f(x)``) before it is used. It always takes the
    layer's real output; with a ``reshape_transform`` the modified ``N x K x h x w``
    activations are put back into it (:func:`~captum_cams.attr._reshape.gather_index`).
    """

    def __init__(
        self,
        forward_func: Callable,
        layer: Module,
        device_ids: Union[None, List[int]] = None,
        head: Optional[Module] = None,
        reshape_transform: Optional[ReshapeTransform] = None,
    ) -> None:
        PerturbationCamBase.__init__(self, forward_func, layer, device_ids, reshape_transform)
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

    def _verified_layer_head(self, context: CamContext) -> LayerHead:
        r"""
        The head on the layer's real output (or input), bound to this batch and
        checked against the model's outputs.
        """
        head = self._head_for(context.attribute_to_layer_input)
        head.bind(context.inputs, context.additional_forward_args)
        raw = context.raw_activations
        head.verify(context.activations if raw is None else raw, context.outputs)
        return head

    def _verified_head(self, context: CamContext) -> Callable[[Tensor, Tensor], Tensor]:
        r"""
        The head on ``context.activations`` (``M x K x h x w`` rows and each row's
        example, as :class:`LayerHead`), bound to this batch and checked against the
        model's outputs: :meth:`_verified_layer_head`, behind the inverse of the
        ``reshape_transform`` where there is one.
        """
        head = self._verified_layer_head(context)
        if self.reshape_transform is None:
            return head
        raw = context.raw_activations
        assert raw is not None
        index = self._restoring_index(raw)

        def reshaped_head(activations: Tensor, example_index: Tensor) -> Tensor:
            base = raw[example_index.to(raw.device)]
            return head(restore_layer_values(activations, base, index), example_index)

        return reshaped_head

    def _restoring_index(self, raw: Tensor) -> Tensor:
        r"""
        :func:`~captum_cams.attr._reshape.gather_index` of the transform on the layer's
        output ``raw``, or a one-line refusal naming what to pass.
        """
        assert self.reshape_transform is not None
        index = gather_index(self.reshape_transform, raw)
        if index is None:
            raise ValueError(
                f"{type(self).__name__} evaluates the model's head on modified activations, "
                "so it must put N x K x h x w maps back into the layer's output: pass a "
                "reshape_transform that only selects and reorders the output's values (as "
                "captum_cams.vit_reshape_transform and swin_reshape_transform do); this one "
                "computes new values, repeats some or mixes examples"
            )
        return index


__all__ = [
    "CamBase",
    "CamContext",
    "GradientCamBase",
    "HeadCamBase",
    "PerturbationCamBase",
    "batched_target_scores",
    "head_model",
]
