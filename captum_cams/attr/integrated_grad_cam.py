#!/usr/bin/env python3
import warnings
from typing import Any, Callable, List, Literal, Optional, Tuple, Union, overload

import torch
from captum._utils.typing import TargetType
from captum.attr._utils.approximation_methods import (
    SUPPORTED_METHODS,
    approximation_parameters,
)
from captum.log import log_usage
from torch import Tensor
from torch.nn import Module

from captum_cams._utils.baselines import parse_baselines
from captum_cams._utils.batching import evaluate_in_chunks, progress_bar, take_examples
from captum_cams._utils.guards import (
    check_positive_int,
    format_target_positions,
    preserved_model_state,
    target_values,
)
from captum_cams.attr._base import CamContext, GradientCamBase
from captum_cams.attr._reshape import ReshapeTransform

BaselineInput = Union[None, int, float, Tensor]

#: Captum's Riemann builders assert ``n_steps > 1``; these one-step rules are still
#: well defined (one point, step size 1) and give Grad-CAM-like single evaluations.
_ONE_STEP_ALPHA = {"riemann_left": 0.0, "riemann_middle": 0.5, "riemann_right": 1.0}


def _step_sizes_and_alphas(method: str, n_steps: int) -> Tuple[List[float], List[float]]:
    r"""Captum's step sizes and alphas, plus the one-step Riemann rules."""
    if n_steps == 1 and method in _ONE_STEP_ALPHA:
        return [1.0], [_ONE_STEP_ALPHA[method]]
    step_sizes_func, alphas_func = approximation_parameters(method)
    return step_sizes_func(n_steps), alphas_func(n_steps)


def _format_baselines(baselines: BaselineInput, inputs: Tensor) -> Tensor:
    r"""
    The baselines as an ``N x B x C x H x W`` tensor (``B`` baselines per example).

    None is zeros, a number a constant image; a tensor broadcastable to the inputs
    (``N`` or ``1`` rows) is one baseline per example; a 5-D tensor
    ``(N or 1) x B x C x H x W`` (other dimensions broadcastable) holds ``B``
    baselines per example.
    """
    num, channels, height, width = inputs.shape
    parsed = parse_baselines(baselines, names=(), finite=True)
    if parsed is None:
        return torch.zeros_like(inputs).unsqueeze(1)
    if isinstance(parsed, float):
        return torch.full_like(inputs, parsed).unsqueeze(1)
    assert isinstance(parsed, Tensor)
    baselines = parsed.to(dtype=inputs.dtype, device=inputs.device)
    if baselines.dim() <= 4:
        batch_shape = baselines.shape[0] if baselines.dim() == 4 else 1
        if batch_shape not in (1, num):
            raise ValueError(
                f"baselines has {batch_shape} rows but inputs has {num} examples; pass "
                "one baseline per example (N or 1 rows), or several per example as a "
                f"5-D tensor (N or 1) x B x C x H x W; got shape {tuple(baselines.shape)}"
            )
        target_shape: Tuple[int, ...] = (num, 1, channels, height, width)
        baselines = baselines.reshape((1,) * (4 - baselines.dim()) + tuple(baselines.shape))
        baselines = baselines.unsqueeze(1)
    elif baselines.dim() == 5:
        if baselines.shape[0] not in (1, num) or baselines.shape[1] < 1:
            raise ValueError(
                "baselines given as a 5-D tensor must have shape (N or 1) x B x C x H x W "
                f"with N = {num} and B >= 1; got shape {tuple(baselines.shape)}"
            )
        target_shape = (num, baselines.shape[1], channels, height, width)
    else:
        raise ValueError(
            "baselines must be broadcastable to the inputs (at most 4-D) or a 5-D tensor "
            f"(N or 1) x B x C x H x W; got shape {tuple(baselines.shape)}"
        )
    try:
        return baselines.expand(target_shape)
    except RuntimeError:
        raise ValueError(
            f"baselines of shape {tuple(baselines.shape)} cannot be broadcast to the inputs "
            f"of shape {tuple(inputs.shape)}"
        ) from None


class LayerIntegratedGradCam(GradientCamBase):
    r"""
    Integrated Grad-CAM: Grad-CAM's gradient-weighted activations integrated along
    the straight path from a baseline ``x'`` to the input ``x``.

    With ``γ(α) = x' + α (x − x')``, the channel weights
    ``w_k(γ) = mean_ij ∂y_c/∂A_k,ij(γ)`` and the quadrature points ``α_t`` and step
    sizes ``s_t`` of ``method``, the map is

    ``M = Σ_t s_t · relu( Σ_k w_k(γ(α_t)) · (A_k(γ(α_t)) − A_k(x')) )``

    (the paper's eq. 6 with ``method="riemann_right"``: ``α_t = t/m``, ``s_t = 1/m``,
    ``t = 1..m``). With several baselines per example the maps of the baselines
    are averaged.

    The authors' notebook differs from the paper: it has no ``− A(x')`` term, takes
    ``α = 0, 1/m, …, (m−1)/m`` and a plain sum (no ``1/m``). Reproduce it with
    ``subtract_baseline_activation=False, method="riemann_left"`` and multiply the
    result by ``n_steps`` (a constant factor, which min-max normalisation removes).

    Cost: ``n_steps`` forward + backward passes to the layer (one per baseline and
    example), in chunks of ``internal_batch_size`` rows (by default as many as the
    pass budget allows, :func:`~captum_cams.get_pass_budget`), plus one forward at the
    inputs when ``target`` is None (to find the predicted class) and, with
    ``subtract_baseline_activation``, one at the baselines.

    Paper: Sattarzadeh et al., "Integrated Grad-CAM: Sensitivity-Aware Visual
    Explanation of Deep Convolutional Networks via Integrated Gradient-Based
    Scoring", ICASSP 2021. https://arxiv.org/abs/2102.07805

    Args:
        forward_func (Callable or torch.nn.Module): the model or any modification of it,
                    returning ``N x num_classes`` outputs.
        layer (torch.nn.Module): the convolutional layer whose output ``A``
                    (``N x K x h x w``) the map is computed on.
        device_ids (list[int], optional): device ids for a model wrapped in
                    ``DataParallel``, as in Captum. Default: None.
        reshape_transform (Callable, optional): turns the layer's output into
                    ``N x K x h x w`` (pytorch-grad-cam's argument), applied to the
                    activations and to their gradient, e.g.
                    :func:`~captum_cams.vit_reshape_transform` for a vision
                    transformer's tokens. Default: None.

    Examples::

        >>> net = torchvision.models.resnet18().eval()
        >>> cam = LayerIntegratedGradCam(net, net.layer4)
        >>> maps = cam.attribute(torch.randn(2, 3, 224, 224), target=[3, 7],
        ...                      n_steps=20, internal_batch_size=8)
        >>> maps.shape
        torch.Size([2, 1, 7, 7])
    """

    def __init__(
        self,
        forward_func: Callable,
        layer: Module,
        device_ids: Union[None, List[int]] = None,
        reshape_transform: Optional[ReshapeTransform] = None,
    ) -> None:
        GradientCamBase.__init__(self, forward_func, layer, device_ids, reshape_transform)

    def _weights(self, context: CamContext) -> Tensor:
        r"""Grad-CAM's weights at one path point, ``w_k = mean_ij ∂y_c/∂A_k,ij``."""
        assert context.gradients is not None
        return context.gradients.mean(dim=(2, 3))

    def has_convergence_delta(self) -> bool:
        r"""True: ``return_convergence_delta`` gives Captum's path-integral delta."""
        return True

    @overload  # type: ignore[override]  # LayerIntegratedGradients' arguments, not the Grad-CAM family's
    def attribute(
        self,
        inputs: Union[Tensor, Tuple[Tensor]],
        baselines: BaselineInput = None,
        target: TargetType = None,
        additional_forward_args: Any = None,
        n_steps: int = 50,
        method: str = "riemann_right",
        internal_batch_size: Optional[int] = None,
        return_convergence_delta: Literal[False] = False,
        attribute_to_layer_input: bool = False,
        relu_attributions: bool = True,
        subtract_baseline_activation: bool = True,
        show_progress: bool = False,
    ) -> Tensor: ...

    @overload
    def attribute(
        self,
        inputs: Union[Tensor, Tuple[Tensor]],
        baselines: BaselineInput = None,
        target: TargetType = None,
        additional_forward_args: Any = None,
        n_steps: int = 50,
        method: str = "riemann_right",
        internal_batch_size: Optional[int] = None,
        *,
        return_convergence_delta: Literal[True],
        attribute_to_layer_input: bool = False,
        relu_attributions: bool = True,
        subtract_baseline_activation: bool = True,
        show_progress: bool = False,
    ) -> Tuple[Tensor, Tensor]: ...

    @log_usage(part_of_slo=True)
    def attribute(
        self,
        inputs: Union[Tensor, Tuple[Tensor]],
        baselines: BaselineInput = None,
        target: TargetType = None,
        additional_forward_args: Any = None,
        n_steps: int = 50,
        method: str = "riemann_right",
        internal_batch_size: Optional[int] = None,
        return_convergence_delta: bool = False,
        attribute_to_layer_input: bool = False,
        relu_attributions: bool = True,
        subtract_baseline_activation: bool = True,
        show_progress: bool = False,
    ) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        r"""
        Args:
            inputs (Tensor or tuple[Tensor]): the image batch ``N x C x H x W``. The
                        path runs over this tensor only; further model inputs go
                        into ``additional_forward_args`` (held fixed along the path).
            baselines (scalar, Tensor, optional): the path's start ``x'``:

                        - None: zeros;
                        - a number: a constant image;
                        - a tensor broadcastable to ``inputs`` with ``N`` or ``1``
                          rows (e.g. ``N x C x H x W``, ``1 x C x H x W``,
                          ``C x 1 x 1``): one baseline per example;
                        - a 5-D tensor ``(N or 1) x B x C x H x W`` (other
                          dimensions broadcastable): ``B`` baselines per example,
                          whose maps are averaged.

                        Default: None.
            target (int, list[int], Tensor, optional): the class per example, as in
                        Captum. None takes each example's predicted class at the
                        input ``x`` (the same class along the whole path).
                        Default: None.
            additional_forward_args (Any, optional): further arguments of
                        ``forward_func``, after the inputs; tensors whose first
                        dimension is ``N`` follow their example. Default: None.
            n_steps (int, optional): the number of points on the path. Default: 50.
            method (str, optional): one of Captum's approximation methods,
                        ``"riemann_right"`` (the paper), ``"riemann_left"``,
                        ``"riemann_middle"``, ``"riemann_trapezoid"``,
                        ``"gausslegendre"``. ``n_steps=1`` is allowed for all but
                        the trapezoid rule. Default: ``"riemann_right"``.
            internal_batch_size (int, optional): rows per forward/backward pass,
                        as in Captum (a row is one example at one path point for
                        one baseline; whole path points per pass, at least one);
                        None: as many rows as the pass budget allows
                        (:func:`~captum_cams.get_pass_budget`). The result does not
                        depend on it. Default: None.
            return_convergence_delta (bool, optional): also return, per example,
                        Captum's delta of the path integral, as
                        ``LayerIntegratedGradients`` computes it: the sum of the
                        returned map over its positions minus
                        ``y_c(x) - y_c(x')`` (averaged over the baselines). The map
                        is Grad-CAM's weighting of the path, not the gradient of
                        every neuron, so the delta is not zero in general; for a
                        head that is global average pooling then a linear layer,
                        and activations linear along the path, it is
                        ``(Σ_t s_t α_t − 1) · (y_c(x) − y_c(x'))`` (tested), e.g.
                        ``−(1 − 1/m)/2 · Δy`` for the paper's right Riemann sum.
                        Default: False.
            attribute_to_layer_input (bool, optional): use the layer's input instead
                        of its output. Default: False.
            relu_attributions (bool, optional): apply the paper's ReLU to each path
                        point's map before the sum. False gives the signed
                        ``Σ_t s_t Σ_k w_k(γ_t) (A_k(γ_t) − A_k(x'))`` (no ReLU anywhere).
                        Default: True.
            subtract_baseline_activation (bool, optional): subtract ``A(x')``, as
                        the paper does; False drops the term, as the authors'
                        notebook does (see the class docstring). Default: True.
            show_progress (bool, optional): a progress bar over the path points.
                        Default: False.

        Returns:
            *Tensor* or (*Tensor*, *Tensor*): the maps ``N x 1 x h x w`` at layer
            resolution, in the inputs' dtype, and the ``(N,)`` delta with
            ``return_convergence_delta``. There is no ``return_weights``: the
            channel weights change along the path, so no single ``N x K`` weight
            vector produces the map.

        Examples::

            >>> cam = LayerIntegratedGradCam(net, net.layer4)
            >>> x = torch.randn(2, 3, 224, 224)
            >>> maps = cam.attribute(x, baselines=torch.zeros(1, 3, 224, 224),
            ...                      target=[3, 7], n_steps=50)
            >>> # eight blurred-image baselines per example, maps averaged over them
            >>> several = torch.rand(1, 8, 3, 224, 224)
            >>> maps = cam.attribute(x, baselines=several, target=[3, 7])
        """
        formatted_inputs, formatted_args = self._format_cam_inputs(inputs, additional_forward_args)
        if len(formatted_inputs) != 1:
            raise ValueError(
                "inputs must be one image tensor for Integrated Grad-CAM; pass further "
                "model inputs through additional_forward_args (held fixed along the path)"
            )
        image = formatted_inputs[0].detach()
        if not isinstance(method, str) or method not in SUPPORTED_METHODS:
            raise ValueError(f"method must be one of {SUPPORTED_METHODS}; got {method!r}")
        check_positive_int(n_steps, "n_steps", allow_none=False)
        if method == "riemann_trapezoid" and n_steps < 2:
            raise ValueError(
                f"n_steps must be at least 2 for method 'riemann_trapezoid'; got {n_steps}"
            )
        check_positive_int(internal_batch_size, "internal_batch_size")
        paths_start = _format_baselines(baselines, image)
        num_examples, num_baselines = paths_start.shape[:2]

        bar = progress_bar(show_progress, "LayerIntegratedGradCam")
        with bar, preserved_model_state(self.forward_func):
            if target is None:
                # the predicted class at x: one forward at the input
                target_idx = self._capture(
                    (image,), None, formatted_args, attribute_to_layer_input, False
                ).target
            else:
                # no forward needed; every later pass checks the class range
                target_idx = format_target_positions(target, num_examples, image.device)
            rows = torch.arange(num_examples, device=image.device).repeat(num_baselines)
            start = paths_start.transpose(0, 1).reshape(-1, *image.shape[1:])
            if subtract_baseline_activation:
                start_activations = self._capture(
                    (start,),
                    target_idx[rows],
                    take_examples(formatted_args, rows, num_examples),
                    attribute_to_layer_input,
                    False,
                ).activations
            else:
                start_activations = None
            total = self._path_sum(
                image=image,
                start=start,
                rows=rows,
                target_idx=target_idx,
                additional_forward_args=formatted_args,
                attribute_to_layer_input=attribute_to_layer_input,
                relu_attributions=relu_attributions,
                start_activations=start_activations,
                step_sizes_and_alphas=_step_sizes_and_alphas(method, n_steps),
                internal_batch_size=internal_batch_size,
            )
            # rows are baseline-major: average the B baselines of each example
            maps = total.reshape(num_baselines, num_examples, *total.shape[1:]).mean(dim=0)
            if not return_convergence_delta:
                return maps
            # y_c at x and at every baseline, as Captum's delta takes them
            both = torch.cat([rows[:num_examples], rows])  # rows[:N] is 0..N-1
            with torch.no_grad():
                ends = self.forward_func(
                    torch.cat([image, start]),
                    *take_examples(formatted_args, both, num_examples),
                )
        scores = target_values(ends.detach(), target_idx[both])
        end, start_scores = scores[:num_examples], scores[num_examples:]
        start_mean = start_scores.reshape(num_baselines, num_examples).mean(dim=0)
        delta = maps.sum(dim=(1, 2, 3)) - (end - start_mean).to(maps.dtype)
        return maps, delta

    def _path_sum(
        self,
        image: Tensor,
        start: Tensor,
        rows: Tensor,
        target_idx: Tensor,
        additional_forward_args: Tuple[Any, ...],
        attribute_to_layer_input: bool,
        relu_attributions: bool,
        start_activations: Optional[Tensor],
        step_sizes_and_alphas: Tuple[List[float], List[float]],
        internal_batch_size: Optional[int],
    ) -> Tensor:
        r"""
        ``Σ_t s_t · map(γ(α_t))`` per (baseline, example) row, the path points
        evaluated by the chunked loop in step-major order (point ``t`` of row ``r``
        is row ``t · R + r``). An integer ``internal_batch_size`` keeps Captum's
        meaning: whole steps per pass, ``max(1, internal_batch_size // R)`` of them;
        None sizes the passes from the pass budget, whole steps or not.
        """
        step_sizes, alphas = step_sizes_and_alphas
        num_rows, num_examples = rows.shape[0], image.shape[0]
        alpha = torch.tensor(alphas, dtype=image.dtype, device=image.device)
        step = torch.tensor(step_sizes, dtype=image.dtype, device=image.device)

        def weighted_maps(points: Tensor) -> Tensor:
            steps = torch.div(points, num_rows, rounding_mode="floor")
            row = points - steps * num_rows
            begin = start[row]
            path = begin + alpha[steps].view(-1, 1, 1, 1) * (image[rows[row]] - begin)
            examples = rows[row]
            context = self._capture(
                (path,),
                target_idx[examples],
                take_examples(additional_forward_args, examples, num_examples),
                attribute_to_layer_input,
                True,
            )
            # the core's override points: Grad-CAM's weights at the path point,
            # weighting and ReLU of the map in CamBase._map
            weights = self._weights(context)
            activations = context.activations
            if start_activations is not None:
                activations = activations - start_activations[row]
            maps = self._map(weights, activations, relu_attributions)
            return step[steps].view(-1, 1, 1, 1).to(maps.dtype) * maps

        chunk = internal_batch_size
        if chunk is not None:
            if chunk < num_rows:
                warnings.warn(
                    "Internal batch size cannot be less than the number of input examples. "
                    f"Defaulting to internal batch size of {num_rows} equal to the number "
                    "of examples.",
                    stacklevel=4,
                )
            chunk = num_rows * max(1, chunk // num_rows)
        weighted = evaluate_in_chunks(
            weighted_maps,
            len(alphas) * num_rows,
            chunk,
            image.device,
            row=image[0],
            model=self.forward_func,
        )
        return weighted.reshape(len(alphas), num_rows, *weighted.shape[1:]).sum(dim=0)
