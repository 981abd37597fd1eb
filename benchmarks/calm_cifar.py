#!/usr/bin/env python3
r"""CALM on CIFAR-10: fine-tuned from ResNet-20's backbone in CPU minutes.

The ideas of Table 2 (accuracy: CALM costs a little) and Fig. 5 (remove-and-classify:
CALM's maps point at the evidence better than CAM's) of Kim et al., "Keep CALM and
Improve Visual Feature Attribution", ICCV 2021, at CIFAR scale:

1. CAM = the trained ResNet-20 (``resnet20-12fca82f.th``), CAM layer ``layer3``
   (64 x 8 x 8), CAM map ``Σ_k w_yk A_k``.
2. The control "CAM fine-tuned": ResNet-20 trained on the same images with the same
   SGD settings and data order and cross-entropy (its ``linear`` at x10), because
   the shared checkpoint was trained on the lossless images, not on these JPEGs.
3. CALM_EM and CALM_ML = ``CALM.from_cifar_resnet(resnet20)`` (backbone ``conv1 …
   layer3``, branch g started from ResNet-20's ``linear``, branch h from zeros, i.e.
   uniform ``p(z|x)``), each trained with :func:`captum_cams.calm.train_calm` (SGD,
   momentum 0.9, Nesterov, weight decay 1e-4, head learning rate x10) on the same
   seeded subset of the CIFAR-10 training set, same seed and settings.
4. Top-1 accuracy on a seeded subset of the test JPEGs, before (ResNet-20 = CAM,
   and the untrained CALM head) and after.
5. Remove-and-classify (:func:`captum_cams.metrics.remove_and_classify`, blur
   baseline, 10 … 90 % of the pixels) on seeded test images with their true
   labels: accuracy after erasing the map's top pixels minus accuracy after
   erasing as many random pixels, each model classifying its own erased images;
   lower is better. CALM's map is the joint ``p(y, z | x)`` of the true class.

Run from the repository root (defaults: 35 minutes wall clock on the shared, heavily
loaded 2-core development machine, measured as two runs: --models em,ml and cam-ft)::

    CAPTUM_CAMS_CIFAR10=/path/to/cifar10 python benchmarks/calm_cifar.py

``CAPTUM_CAMS_CIFAR10`` defaults to ``../shared/data/cifar10`` next to the repository;
the script exits with a message when the folder is absent.
"""

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from captum_cams._utils.files import atomic_path  # noqa: E402
from captum_cams.calm import CALM, CALMAttribution, train_calm  # noqa: E402
from captum_cams.datasets.cifar10 import (  # noqa: E402
    cifar10_test_set,
    cifar10_train_set,
    find_cifar10_root,
)
from captum_cams.metrics import remove_and_classify  # noqa: E402
from captum_cams.models import load_cifar_resnet  # noqa: E402

CHECKPOINT = "resnet20-12fca82f.th"


def _parse(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-images", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.005, help="backbone lr (head x10)")
    parser.add_argument("--test-images", type=int, default=2000)
    parser.add_argument("--rc-images", type=int, default=500, help="remove-and-classify images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--checkpoint-dir", default=None, help="keep resumable checkpoints here")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "--models",
        default="cam-ft,em,ml",
        help="comma list of what to train: cam-ft (ResNet-20 fine-tuned the same way with "
        "cross-entropy, the control), em (CALM_EM), ml (CALM_ML)",
    )
    args = parser.parse_args(argv)
    args.models = [m for m in args.models.split(",") if m]
    if not set(args.models) <= {"cam-ft", "em", "ml"}:
        parser.error(f"--models takes cam-ft, em, ml; got {args.models}")
    return args


def _fine_tune_cam(resnet: nn.Module, train: TensorDataset, args: argparse.Namespace) -> nn.Module:
    r"""The control: ResNet-20 itself trained like CALM (same SGD, data order; linear x10)."""
    model = copy.deepcopy(resnet).train()
    head = list(model.linear.parameters())
    body = [p for n, p in model.named_parameters() if not n.startswith("linear.")]
    optimizer = torch.optim.SGD(
        [{"params": body, "lr": args.lr}, {"params": head, "lr": 10 * args.lr}],
        lr=args.lr,
        momentum=0.9,
        weight_decay=1e-4,
        nesterov=True,
    )
    for epoch in range(args.epochs):
        generator = torch.Generator().manual_seed(args.seed + epoch)
        loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, generator=generator)
        for images, labels in tqdm(loader, desc="CAM fine-tuning", disable=args.no_progress):
            loss = nn.functional.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return model.eval()


def _load(dataset, indices: List[int]) -> TensorDataset:
    images = torch.stack([dataset[i][0] for i in indices])
    labels = torch.tensor([dataset.targets[i] for i in indices])
    return TensorDataset(images, labels)


@torch.no_grad()
def _accuracy(model: nn.Module, images: Tensor, labels: Tensor, batch: int = 500) -> float:
    model.eval()
    hits = 0
    for start in range(0, images.shape[0], batch):
        hits += int(
            (model(images[start : start + batch]).argmax(1) == labels[start : start + batch]).sum()
        )
    return hits / images.shape[0]


@torch.no_grad()
def _cam(resnet: nn.Module, images: Tensor, labels: Tensor) -> Tensor:
    r"""CAM ``Σ_k w_yk A_k`` at ``layer3`` of a CIFAR ResNet (``N x 1 x 8 x 8``)."""
    feats = resnet.layer3(
        resnet.layer2(resnet.layer1(resnet.relu(resnet.bn1(resnet.conv1(images)))))
    )
    weights = resnet.linear.weight[labels]  # N x K
    return torch.einsum("nk,nkhw->nhw", weights, feats).unsqueeze(1)


def main(argv: Optional[List[str]] = None) -> Dict[str, object]:
    args = _parse(argv)
    torch.set_num_threads(args.threads)
    root = find_cifar10_root()
    if root is None or not (root / CHECKPOINT).is_file():
        sys.exit(
            "CIFAR-10 folder not found: set CAPTUM_CAMS_CIFAR10 "
            "(needs test/, train.tar.gz and the checkpoint)"
        )
    started = time.time()
    resnet = load_cifar_resnet(root / CHECKPOINT)
    generator = torch.Generator().manual_seed(args.seed)
    train_set = cifar10_train_set(root)
    test_set = cifar10_test_set(root)
    train_idx = torch.randperm(len(train_set), generator=generator)[: args.train_images].tolist()
    test_idx = torch.randperm(len(test_set), generator=generator)[: args.test_images].tolist()
    train = _load(train_set, train_idx)
    test_images, test_labels = _load(test_set, test_idx).tensors
    print(
        f"loaded {len(train_idx)} training and {len(test_idx)} test images "
        f"in {time.time() - started:.0f} s"
    )

    results: Dict[str, object] = {"args": vars(args)}
    accuracy = {"CAM (ResNet-20)": _accuracy(resnet, test_images, test_labels)}
    accuracy["CALM head before training"] = _accuracy(
        CALM.from_cifar_resnet(resnet), test_images, test_labels
    )
    models: Dict[str, nn.Module] = {}
    seconds: Dict[str, float] = {}
    if "cam-ft" in args.models:
        tic = time.time()
        tuned = _fine_tune_cam(resnet, train, args)
        seconds["CAM (ResNet-20 fine-tuned the same way)"] = time.time() - tic
        accuracy["CAM (ResNet-20 fine-tuned the same way)"] = _accuracy(
            tuned, test_images, test_labels
        )
    for loss in [m for m in args.models if m in ("em", "ml")]:
        name = f"CALM_{loss.upper()}"
        model = CALM.from_cifar_resnet(resnet)
        checkpoint = None
        if args.checkpoint_dir:
            checkpoint = os.path.join(args.checkpoint_dir, f"calm_cifar_{loss}.pt")
        tic = time.time()
        history = train_calm(
            model,
            train,
            loss=loss,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            checkpoint=checkpoint,
            progress=not args.no_progress,
        )
        seconds[name] = time.time() - tic
        results[f"history {name}"] = history
        accuracy[name] = _accuracy(model, test_images, test_labels)
        models[name] = model
    results["accuracy"] = accuracy
    results["train seconds"] = seconds
    gap = None
    if "CALM_EM" in models and "CALM_ML" in models:
        gap = max(
            float((a - b).detach().abs().max())
            for a, b in zip(models["CALM_EM"].parameters(), models["CALM_ML"].parameters())
        )
        results["max parameter difference EM vs ML"] = gap

    rc_images, rc_labels = test_images[: args.rc_images], test_labels[: args.rc_images]
    maps = {"CAM": (resnet, _cam(resnet, rc_images, rc_labels))}
    if "cam-ft" in args.models:
        maps["CAM (fine-tuned)"] = (tuned, _cam(tuned, rc_images, rc_labels))
    for name, model in models.items():
        maps[name] = (model, CALMAttribution(model).attribute(rc_images, target=rc_labels))
    relative: Dict[str, List[float]] = {}
    fractions: List[float] = []
    for name, (model, attributions) in maps.items():
        res = remove_and_classify(
            model,
            rc_images,
            attributions,
            target=rc_labels,
            max_examples_per_batch=500,
            seed=args.seed,
        )
        relative[name] = res.relative_accuracy.tolist()
        fractions = res.fractions.tolist()
    results["remove_and_classify"] = {"fractions": fractions, "relative_accuracy": relative}

    print(
        f"\nCIFAR-10, ResNet-20 backbone; CALM trained {args.epochs} epoch(s) on "
        f"{args.train_images} training images (lr {args.lr}, head x10, batch {args.batch_size}, "
        f"seed {args.seed}); accuracy on {args.test_images} test images\n"
    )
    print("| model | test accuracy % | training s |\n|---|---|---|")
    for name, value in accuracy.items():
        print(f"| {name} | {100 * value:.2f} | {seconds.get(name, 0.0):.0f} |")
    print(
        f"\nRemove-and-classify, {args.rc_images} test images, true class, blur baseline: "
        "relative accuracy (% points, lower is better)\n"
    )
    header = " | ".join(f"{round(100 * f)} %" for f in fractions)
    print(f"| map | {header} | mean |\n|---|" + "---|" * (len(fractions) + 1))
    for name, values in relative.items():
        cells = " | ".join(f"{100 * v:+.1f}" for v in values)
        print(f"| {name} | {cells} | {100 * sum(values) / len(values):+.2f} |")
    if gap is not None:
        print(f"\nlargest |parameter of CALM_EM - parameter of CALM_ML| after training: {gap:.2e}")
    print(f"\ntotal {time.time() - started:.0f} s")
    if args.json:
        with atomic_path(args.json) as temporary:
            temporary.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
