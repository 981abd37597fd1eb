#!/usr/bin/env python3
r"""Every method and metric of captum_cams that evaluates many modified copies, called
with its defaults, against the loop a user writes by hand for the same result, at the
sizes users run; pytorch-grad-cam, torchcam and Quantus beside where they have the
method; the peak memory of one default call.

Setup. Models: the shared ImageNet MobileNetV1 (width 0.75, 192 px, real weights,
``captum_cams.kit.models.mobilenet_v1_075_192``; layer ``features[-1]``, 768 x 6 x 6) and
torchvision ResNet-50 (``layer4``), VGG-16 (``features[29]``) and EfficientNet-B0
(``features[-1]``) with random weights at 224 px. Inputs: the first photos of the shared
ImageNet folder (``captum_cams.kit.datasets.ImageNetPhotos``; MobileNet's preprocessing,
or resize 256, centre crop 224 and ImageNet normalisation), batch 1 and 8; the
explained class is each photo's predicted class. Metrics score the Grad-CAM maps of
the same photos (computed once, untimed). CPU, one intra-op thread (``--threads``).

The hand loop is what a user writes for the same result (checked: the same maps or
scores in the same run, float32 tolerance): hooks on the layer and
``torch.autograd.grad`` with the model as loaded (parameters require gradients);
Grad-CAM(++): one forward and backward of the batch; Score-CAM: one forward, then the
masked copies in chunks of 32 channels per image; Ablation-CAM: one head pass per chunk
of 32 ablated channels; SHAP-CAM: the head on the prefix rows in chunks of 32;
Integrated Grad-CAM: a forward at the zero baseline, then one forward and backward of
the batch per path step; TFT: Grad-CAM, then one forward of the batch per threshold;
Libra-CAM: one gradient, then per photo one forward of its R reference-masked copies
and one of its T threshold-masked copies; the metrics: one forward of the batch per
mask (per step, threshold, candidate, fraction or region), plus the unmasked forward
where the metric needs y; cascading randomisation: a copy of the model and Grad-CAM
after each re-initialised layer.

Timing: within one cell (model, batch size) every callable runs once per round, in a
freshly shuffled order, after one warm-up round; reported are the median seconds per
call and the median (smallest–largest) over rounds of the per-round ratio
ours / hand loop (and ours / peer). Methods whose one call is minutes (Score-CAM,
pytorch-grad-cam's Ablation-CAM, SHAP-CAM) form their own group per cell with
``--heavy-rounds`` rounds and no warm-up. ``--memory`` measures, in a fresh process
per call, the peak rise of the resident set during one default call (a sampling
thread, 1 ms; after an identical call and ``malloc_trim``, so that kernels' caches for
these shapes exist and the allocator holds no freed memory; glibc's mmap threshold
fixed at 64 KiB, so that freed tensors leave the resident set at once and it follows
the memory in use) and during one plain forward of the batch.

Run ``python benchmarks/speed.py --help``; ``docs/speed.md`` has the table and the
command behind it.
"""

import argparse
import copy
import ctypes
import gc
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

os.environ.setdefault("TQDM_DISABLE", "1")  # pytorch-grad-cam's progress bars

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torchvision  # noqa: E402
from torch import Tensor, nn  # noqa: E402

import captum_cams  # noqa: E402
from captum_cams import (  # noqa: E402
    LayerAblationCam,
    LayerCam,
    LayerGradCam,
    LayerGradCamPlusPlus,
    LayerIntegratedGradCam,
    LayerLibraCam,
    LayerScoreCam,
    LayerShapCam,
    ReferenceLibrary,
    ThresholdFineTuned,
    reference_filtering,
    threshold_calibration,
)
from captum_cams.attr.shap_cam import permutation_orders  # noqa: E402
from captum_cams.metrics import (  # noqa: E402
    average_drop,
    average_drop_in_deletion,
    cascading_randomization,
    deletion_auc,
    insertion_auc,
    intervention_reliance,
    remove_and_classify,
    spearman_correlation,
    threshold_sweep,
)

MODELS = ("mobilenet", "resnet50", "vgg16", "efficientnet_b0")
METHOD_ITEMS = (
    "gradcam", "gradcam++", "scorecam", "ablationcam", "shapcam", "igcam", "tft", "libracam",
)  # fmt: skip
METRIC_ITEMS = (
    "average_drop", "average_drop_in_deletion", "threshold_sweep", "threshold_calibration",
    "reference_filtering", "deletion_auc", "insertion_auc", "remove_and_classify",
    "intervention_reliance", "cascading_randomization",
)  # fmt: skip
ALL_ITEMS = METHOD_ITEMS + METRIC_ITEMS
#: Items whose one call runs a full forward per channel: their own group, fewer rounds.
HEAVY_ITEMS = ("scorecam", "shapcam")
#: Peers whose one call runs a full forward per channel (pytorch-grad-cam's Ablation-CAM).
HEAVY_PEERS = ("Ablation-CAM (pytorch-grad-cam)",)
IG_STEPS = 20
LIBRA_REFERENCES = 30
HAND_CHUNK = 32
THRESHOLDS = [i / 10 for i in range(1, 11)]
SWEEP = [i / 10 for i in range(11)]


# ----------------------------------------------------------------------------- setup
@dataclass
class Cell:
    r"""One (model, batch size): the model, its layer and head, photos and targets."""

    model_name: str
    model: nn.Module
    layer: nn.Module
    head: Callable[[Tensor], Tensor]
    x: Tensor
    target: Tensor
    maps: Tensor = field(default_factory=lambda: torch.empty(0))
    extras: Dict[str, Any] = field(default_factory=dict)


def _imagenet_transform(size: int) -> Any:
    import torchvision.transforms as T

    return T.Compose(
        [
            T.Resize(256 if size == 224 else 219),
            T.CenterCrop(size),
            T.ToTensor(),
            T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    )


def build_cell(model_name: str, batch_size: int) -> Cell:
    r"""The model at its size, the first ``batch_size`` photos, predicted classes."""
    from captum_cams.kit.datasets import IMAGENET_MOBILENET_FILE, ImageNetPhotos, imagenet_root
    from captum_cams.kit.models import mobilenet_v1_075_192

    torch.manual_seed(0)
    if model_name == "mobilenet":
        model = mobilenet_v1_075_192(imagenet_root() / IMAGENET_MOBILENET_FILE)
        layer, transform = model.features[-1], None
        head: Callable[[Tensor], Tensor] = model.classifier
    else:
        model = getattr(torchvision.models, model_name)(weights=None).eval()
        transform = _imagenet_transform(224)
        if model_name == "resnet50":
            layer = model.layer4
            head = lambda a: model.fc(torch.flatten(model.avgpool(a), 1))  # noqa: E731
        elif model_name == "vgg16":
            layer = model.features[29]
            head = lambda a: model.classifier(  # noqa: E731
                torch.flatten(model.avgpool(model.features[30](a)), 1)
            )
        else:
            layer = model.features[-1]
            head = lambda a: model.classifier(torch.flatten(model.avgpool(a), 1))  # noqa: E731
    photos = ImageNetPhotos(indices=range(batch_size), transform=transform)
    x = torch.stack([photos[i][0] for i in range(batch_size)])
    with torch.no_grad():
        target = model(x).argmax(dim=1)
    cell = Cell(model_name, model, layer, head, x, target)
    cell.maps = LayerGradCam(model, layer).attribute(x, target=target, relu_attributions=True)
    return cell


# ----------------------------------------------------------------------------- hand loops
def _capture(model: nn.Module, layer: nn.Module, x: Tensor) -> Tuple[Tensor, Tensor]:
    r"""No-grad forward: ``(A, logits)``."""
    store: Dict[str, Tensor] = {}
    handle = layer.register_forward_hook(lambda _m, _i, out: store.__setitem__("a", out))
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        handle.remove()
    return store["a"], logits


def _gradient(model: nn.Module, layer: nn.Module, x: Tensor, target: Tensor,
              probability: bool = False) -> Tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    r"""One forward and backward, the model as loaded: ``(A, dy_c/dA, logits)``."""
    store: Dict[str, Tensor] = {}
    handle = layer.register_forward_hook(lambda _m, _i, out: store.__setitem__("a", out))
    try:
        logits = model(x)
    finally:
        handle.remove()
    scores = logits.softmax(dim=1) if probability else logits
    (grad,) = torch.autograd.grad(scores.gather(1, target[:, None]).sum(), store["a"])
    return store["a"].detach(), grad, logits.detach()


def _mm(maps: Tensor) -> Tensor:
    flat = maps.flatten(1)
    low, high = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    return ((flat - low) / (high - low).clamp_min(1e-7)).view_as(maps)


def _up(maps: Tensor, size: Sequence[int]) -> Tensor:
    return F.interpolate(maps, size=tuple(size), mode="bilinear", align_corners=False)


def _prob(model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
    with torch.no_grad():
        return model(x).softmax(dim=1).gather(1, target[:, None]).squeeze(1)


def _grad_cam_map(a: Tensor, g: Tensor) -> Tensor:
    return torch.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1, keepdim=True))


def hand_grad_cam(c: Cell) -> Callable[[], Tensor]:
    def run() -> Tensor:
        a, g, _ = _gradient(c.model, c.layer, c.x, c.target)
        return _grad_cam_map(a, g)

    return run


def hand_grad_cam_plus_plus(c: Cell) -> Callable[[], Tensor]:
    def run() -> Tensor:
        a, g, _ = _gradient(c.model, c.layer, c.x, c.target)
        squared = g.pow(2)
        alpha = squared / (2 * squared + a.sum(dim=(2, 3), keepdim=True) * squared * g + 1e-6)
        alpha = torch.where(g != 0, alpha, torch.zeros_like(alpha))
        w = (torch.relu(g) * alpha).sum(dim=(2, 3), keepdim=True)
        return torch.relu((w * a).sum(dim=1, keepdim=True))

    return run


def hand_score_cam(c: Cell) -> Callable[[], Tensor]:
    def run() -> Tensor:
        a, _ = _capture(c.model, c.layer, c.x)
        weights = []
        with torch.no_grad():
            for i in range(a.shape[0]):
                scores = []
                for start in range(0, a.shape[1], HAND_CHUNK):
                    masks = _up(_mm(a[i, start : start + HAND_CHUNK, None]), c.x.shape[-2:])
                    scores.append(c.model(c.x[i : i + 1] * masks)[:, c.target[i]])
                weights.append(torch.cat(scores).softmax(dim=0))
        w = torch.stack(weights)[:, :, None, None]
        return torch.relu((w * a).sum(dim=1, keepdim=True))

    return run


def hand_ablation_cam(c: Cell) -> Callable[[], Tensor]:
    def run() -> Tensor:
        a, logits = _capture(c.model, c.layer, c.x)
        y = logits.gather(1, c.target[:, None])
        n, k = a.shape[:2]
        ablated_scores = torch.empty(n, k)
        with torch.no_grad():
            for i in range(n):
                for start in range(0, k, HAND_CHUNK):
                    channels = torch.arange(start, min(start + HAND_CHUNK, k))
                    copies = a[i].repeat(len(channels), 1, 1, 1)
                    copies[torch.arange(len(channels)), channels] = 0
                    ablated_scores[i, channels] = c.head(copies)[:, c.target[i]]
        w = ((y - ablated_scores) / y)[:, :, None, None]
        return torch.relu((w * a).sum(dim=1, keepdim=True))

    return run


def hand_shap_cam(c: Cell, permutations: int = 10) -> Callable[[], Tensor]:
    def run() -> Tensor:
        a, _ = _capture(c.model, c.layer, c.x)
        n, k = a.shape[:2]
        orders = permutation_orders(n, permutations, k, seed=0)  # the package's draws
        phi = torch.zeros(n, k)
        with torch.no_grad():
            for i in range(n):
                empty = c.head(torch.zeros_like(a[i : i + 1]))[0, c.target[i]]
                full = c.head(a[i : i + 1].clone())[0, c.target[i]]
                for p in range(permutations):
                    order = orders[i, p]
                    ranks = torch.empty(k, dtype=torch.long)
                    ranks[order] = torch.arange(k)
                    values = [empty]
                    for start in range(1, k, HAND_CHUNK):  # prefixes of 1 .. K-1 channels
                        sizes = torch.arange(start, min(start + HAND_CHUNK, k))
                        present = (ranks[None, :] < sizes[:, None]).to(a.dtype)
                        values.extend(c.head(a[i] * present[:, :, None, None])[:, c.target[i]])
                    values.append(full)
                    curve = torch.stack(values)
                    phi[i, order] += (curve[1:] - curve[:-1]) / permutations
        return torch.relu((phi[:, :, None, None] * a).sum(dim=1, keepdim=True))

    return run


def hand_integrated_grad_cam(c: Cell) -> Callable[[], Tensor]:
    def run() -> Tensor:
        start, _ = _capture(c.model, c.layer, torch.zeros_like(c.x))
        total = torch.zeros_like(start[:, :1])
        for t in range(1, IG_STEPS + 1):
            a, g, _ = _gradient(c.model, c.layer, t / IG_STEPS * c.x, c.target)
            w = g.mean(dim=(2, 3), keepdim=True)
            total += torch.relu((w * (a - start)).sum(dim=1, keepdim=True)) / IG_STEPS
        return total

    return run


def hand_tft(c: Cell) -> Callable[[], Tuple[Tensor, Tensor]]:
    def run() -> Tuple[Tensor, Tensor]:
        a, g, logits = _gradient(c.model, c.layer, c.x, c.target)
        image = _mm(_up(_grad_cam_map(a, g), c.x.shape[-2:]))
        y = logits.softmax(dim=1).gather(1, c.target[:, None]).squeeze(1)
        rpi = torch.stack(
            [
                torch.clamp(_prob(c.model, c.x * (image * (image >= t) != 0), c.target) - y, min=0)
                / y
                for t in THRESHOLDS
            ],
            dim=1,
        )
        best = torch.tensor(THRESHOLDS)[rpi.argmax(dim=1)].view(-1, 1, 1, 1)
        improved = (rpi.max(dim=1).values > 0).view(-1, 1, 1, 1)
        return torch.where(improved, image * (image >= best), image), rpi

    return run


def random_library(c: Cell) -> ReferenceLibrary:
    r"""``LIBRARY_REFERENCES`` activations of noise images shared by every class (the
    cost of Libra-CAM does not depend on how the references were chosen)."""
    generator = torch.Generator().manual_seed(1)
    noise = torch.randn((LIBRA_REFERENCES, *c.x.shape[1:]), generator=generator)
    activations, logits = _capture(c.model, c.layer, noise)
    every = torch.arange(LIBRA_REFERENCES)
    return ReferenceLibrary(
        activations.detach().clone(), [every] * logits.shape[1], 1e-4, LIBRA_REFERENCES
    )


def hand_libra_cam(c: Cell) -> Callable[[], Tuple[Tensor, Tensor]]:
    library = c.extras["library"]
    thresholds = torch.tensor(THRESHOLDS, dtype=c.x.dtype).view(-1, 1, 1, 1)

    def run() -> Tuple[Tensor, Tensor]:
        a, g, _ = _gradient(c.model, c.layer, c.x, c.target, probability=True)
        refs = library.activations
        maps, curves = [], []
        for i in range(a.shape[0]):
            raw = (g[i] * a[i]).sum(dim=0) - torch.einsum("khw,rkhw->rhw", g[i], refs)
            base = _up(_mm(raw[:, None]), c.x.shape[-2:])
            t = c.target[i : i + 1].expand(base.shape[0])
            s = _prob(c.model, c.x[i : i + 1] * base, t)
            kept = s >= s.mean() + s.std(correction=0)
            averaged = base[kept].mean(dim=0) if bool(kept.any()) else base.mean(dim=0)
            soft = averaged * (averaged >= thresholds)
            scores = _prob(c.model, c.x[i : i + 1] * soft, c.target[i : i + 1].expand(len(soft)))
            maps.append(soft[scores.argmax()])
            curves.append(scores)
        return torch.stack(maps), torch.stack(curves)

    return run


def _image_maps(c: Cell) -> Tensor:
    return _mm(_up(c.maps, c.x.shape[-2:]))


def hand_average_drop(c: Cell) -> Callable[[], Tensor]:
    def run() -> Tensor:
        y = _prob(c.model, c.x, c.target)
        o = _prob(c.model, c.x * _image_maps(c), c.target)
        return torch.clamp(y - o, min=0) / y

    return run


def hand_average_drop_in_deletion(c: Cell) -> Callable[[], Tensor]:
    def run() -> Tensor:
        y = _prob(c.model, c.x, c.target)
        return (y - _prob(c.model, c.x * (1 - _image_maps(c)), c.target)) / y

    return run


def hand_threshold_sweep(c: Cell) -> Callable[[], Tensor]:
    def run() -> Tensor:
        # the sweep's result is API (and APD) at every threshold: y too
        y = _prob(c.model, c.x, c.target)[:, None]
        image = _image_maps(c)
        o = torch.stack(
            [_prob(c.model, c.x * (image * (image >= t)), c.target) for t in SWEEP], dim=1
        )
        return torch.clamp(o - y, min=0) / y

    return run


def hand_threshold_calibration(c: Cell) -> Callable[[], Tensor]:
    def run() -> Tensor:
        image = _image_maps(c)
        return torch.stack(
            [_prob(c.model, c.x * (image * (image >= t)), c.target) for t in THRESHOLDS], dim=1
        )

    return run


def _candidates(c: Cell) -> Tensor:
    return c.extras["candidates"]


def hand_reference_filtering(c: Cell) -> Callable[[], Tensor]:
    def run() -> Tensor:
        candidates = _candidates(c)
        return torch.stack(
            [
                _prob(c.model, c.x * _mm(_up(candidates[:, r : r + 1], c.x.shape[-2:])), c.target)
                for r in range(candidates.shape[1])
            ],
            dim=1,
        )

    return run


def _blur(x: Tensor, size: int = 11, sigma: float = 5.0) -> Tensor:
    half = size // 2
    offsets = torch.arange(-half, half + 1, dtype=x.dtype)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = x.shape[1]
    out = F.pad(x, (half, half, 0, 0), mode="replicate")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels)
    out = F.pad(out, (0, 0, half, half), mode="replicate")
    return F.conv2d(out, kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels)


def _order(image: Tensor) -> Tensor:
    order = torch.argsort(image.flatten(1), dim=1, descending=True, stable=True)
    return torch.argsort(order, dim=1)


def hand_curve(c: Cell, insertion: bool) -> Callable[[], Tensor]:
    def run() -> Tensor:
        ranks = _order(_image_maps(c))
        pixels = ranks.shape[1]
        base = _blur(c.x) if insertion else torch.zeros_like(c.x)
        scores = []
        for i in range(41):
            count = pixels if i == 40 else int(math.floor(min(i * 0.025, 1.0) * pixels + 0.5))
            top = (ranks < count).to(c.x.dtype).view(-1, 1, *c.x.shape[-2:])
            keep = top if insertion else 1 - top
            scores.append(_prob(c.model, keep * c.x + (1 - keep) * base, c.target))
        return torch.stack(scores, dim=1)

    return run


def hand_remove_and_classify(c: Cell) -> Callable[[], Tensor]:
    def run() -> Tensor:
        ranks = _order(_image_maps(c))
        pixels = ranks.shape[1]
        generator = torch.Generator().manual_seed(0)
        random_ranks = torch.stack(
            [torch.randperm(pixels, generator=generator) for _ in range(len(c.x))]
        )
        base = _blur(c.x)
        correct = []
        for order in (ranks, random_ranks):
            for k in range(1, 10):
                count = int(math.floor(k / 10 * pixels + 0.5))
                erase = (order < count).to(c.x.dtype).view(-1, 1, *c.x.shape[-2:])
                with torch.no_grad():
                    logits = c.model((1 - erase) * c.x + erase * base)
                correct.append((logits.argmax(dim=1) == c.target).to(c.x.dtype))
        return torch.stack(correct, dim=1)

    return run


def _interventions(c: Cell) -> Tensor:
    r"""``N x 4 x C x H x W``: each photo with one quadrant set to zero."""
    height, width = c.x.shape[-2:]
    copies = []
    for top, left in ((0, 0), (0, width // 2), (height // 2, 0), (height // 2, width // 2)):
        copy_ = c.x.clone()
        copy_[:, :, top : top + height // 2, left : left + width // 2] = 0
        copies.append(copy_)
    return torch.stack(copies, dim=1)


def hand_intervention_reliance(c: Cell) -> Callable[[], Tensor]:
    def run() -> Tensor:
        copies = c.extras["interventions"]
        y = _prob(c.model, c.x, c.target)
        return torch.stack(
            [y - _prob(c.model, copies[:, r], c.target) for r in range(copies.shape[1])], dim=1
        )

    return run


def _last_layers(model: nn.Module, count: int = 3) -> List[str]:
    names = [
        name
        for name, module in model.named_modules()
        if name
        and callable(getattr(module, "reset_parameters", None))
        and any(True for _ in module.parameters(recurse=False))
    ]
    return names[::-1][:count]


def _layer_path(model: nn.Module, layer: nn.Module) -> str:
    return next(name for name, module in model.named_modules() if module is layer)


def hand_cascading_randomization(c: Cell) -> Callable[[], Tensor]:
    names, layer_name = _last_layers(c.model), _layer_path(c.model, c.layer)

    def run() -> Tensor:
        work = copy.deepcopy(c.model)
        modules = dict(work.named_modules())
        a, g, _ = _gradient(work, modules[layer_name], c.x, c.target)
        original = _grad_cam_map(a, g)
        columns = []
        for step, name in enumerate(names):
            with torch.random.fork_rng():
                torch.manual_seed(step)
                with torch.no_grad():
                    modules[name].reset_parameters()
            a, g, _ = _gradient(work, modules[layer_name], c.x, c.target)
            columns.append(spearman_correlation(original, _grad_cam_map(a, g)))
        return torch.stack(columns, dim=1)

    return run


# ----------------------------------------------------------------------------- ours
def ours(c: Cell, item: str) -> Callable[[], Any]:
    r"""The package's call for ``item``, every chunking argument at its default."""
    m, layer, x, t = c.model, c.layer, c.x, c.target
    maps = c.maps
    calls: Dict[str, Callable[[], Any]] = {
        "gradcam": lambda: LayerGradCam(m, layer).attribute(x, target=t, relu_attributions=True),
        "gradcam++": lambda: LayerGradCamPlusPlus(m, layer).attribute(x, target=t),
        "scorecam": lambda: LayerScoreCam(m, layer).attribute(x, target=t),
        "ablationcam": lambda: LayerAblationCam(m, layer).attribute(x, target=t),
        "shapcam": lambda: LayerShapCam(m, layer).attribute(x, target=t),
        "igcam": lambda: LayerIntegratedGradCam(m, layer).attribute(x, target=t, n_steps=IG_STEPS),
        "tft": lambda: ThresholdFineTuned(LayerGradCam(m, layer)).attribute(
            x, target=t, relu_attributions=True, return_details=True
        ),
        "libracam": lambda: LayerLibraCam(m, layer, library=c.extras["library"]).attribute(
            x, target=t, return_details=True
        ),
        "average_drop": lambda: average_drop(m, x, maps, target=t),
        "average_drop_in_deletion": lambda: average_drop_in_deletion(m, x, maps, target=t),
        "threshold_sweep": lambda: threshold_sweep(m, x, maps, target=t),
        "threshold_calibration": lambda: threshold_calibration(m, x, maps, target=t),
        "reference_filtering": lambda: reference_filtering(m, x, _candidates(c), target=t),
        "deletion_auc": lambda: deletion_auc(m, x, maps, target=t, return_curves=True),
        "insertion_auc": lambda: insertion_auc(m, x, maps, target=t, return_curves=True),
        "remove_and_classify": lambda: remove_and_classify(m, x, maps, target=t),
        "intervention_reliance": lambda: intervention_reliance(
            m, x, c.extras["interventions"], target=t
        ),
        "cascading_randomization": lambda: cascading_randomization(
            m,
            lambda model, inputs, target: LayerGradCam(
                model, dict(model.named_modules())[_layer_path(c.model, c.layer)]
            ).attribute(inputs, target=target, relu_attributions=True),
            x,
            target=t,
            layers=_last_layers(m),
        ),  # fmt: skip
    }
    return calls[item]


HAND: Dict[str, Callable[..., Callable[[], Any]]] = {
    "gradcam": hand_grad_cam,
    "gradcam++": hand_grad_cam_plus_plus,
    "scorecam": hand_score_cam,
    "ablationcam": hand_ablation_cam,
    "shapcam": hand_shap_cam,
    "igcam": hand_integrated_grad_cam,
    "tft": hand_tft,
    "libracam": hand_libra_cam,
    "average_drop": hand_average_drop,
    "average_drop_in_deletion": hand_average_drop_in_deletion,
    "threshold_sweep": hand_threshold_sweep,
    "threshold_calibration": hand_threshold_calibration,
    "reference_filtering": hand_reference_filtering,
    "deletion_auc": lambda c: hand_curve(c, insertion=False),
    "insertion_auc": lambda c: hand_curve(c, insertion=True),
    "remove_and_classify": hand_remove_and_classify,
    "intervention_reliance": hand_intervention_reliance,
    "cascading_randomization": hand_cascading_randomization,
}


def comparable(item: str, output: Any) -> Tensor:
    r"""What the check compares: the maps, or the scores a metric is computed from."""
    if item in ("tft", "libracam"):
        output = output[1]  # (maps, details) of ours; (maps, curve) of the hand loop
    if item == "threshold_sweep" and hasattr(output, "api"):
        return output.api
    if item == "remove_and_classify" and hasattr(output, "correct"):
        return torch.cat([output.correct, output.random_correct], dim=1)
    for name in ("rpi_curves", "calibration_scores", "curves", "correlations", "scores"):
        if hasattr(output, name):
            return getattr(output, name)
    return output


# ----------------------------------------------------------------------------- peers
def peers(c: Cell, item: str) -> Dict[str, Callable[[], Any]]:
    r"""pytorch-grad-cam, torchcam and Quantus on the same settings, where they have
    the method (maps left at layer resolution where the library allows)."""
    found: Dict[str, Callable[[], Any]] = {}
    if item in ("scorecam", "ablationcam", "gradcam++"):
        from pytorch_grad_cam import AblationCAM, GradCAMPlusPlus, ScoreCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        peer_class = {
            "scorecam": ScoreCAM,
            "ablationcam": AblationCAM,
            "gradcam++": GradCAMPlusPlus,
        }
        targets = [ClassifierOutputTarget(int(t)) for t in c.target]

        def pgc() -> Any:
            kwargs = {"batch_size": HAND_CHUNK} if item == "ablationcam" else {}
            with peer_class[item](model=c.model, target_layers=[c.layer], **kwargs) as cam:
                cam.batch_size = HAND_CHUNK  # Score-CAM reads the attribute (default 16)
                cam.get_target_width_height = lambda _inputs: None  # layer resolution
                return cam(input_tensor=c.x, targets=targets)

        label = {"scorecam": "Score-CAM", "ablationcam": "Ablation-CAM", "gradcam++": "Grad-CAM++"}
        found[f"{label[item]} (pytorch-grad-cam)"] = pgc
    if item in ("scorecam", "gradcam++"):
        from torchcam.methods import GradCAMpp
        from torchcam.methods import ScoreCAM as TorchcamScoreCAM

        def torchcam() -> Any:
            shape = tuple(c.x.shape[1:])
            if item == "scorecam":
                extractor: Any = TorchcamScoreCAM(
                    c.model, c.layer, batch_size=HAND_CHUNK, input_shape=shape
                )
            else:
                extractor = GradCAMpp(c.model, c.layer, input_shape=shape)
            try:
                with torch.set_grad_enabled(item != "scorecam"):
                    scores = c.model(c.x)
                return extractor(c.target.tolist(), scores)
            finally:
                extractor.remove_hooks()

        found[f"{'Score-CAM' if item == 'scorecam' else 'Grad-CAM++'} (torchcam)"] = torchcam
    if item == "deletion_auc":
        import numpy as np
        import quantus

        pixels = c.x.shape[-1] * c.x.shape[-2]
        a_batch = _image_maps(c).numpy()
        x_batch, y_batch = c.x.numpy(), c.target.numpy()

        def pixel_flipping() -> Any:
            metric = quantus.PixelFlipping(
                features_in_step=3 * pixels // 48, perturb_baseline="black",
                disable_warnings=True,
            )  # fmt: skip
            return metric(model=c.model, x_batch=x_batch, y_batch=y_batch,
                          a_batch=np.repeat(a_batch, 3, axis=1), device="cpu",
                          batch_size=len(x_batch))  # fmt: skip

        def region_perturbation() -> Any:
            metric = quantus.RegionPerturbation(
                patch_size=c.x.shape[-1] // 8, regions_evaluation=40, order="morf",
                perturb_baseline="black", disable_warnings=True,
            )  # fmt: skip
            return metric(model=c.model, x_batch=x_batch, y_batch=y_batch, a_batch=a_batch,
                          device="cpu", batch_size=len(x_batch))  # fmt: skip

        found["PixelFlipping, 48 steps (Quantus)"] = pixel_flipping
        found["RegionPerturbation, 40 regions (Quantus)"] = region_perturbation
    return found


# ----------------------------------------------------------------------------- timing
@dataclass
class Group:
    r"""Callables measured round-robin together, and the rows read from them."""

    cell: Cell
    rounds: int
    warmup: bool
    callables: Dict[str, Callable[[], Any]] = field(default_factory=dict)
    rows: List[Tuple[str, str, str, List[str]]] = field(default_factory=list)
    outputs: Dict[str, Any] = field(default_factory=dict)


def prepare(cell: Cell, items: Sequence[str]) -> None:
    if "libracam" in items:
        cell.extras["library"] = random_library(cell)
    if "reference_filtering" in items:
        plus = LayerGradCamPlusPlus(cell.model, cell.layer).attribute(cell.x, target=cell.target)
        layer_cam = LayerCam(cell.model, cell.layer).attribute(cell.x, target=cell.target)
        cell.extras["candidates"] = torch.cat([cell.maps, plus, layer_cam], dim=1).detach()
    if "intervention_reliance" in items:
        cell.extras["interventions"] = _interventions(cell)


def build_groups(cell: Cell, items: Sequence[str], args: argparse.Namespace) -> List[Group]:
    light = Group(cell, args.rounds, True)
    heavy = Group(cell, args.heavy_rounds, False)
    for item in items:
        found = {} if args.skip_peers else peers(cell, item)
        if not args.heavy_peers:
            found = {label: call for label, call in found.items() if label not in HEAVY_PEERS}
        # an item with a peer of minutes per call runs with the heavy group, so that
        # it and its peer take turns in the same rounds
        slow = item in HEAVY_ITEMS or any(label in HEAVY_PEERS for label in found)
        group = heavy if slow else light
        group.callables[f"{item} (ours)"] = ours(cell, item)
        group.callables[f"{item} (hand loop)"] = HAND[item](cell)
        group.callables.update(found)
        group.rows.append((item, f"{item} (ours)", f"{item} (hand loop)", list(found)))
    return [g for g in (light, heavy) if g.callables]


def measure(group: Group, seed: int, min_time: float) -> Dict[str, List[float]]:
    r"""Seconds per call of every callable, round-robin in a shuffled order per round.
    After the warm-up, a callable faster than ``min_time`` is repeated within its turn
    until about ``min_time`` has passed (its time is the mean), so that a scheduler
    hiccup on a shared machine moves one turn less."""
    names = list(group.callables)
    repeats = {name: 1 for name in names}
    if group.warmup:
        for name in names:
            start = time.perf_counter()
            group.outputs.setdefault(name, group.callables[name]())
            took = time.perf_counter() - start
            repeats[name] = max(1, math.ceil(min_time / max(took, 1e-6)))
    times: Dict[str, List[float]] = {name: [] for name in names}
    order = random.Random(seed)
    for _ in range(group.rounds):
        order.shuffle(names)
        for name in names:
            start = time.perf_counter()
            for _ in range(repeats[name]):
                output = group.callables[name]()
            times[name].append((time.perf_counter() - start) / repeats[name])
            group.outputs.setdefault(name, output)
    return times


def check(group: Group) -> List[str]:
    r"""Ours against the hand loop from the same run: the same computation, else the
    ratio means nothing. Raises beyond float32 rounding through a model."""
    lines = []
    for item, ours_name, hand_name, _ in group.rows:
        mine = comparable(item, group.outputs[ours_name]).detach().float()
        hand = comparable(item, group.outputs[hand_name]).detach().float()
        if mine.shape != hand.shape:
            mine = mine.reshape(hand.shape)
        difference = float((mine - hand).abs().max()) if mine.numel() else 0.0
        scale = float(hand.abs().max()) or 1.0
        if item == "remove_and_classify":  # 0/1 decisions: a float near-tie may flip one
            ok = float((mine != hand).float().mean()) <= 0.02
        else:
            ok = difference <= 2e-3 * scale
        if not ok:
            raise SystemExit(
                f"{item}: the hand loop's result differs from ours by {difference:.3g} "
                f"(largest {scale:.3g}): not the same computation"
            )
        lines.append(f"{item} {difference:.1g}")
    return lines


def ratios(times: Dict[str, List[float]], mine: str, other: str) -> List[float]:
    return [a / b for a, b in zip(times[mine], times[other])]


def report(group: Group, times: Dict[str, List[float]]) -> List[Dict[str, Any]]:
    medians = {name: statistics.median(values) for name, values in times.items()}
    records = []
    for item, ours_name, hand_name, peer_labels in group.rows:
        per_round = ratios(times, ours_name, hand_name)
        record = {
            "model": group.cell.model_name,
            "batch": len(group.cell.x),
            "item": item,
            "rounds": group.rounds,
            "ours_s": medians[ours_name],
            "hand_s": medians[hand_name],
            "ratio": statistics.median(per_round),
            "ratio_min": min(per_round),
            "ratio_max": max(per_round),
            "peers": {},
        }
        for label in peer_labels:
            if label in times and len(times[label]) == len(times[ours_name]):
                peer_rounds = ratios(times, ours_name, label)
                record["peers"][label] = {
                    "s": medians[label],
                    "ratio": statistics.median(peer_rounds),
                    "ratio_min": min(peer_rounds),
                    "ratio_max": max(peer_rounds),
                }
            elif label in times:
                record["peers"][label] = {"s": medians[label]}
        records.append(record)
    return records


def _range(record: Dict[str, Any]) -> str:
    return f"{record['ratio']:.2f} ({record['ratio_min']:.2f}–{record['ratio_max']:.2f})"


def print_records(records: List[Dict[str, Any]]) -> None:
    print("| model, batch | method / metric | n | ours s | hand loop s | ours / hand loop "
          "(min–max) | beside (ours / peer) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for r in records:
        beside = "; ".join(
            f"{label}: {p['s']:.3g} s" + (f", {_range(p)}" if "ratio" in p else "")
            for label, p in r["peers"].items()
        )
        print(
            f"| {r['model']}, {r['batch']} | {r['item']} | {r['rounds']} | {r['ours_s']:.3g} | "
            f"{r['hand_s']:.3g} | **{r['ratio']:.2f}** ({r['ratio_min']:.2f}–{r['ratio_max']:.2f}) "
            f"| {beside} |",
            flush=True,
        )


LABELS = {
    "gradcam": "Grad-CAM (`LayerGradCam`)",
    "gradcam++": "Grad-CAM++",
    "scorecam": "Score-CAM",
    "ablationcam": "Ablation-CAM",
    "shapcam": "SHAP-CAM (10 orders)",
    "igcam": f"Integrated Grad-CAM ({IG_STEPS} steps)",
    "tft": "TFT on Grad-CAM (`ThresholdFineTuned`)",
    "libracam": f"Libra-CAM ({LIBRA_REFERENCES} references)",
    "average_drop": "AD (`average_drop`; IC, API, DR: the same pass)",
    "average_drop_in_deletion": "ADD",
    "threshold_sweep": "threshold sweep (11 thresholds) and its AUC",
    "threshold_calibration": "threshold calibration",
    "reference_filtering": "reference filtering (3 candidates)",
    "deletion_auc": "deletion (41 steps)",
    "insertion_auc": "insertion (41 steps, blur)",
    "remove_and_classify": "remove-and-classify (9 fractions × 2)",
    "intervention_reliance": "reliance (4 interventions)",
    "cascading_randomization": "cascading randomisation (3 layers)",
}


def tabulate(paths: Sequence[str]) -> None:
    r"""The grid of method / metric by model and batch size from ``--json`` records
    (the last record of a cell wins): ratio (min–max) and n, then the seconds."""
    cells: Dict[Tuple[str, int, str], Dict[str, Any]] = {}
    for path in paths:
        with open(path) as handle:
            for line in handle:
                if line.strip():
                    record = json.loads(line)
                    cells[(record["model"], record["batch"], record["item"])] = record
    columns = sorted({(model, batch) for model, batch, _ in cells},
                     key=lambda c: (MODELS.index(c[0]), c[1]))  # fmt: skip
    header = " | ".join(f"{model}, batch {batch}" for model, batch in columns)
    rule = "|---" * (len(columns) + 1) + "|"
    for what in ("ratio", "seconds"):
        print(f"\n| method / metric | {header} |\n{rule}")
        for item in ALL_ITEMS:
            row = []
            for model, batch in columns:
                r = cells.get((model, batch, item))
                if r is None:
                    row.append("not run")
                elif what == "ratio":
                    row.append(f"**{_range(r).replace(' (', '** (', 1)}, n = {r['rounds']}")
                else:
                    row.append(f"{r['ours_s']:.3g} / {r['hand_s']:.3g}")
            if any(cell != "not run" for cell in row):
                print(f"| {LABELS[item]} | " + " | ".join(row) + " |")


# ----------------------------------------------------------------------------- memory
def _sampled_peak(call: Callable[[], Any], seconds: Optional[float]) -> Tuple[float, float]:
    r"""``(peak rise, before)`` of the resident set in MiB during ``call`` (during its
    first ``seconds`` only, when given: the process then ends without finishing it)."""
    page = os.sysconf("SC_PAGE_SIZE")

    def rss() -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * page

    before = rss()
    peak = [before]
    done = threading.Event()
    worker = threading.Thread(target=lambda: (call(), done.set()), daemon=True)
    worker.start()
    start = time.perf_counter()
    while not done.is_set() and (seconds is None or time.perf_counter() - start < seconds):
        peak[0] = max(peak[0], rss())
        time.sleep(0.001)
    peak[0] = max(peak[0], rss())
    return (peak[0] - before) / 2**20, before / 2**20


def memory_child(model_name: str, batch_size: int, item: str, seconds: Optional[float]) -> None:
    torch.set_num_threads(1)
    cell = build_cell(model_name, batch_size)
    prepare(cell, [item])
    if item == "forward":

        def call() -> Any:  # fmt: skip
            with torch.no_grad():
                return cell.model(cell.x)
    else:
        call = ours(cell, item)
    # An identical call first (kernels and their caches for these shapes exist from then
    # on; not with a time limit), then the allocator's free memory back to the system:
    # the rise of the measured call is what one call holds at its peak.
    if seconds is None:
        call()
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    rise, before = _sampled_peak(call, seconds)
    print(json.dumps({"item": item, "rise_mib": rise, "before_mib": before}), flush=True)
    os._exit(0)  # a call cut short by ``seconds`` is not waited for


def passes(cell: Cell, items: Sequence[str]) -> None:
    r"""The passes through the whole model of one call of ours and of the hand loop,
    after one call of each: per pass size, how many, ms per row and page faults per
    row (the process's minor faults during those passes), counted by hooks on the
    model. Shows where two calls of the same rows differ: in their pass sizes, and
    in whether the allocator gave a pass's tensors fresh pages."""
    import resource

    started: Dict[str, float] = {}
    stats: Dict[Tuple[bool, int], List[float]] = {}

    def faults() -> float:
        return float(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)

    def before_pass(_module: nn.Module, _inputs: Any) -> None:
        started["time"], started["faults"] = time.perf_counter(), faults()

    def after_pass(_module: nn.Module, inputs: Any, _output: Any) -> None:
        key = (torch.is_grad_enabled(), int(inputs[0].shape[0]))
        entry = stats.setdefault(key, [0.0, 0.0, 0.0])
        entry[0] += 1
        entry[1] += time.perf_counter() - started["time"]
        entry[2] += faults() - started["faults"]

    print("\n| item | call | s | passes: rows (gradient) × count, ms and page faults per row |")
    print("|---|---|---|---|")
    for item in items:
        for name, call in (("ours", ours(cell, item)), ("hand loop", HAND[item](cell))):
            call()
            handles = [
                cell.model.register_forward_pre_hook(before_pass),
                cell.model.register_forward_hook(after_pass),
            ]
            stats.clear()
            try:
                start = time.perf_counter()
                call()
                took = time.perf_counter() - start
            finally:
                for handle in handles:
                    handle.remove()
            described = "; ".join(
                f"{rows}{' (gradient)' if grad else ''} × {int(count)}, "
                f"{1e3 * seconds / (count * rows):.1f} ms, {page_faults / (count * rows):.0f}"
                for (grad, rows), (count, seconds, page_faults) in sorted(stats.items())
            )
            print(f"| {item} | {name} | {took:.3g} | {described} |", flush=True)


def memory(
    model_name: str, batch_size: int, items: Sequence[str], seconds: Optional[float] = None
) -> None:
    budget = captum_cams.get_pass_budget("cpu") / 2**20
    print(f"\nPeak RSS rise of one call (MiB), {model_name}, batch {batch_size}; "
          f"pass budget {budget:.0f} MiB:")  # fmt: skip
    for item in ("forward",) + tuple(items):
        result = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--memory-child",
             f"{model_name},{batch_size},{item},{seconds or ''}"],
            capture_output=True, text=True, check=True,
            # glibc returns blocks of 64 KiB and more to the system when they are freed,
            # so the resident set follows the memory in use rather than the heap's peak
            env={**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": "65536"},
        )  # fmt: skip
        record = json.loads(result.stdout.strip().splitlines()[-1])
        label = "one plain forward of the batch" if item == "forward" else item
        cut = f" (its first {seconds:.0f} s)" if seconds and item != "forward" else ""
        print(f"  {label}{cut}: {record['rise_mib']:.1f}", flush=True)


# ----------------------------------------------------------------------------- main
def _csv(value: str) -> List[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=_csv, default=["mobilenet", "resnet50"],
                        help=f"from {', '.join(MODELS)}")  # fmt: skip
    parser.add_argument("--batch-sizes", type=lambda v: [int(b) for b in _csv(v)], default=[1, 8])
    parser.add_argument("--items", type=_csv, default=list(ALL_ITEMS),
                        help=f"from {', '.join(ALL_ITEMS)}")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--heavy-rounds", type=int, default=2,
                        help=f"rounds of {', '.join(HEAVY_ITEMS)} (minutes per call)")  # fmt: skip
    parser.add_argument(
        "--timing",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="--no-timing: only the memory part",
    )
    parser.add_argument("--heavy-peers", action="store_true",
                        help="also time pytorch-grad-cam's Ablation-CAM (a full forward per "
                        "ablated channel)")  # fmt: skip
    parser.add_argument("--skip-peers", action="store_true")
    parser.add_argument("--memory", action="store_true", help="peak RSS of one default call")
    parser.add_argument("--passes", action="store_true",
                        help="the passes of one call of ours and of the hand loop: sizes, "
                        "ms and page faults per row")  # fmt: skip
    parser.add_argument(
        "--memory-items",
        type=_csv,
        default=None,
        help="the items whose memory is measured (default: --items)",
    )
    parser.add_argument("--memory-seconds", type=float, default=None,
                        help="measure the first seconds of each call only (calls of "
                        "minutes whose passes all have one size)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--min-time", type=float, default=0.5,
                        help="seconds a turn lasts (fast calls repeat within it)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="append the records to this file (JSON lines)")
    parser.add_argument("--tabulate", nargs="+", metavar="JSONL",
                        help="print the tables of earlier --json records and stop")  # fmt: skip
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.tabulate:
        tabulate(args.tabulate)
        return
    if args.memory_child:
        model_name, batch_size, item, seconds = args.memory_child.split(",")
        memory_child(model_name, int(batch_size), item, float(seconds) if seconds else None)
        return
    torch.set_num_threads(args.threads)
    for item in args.items:
        if item not in ALL_ITEMS:
            raise SystemExit(f"unknown item {item!r}; choose from {', '.join(ALL_ITEMS)}")
    print(
        f"# captum_cams speed: torch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{torch.get_num_threads()} thread(s), no GPU; pass budget "
        f"{captum_cams.get_pass_budget('cpu') / 2**20:.0f} MiB"
    )
    print(f"# command: python {' '.join(sys.argv)}", flush=True)
    for model_name in args.models:
        for batch_size in args.batch_sizes:
            cell = build_cell(model_name, batch_size)
            prepare(cell, args.items)
            groups = build_groups(cell, args.items, args) if args.timing else []
            for group in groups:
                start = time.perf_counter()
                times = measure(group, args.seed, args.min_time)
                records = report(group, times)
                print(f"\n### {model_name}, batch {batch_size}, {group.rounds} rounds "
                      f"({time.perf_counter() - start:.0f} s)\n")  # fmt: skip
                print_records(records)
                print("\nchecked against the hand loop (max |difference|): "
                      + "; ".join(check(group)), flush=True)  # fmt: skip
                if args.json:
                    with open(args.json, "a") as handle:
                        for record in records:
                            handle.write(json.dumps(record) + "\n")
            if args.passes:
                print(f"\n### passes: {model_name}, batch {batch_size}", flush=True)
                passes(cell, args.items)
            if args.memory:
                memory(model_name, batch_size, args.memory_items or args.items, args.memory_seconds)


if __name__ == "__main__":
    main()
