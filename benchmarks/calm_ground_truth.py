#!/usr/bin/env python3
r"""CALM on the project's ground-truth dataset: counterfactual attributions and WSOL.

The ideas of Table 1 (counterfactual attributions against part masks, mPxAP) and
Table 3 (weakly-supervised localisation, box accuracy) of Kim et al., "Keep CALM and
Improve Visual Feature Attribution", ICCV 2021, on
:class:`~captum_cams.kit.datasets.GroundTruthShapes`, whose classes are sets of parts
(so class pairs differ in 1, 2 or 3 parts, like the CUB attribute pairs):

- CAM = the embedded default (:func:`~captum_cams.kit.models.load_embedded_default`,
  ShapesNet, 64 x 16 x 16 CAM layer ``features[-1]``), map ``Σ_k w_yk A_k``.
- CALM_EM, CALM_ML = a CALM head on a copy of ShapesNet's ``features`` (branch g
  started from its ``fc``, branch h from zeros), trained with
  :func:`captum_cams.calm.train_calm` on the first ``--train-samples`` items of the
  train split, same seed and settings for both.
- Grad-CAM, Grad-CAM++ (``captum_cams``, at ``features[-1]``, no ReLU) and Captum's
  Integrated Gradients (input pixels, channels summed, black baseline) on the
  embedded default. A map of uniform noise is the chance level.

Counterfactual: for every ordered class pair ``(y, y')`` of
``counterfactual_pairs(k, only_present=True)`` (``y'``'s parts a subset of ``y``'s, so
the ``k`` differing parts are drawn in images of ``y``), the test images of class
``y``, the map ``s(y) − s(y')`` (CALM: ``p(y, z|x) − p(y', z|x)``) and the ground truth
``counterfactual_mask`` (the ``k`` parts); PxAP per pair at 64 x 64, mPxAP = mean
over the pairs.

WSOL: the map of the true class against the object's box, box accuracy at
IoU ≥ 0.5 of the box around the largest connected component of the thresholded
map, best of the thresholds 0, 0.01, …, 1 (:func:`~captum_cams.metrics.box_accuracy`).
"Subset" aggregates the maps of the true class and the classes one part away from
it (the analogue of CUB's superclasses): for CALM ``Σ_{y∈𝒴} p(y, z|x)``, for CAM the
sum of the min-max normalised CAMs (as the authors' code does).

Run from the repository root (defaults: 17 minutes wall clock on the shared, heavily
loaded 2-core development machine)::

    python benchmarks/calm_ground_truth.py
"""

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
from captum.attr import IntegratedGradients
from torch import Tensor, nn
from torch.utils.data import TensorDataset

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from captum_cams import LayerGradCam, LayerGradCamPlusPlus  # noqa: E402
from captum_cams._utils.files import atomic_path  # noqa: E402
from captum_cams._utils.maps import minmax_normalize  # noqa: E402
from captum_cams.calm import CALM, CALMAttribution, train_calm  # noqa: E402
from captum_cams.kit.datasets import GroundTruthShapes, make_batch  # noqa: E402
from captum_cams.kit.datasets.ground_truth import (  # noqa: E402
    CLASS_PARTS,
    NUM_CLASSES,
    counterfactual_mask,
    counterfactual_pairs,
)
from captum_cams.kit.models import load_embedded_default  # noqa: E402
from captum_cams.metrics import box_accuracy, pixel_average_precision  # noqa: E402

# (images, classes) -> N x 1 x h x w map of each image for its class
ClassMaps = Callable[[Tensor, Tensor], Tensor]


def _parse(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-samples", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.01, help="backbone lr (head x10)")
    parser.add_argument("--test-samples", type=int, default=600)
    parser.add_argument("--ig-steps", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--checkpoint-dir", default=None, help="keep resumable checkpoints here")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def _calm_from_embedded(net: nn.Module) -> CALM:
    model = CALM(copy.deepcopy(net.features), net.fc.in_features, NUM_CLASSES)
    with torch.no_grad():
        model.classifier.weight.copy_(net.fc.weight.reshape(NUM_CLASSES, -1, 1, 1))
        model.classifier.bias.copy_(net.fc.bias)
    return model


def _cam(net: nn.Module) -> ClassMaps:
    def maps(images: Tensor, classes: Tensor) -> Tensor:
        with torch.no_grad():
            feats = net.features(images)
            return torch.einsum("nk,nkhw->nhw", net.fc.weight[classes], feats).unsqueeze(1)

    return maps


def _layer_method(cls: type, net: nn.Module) -> ClassMaps:
    def maps(images: Tensor, classes: Tensor) -> Tensor:
        out = cls(net, net.features[-1]).attribute(images, target=classes, relu_attributions=False)
        return out.detach()

    return maps


def _integrated_gradients(net: nn.Module, steps: int) -> ClassMaps:
    def maps(images: Tensor, classes: Tensor) -> Tensor:
        ig = IntegratedGradients(net)
        out = ig.attribute(images, target=classes, n_steps=steps, internal_batch_size=256)
        return out.detach().sum(1, keepdim=True)

    return maps


def _calm_joint(model: CALM) -> ClassMaps:
    def maps(images: Tensor, classes: Tensor) -> Tensor:
        return CALMAttribution(model).attribute(images, target=classes)

    return maps


def _chance(seed: int) -> ClassMaps:
    generator = torch.Generator().manual_seed(seed)

    def maps(images: Tensor, classes: Tensor) -> Tensor:
        return torch.rand(images.shape[0], 1, 16, 16, generator=generator)

    return maps


def _in_chunks(fn: ClassMaps, images: Tensor, classes: Tensor, chunk: int = 250) -> Tensor:
    parts = [
        fn(images[s : s + chunk], classes[s : s + chunk]) for s in range(0, images.shape[0], chunk)
    ]
    return torch.cat(parts)


def _neighbours(label: int) -> List[int]:
    r"""The class itself and the classes whose part sets differ from it in one part."""
    mine = set(CLASS_PARTS[label])
    return [c for c in range(NUM_CLASSES) if len(mine ^ set(CLASS_PARTS[c])) <= 1]


def main(argv: Optional[List[str]] = None) -> Dict[str, object]:
    args = _parse(argv)
    torch.set_num_threads(args.threads)
    started = time.time()
    net = load_embedded_default()
    train = make_batch(args.train_samples, split="train", seed=0)
    train_set = TensorDataset(train.images, train.labels)
    data = GroundTruthShapes(args.test_samples, split="test", seed=0, return_annotations=True)
    items = [data[i] for i in range(len(data))]
    images = torch.stack([it[0] for it in items])
    labels = torch.tensor([it[1] for it in items])
    boxes = torch.stack([it[2]["box"] for it in items])
    part_masks = torch.stack([it[2]["part_masks"] for it in items])
    present = torch.stack([it[2]["parts_present"] for it in items])
    print(f"data ready in {time.time() - started:.0f} s")

    results: Dict[str, object] = {"args": vars(args)}
    accuracy: Dict[str, float] = {}
    with torch.no_grad():
        accuracy["CAM (embedded default)"] = float(
            (net(images).argmax(1) == labels).double().mean()
        )
    calm: Dict[str, CALM] = {}
    for loss in ("em", "ml"):
        name = f"CALM_{loss.upper()}"
        model = _calm_from_embedded(net)
        checkpoint = None
        if args.checkpoint_dir:
            checkpoint = os.path.join(args.checkpoint_dir, f"calm_shapes_{loss}.pt")
        train_calm(
            model,
            train_set,
            loss=loss,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            checkpoint=checkpoint,
            progress=not args.no_progress,
        )
        with torch.no_grad():
            accuracy[name] = float((model(images).argmax(1) == labels).double().mean())
        calm[name] = model
    results["accuracy"] = accuracy
    print(f"trained in {time.time() - started:.0f} s")
    gap = max(
        float((a - b).detach().abs().max())
        for a, b in zip(calm["CALM_EM"].parameters(), calm["CALM_ML"].parameters())
    )
    results["max parameter difference EM vs ML"] = gap

    methods: Dict[str, ClassMaps] = {
        "CALM_EM": _calm_joint(calm["CALM_EM"]),
        "CALM_ML": _calm_joint(calm["CALM_ML"]),
        "CAM": _cam(net),
        "Grad-CAM": _layer_method(LayerGradCam, net),
        "Grad-CAM++": _layer_method(LayerGradCamPlusPlus, net),
        f"Integrated Gradients (m={args.ig_steps})": _integrated_gradients(net, args.ig_steps),
        "chance (uniform noise)": _chance(args.seed),
    }

    # counterfactual mPxAP: per method, maps of every needed (image, class) once
    needed: Dict[int, List[int]] = {y: [y] for y in range(NUM_CLASSES)}
    pairs = {k: counterfactual_pairs(k, only_present=True) for k in (1, 2, 3)}
    for k_pairs in pairs.values():
        for y, other in k_pairs:
            needed[y].append(other)
    counterfactual: Dict[str, Dict[int, float]] = {}
    timings: Dict[str, float] = {}
    for name, fn in methods.items():
        tic = time.time()
        cache: Dict[tuple, Tensor] = {}
        for y, targets in needed.items():
            rows = (labels == y).nonzero().flatten()
            if rows.numel() == 0:
                continue
            for t in sorted(set(targets)):
                classes = torch.full((rows.numel(),), t, dtype=torch.long)
                cache[(y, t)] = _in_chunks(fn, images[rows], classes)
        scores: Dict[int, float] = {}
        for k, k_pairs in pairs.items():
            values = []
            for y, other in k_pairs:
                rows = (labels == y).nonzero().flatten()
                if rows.numel() == 0:
                    continue
                annotation = {"part_masks": part_masks[rows], "parts_present": present[rows]}
                truth = counterfactual_mask(annotation, y, other)
                diff = cache[(y, y)] - cache[(y, other)]
                values.append(float(pixel_average_precision(diff, truth)))
            scores[k] = sum(values) / len(values)
        counterfactual[name] = scores
        timings[name] = time.time() - tic
        print(f"counterfactual {name}: {scores} ({timings[name]:.0f} s)")
    results["counterfactual_mpxap"] = counterfactual
    results["pairs"] = {k: len(v) for k, v in pairs.items()}

    # WSOL box accuracy on the true class, with and without the subset aggregation
    subsets = [_neighbours(int(y)) for y in labels]
    member = torch.zeros(len(labels), NUM_CLASSES, dtype=torch.bool)
    for i, subset in enumerate(subsets):
        member[i, subset] = True
    wsol: Dict[str, Dict[str, float]] = {}
    size = (images.shape[-2], images.shape[-1])
    for name in ("CALM_EM", "CALM_ML", "CAM", "Grad-CAM", "Grad-CAM++"):
        fn = methods[name]
        plain = box_accuracy(_in_chunks(fn, images, labels), boxes, image_size=size)
        row = {"plain": float(plain.max_accuracy), "plain_threshold": float(plain.best_threshold)}
        if name.startswith("CALM"):
            attr = CALMAttribution(calm[name])
            subset_maps = attr.attribute(images, attribution_type="subset", subset_targets=member)
            saliency = attr.attribute(images, attribution_type="saliency")
            sal = box_accuracy(saliency, boxes, image_size=size)
            row["saliency"] = float(sal.max_accuracy)
        elif name == "CAM":
            subset_maps = torch.zeros(len(labels), 1, 16, 16)
            for c in range(NUM_CLASSES):
                classes = torch.full((len(labels),), c, dtype=torch.long)
                subset_maps += (
                    minmax_normalize(fn(images, classes)) * member[:, c, None, None, None]
                )
        else:
            wsol[name] = row
            continue
        agg = box_accuracy(subset_maps, boxes, image_size=size)
        row["subset"] = float(agg.max_accuracy)
        row["subset_threshold"] = float(agg.best_threshold)
        wsol[name] = row
    results["wsol"] = wsol

    n_pairs = {k: len(v) for k, v in pairs.items()}
    print(
        f"\nGround-truth shapes: CALM trained {args.epochs} epochs on {args.train_samples} train "
        f"items (lr {args.lr}, head x10, batch {args.batch_size}, seed {args.seed}); "
        f"{args.test_samples} test items\n"
    )
    print("| model | test accuracy % |\n|---|---|")
    for name, value in accuracy.items():
        print(f"| {name} | {100 * value:.1f} |")
    print(
        f"\nCounterfactual mPxAP % (pairs: {n_pairs[1]} / {n_pairs[2]} / {n_pairs[3]})\n\n"
        "| method | 1 part | 2 parts | 3 parts | s |\n|---|---|---|---|---|"
    )
    for name, scores in counterfactual.items():
        cells = " | ".join(f"{100 * scores[k]:.1f}" for k in (1, 2, 3))
        print(f"| {name} | {cells} | {timings[name]:.0f} |")
    print(
        "\nWSOL box accuracy % (IoU >= 0.5, best threshold)\n\n"
        "| method | true class | subset aggregation | p(z given x) |\n|---|---|---|---|"
    )
    for name, row in wsol.items():
        subset = f"{100 * row['subset']:.1f}" if "subset" in row else "–"
        sal = f"{100 * row['saliency']:.1f}" if "saliency" in row else "–"
        print(f"| {name} | {100 * row['plain']:.1f} | {subset} | {sal} |")
    print(f"\nlargest |parameter of CALM_EM - parameter of CALM_ML| after training: {gap:.2e}")
    print(f"\ntotal {time.time() - started:.0f} s")
    if args.json:
        with atomic_path(args.json) as temporary:
            temporary.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
