#!/usr/bin/env python3
r"""Every method on every torchvision classification CNN, timm's CNNs and vision
transformers and Hugging Face models: the method x architecture matrix.

For each architecture of :data:`ARCHITECTURES` (torchvision builders, random weights
from ``torch.manual_seed(0)``, eval mode, float32; timm models (``pretrained=False``)
and Hugging Face models (built from their configs, through
:class:`~captum_cams.OutputAdapter`) too when those packages are installed) at its
recommended layer, with its ``reshape_transform`` where the layer's output is not
``N x K x h x w`` (ViT's tokens, Swin's channels-last map), ``--batch`` random
images of the architecture's small input size (:attr:`Architecture.size`, 64 px
where the net allows it) and
the first example's predicted class as target for all, every method of
:data:`METHODS` is built and called once, and the cell is classified:

* **ok** — it returned, and every check passed: finite maps of the right shape
  (``N x 1 x h x w`` at the layer's resolution, the input's for Libra-CAM); the map
  equals ``relu(sum_k w_k A_k)`` rebuilt from ``return_weights`` with ``A`` captured
  by an own forward hook and reshaped by the architecture's transform (relative
  1e-4, absolute 1e-5 of the map's scale), where
  the method returns weights; for the head methods (Ablation-, LIFT-, SHAP-CAM) a
  second call on the same object gives the same map; for LIFT-CAM completeness,
  ``sum_k alpha_k = F_c(A) - F_c(0)`` with ``F_c(0)`` from the whole model with the
  layer's output replaced by zeros (relative 1e-4); the model's hooks,
  ``requires_grad`` flags, ``.grad``, training flags, parameters and buffers are as
  before;
* **refused** — the method raised a ``ValueError``/``TypeError`` whose message says
  what to pass instead (``head=``, ``fixed_layer_norm=True``, ...): it is printed;
* **wrong** — it returned but a check failed (which one is printed);
* **error** — any other exception.

A LIFT-CAM refusal that names ``fixed_layer_norm=True`` is followed by a second try
with it, reported in the same cell.

Method settings (chosen to keep the run short on 2 shared cores): Score-CAM
``internal_batch_size=64``; SHAP-CAM ``num_permutations=2``; Integrated Grad-CAM
``n_steps=4``; Libra-CAM a library of 3 random-input references per target class
(``internal_batch_size=64``), default ``score="probability"`` (a warning about a
saturated probability is reported in the cell); SS-CAM and IS-CAM ``num_samples=1``
(``internal_batch_size=64``: each then costs what Score-CAM costs, ``K·N`` whole-model
passes); Smooth Grad-CAM++ ``num_samples=2``. The maps of element-wise Grad-CAM,
Eigen-CAM and Eigen-Grad-CAM are rebuilt by their own rules (:data:`REBUILD`):
``sum_k relu(g_k A_k)``, ``relu(sum_k v_k (A_k - mean A_k))``, and the ReLU of the
first-principal-component projection of ``g * A`` (torch's SVD, the same sign rule).
A cell that no run made (``--render`` of several files) reads "not run".

The times are the wall-clock seconds of the first ``attribute`` call, one thread, on
a machine shared with other jobs: only their order of magnitude means anything.

A second study (``--layer-norm``) measures LIFT-CAM on ConvNeXt-Tiny's LayerNorm
head: with ``fixed_layer_norm=True`` (scale held fixed) against gradient x activation
through the real LayerNorm, for completeness and cosine similarity to SHAP-CAM
(``--layer-norm-permutations`` permutations), over ``--layer-norm-images`` images.

Run ``python benchmarks/architectures.py --help``; benchmarks/README.md has the commands.
"""

import argparse
import json
import math
import time
import traceback
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch import Tensor


@dataclass(frozen=True)
class Architecture:
    r"""A classifier builder, the layer recommended for CAMs on it, a small input size."""

    name: str
    build: Callable[[], nn.Module]
    layer: str  # qualified name inside the built model
    size: int = 64
    python: str = ""  # how to pick the layer in code, for the README
    reshape_transform: Optional[Callable[[Tensor], Tensor]] = None

    @property
    def pick(self) -> str:
        return self.python or "model." + self.layer


def _torchvision(name: str, **kwargs: Any) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import torchvision

        return torchvision.models.get_model(name, weights=None, **kwargs)

    return build


def _normalised_resnet18() -> nn.Module:
    import torchvision
    from torchvision import transforms

    normalise = transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    return nn.Sequential(normalise, torchvision.models.resnet18(weights=None))


#: torchvision's classification CNNs at the layer practitioners pick (the last
#: convolutional stage), plus a ``Sequential(Normalize, resnet18)`` wrapper.
ARCHITECTURES: Tuple[Architecture, ...] = (
    Architecture("resnet18", _torchvision("resnet18"), "layer4"),
    Architecture("resnet50", _torchvision("resnet50"), "layer4"),
    Architecture("resnext50_32x4d", _torchvision("resnext50_32x4d"), "layer4"),
    Architecture("wide_resnet50_2", _torchvision("wide_resnet50_2"), "layer4"),
    Architecture("vgg16_bn", _torchvision("vgg16_bn"), "features.43", python="model.features[-1]"),
    Architecture(
        "densenet121", _torchvision("densenet121"), "features.norm5", python="model.features[-1]"
    ),
    Architecture(
        "mobilenet_v2", _torchvision("mobilenet_v2"), "features.18", python="model.features[-1]"
    ),
    Architecture(
        "mobilenet_v3_large",
        _torchvision("mobilenet_v3_large"),
        "features.16",
        python="model.features[-1]",
    ),
    Architecture(
        "efficientnet_b0",
        _torchvision("efficientnet_b0"),
        "features.8",
        python="model.features[-1]",
    ),
    Architecture(
        "convnext_tiny", _torchvision("convnext_tiny"), "features.7", python="model.features[-1]"
    ),
    Architecture("regnet_y_400mf", _torchvision("regnet_y_400mf"), "trunk_output"),
    Architecture(
        "squeezenet1_1", _torchvision("squeezenet1_1"), "features.12", python="model.features[-1]"
    ),
    Architecture(
        "googlenet", _torchvision("googlenet", aux_logits=False, init_weights=True), "inception5b"
    ),
    Architecture(
        "inception_v3",
        _torchvision("inception_v3", aux_logits=False, init_weights=True),
        "Mixed_7c",
        size=96,
    ),
    Architecture("shufflenet_v2_x1_0", _torchvision("shufflenet_v2_x1_0"), "conv5"),
    Architecture("mnasnet1_0", _torchvision("mnasnet1_0"), "layers.16", python="model.layers[-1]"),
    Architecture(
        "Sequential(Normalize, resnet18)",
        _normalised_resnet18,
        "1.layer4",
        python="model[1].layer4",
    ),
)


def _timm_architectures() -> Tuple[Architecture, ...]:
    r"""timm's models (random weights), the transformers built for 64 px inputs."""
    try:
        import timm
    except ImportError:
        return ()
    from captum_cams import swin_reshape_transform, vit_reshape_transform

    def build(name: str, **options: Any) -> Callable[[], nn.Module]:
        return lambda: timm.create_model(name, pretrained=False, **options)

    return (
        Architecture("timm resnet18", build("resnet18"), "layer4"),
        Architecture("timm efficientnet_b0", build("efficientnet_b0"), "conv_head"),
        Architecture(
            "timm convnext_nano", build("convnext_nano"), "stages.3", python="model.stages[-1]"
        ),
        Architecture("timm regnety_002", build("regnety_002"), "s4"),
        Architecture(
            "timm mobilenetv3_small_100",
            build("mobilenetv3_small_100"),
            "blocks.5",
            python="model.blocks[-1]",
        ),
        Architecture(
            "timm vit_tiny_patch16_224 (img_size=64)",
            build("vit_tiny_patch16_224", img_size=64),
            "blocks.11.norm1",
            python="model.blocks[-1].norm1",
            reshape_transform=vit_reshape_transform,
        ),
        Architecture(
            "timm swin_tiny_patch4_window7_224 (img_size=64)",
            build("swin_tiny_patch4_window7_224", img_size=64),
            "norm",
            reshape_transform=swin_reshape_transform,
        ),
    )


def _hugging_face_architectures() -> Tuple[Architecture, ...]:
    r"""Hugging Face's ResNet-50 and ConvNeXt-T (default configs, 1000 classes, random
    weights) through :class:`~captum_cams.OutputAdapter` (which returns ``.logits``)."""
    try:
        import transformers
    except ImportError:
        return ()
    from captum_cams import OutputAdapter

    def build(config: str, model: str) -> Callable[[], nn.Module]:
        def adapted() -> nn.Module:
            built = getattr(transformers, model)(getattr(transformers, config)(num_labels=1000))
            return OutputAdapter(built)

        return adapted

    return (
        Architecture(
            "HF ResNetForImageClassification (ResNet-50)",
            build("ResNetConfig", "ResNetForImageClassification"),
            "model.resnet.encoder.stages.3",
            python="hf.resnet.encoder.stages[-1]",
        ),
        Architecture(
            "HF ConvNextForImageClassification (ConvNeXt-T)",
            build("ConvNextConfig", "ConvNextForImageClassification"),
            "model.convnext.encoder.stages.3",
            python="hf.convnext.encoder.stages[-1]",
        ),
    )


def all_architectures() -> Tuple[Architecture, ...]:
    r"""torchvision's, then timm's and Hugging Face's where installed."""
    return ARCHITECTURES + _timm_architectures() + _hugging_face_architectures()


METHODS: Tuple[str, ...] = (
    "Grad-CAM",
    "Grad-CAM++",
    "XGrad-CAM",
    "Layer-CAM",
    "Ablation-CAM",
    "Score-CAM",
    "LIFT-CAM",
    "SHAP-CAM",
    "IG-CAM",
    "Libra-CAM",
    "HiResCAM",
    "Grad-CAM EW",
    "Eigen-CAM",
    "Eigen-Grad-CAM",
    "SS-CAM",
    "IS-CAM",
    "Smooth Grad-CAM++",
    "Relevance-CAM",
)
HEAD_METHODS = ("Ablation-CAM", "LIFT-CAM", "SHAP-CAM", "Relevance-CAM")
#: How each method's map is rebuilt from ``return_weights`` and the captured ``A``
#: (default: ``relu(sum_k w_k A_k)``).
REBUILD: Dict[str, Callable[[Tensor, Tensor], Tensor]] = {}
RTOL, ATOL = 1e-4, 1e-5


def _rebuild_element_wise(weights: Tensor, activations: Tensor) -> Tensor:
    return torch.relu(weights * activations).sum(dim=1, keepdim=True)


def _rebuild_eigen(weights: Tensor, activations: Tensor) -> Tensor:
    centred = activations - activations.mean(dim=(2, 3), keepdim=True)
    return torch.relu((weights[:, :, None, None] * centred).sum(dim=1, keepdim=True))


def _rebuild_eigen_grad(weights: Tensor, activations: Tensor) -> Tensor:
    # the first principal direction of g * A by torch's SVD, the sign rule of the class
    terms = (weights * activations).flatten(2).transpose(1, 2)
    centred = terms - terms.mean(dim=1, keepdim=True)
    direction = torch.linalg.svd(centred, full_matrices=False)[2][:, 0]
    projection = (centred @ direction.unsqueeze(2)).squeeze(2)
    flip = projection.amin(dim=1).abs() > projection.amax(dim=1).abs()
    projection = torch.where(flip[:, None], -projection, projection)
    return torch.relu(projection).view(activations.shape[0], 1, *activations.shape[-2:])


REBUILD.update(
    {
        "Grad-CAM EW": _rebuild_element_wise,
        "Eigen-CAM": _rebuild_eigen,
        "Eigen-Grad-CAM": _rebuild_eigen_grad,
    }
)


# ---------------------------------------------------------------------- model state
def model_state(model: nn.Module) -> Dict[str, Any]:
    r"""What a method must leave as it was: hooks, flags, gradients, modes, values."""
    return {
        "hooks": sum(
            len(m._forward_hooks)
            + len(m._forward_pre_hooks)
            + len(m._backward_hooks)
            + len(m._backward_pre_hooks)
            for m in model.modules()
        ),
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grad": [p.grad is None for p in model.parameters()],
        "training": [m.training for m in model.modules()],
        "values": [t.detach().clone() for t in model.state_dict().values()],
    }


def state_changes(before: Dict[str, Any], after: Dict[str, Any]) -> List[str]:
    changed = [
        key for key in ("hooks", "requires_grad", "grad", "training") if before[key] != after[key]
    ]
    if any(not torch.equal(a, b) for a, b in zip(before["values"], after["values"])):
        changed.append("parameters/buffers")
    return changed


def capture(
    model: nn.Module,
    layer: nn.Module,
    x: Tensor,
    reshape_transform: Optional[Callable[[Tensor], Tensor]] = None,
) -> Tuple[Tensor, Tensor]:
    r"""
    ``(A, f(x))`` from an own forward hook (a copy, before anything downstream runs),
    ``A`` reshaped by ``reshape_transform`` when given.
    """
    store: Dict[str, Tensor] = {}

    def hook(_m: nn.Module, _i: Any, out: Tensor) -> None:
        store["A"] = out.detach().clone()

    handle = layer.register_forward_hook(hook)
    try:
        with torch.no_grad():
            outputs = model(x)
    finally:
        handle.remove()
    if reshape_transform is not None:
        return reshape_transform(store["A"]), outputs
    return store["A"], outputs


def zero_layer_outputs(model: nn.Module, layer: nn.Module, x: Tensor) -> Tensor:
    r"""The model's outputs with the layer's output replaced by zeros: ``F(0)``."""
    handle = layer.register_forward_hook(lambda _m, _i, out: torch.zeros_like(out))
    try:
        with torch.no_grad():
            return model(x)
    finally:
        handle.remove()


def tiny_library(
    model: nn.Module,
    layer: nn.Module,
    x: Tensor,
    target: Tensor,
    classes: int,
    reshape_transform: Optional[Callable[[Tensor], Tensor]] = None,
) -> Any:
    r"""A :class:`ReferenceLibrary` of 3 random-input activations per target class."""
    from captum_cams import ReferenceLibrary

    generator = torch.Generator().manual_seed(7)
    references = torch.randn((3,) + tuple(x.shape[1:]), generator=generator)
    activations, _ = capture(model, layer, references, reshape_transform)
    indices = [torch.empty(0, dtype=torch.long) for _ in range(classes)]
    for label in target.unique().tolist():
        indices[label] = torch.arange(3)
    return ReferenceLibrary(activations, indices, tau=1.0, max_per_class=3)


# ---------------------------------------------------------------------- one cell
def _build_and_call(
    method: str,
    model: nn.Module,
    layer: nn.Module,
    x: Tensor,
    target: Tensor,
    reshape_transform: Optional[Callable[[Tensor], Tensor]] = None,
    **extra: Any,
) -> Tuple[Any, Callable[[], Any]]:
    r"""Builds the method and returns ``(its object, a zero-argument attribute call)``."""
    import captum_cams as cc

    extra = dict(extra, reshape_transform=reshape_transform)

    simple = {
        "Grad-CAM": cc.LayerGradCam,
        "Grad-CAM++": cc.LayerGradCamPlusPlus,
        "XGrad-CAM": cc.LayerXGradCam,
        "Layer-CAM": cc.LayerCam,
    }
    if method in simple:
        cam = simple[method](model, layer, **extra)
        # every map ReLU'd, as the papers do (LayerGradCam has Captum's default, no ReLU)
        return cam, lambda: cam.attribute(
            x, target=target, relu_attributions=True, return_weights=True
        )
    if method == "Ablation-CAM":
        cam = cc.LayerAblationCam(model, layer, **extra)
        return cam, lambda: cam.attribute(x, target=target, return_weights=True)
    if method == "Score-CAM":
        cam = cc.LayerScoreCam(model, layer, **extra)
        return cam, lambda: cam.attribute(
            x, target=target, return_weights=True, internal_batch_size=64
        )
    if method == "LIFT-CAM":
        cam = cc.LayerLiftCam(model, layer, **extra)
        return cam, lambda: cam.attribute(x, target=target, return_weights=True)
    if method == "SHAP-CAM":
        cam = cc.LayerShapCam(model, layer, **extra)
        return cam, lambda: cam.attribute(x, target=target, return_weights=True, num_permutations=2)
    if method == "IG-CAM":
        cam = cc.LayerIntegratedGradCam(model, layer, **extra)
        return cam, lambda: cam.attribute(x, target=target, n_steps=4)
    peers = {
        "HiResCAM": (cc.LayerHiResCam, {}),
        "Grad-CAM EW": (cc.LayerGradCamElementWise, {}),
        "Eigen-CAM": (cc.LayerEigenCam, {}),
        "Eigen-Grad-CAM": (cc.LayerEigenGradCam, {}),
        "SS-CAM": (cc.LayerSSCam, {"num_samples": 1, "internal_batch_size": 64}),
        "IS-CAM": (cc.LayerISCam, {"num_samples": 1, "internal_batch_size": 64}),
        "Smooth Grad-CAM++": (cc.LayerSmoothGradCamPlusPlus, {"num_samples": 2}),
        "Relevance-CAM": (cc.LayerRelevanceCam, {}),
    }
    if method in peers:
        peer, options = peers[method]
        cam = peer(model, layer, **extra)
        return cam, lambda: cam.attribute(x, target=target, return_weights=True, **options)
    if method == "Libra-CAM":
        _, outputs = capture(model, layer, x)
        library = tiny_library(model, layer, x, target, outputs.shape[1], reshape_transform)
        cam = cc.LayerLibraCam(model, layer, library=library, **extra)
        return cam, lambda: cam.attribute(x, target=target, internal_batch_size=64)
    raise ValueError(f"unknown method {method!r}")


def _refusal(error: Exception) -> bool:
    message = str(error)
    return isinstance(error, (ValueError, TypeError)) and ("pass " in message or "head=" in message)


def run_cell(
    method: str,
    model: nn.Module,
    layer: nn.Module,
    x: Tensor,
    target: Tensor,
    reshape_transform: Optional[Callable[[Tensor], Tensor]] = None,
    **extra: Any,
) -> Dict[str, Any]:
    r"""One (method, architecture) cell: ``{"status", "seconds", "detail"}``."""
    activations, outputs = capture(model, layer, x, reshape_transform)
    before = model_state(model)
    caught: List[str] = []
    try:
        with warnings.catch_warnings(record=True) as records:
            warnings.simplefilter("always")
            cam, call = _build_and_call(method, model, layer, x, target, reshape_transform, **extra)
            start = time.perf_counter()
            result = call()
            seconds = time.perf_counter() - start
            again = call() if method in HEAD_METHODS else None
        caught = [str(r.message) for r in records if "hooks and attributes" not in str(r.message)]
    except Exception as error:  # classified below; the matrix must go on
        status = "refused" if _refusal(error) else "error"
        detail = f"{type(error).__name__}: {error}"
        if status == "error":
            detail += " | " + traceback.format_exc(limit=3).replace("\n", " ")
        return {"status": status, "seconds": None, "detail": detail}
    problems = []
    maps, weights = result if isinstance(result, tuple) else (result, None)
    size = tuple(x.shape[-2:]) if method == "Libra-CAM" else tuple(activations.shape[-2:])
    if tuple(maps.shape) != (x.shape[0], 1) + size:
        problems.append(f"shape {tuple(maps.shape)}")
    if not torch.isfinite(maps).all():
        problems.append("not finite")
    if weights is not None:
        w = weights if weights.dim() == 4 else weights[:, :, None, None]
        if method in REBUILD:
            rebuilt = REBUILD[method](weights, activations)
        else:
            rebuilt = torch.relu((w * activations).sum(dim=1, keepdim=True))
        scale = float(rebuilt.abs().max())
        if not torch.allclose(maps, rebuilt, rtol=RTOL, atol=ATOL * max(scale, 1e-30)):
            gap = float((maps - rebuilt).abs().max())
            problems.append(f"map != relu(sum w A) (gap {gap:.3g}, scale {scale:.3g})")
    if again is not None:
        second = again[0] if isinstance(again, tuple) else again
        if not torch.equal(second, maps):
            problems.append(f"second call differs by {float((second - maps).abs().max()):.3g}")
    if method == "LIFT-CAM" and weights is not None:
        zero = zero_layer_outputs(model, layer, x)
        index = torch.arange(x.shape[0])
        expected = outputs[index, target] - zero[index, target]
        if not torch.allclose(weights.sum(dim=1), expected, rtol=RTOL, atol=ATOL):
            problems.append(f"incomplete ({weights.sum(dim=1).tolist()} vs {expected.tolist()})")
    changed = state_changes(before, model_state(model))
    if changed:
        problems.append("model changed: " + ", ".join(changed))
    del cam
    detail = "; ".join(problems)
    if caught and not problems:
        detail = "warned: " + caught[0]
    return {"status": "wrong" if problems else "ok", "seconds": seconds, "detail": detail}


def run_architecture(arch: Architecture, methods: Sequence[str], batch: int) -> Dict[str, Any]:
    torch.manual_seed(0)
    build_start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's init_weights notices
        model = arch.build().eval()
    build_seconds = time.perf_counter() - build_start
    layer = model.get_submodule(arch.layer)
    x = torch.randn(batch, 3, arch.size, arch.size, generator=torch.Generator().manual_seed(1))
    transform = arch.reshape_transform
    activations, outputs = capture(model, layer, x, transform)
    target = outputs[:1].argmax(dim=1).expand(batch).clone()
    cells: Dict[str, Any] = {}
    for method in methods:
        cell = run_cell(method, model, layer, x, target, transform)
        if (
            method == "LIFT-CAM"
            and cell["status"] == "refused"
            and "fixed_layer_norm=True" in cell["detail"]
        ):
            retry = run_cell(method, model, layer, x, target, transform, fixed_layer_norm=True)
            retry["detail"] = ("with fixed_layer_norm=True: " + retry["detail"]).rstrip(": ")
            cell = {**retry, "default": cell}
        cells[method] = cell
        print(f"  {arch.name:32s} {method:13s} {cell['status']:8s} "
              f"{'' if cell['seconds'] is None else format(cell['seconds'], '.2f') + ' s':>9s} "
              f"{cell['detail'][:150]}", flush=True)  # fmt: skip
    return {
        "name": arch.name,
        "layer": arch.layer,
        "size": arch.size,
        "activation_shape": list(activations.shape[1:]),
        "build_seconds": build_seconds,
        "cells": cells,
    }


# ---------------------------------------------------------------------- LayerNorm study
def _cosine(a: Tensor, b: Tensor) -> Tensor:
    return torch.nn.functional.cosine_similarity(a, b, dim=1)


def layer_norm_study(images: int, permutations: int) -> Dict[str, Any]:
    r"""
    ConvNeXt-Tiny (random weights, float64, 64 px), layer ``features.7``: LIFT-CAM
    with the LayerNorm scale fixed, and gradient x activation through the real
    LayerNorm (what a gradient rule would give), against ``F_c(A) - F_c(0)`` and
    against SHAP-CAM with ``permutations`` permutations.
    """
    import captum_cams as cc

    torch.manual_seed(0)
    model = _torchvision("convnext_tiny")().eval().double()
    layer = model.features[7]
    x = torch.randn(
        images, 3, 64, 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    activations, outputs = capture(model, layer, x)
    target = outputs.argmax(dim=1)
    index = torch.arange(images)
    reference_gap = outputs[index, target] - zero_layer_outputs(model, layer, x)[index, target]
    _, fixed = cc.LayerLiftCam(model, layer, fixed_layer_norm=True).attribute(
        x, target=target, return_weights=True
    )
    _, gradients = cc.LayerGradCam(model, layer).attribute(x, target=target, return_weights=True)
    # Grad-CAM's weights are the spatial means of dF/dA: gradient x activation is
    # their product with the spatial sums of A.
    h, w = activations.shape[-2:]
    gradient_x_activation = gradients * activations.sum(dim=(2, 3)) / (h * w)
    _, shap = cc.LayerShapCam(model, layer).attribute(
        x, target=target, return_weights=True, num_permutations=permutations
    )

    def summary(weights: Tensor) -> Dict[str, float]:
        gap = (weights.sum(dim=1) - reference_gap).abs() / reference_gap.abs()
        cos = _cosine(weights, shap)
        half = 1.96 * float(cos.std()) / math.sqrt(images) if images > 1 else float("nan")
        return {
            "max relative completeness gap": float(gap.max()),
            "mean cosine to SHAP-CAM": float(cos.mean()),
            "95% half-width": half,
        }

    return {
        "n": images,
        "permutations": permutations,
        "LIFT-CAM fixed_layer_norm=True": summary(fixed),
        "gradient x activation (real LayerNorm)": summary(gradient_x_activation),
    }


# ---------------------------------------------------------------------- Libra-CAM study
def libra_non_blank_study(images: int, size: int) -> Dict[str, Any]:
    r"""
    Libra-CAM (default ``score="probability"``, a library of 3 random-input references
    per class) on timm's efficientnet_b0 (``conv_head``) and Hugging Face's ResNet-50
    (through the adapter, ``resnet.encoder.stages[-1]``), random weights, ``images``
    random inputs of ``size`` px: for the predicted class, the class whose probability
    is nearest 1e-9, the class of median probability and the least probable class,
    the target probability, the largest
    value of the returned map (0: blank), the chosen threshold and whether the
    one-line all-blank warning fired.
    """
    import captum_cams as cc

    models = [
        ("timm efficientnet_b0", _timm_architectures()[1]),
        ("HF ResNet-50", _hugging_face_architectures()[0]),
    ]
    study: Dict[str, Any] = {"n": images, "size": size}
    for label, arch in models:
        torch.manual_seed(0)
        model = arch.build().eval()
        layer = model.get_submodule(arch.layer)
        x = torch.randn(images, 3, size, size, generator=torch.Generator().manual_seed(1))
        _, outputs = capture(model, layer, x)
        probabilities = outputs.softmax(dim=1)
        ranked = probabilities.argsort(dim=1, descending=True)
        rows: Dict[str, Any] = {}
        near = (probabilities.clamp_min(1e-300).log() - math.log(1e-9)).abs().argmin(dim=1)
        choices = {
            "predicted": ranked[:, 0],
            "probability nearest 1e-9": near,
            "median probability": ranked[:, outputs.shape[1] // 2],
            "least probable": ranked[:, -1],
        }
        for which, target in choices.items():
            library = tiny_library(model, layer, x, target, outputs.shape[1])
            cam = cc.LayerLibraCam(model, layer, library=library)
            with warnings.catch_warnings(record=True) as records:
                warnings.simplefilter("always")
                maps, details = cam.attribute(
                    x, target=target, internal_batch_size=16, return_details=True
                )
            p = probabilities.gather(1, target[:, None]).squeeze(1)
            peaks = maps.flatten(1).amax(dim=1)
            rows[which] = {
                "target probability (min, max)": [float(p.min()), float(p.max())],
                "map maximum per image": [round(float(v), 4) for v in peaks],
                "blank maps": int((peaks == 0).sum()),
                "t*": [round(float(t), 2) for t in details.thresholds],
                "warnings": sorted({str(r.message)[:120] for r in records}),
            }
            print(label, which, rows[which], flush=True)
        study[label] = rows
    return study


# ---------------------------------------------------------------------- report
_SHORT = {"ok": "ok", "refused": "refused", "wrong": "**wrong**", "error": "**error**"}


def markdown(results: List[Dict[str, Any]], methods: Sequence[str], batch: int) -> str:
    notes: List[str] = []

    def cell_text(cell: Optional[Dict[str, Any]]) -> str:
        if cell is None:
            return "not run"
        text = _SHORT[cell["status"]]
        if cell["seconds"] is not None:
            seconds = cell["seconds"]
            text += f" {seconds:.2g} s" if seconds < 10 else f" {seconds:.0f} s"
        if cell["status"] != "ok" or cell["detail"]:
            detail = cell["detail"].split(" | ")[0]
            if "default" in cell:
                refusal = cell["default"]["detail"].split(": ", 1)[-1].split(";")[0]
                detail = (
                    f"by default refused ({refusal}), naming `fixed_layer_norm=True` and "
                    f"`head=`; shown: {detail}"
                )
            if detail not in notes:
                notes.append(detail)
            text += f" [{notes.index(detail) + 1}]"
        return text

    lines = [
        "| architecture | recommended layer (K x h x w) | input | " + " | ".join(methods) + " |",
        "|---|---|---|" + "---|" * len(methods),
    ]
    for result in results:
        k, h, w = result["activation_shape"]
        pick = next(
            (a.pick for a in all_architectures() if a.name == result["name"]), result["layer"]
        )
        row = [result["name"], f"`{pick}` ({k}x{h}x{w})", f"{batch}x3x{result['size']}²"]
        row += [cell_text(result["cells"].get(m)) for m in methods]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines += [f"[{i + 1}] {note}" for i, note in enumerate(notes)]
    return "\n".join(lines)


def _summary(results: List[Dict[str, Any]]) -> Dict[str, int]:
    counts: Dict[str, int] = {}
    for result in results:
        for cell in result["cells"].values():
            counts[cell["status"]] = counts.get(cell["status"], 0) + 1
    return counts


def render(paths: Sequence[str], methods: Sequence[str]) -> None:
    r"""Prints the table of the results saved by earlier ``--json`` runs."""
    by_name: Dict[str, Dict[str, Any]] = {}
    batches = set()
    for path in paths:
        with open(path) as f:
            saved = json.load(f)
        batches.add(saved["batch"])
        for result in saved["results"]:
            # several files may hold cells of one network: the first file's cell wins
            merged = by_name.setdefault(result["name"], {**result, "cells": {}})
            for method, cell in result["cells"].items():
                merged["cells"].setdefault(method, cell)
    if len(batches) != 1:
        raise SystemExit(f"the files were run with different --batch: {sorted(batches)}")
    order = [a.name for a in all_architectures()]
    results = sorted(by_name.values(), key=lambda r: order.index(r["name"]))
    print(markdown(results, methods, batches.pop()))
    print("\ncells:", _summary(results))


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--architectures", nargs="*", help="names (default: all)")
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--layer-norm", action="store_true", help="run the LayerNorm study only")
    parser.add_argument("--layer-norm-images", type=int, default=8)
    parser.add_argument("--layer-norm-permutations", type=int, default=64)
    parser.add_argument(
        "--libra-non-blank", action="store_true", help="run the Libra-CAM blank-map study only"
    )
    parser.add_argument("--libra-images", type=int, default=4)
    parser.add_argument("--libra-size", type=int, default=224)
    parser.add_argument(
        "--render",
        nargs="*",
        metavar="JSON",
        help="only print the table of earlier --json results (several files: joined "
        "in the registry's order, the first file's cell winning; cells no file has: "
        "'not run')",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.render:
        render(args.render, args.methods)
        return
    if args.libra_non_blank:
        study = libra_non_blank_study(args.libra_images, args.libra_size)
        print(json.dumps(study, indent=2))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(study, f, indent=2)
        return
    if args.layer_norm:
        study = layer_norm_study(args.layer_norm_images, args.layer_norm_permutations)
        print(json.dumps(study, indent=2))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(study, f, indent=2)
        return
    architectures = all_architectures()
    if not _timm_architectures():
        print("timm is not installed: its models are skipped")
    if not _hugging_face_architectures():
        print("transformers is not installed: its models are skipped")
    if args.architectures:
        architectures = tuple(a for a in architectures if a.name in args.architectures)
    results = []
    for arch in architectures:
        print(arch.name, flush=True)
        results.append(run_architecture(arch, args.methods, args.batch))
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"batch": args.batch, "results": results}, f, indent=2)
    print()
    print(markdown(results, args.methods, args.batch))
    print("\ncells:", _summary(results))


if __name__ == "__main__":
    main()
