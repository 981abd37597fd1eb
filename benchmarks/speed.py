#!/usr/bin/env python3
r"""Time per batch of every CAM method, as ratios to its own plain passes, to this
package's Grad-CAM, to Captum's ``LayerGradCam`` and to the same method in
pytorch-grad-cam, measured in the same run.

"Plain passes" is the method's own forward/backward passes written as a
straightforward batched loop, computing the same maps (checked equal): one hook and
``torch.autograd.grad`` for the gradient methods; Grad-CAM's passes plus one no-grad
forward of the ``N x T`` masked copies for TFT; the zero-baseline forward plus the
``n_steps`` gradient passes, as many rows per pass as ours, for Integrated Grad-CAM;
one forward plus the ``N x K`` masked copies (Score-CAM) or head evaluations
(Ablation-CAM) in chunks of ``--perturbation-batch-size``; one gradient plus the
``N x R`` and ``N x T`` masked copies for Libra-CAM. ours / plain passes is the
library's overhead on top of the maths.

Setup: torchvision ``resnet18`` / ``resnet50`` with random weights (``weights=None``;
ResNet-50's classifier divided by 16, :data:`LOGIT_SCALE`, so that its softmax does
not underflow), layer ``layer4``, ``B x 3 x 224 x 224`` random inputs
(``--perturbation-image-size`` for Ablation-/Score-CAM), target class 3 for every
example, CPU, a fixed number of intra-op threads (``--threads``, default 1).

Every timed call builds its method object and computes the maps, as a user who writes
``Method(model, layer).attribute(x, target)`` per batch does (pytorch-grad-cam's
classes must be built per call anyway: they hook the model for as long as they live).
pytorch-grad-cam's maps are left at layer resolution (no resize to the input), the
work ours does.

Timings on a shared machine are noisy, so within one (model, batch size) group all
callables are measured round-robin: each round runs every callable once, in a
freshly shuffled order, after warm-up rounds. Reported: the median seconds per
callable, and each ratio as the median over rounds of the per-round ratio (both
sides measured in the same round), with the smallest and largest per-round ratio.

Run ``python benchmarks/speed.py --help`` for the options; benchmarks/README.md has
the commands behind the README table.
"""

import argparse
import os
import platform
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

os.environ.setdefault("TQDM_DISABLE", "1")  # pytorch-grad-cam's progress bars

import captum  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from captum.attr import LayerGradCam as CaptumLayerGradCam  # noqa: E402

from captum_cams import (  # noqa: E402
    LayerAblationCam,
    LayerCam,
    LayerGradCam,
    LayerGradCamPlusPlus,
    LayerIntegratedGradCam,
    LayerLiftCam,
    LayerScoreCam,
    LayerXGradCam,
    ReferenceLibrary,
    ThresholdFineTuned,
)

GRADIENT_METHODS = ("gradcam", "gradcam++", "xgradcam", "layercam", "liftcam")
ALL_METHODS = GRADIENT_METHODS + ("igcam", "tft", "ablationcam", "scorecam", "libracam")
#: Methods that evaluate K modified copies per example; their peers run K full forwards.
PERTURBATION_METHODS = ("ablationcam", "scorecam")
CAPTUM = "Captum LayerGradCam"
TARGET_CLASS = 3


@dataclass
class Row:
    r"""One line of the table: ``ours`` compared with references of the same group."""

    method: str
    ours: str
    references: List[Tuple[str, str]]  # (column label, callable name)
    note: str = ""
    #: For a method that picks a threshold by argmax (TFT, Libra-CAM): ours' curve that
    #: the argmax reads (untimed; the plain passes return ``(maps, curve)``).
    curve: Optional[Callable[[], torch.Tensor]] = None


@dataclass
class Group:
    r"""Callables measured round-robin together, and the rows read from them."""

    model_name: str
    batch_size: int
    repeats: int
    callables: Dict[str, Callable[[], object]] = field(default_factory=dict)
    rows: List[Row] = field(default_factory=list)
    #: Callables left out of the warm-up (minutes each; the others warm the model up).
    no_warmup: Tuple[str, ...] = ()
    #: Side of the square inputs.
    image_size: int = 224
    #: The first output of every callable (filled by :func:`measure`).
    outputs: Dict[str, object] = field(default_factory=dict)


#: Divisor of the random classifier's weights: a random-weight ResNet-50's logits spread
#: about 16 times as far as ResNet-18's (std 25 vs 1.6 on the random inputs), so the
#: softmax of class 3 underflows to 0 in float32 and TFT's RPI (a ratio to it) rightly
#: raises; scaled, both models give ResNet-18's spread. The passes timed are unchanged.
LOGIT_SCALE = {"resnet50": 16.0}


def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None).eval()
    with torch.no_grad():
        model.fc.weight.div_(LOGIT_SCALE.get(name, 1.0))
    return model


def _peer(peer_class: type, model: torch.nn.Module, layer: torch.nn.Module, x: torch.Tensor,
          batch_size: Optional[int] = None) -> Callable[[], object]:  # fmt: skip
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    targets = [ClassifierOutputTarget(TARGET_CLASS) for _ in range(x.shape[0])]

    def run() -> object:
        kwargs = {} if batch_size is None or peer_class.__name__ == "ScoreCAM" else {
            "batch_size": batch_size
        }  # fmt: skip
        with peer_class(model=model, target_layers=[layer], **kwargs) as cam:
            if batch_size is not None and peer_class.__name__ == "ScoreCAM":
                cam.batch_size = batch_size  # ScoreCAM reads this attribute (default 16)
            cam.get_target_width_height = lambda _inputs: None  # layer resolution
            return cam(input_tensor=x, targets=targets)

    return run


def _ours(method_class: type, model: torch.nn.Module, layer: torch.nn.Module, x: torch.Tensor,
          **kwargs: object) -> Callable[[], object]:  # fmt: skip
    if method_class is LayerGradCam:  # the paper's map: Captum's default has no ReLU
        kwargs.setdefault("relu_attributions", True)

    def run() -> object:
        return method_class(model, layer).attribute(x, target=TARGET_CLASS, **kwargs)

    return run


# ---------------------------------------------------------------- plain passes
# Each method's own forward/backward passes written as a straightforward batched loop
# (one hook, torch.autograd.grad, one no-grad model call per chunk of masked copies):
# what the method costs "when written plainly". ours / plain-passes above 1 is the
# library's overhead on top of the maths.


def _minmax(maps: torch.Tensor) -> torch.Tensor:
    flat = maps.flatten(1)
    low = flat.min(dim=1, keepdim=True).values
    high = flat.max(dim=1, keepdim=True).values
    return ((flat - low) / (high - low).clamp_min(1e-7)).view_as(maps)


def _up(maps: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    return torch.nn.functional.interpolate(
        maps, size=tuple(size), mode="bilinear", align_corners=False
    )


def _plain_gradient(model: torch.nn.Module, layer: torch.nn.Module, x: torch.Tensor,
                    probability: bool = False) -> Tuple[torch.Tensor, ...]:  # fmt: skip
    r"""One forward and one backward to ``layer``: ``(A, dy/dA, logits)``."""
    captured: List[torch.Tensor] = []

    def hook(_module: torch.nn.Module, _inputs: object, output: torch.Tensor) -> None:
        output.requires_grad_(True)  # parameters are frozen: the graph starts here
        captured.append(output)

    params = [p for p in model.parameters() if p.requires_grad]
    for param in params:
        param.requires_grad_(False)
    handle = layer.register_forward_hook(hook)
    try:
        logits = model(x)
        scores = logits.softmax(dim=1) if probability else logits
        (grad,) = torch.autograd.grad(scores[:, TARGET_CLASS].sum(), captured[0])
    finally:
        handle.remove()
        for param in params:
            param.requires_grad_(True)
    return captured[0].detach(), grad, logits.detach()


def _plain_activations(model: torch.nn.Module, layer: torch.nn.Module,
                       x: torch.Tensor) -> torch.Tensor:  # fmt: skip
    captured: List[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return captured[0]


def _plain_masked_scores(model: torch.nn.Module, x: torch.Tensor, keep: torch.Tensor,
                         chunk: Optional[int], probability: bool) -> torch.Tensor:  # fmt: skip
    r"""Target scores of ``keep[j] * x[j // (M / N)]`` for the ``M`` masks (example-major)."""
    per_example = keep.shape[0] // x.shape[0]
    step = chunk or keep.shape[0]
    scores = []
    with torch.no_grad():
        for start in range(0, keep.shape[0], step):
            masks = keep[start : start + step]
            examples = torch.arange(start, start + masks.shape[0]) // per_example
            out = model(x[examples] * masks)
            out = out.softmax(dim=1) if probability else out
            scores.append(out[:, TARGET_CLASS])
    return torch.cat(scores)


def plain_grad_cam(model: torch.nn.Module, layer: torch.nn.Module,
                   x: torch.Tensor) -> Callable[[], object]:  # fmt: skip
    r"""Grad-CAM's passes: one forward, one backward to the layer."""

    def run() -> object:
        a, g, _ = _plain_gradient(model, layer, x)
        return torch.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1, keepdim=True))

    return run


def plain_tft(model: torch.nn.Module, layer: torch.nn.Module, x: torch.Tensor,
              thresholds: int = 10) -> Callable[[], object]:  # fmt: skip
    r"""TFT(Grad-CAM)'s passes: Grad-CAM's, then one no-grad forward of the ``N x T``
    binary-masked copies (``y`` from Grad-CAM's forward)."""
    grid = torch.arange(1, thresholds + 1, dtype=x.dtype) / thresholds

    def run() -> object:
        a, g, logits = _plain_gradient(model, layer, x)
        cam = torch.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1, keepdim=True))
        image = _minmax(_up(cam, x.shape[-2:]))
        keep = (image.unsqueeze(1) >= grid.view(1, -1, 1, 1, 1)) & (image.unsqueeze(1) != 0)
        keep = keep.to(x.dtype).flatten(0, 1)
        o = _plain_masked_scores(model, x, keep, None, True).view(x.shape[0], -1)
        y = logits.softmax(dim=1)[:, TARGET_CLASS : TARGET_CLASS + 1]
        rpi = torch.clamp(o - y, min=0) / y
        tau = grid[rpi.argmax(dim=1)].view(-1, 1, 1, 1)
        return image * (image >= tau), rpi

    return run


def plain_integrated_grad_cam(model: torch.nn.Module, layer: torch.nn.Module, x: torch.Tensor,
                              steps: int, rows: int) -> Callable[[], object]:  # fmt: skip
    r"""Integrated Grad-CAM's passes: one no-grad forward at the (zero) baseline, then
    the ``n_steps`` path points as gradient passes of ``rows`` rows."""
    per_pass = max(1, rows // x.shape[0])

    def run() -> object:
        start = _plain_activations(model, layer, torch.zeros_like(x))
        total = torch.zeros_like(start[:, :1])
        for first in range(1, steps + 1, per_pass):
            alphas = torch.arange(first, min(first + per_pass, steps + 1), dtype=x.dtype) / steps
            path = (alphas.view(-1, 1, 1, 1, 1) * x.unsqueeze(0)).flatten(0, 1)
            a, g, _ = _plain_gradient(model, layer, path)
            diff = a.view(len(alphas), *start.shape) - start
            w = g.mean(dim=(2, 3)).view(len(alphas), *start.shape[:2], 1, 1)
            total += torch.relu((w * diff).sum(dim=2, keepdim=True)).sum(dim=0) / steps
        return total

    return run


def plain_score_cam(model: torch.nn.Module, layer: torch.nn.Module, x: torch.Tensor,
                    chunk: int) -> Callable[[], object]:  # fmt: skip
    r"""Score-CAM's passes: one no-grad forward, then the ``N x K`` masked copies."""

    def run() -> object:
        a = _plain_activations(model, layer, x)
        masks = _minmax(a.flatten(0, 1).unsqueeze(1))
        scores = []
        for start in range(0, masks.shape[0], chunk):  # upsample chunk by chunk too
            up = _up(masks[start : start + chunk], x.shape[-2:])
            scores.append(_plain_masked_scores_rows(model, x, up, start, a.shape[1]))
        w = torch.cat(scores).view(a.shape[:2]).softmax(dim=1)
        return torch.relu((w[:, :, None, None] * a).sum(dim=1, keepdim=True))

    return run


def _plain_masked_scores_rows(model: torch.nn.Module, x: torch.Tensor, masks: torch.Tensor,
                              start: int, per_example: int) -> torch.Tensor:  # fmt: skip
    examples = torch.arange(start, start + masks.shape[0]) // per_example
    with torch.no_grad():
        return model(x[examples] * masks)[:, TARGET_CLASS]


def plain_ablation_cam(model: torch.nn.Module, layer: torch.nn.Module, x: torch.Tensor,
                       chunk: int) -> Callable[[], object]:  # fmt: skip
    r"""Ablation-CAM's passes on a torchvision ResNet at ``layer4``: one no-grad
    forward, then the head (pool, fc) on the ``N x K`` ablated activations."""

    def run() -> object:
        a = _plain_activations(model, layer, x)
        with torch.no_grad():
            y = model.fc(torch.flatten(model.avgpool(a), 1))[:, TARGET_CLASS]
            n, k = a.shape[:2]
            scores = []
            for start in range(0, n * k, chunk):
                rows = torch.arange(start, min(start + chunk, n * k))
                ablated = a[rows // k].clone()
                ablated[torch.arange(rows.shape[0]), rows % k] = 0
                scores.append(model.fc(torch.flatten(model.avgpool(ablated), 1))[:, TARGET_CLASS])
            w = (y[:, None] - torch.cat(scores).view(n, k)) / y[:, None]
        return torch.relu((w[:, :, None, None] * a).sum(dim=1, keepdim=True))

    return run


def plain_libra_cam(model: torch.nn.Module, layer: torch.nn.Module, x: torch.Tensor,
                    library: "ReferenceLibrary", chunk: Optional[int],
                    thresholds: int = 10) -> Callable[[], object]:  # fmt: skip
    r"""Libra-CAM's passes: one gradient of the probability, the ``N x R`` soft-masked
    copies of the filtering and the ``N x T`` of the calibration."""
    grid = torch.arange(1, thresholds + 1, dtype=x.dtype) / thresholds

    def run() -> object:
        a, g, _ = _plain_gradient(model, layer, x, probability=True)
        refs = library.references(TARGET_CLASS, dtype=a.dtype, device=a.device)
        raw = (g * a).sum(dim=1, keepdim=True) - torch.einsum("nkhw,rkhw->nrhw", g, refs)
        n, r = raw.shape[:2]
        base = _up(_minmax(raw.reshape(n * r, 1, *raw.shape[2:])), x.shape[-2:])
        s = _plain_masked_scores(model, x, base, chunk, True).view(n, r)
        kept = s >= (s.mean(dim=1, keepdim=True) + s.std(dim=1, correction=0, keepdim=True))
        kept = kept.to(x.dtype).view(n, r, 1, 1, 1)
        averaged = (base.view(n, r, 1, *x.shape[-2:]) * kept).sum(dim=1)
        averaged = averaged / kept.sum(dim=1).clamp_min(1)
        image = averaged  # Algorithm 1 thresholds L as averaged (no re-normalisation)
        soft = image.unsqueeze(1) * (image.unsqueeze(1) >= grid.view(1, -1, 1, 1, 1))
        c = _plain_masked_scores(model, x, soft.flatten(0, 1), chunk, True).view(n, -1)
        return soft[torch.arange(n), c.argmax(dim=1)], c

    return run


def random_input_library(model: torch.nn.Module, layer: torch.nn.Module, x: torch.Tensor,
                         references: int = 30) -> "ReferenceLibrary":  # fmt: skip
    r"""A library of ``references`` activations of random inputs shaped like ``x``, shared
    by every class (the cost of Libra-CAM does not depend on how references were chosen)."""
    captured: List[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: captured.append(out.detach()))
    try:
        with torch.no_grad():
            generator = torch.Generator().manual_seed(1)
            noise = torch.randn((references,) + tuple(x.shape[1:]), generator=generator)
            num_classes = int(model(noise).shape[1])
    finally:
        handle.remove()
    every = torch.arange(references)
    return ReferenceLibrary(captured[0], [every] * num_classes, tau=1e-4, max_per_class=references)


def _libra_cam_rows(group: Group, model: torch.nn.Module, layer: torch.nn.Module,
                    x: torch.Tensor, args: argparse.Namespace) -> None:  # fmt: skip
    r"""Libra-CAM with R = 30 references (target of the issue: at most 15x Grad-CAM);
    all masked forwards (30 filtering + 10 calibration per image) in one batch."""
    from captum_cams import LayerLibraCam

    library = random_input_library(model, layer, x, references=30)
    chunk = args.perturbation_batch_size
    group.callables["Grad-CAM (ours)"] = _ours(
        LayerGradCam, model, layer, x, relu_attributions=True
    )
    group.callables["Libra-CAM (ours, R=30)"] = lambda: LayerLibraCam(
        model, layer, library=library
    ).attribute(x, target=TARGET_CLASS, internal_batch_size=chunk)
    group.callables["Libra-CAM (plain passes)"] = plain_libra_cam(model, layer, x, library, chunk)

    def curve() -> torch.Tensor:
        _, details = LayerLibraCam(model, layer, library=library).attribute(
            x, target=TARGET_CLASS, internal_batch_size=chunk, return_details=True
        )
        return details.calibration_scores

    group.rows.append(
        Row(
            "Libra-CAM (R=30)",
            "Libra-CAM (ours, R=30)",
            [
                ("/ plain passes", "Libra-CAM (plain passes)"),
                ("/ Grad-CAM (ours)", "Grad-CAM (ours)"),
                ("/ Captum Grad-CAM", CAPTUM),
            ],
            curve=curve,
        )
    )


def build_group(model_name: str, batch_size: int, methods: Sequence[str],
                args: argparse.Namespace) -> Group:  # fmt: skip
    from pytorch_grad_cam import (
        AblationCAM,
        GradCAM,
        GradCAMPlusPlus,
        LayerCAM,
        ScoreCAM,
        XGradCAM,
    )

    model = _model(model_name)
    layer = model.layer4
    heavy = [m for m in methods if m in PERTURBATION_METHODS]
    size = args.perturbation_image_size if heavy else 224
    x = torch.randn(batch_size, 3, size, size, generator=torch.Generator().manual_seed(1))
    group = Group(model_name, batch_size, args.perturbation_repeats if heavy else args.repeats)
    group.image_size = size
    group.no_warmup = (
        "Ablation-CAM (pgc)", "Score-CAM (ours)", "Score-CAM (pgc)", "Score-CAM (plain passes)",
    )  # fmt: skip
    c = group.callables
    c[CAPTUM] = lambda: CaptumLayerGradCam(model, layer).attribute(
        x, target=TARGET_CLASS, relu_attributions=True
    )
    to_captum = ("/ Captum Grad-CAM", CAPTUM)
    simple = {
        "gradcam": ("Grad-CAM", LayerGradCam, GradCAM),
        "gradcam++": ("Grad-CAM++", LayerGradCamPlusPlus, GradCAMPlusPlus),
        "xgradcam": ("XGrad-CAM", LayerXGradCam, XGradCAM),
        "layercam": ("Layer-CAM", LayerCam, LayerCAM),
        "liftcam": ("LIFT-CAM", LayerLiftCam, None),
    }
    plain = ("/ plain passes", "Grad-CAM (plain passes)")
    to_ours = ("/ Grad-CAM (ours)", "Grad-CAM (ours)")
    c["Grad-CAM (plain passes)"] = plain_grad_cam(model, layer, x)
    c["Grad-CAM (ours)"] = _ours(LayerGradCam, model, layer, x)
    for method in methods:
        if method in simple:
            label, ours_class, peer_class = simple[method]
            c[f"{label} (ours)"] = _ours(ours_class, model, layer, x)
            refs = [plain, to_ours, to_captum]
            if peer_class is not None and not args.skip_peers:
                c[f"{label} (pgc)"] = _peer(peer_class, model, layer, x)
                refs.append(("/ pytorch-grad-cam", f"{label} (pgc)"))
            group.rows.append(Row(label, f"{label} (ours)", refs))
        elif method == "igcam":
            steps = args.ig_steps
            if not args.skip_peers:
                c[f"{steps} x Captum Grad-CAM"] = lambda steps=steps: [
                    c[CAPTUM]() for _ in range(steps)
                ]
            c["IG-CAM (ours, unbatched)"] = _ours(
                LayerIntegratedGradCam, model, layer, x, n_steps=steps,
                internal_batch_size=batch_size,
            )  # fmt: skip
            c["IG-CAM (ours, batched)"] = _ours(
                LayerIntegratedGradCam, model, layer, x, n_steps=steps,
                internal_batch_size=max(args.ig_rows, batch_size),
            )  # fmt: skip
            batched = max(args.ig_rows, batch_size)
            for kind, rows in (("unbatched", batch_size), ("batched", batched)):
                c[f"IG-CAM (plain passes, {kind})"] = plain_integrated_grad_cam(
                    model, layer, x, steps, rows
                )
                refs = [("/ plain passes", f"IG-CAM (plain passes, {kind})"), to_ours, to_captum]
                if not args.skip_peers:
                    refs.append((f"/ {steps} Grad-CAM calls", f"{steps} x Captum Grad-CAM"))
                label = f"IG-CAM m={steps}, {kind} ({rows} rows/pass)"
                group.rows.append(Row(label, f"IG-CAM (ours, {kind})", refs))
        elif method == "tft":
            c["TFT(Grad-CAM) (ours)"] = lambda: ThresholdFineTuned(
                LayerGradCam(model, layer)
            ).attribute(x, target=TARGET_CLASS, relu_attributions=True)
            c["TFT(Grad-CAM) (plain passes)"] = plain_tft(model, layer, x)
            group.rows.append(
                Row(
                    "TFT on Grad-CAM (10 thresholds)",
                    "TFT(Grad-CAM) (ours)",
                    [("/ plain passes", "TFT(Grad-CAM) (plain passes)"), to_ours, to_captum],
                    curve=lambda: (
                        ThresholdFineTuned(LayerGradCam(model, layer))
                        .attribute(
                            x, target=TARGET_CLASS, relu_attributions=True, return_details=True
                        )[1]
                        .rpi_curves
                    ),
                )
            )
        elif method in PERTURBATION_METHODS:
            label, ours_class, plain_factory, peer_class = {
                "ablationcam": ("Ablation-CAM", LayerAblationCam, plain_ablation_cam, AblationCAM),
                "scorecam": ("Score-CAM", LayerScoreCam, plain_score_cam, ScoreCAM),
            }[method]
            size = args.perturbation_batch_size
            c[f"{label} (ours)"] = _ours(ours_class, model, layer, x, internal_batch_size=size)
            c[f"{label} (plain passes)"] = plain_factory(model, layer, x, size)
            refs = [("/ plain passes", f"{label} (plain passes)"), to_ours, to_captum]
            if not args.skip_peers:
                c[f"{label} (pgc)"] = _peer(peer_class, model, layer, x, batch_size=size)
                refs.append(("/ pytorch-grad-cam", f"{label} (pgc)"))
            group.rows.append(Row(label, f"{label} (ours)", refs))
        elif method == "libracam":
            _libra_cam_rows(group, model, layer, x, args)
        else:
            raise SystemExit(f"unknown method {method!r}; choose from {', '.join(ALL_METHODS)}")
    return group


def measure(group: Group, warmup: int, seed: int) -> Dict[str, List[float]]:
    r"""Seconds per round of every callable, round-robin in a shuffled order per round;
    the first output of every callable is kept in ``group.outputs`` (for :func:`check`)."""
    names = list(group.callables)

    def call(name: str) -> None:
        output = group.callables[name]()
        group.outputs.setdefault(name, output)

    for _ in range(warmup):
        for name in names:
            if name not in group.no_warmup:
                call(name)
    times: Dict[str, List[float]] = {name: [] for name in names}
    order = random.Random(seed)
    for _ in range(group.repeats):
        order.shuffle(names)
        for name in names:
            start = time.perf_counter()
            call(name)
            times[name].append(time.perf_counter() - start)
    return times


def _close(method: str, what: str, ours: torch.Tensor, plain: torch.Tensor) -> float:
    r"""``max |ours - plain|``; raises beyond float32 rounding through a model (1e-3 of
    the largest; a different computation differs by the order of the values)."""
    if ours.numel() == 0:
        return 0.0
    difference = float((ours - plain).abs().max())
    scale = float(plain.abs().max()) or 1.0
    if not difference <= 1e-3 * scale:
        raise SystemExit(
            f"{method}: the plain passes' {what} differ from ours by {difference:.3g} "
            f"(largest {scale:.3g}): the reference is not the same computation"
        )
    return difference


def check(group: Group) -> List[str]:
    r"""
    Each method's maps against its plain passes' maps from the same run: the plain
    passes must compute what the method computes, else the ratio means nothing (the
    Grad-CAM-like methods, timed against Grad-CAM's passes, are not compared).
    Returns one line per method; raises where the maps differ beyond float32 rounding.
    """
    lines = []
    for row in group.rows:
        for label, reference in row.references:
            if label != "/ plain passes":
                continue
            if reference == "Grad-CAM (plain passes)" and row.method != "Grad-CAM":
                continue  # the same passes as Grad-CAM, another formula on them
            ours, plain = group.outputs[row.ours], group.outputs[reference]
            ours = (ours[0] if isinstance(ours, tuple) else ours).detach()
            note = ""
            if row.curve is not None:  # the plain passes return (maps, curve)
                plain, plain_curve = plain
                ours_curve = row.curve().detach()
                _close(row.method, "curves", ours_curve, plain_curve.detach())
                # the maps where the argmax agrees (else a float near-tie of the curve),
                # but for pixels at the chosen threshold, which rounding puts either side
                same = ours_curve.argmax(dim=1) == plain_curve.argmax(dim=1)
                ours, plain = ours[same], plain.detach()[same]
                at_edge = (ours - plain).abs() > 1e-3 * (float(plain.abs().max()) or 1.0)
                if float(at_edge.float().mean()) > 1e-3:
                    raise SystemExit(f"{row.method}: the plain passes' maps differ from ours")
                ours, plain = ours[~at_edge], plain[~at_edge]
                note = (
                    f" (curves equal; {int((~same).sum())} near-tie argmax of {len(same)}; "
                    f"{int(at_edge.sum())} of {at_edge.numel()} pixels at the threshold)"
                )
            difference = _close(row.method, "maps", ours, plain.detach())
            lines.append(f"{row.method}: max |ours - plain passes| = {difference:.2g}{note}")
    return lines


def round_ratios(times: Dict[str, List[float]], ours: str, reference: str) -> List[float]:
    r"""``ours / reference`` of every round, both measured in that round."""
    return [a / b for a, b in zip(times[ours], times[reference])]


def paired_ratio(times: Dict[str, List[float]], ours: str, reference: str) -> float:
    r"""Median over rounds of ``ours / reference`` measured in the same round."""
    return statistics.median(round_ratios(times, ours, reference))


def _ratio_text(ratio: float) -> str:
    r"""Two decimals, or the speed-up where ours is over ten times faster."""
    return f"{ratio:.2f}" if ratio >= 0.1 else f"{ratio:.4f} ({1 / ratio:.0f}x faster)"


def report(group: Group, times: Dict[str, List[float]]) -> str:
    medians = {name: statistics.median(values) for name, values in times.items()}
    lines = [
        f"\n### {group.model_name}, batch {group.batch_size} "
        f"(layer4, {group.image_size}x{group.image_size}, {group.repeats} rounds)\n",
        "| method | ours s | reference s | ratio | range over rounds |",
        "|---|---|---|---|---|",
    ]
    for row in group.rows:
        for label, reference in row.references:
            ratios = round_ratios(times, row.ours, reference)
            lines.append(
                f"| {row.method} {label} | {medians[row.ours]:.3f} | "
                f"{medians[reference]:.3f} ({reference}) | "
                f"**{_ratio_text(statistics.median(ratios))}** | "
                f"{_ratio_text(min(ratios))}–{_ratio_text(max(ratios))} |"
            )
    return "\n".join(lines)


def _csv(value: str) -> List[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=_csv, default=["resnet18", "resnet50"])
    parser.add_argument("--batch-sizes", type=lambda v: [int(b) for b in _csv(v)], default=[1, 8])
    parser.add_argument(
        "--methods", type=_csv, default=list(ALL_METHODS),
        help=f"comma-separated, from {', '.join(ALL_METHODS)}",
    )  # fmt: skip
    parser.add_argument("--repeats", type=int, default=7, help="rounds per group")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up rounds per group")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--ig-steps", type=int, default=8, help="Integrated Grad-CAM n_steps")
    parser.add_argument(
        "--ig-rows", type=int, default=16, help="rows per pass of the batched Integrated Grad-CAM"
    )
    parser.add_argument(
        "--perturbation-models", type=_csv, default=["resnet18"],
        help="models on which Ablation-CAM and Score-CAM are timed (their peers run "
        "K full forwards per example: 512 on resnet18, 2048 on resnet50)",
    )  # fmt: skip
    parser.add_argument(
        "--perturbation-batch-sizes", type=lambda v: [int(b) for b in _csv(v)], default=[1]
    )
    parser.add_argument(
        "--perturbation-batch-size", type=int, default=32,
        help="internal_batch_size of ours and batch_size of pytorch-grad-cam (the same)",
    )  # fmt: skip
    parser.add_argument("--perturbation-repeats", type=int, default=3)
    parser.add_argument(
        "--perturbation-image-size", type=int, default=224,
        help="input side of the Ablation-/Score-CAM groups (their peers' K forwards per "
        "example make ResNet-50 at 224 px, batch 8, tens of CPU minutes per call)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--skip-peers", action="store_true",
        help="leave out pytorch-grad-cam and the n_steps x Captum Grad-CAM references "
        "(the plain-passes, Grad-CAM and Captum Grad-CAM references stay)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    import pytorch_grad_cam  # noqa: F401  (fails early when the peer is not installed)

    print(
        f"# captum_cams speed: torch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"captum {captum.__version__}, {platform.processor() or platform.machine()}, "
        f"CPU, {torch.get_num_threads()} thread(s), no GPU"
    )
    print(f"# command: python {' '.join(sys.argv)}")
    ordinary = [m for m in args.methods if m not in PERTURBATION_METHODS]
    heavy = [m for m in args.methods if m in PERTURBATION_METHODS]
    plan: List[Tuple[str, int, List[str]]] = []
    for model_name in args.models:
        for batch_size in args.batch_sizes:
            if ordinary:
                plan.append((model_name, batch_size, ordinary))
        for batch_size in args.perturbation_batch_sizes:
            if heavy and model_name in args.perturbation_models:
                plan.append((model_name, batch_size, heavy))
    for model_name, batch_size, methods in plan:
        group = build_group(model_name, batch_size, methods, args)
        start = time.perf_counter()
        times = measure(group, args.warmup, args.seed)
        print(report(group, times))
        print("\nmaps checked: " + "; ".join(check(group)))
        print(f"\n({time.perf_counter() - start:.0f} s for this group)", flush=True)


if __name__ == "__main__":
    main()
