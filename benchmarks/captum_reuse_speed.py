#!/usr/bin/env python3
r"""The package's own perturbation loops against Captum's classes on the head:
the evidence for which one each head method uses.

For every case the layer's activations ``A`` and the model's head are captured once;
then two callables compute the same channel values from them:

- ``own``: the package's own chunked loop (Ablation-CAM's ablated copies, SHAP-CAM's
  permutation prefixes, the exact ``2^K``-subset loop below);
- ``captum``: Captum's ``FeatureAblation`` / ``ShapleyValueSampling`` /
  ``ShapleyValues`` run on the head over ``A``, one feature per channel
  (``feature_mask`` broadcast over ``h x w``), baseline 0, ``perturbations_per_eval``
  from the same ``internal_batch_size`` (256). For SHAP-CAM each example has its own
  orders (one ``ShapleyValueSampling`` call per example); the "orders shared" rows
  give the whole batch the same orders, Captum's own scheme, in one call.

Both get the same head (:class:`~captum_cams.attr._head.LayerHead`, torch.fx split,
checked against the model), the same targets (each example's predicted class) and,
for SHAP-CAM, the same channel orders, so they compute the same numbers; the script
prints the largest difference between them next to the times.

Models: torchvision ``resnet18`` with random weights (``weights=None``) on random
``B x 3 x S x S`` inputs; the trained CIFAR-10 ResNet-20 of ``../shared/data/cifar10``
(``CAPTUM_CAMS_CIFAR10`` overrides the path) on the first test JPEGs. CPU, one
intra-op thread (``--threads``).

Timing: per case both callables are measured round-robin, each round in a freshly
shuffled order after one warm-up round. Reported: the median seconds of each, the
median over rounds of the per-round ratio ``captum / own`` (both measured in the same
round) and the range of the per-round ratios (for n rounds, min..max covers the
median ratio with probability ``1 - 2^(1-n)``: 94 % at n = 5). On a shared machine
the absolute seconds are inflated; the ratios are the result.

Run from the repository root::

    python benchmarks/captum_reuse_speed.py            # all cases, 5 rounds
    python benchmarks/captum_reuse_speed.py --rounds 3 --cases resnet20
"""

import argparse
import platform
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import captum
import torch
import torchvision
from torch import Tensor
from torch.nn import Module

from captum_cams.attr._head import LayerHead
from captum_cams.attr.ablation_cam import ablated_target_scores
from captum_cams.attr.shap_cam import permutation_orders, sampled_channel_shapley
from captum_cams.kit.datasets.cifar10 import cifar10_transform, find_cifar10_root
from captum_cams.kit.models import load_cifar_resnet

INTERNAL_BATCH_SIZE = 256

# The two sides compared: Captum's classes on the head, and the exact 2^K loop, are the
# references the tests hold the package's own loops to; they live with the tests, and
# this script imports them from there.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _captum_references import (  # noqa: E402
    captum_ablation_differences,
    captum_channel_shapley,
    exact_channel_shapley,
)


@dataclass
class Case:
    r"""One timed comparison: a method on a model's layer."""

    name: str
    model: str  # "resnet18" or "resnet20"
    layer: str
    batch: int
    method: str  # "ablation", "shap", "shared" or "exact"
    size: int = 224  # resnet18's input side
    permutations: int = 10  # SHAP-CAM's |Pi|
    channels: int = 5  # exact Shapley: channels in the game


CASES = [
    Case("resnet18 layer4 Ablation-CAM", "resnet18", "layer4", 2, "ablation"),
    Case("resnet18 layer4 SHAP-CAM_10", "resnet18", "layer4", 2, "shap"),
    Case("resnet18 layer4 SHAP-CAM_10, orders shared", "resnet18", "layer4", 2, "shared"),
    Case("resnet18 layer3 Ablation-CAM (112 px)", "resnet18", "layer3", 1, "ablation", 112),
    Case("resnet20 layer3 Ablation-CAM", "resnet20", "layer3", 8, "ablation"),
    Case("resnet20 layer3 SHAP-CAM_10", "resnet20", "layer3", 8, "shap"),
    Case("resnet20 layer3 SHAP-CAM_10, orders shared", "resnet20", "layer3", 8, "shared"),
    Case("resnet20 layer2 Ablation-CAM", "resnet20", "layer2", 8, "ablation"),
    Case("resnet20 layer2 SHAP-CAM_10", "resnet20", "layer2", 2, "shap"),
    Case("resnet20 layer2 SHAP-CAM_10, orders shared", "resnet20", "layer2", 2, "shared"),
    Case("resnet20 layer2 exact Shapley, K=5", "resnet20", "layer2", 1, "exact"),
]


def _model_and_inputs(case: Case) -> Tuple[Module, Tensor]:
    if case.model == "resnet18":
        torch.manual_seed(0)
        model = torchvision.models.resnet18(weights=None).eval()
        generator = torch.Generator().manual_seed(1)
        return model, torch.randn(case.batch, 3, case.size, case.size, generator=generator)
    root = find_cifar10_root()
    if root is None:
        sys.exit("CIFAR-10 folder not found: set CAPTUM_CAMS_CIFAR10 (see the docstring)")
    model = load_cifar_resnet(root / "resnet20-12fca82f.th")
    transform = cifar10_transform()
    from PIL import Image

    files = sorted((root / "test").glob("*/*.jpg"))[::1000][: case.batch]
    images = torch.stack([transform(Image.open(f).convert("RGB")) for f in files])
    return model, images


def _capture(
    model: Module, layer: Module, inputs: Tensor
) -> Tuple[LayerHead, Tensor, Tensor, Tensor]:
    store: List[Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: store.append(out.detach()))
    try:
        with torch.no_grad():
            outputs = model(inputs)
    finally:
        handle.remove()
    head = LayerHead(model, layer)
    head.bind((inputs,), ())
    head.verify(store[0], outputs)
    assert head.source == "fx", head.source
    target = outputs.argmax(dim=1)
    return head, store[0], target, outputs.gather(1, target[:, None])


def _callables(case: Case) -> Dict[str, Callable[[], Tensor]]:
    model, inputs = _model_and_inputs(case)
    layer = dict(model.named_modules())[case.layer]
    head, activations, target, scores = _capture(model, layer, inputs)
    if case.method == "ablation":  # both give y_c - y_c^(k), as Ablation-CAM's weights use
        return {
            "own": lambda: (
                scores - ablated_target_scores(head, activations, target, INTERNAL_BATCH_SIZE)
            ),
            "captum": lambda: captum_ablation_differences(
                head, activations, target, INTERNAL_BATCH_SIZE
            ),
        }
    if case.method in ("shap", "shared"):
        orders = permutation_orders(case.batch, case.permutations, activations.shape[1], 0)
        # "shared": Captum's own scheme, the same orders for the whole batch (one call)
        given = orders[0] if case.method == "shared" else orders
        return {
            "own": lambda: sampled_channel_shapley(
                head, activations, target, given.expand_as(orders), INTERNAL_BATCH_SIZE
            ),
            "captum": lambda: captum_channel_shapley(
                head, activations, target, given, INTERNAL_BATCH_SIZE
            ),
        }
    # exact: a game of the first `channels` channels, the others kept at their values
    k = case.channels
    rest = activations[:, k:]

    def small_head(part: Tensor) -> Tensor:
        return head(torch.cat([part, rest.expand(part.shape[0], -1, -1, -1)], dim=1), target)

    players = activations[:, :k]
    return {
        "own": lambda: exact_channel_shapley(small_head, players, target, INTERNAL_BATCH_SIZE),
        "captum": lambda: captum_channel_shapley(
            lambda part, _index: small_head(part), players, target, None, INTERNAL_BATCH_SIZE
        ),
    }


def _measure(
    callables: Dict[str, Callable[[], Tensor]], rounds: int, rng: random.Random
) -> Tuple[Dict[str, List[float]], float]:
    times: Dict[str, List[float]] = {name: [] for name in callables}
    results = {name: fn() for name, fn in callables.items()}  # warm-up round
    gap = (results["own"] - results["captum"]).abs().max().item()
    for _ in range(rounds):
        order = list(callables)
        rng.shuffle(order)
        for name in order:
            start = time.perf_counter()
            callables[name]()
            times[name].append(time.perf_counter() - start)
    return times, gap


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per case")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--cases", default="", help="only the cases whose name contains this text")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rng = random.Random(0)
    print(
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, captum "
        f"{captum.__version__}, {platform.processor() or platform.machine()}, "
        f"{args.threads} thread(s), {args.rounds} rounds, internal_batch_size "
        f"{INTERNAL_BATCH_SIZE}; ratio = captum / own (median over rounds, [min, max])"
    )
    print(
        "| case | batch | own s (median) | Captum s (median) | ratio | [min, max] | n "
        "| max abs difference |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for case in CASES:
        if args.cases not in case.name:
            continue
        times, gap = _measure(_callables(case), args.rounds, rng)
        ratios = [c / o for c, o in zip(times["captum"], times["own"])]
        print(
            f"| {case.name} | {case.batch} | {statistics.median(times['own']):.3f} | "
            f"{statistics.median(times['captum']):.3f} | {statistics.median(ratios):.2f} | "
            f"[{min(ratios):.2f}, {max(ratios):.2f}] | {args.rounds} | {gap:.2g} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
