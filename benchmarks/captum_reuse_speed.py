#!/usr/bin/env python3
r"""The package's own perturbation loops against Captum's classes on the head
(issue 16): the evidence for which one each head method uses.

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
import math
import platform
import random
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import captum
import torch
import torchvision
from captum.attr import FeatureAblation, ShapleyValues, ShapleyValueSampling
from torch import Tensor
from torch.nn import Module

from captum_cams.attr._base import batched_target_scores, head_model
from captum_cams.attr._head import LayerHead
from captum_cams.attr.ablation_cam import ablated_target_scores
from captum_cams.attr.shap_cam import permutation_orders, sampled_channel_shapley
from captum_cams.kit.datasets.cifar10 import cifar10_transform, find_cifar10_root
from captum_cams.kit.models import load_cifar_resnet

INTERNAL_BATCH_SIZE = 256

# --- the two sides compared: Captum's classes on the head, and the exact 2^K loop that
# the tests use as a reference (kept here, not in the package) ---------------------------

#: Above this many channels the exact enumeration (``2^K`` head evaluations per
#: example) is refused.
MAX_EXACT_CHANNELS: int = 16


def captum_forward(
    head: Callable[[Tensor, Tensor], Tensor], examples: Tensor
) -> Callable[[Tensor], Tensor]:
    r"""
    A head as the ``forward_func`` of Captum's perturbation classes
    (``FeatureAblation``, ``ShapleyValueSampling``, ``ShapleyValues``) run over layer
    activations.

    Captum's ``perturbations_per_eval`` stacks perturbed copies of the batch it was
    given along dimension 0, so row ``i`` of an evaluation belongs to example
    ``examples[i % len(examples)]``; that index is what :class:`LayerHead`'s
    whole-model fallback needs. Every call gives the head a copy: a head may work in
    place on its input (DenseNet's begins with an in-place ReLU), and Captum reuses
    the tensors it passes (its unperturbed inputs, ``ShapleyValueSampling``'s running
    coalition).

    Args:
        head (Callable): maps ``M x K x h x w`` activations and the ``(M,)`` example
                    index of each row to ``M x C`` outputs, as :class:`LayerHead`.
        examples (Tensor): ``(B,)`` the example of each row of the batch given to
                    Captum.

    Returns:
        *Callable*: maps ``(p B) x K x h x w`` activations to ``(p B) x C`` outputs.

    Examples::

        >>> forward = captum_forward(layer_head, torch.arange(len(activations)))
        >>> FeatureAblation(forward).attribute(activations, target=target,
        ...     feature_mask=channel_feature_mask(activations))
    """

    def forward(activations: Tensor) -> Tensor:
        rows = torch.arange(activations.shape[0], device=examples.device)
        return head(activations.clone(), examples[rows % examples.shape[0]])

    return forward


def channel_feature_mask(activations: Tensor) -> Tensor:
    r"""
    Captum's ``feature_mask`` with one feature per channel: ``1 x K x 1 x 1`` holding
    ``0 .. K-1``, broadcast by Captum over the examples and the ``h x w`` positions.

    Args:
        activations (Tensor): ``N x K x h x w`` layer activations.

    Returns:
        *Tensor*: ``1 x K x 1 x 1`` (int64, on the activations' device).

    Examples::

        >>> channel_feature_mask(torch.zeros(2, 3, 7, 7)).flatten()
        tensor([0, 1, 2])
    """
    num_channels = activations.shape[1]
    return torch.arange(num_channels, device=activations.device).view(1, num_channels, 1, 1)


def perturbations_per_eval(
    internal_batch_size: Optional[int], batch_size: int, num_features: int
) -> int:
    r"""
    Captum's ``perturbations_per_eval`` for at most ``internal_batch_size`` rows per
    head evaluation: each perturbation is one row per example, so
    ``internal_batch_size // batch_size`` perturbations (at least one, so a batch
    larger than ``internal_batch_size`` is evaluated one perturbation at a time);
    ``None`` evaluates all ``num_features`` perturbations at once.

    Args:
        internal_batch_size (int, optional): the package's chunk size, in rows.
        batch_size (int): ``N``, the rows of one perturbation.
        num_features (int): the features (channels) perturbed.

    Returns:
        *int*: ``perturbations_per_eval``, at least 1.

    Examples::

        >>> perturbations_per_eval(256, 3, 512)
        85
    """
    if internal_batch_size is None:
        return max(num_features, 1)
    return max(internal_batch_size // batch_size, 1)


def exact_channel_shapley(
    head: Callable[[Tensor], Tensor],
    activations: Tensor,
    target: Tensor,
    internal_batch_size: Optional[int] = None,
) -> Tensor:
    r"""
    The exact Shapley values of the channels of ``activations`` for the target
    outputs of ``head``, by enumerating all ``2^K`` channel subsets (absent channels
    zeroed): the reference that SHAP-CAM estimates and LIFT-CAM approximates.

    Args:
        head (Callable): maps ``M x K x h x w`` activations to ``M x C`` outputs.
        activations (Tensor): ``N x K x h x w`` layer activations, ``K <= 16``.
        target (Tensor): ``(N,)`` class index per example.
        internal_batch_size (int, optional): subsets evaluated at once; ``None``:
                    as many as the pass budget allows
                    (:func:`~captum_cams.get_pass_budget`). Default: None.

    Returns:
        *Tensor*: ``N x K`` Shapley values; each row sums to
        ``head(A)_c - head(0)_c``.

    Examples::

        >>> phi = exact_channel_shapley(head, activations, torch.tensor([3, 7]))
    """
    # The own 2^K-subset loop, not Captum's ShapleyValues (captum_channel_shapley with
    # orders=None, tested equal): ShapleyValues walks all K! orders, K evaluations
    # each, and benchmarks/captum_reuse_speed.py measured this loop 35x faster in the
    # same run at K = 5 (ResNet-20 layer2); it also keeps float64 (Captum
    # accumulates in float32).
    num_examples, num_channels = activations.shape[:2]
    if num_channels > MAX_EXACT_CHANNELS:
        raise ValueError(
            f"exact enumeration needs 2^K head evaluations per example; K = "
            f"{num_channels} > {MAX_EXACT_CHANNELS}: use LayerShapCam instead"
        )
    device = activations.device
    subsets = torch.arange(2**num_channels, device=device)
    bits = 2 ** torch.arange(num_channels, device=device)
    members = (subsets[:, None] & bits) > 0  # (2^K, K)
    num_subsets = subsets.shape[0]
    row_example = torch.arange(num_examples, device=device).repeat_interleave(num_subsets)

    def subset_outputs(rows: Tensor) -> Tensor:
        examples = row_example[rows]
        present = members[rows % num_subsets].to(activations.dtype)
        return head(activations[examples] * present[:, :, None, None])

    values = batched_target_scores(
        subset_outputs,
        row_example,
        target.to(device),
        internal_batch_size,
        row=activations[0],
        model=head_model(head),
        head=True,
    ).view(num_examples, num_subsets)
    sizes = members.sum(dim=1)
    weights = torch.tensor(
        [
            math.factorial(s) * math.factorial(num_channels - s - 1) / math.factorial(num_channels)
            if s < num_channels
            else 0.0
            for s in range(num_channels + 1)
        ],
        dtype=values.dtype,
        device=device,
    )[sizes]
    phi = values.new_zeros(num_examples, num_channels)
    for k in range(num_channels):
        without = ~members[:, k]
        gain = values[:, subsets[without] | bits[k]] - values[:, subsets[without]]
        phi[:, k] = (gain * weights[without]).sum(dim=1)
    return phi


def captum_ablation_differences(
    head: Callable[[Tensor, Tensor], Tensor],
    activations: Tensor,
    target: Tensor,
    internal_batch_size: Optional[int] = 256,
) -> Tensor:
    r"""
    ``y_c - y_c^(k)`` for every channel ``k`` by Captum's ``FeatureAblation``, run on
    the head over the layer's activations with one feature per channel
    (``feature_mask`` broadcast over ``h x w``), ablated to the paper's baseline 0.
    Divided by ``y_c`` these are Ablation-CAM's weights.

    Args:
        head (Callable): maps ``M x K x h x w`` activations and the ``(M,)`` example
                    index of each row to ``M x C`` outputs (a :class:`LayerHead`).
        activations (Tensor): ``N x K x h x w`` layer activations.
        target (Tensor): ``(N,)`` class index per example.
        internal_batch_size (int, optional): at most this many rows per head
                    evaluation (``perturbations_per_eval = internal_batch_size // N``,
                    at least 1); ``None`` evaluates all ``N x K`` at once. Default: 256.

    Returns:
        *Tensor*: ``N x K``, ``head(A)_c - head(A with channel k zeroed)_c``, in the
        activations' dtype.

    Examples::

        >>> differences = captum_ablation_differences(head, activations, torch.tensor([3, 7]))
    """
    num_examples, num_channels = activations.shape[:2]
    examples = torch.arange(num_examples, device=activations.device)
    differences = FeatureAblation(captum_forward(head, examples)).attribute(
        activations,
        baselines=0.0,
        target=target,
        feature_mask=channel_feature_mask(activations),
        perturbations_per_eval=perturbations_per_eval(
            internal_batch_size, num_examples, num_channels
        ),
    )
    return differences[:, :, 0, 0]  # every position of a channel holds its value


def captum_channel_shapley(
    head: Callable[[Tensor, Tensor], Tensor],
    activations: Tensor,
    target: Tensor,
    orders: Optional[Tensor] = None,
    internal_batch_size: Optional[int] = 256,
) -> Tensor:
    r"""
    Shapley values of the channels by Captum: ``ShapleyValueSampling`` over the given
    channel orders, or, with ``orders=None``, ``ShapleyValues`` (all ``K!`` orders),
    run on the head over the layer's activations with one feature per channel
    (``feature_mask`` broadcast over ``h x w``) and the baseline 0.

    The orders are handed to ``ShapleyValueSampling`` as its permutation generator
    (its own draws from the global random state). ``P x K`` orders are shared by the
    whole batch, as Captum's own scheme, and evaluated in one call; ``N x P x K``
    orders (SHAP-CAM's, :func:`permutation_orders`) are each example's own, one call
    per example, and then the result equals :func:`sampled_channel_shapley` for the
    same orders. Captum accumulates the attributions in float32
    (``shapley_value.py``, ``total_attrib``), so for float64 activations the result
    is equal to float32 rounding only.

    Args:
        head (Callable): maps ``M x K x h x w`` activations and the ``(M,)`` example
                    index of each row to ``M x C`` outputs (a :class:`LayerHead`).
        activations (Tensor): ``N x K x h x w`` layer activations.
        target (Tensor): ``(N,)`` class index per example.
        orders (Tensor, optional): ``P x K`` channel orders for the batch or
                    ``N x P x K`` per example. Default: None (all orders, exact).
        internal_batch_size (int, optional): at most this many rows per head
                    evaluation, mapped to ``perturbations_per_eval`` (Captum never
                    mixes two orders in one evaluation); ``None``: one order at a
                    time. Default: 256.

    Returns:
        *Tensor*: ``N x K`` Shapley values (estimates, with ``orders``), in the
        activations' dtype.

    Examples::

        >>> alpha = captum_channel_shapley(head, activations, target,
        ...                                permutation_orders(2, 10, 512, seed=0))
    """
    num_channels = activations.shape[1]
    mask = channel_feature_mask(activations)

    def shapley(examples: Tensor, given: Optional[List[List[int]]]) -> Tensor:
        forward = captum_forward(head, examples)
        chunk = perturbations_per_eval(internal_batch_size, examples.shape[0], num_channels)
        arguments = dict(baselines=0.0, target=target[examples], feature_mask=mask)
        if given is None:
            method: ShapleyValueSampling = ShapleyValues(forward)
        else:
            method = ShapleyValueSampling(forward)
            method.permutation_generator = lambda _features, _samples: iter(given)
            arguments["n_samples"] = len(given)
        values = method.attribute(activations[examples], perturbations_per_eval=chunk, **arguments)
        return values[:, :, 0, 0].to(activations.dtype)

    everyone = torch.arange(activations.shape[0], device=activations.device)
    if orders is None or orders.dim() == 2:
        return shapley(everyone, None if orders is None else orders.tolist())
    return torch.cat(
        [shapley(everyone[n : n + 1], orders[n].tolist()) for n in range(len(everyone))]
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
