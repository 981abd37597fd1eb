#!/usr/bin/env python3
"""How close are CAM channel weights to the channels' Shapley values? (LIFT-CAM, Table 2)

On the CIFAR-10 ResNet-20 with a non-linear head (layer ``layer3[-2]``: the head is
the last residual block, average pooling and the classifier), the channel weights
of Grad-CAM, Grad-CAM++, XGrad-CAM, Ablation-CAM and LIFT-CAM (and SHAP-CAM with few
permutations) are compared with SHAP-CAM with many permutations, the reference, by
cosine similarity per image, for the predicted class of a seeded random sample of
test images. Prints a markdown table.

Usage::

    CAPTUM_CAMS_CIFAR10=/path/to/cifar10 python benchmarks/lift_cam_coefficients.py \\
        --num-images 64 --num-permutations 256

The folder holds ``resnet20-12fca82f.th`` and ``test/<class>/*.jpg``; it defaults to
``../shared/data/cifar10`` next to the repository.
"""

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import torch
from torch import Tensor
from torchvision import datasets, transforms
from tqdm import tqdm

from captum_cams import (
    LayerAblationCam,
    LayerGradCam,
    LayerGradCamPlusPlus,
    LayerLiftCam,
    LayerShapCam,
    LayerXGradCam,
)
from captum_cams.kit.models.cifar_resnet import load_cifar_resnet
from captum_cams.metrics import coefficient_cosine_similarity

REPO_ROOT = Path(__file__).resolve().parents[1]


def cifar10_folder() -> Path:
    root = Path(
        os.environ.get("CAPTUM_CAMS_CIFAR10", REPO_ROOT.parent / "shared" / "data" / "cifar10")
    )
    if not (root / "resnet20-12fca82f.th").is_file() or not (root / "test").is_dir():
        sys.exit(
            f"CIFAR-10 folder not found at {root} (needs resnet20-12fca82f.th and test/); "
            "set CAPTUM_CAMS_CIFAR10"
        )
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-images", type=int, default=64)
    parser.add_argument(
        "--num-permutations", type=int, default=256, help="permutations of the SHAP-CAM reference"
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    root = cifar10_folder()
    model = load_cifar_resnet(root / "resnet20-12fca82f.th")
    layer = model.layer3[-2]
    normalize = transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    dataset = datasets.ImageFolder(
        str(root / "test"), transform=transforms.Compose([transforms.ToTensor(), normalize])
    )
    generator = torch.Generator().manual_seed(args.seed)
    indices = torch.randperm(len(dataset), generator=generator)[: args.num_images].tolist()

    methods: Dict[str, Callable[[Tensor, Tensor], Tensor]] = {}
    for name, cls in [
        ("Grad-CAM", LayerGradCam),
        ("Grad-CAM++", LayerGradCamPlusPlus),
        ("XGrad-CAM", LayerXGradCam),
    ]:
        method = cls(model, layer)
        methods[name] = lambda x, t, m=method: m.attribute(x, target=t, return_weights=True)[1]
    ablation = LayerAblationCam(model, layer)
    methods["Ablation-CAM"] = lambda x, t: ablation.attribute(x, target=t, return_weights=True)[1]
    lift = LayerLiftCam(model, layer)
    methods["LIFT-CAM"] = lambda x, t: lift.attribute(x, target=t, return_weights=True)[1]
    shap = LayerShapCam(model, layer)
    methods["SHAP-CAM_10"] = lambda x, t: shap.attribute(
        x, target=t, num_permutations=10, seed=args.seed + 1, return_weights=True
    )[1]

    scores: Dict[str, List[Tensor]] = {name: [] for name in methods}
    seconds: Dict[str, float] = {name: 0.0 for name in methods}
    reference_seconds = 0.0
    correct = 0
    for start in tqdm(range(0, len(indices), args.batch_size), desc="batches"):
        batch = [dataset[i] for i in indices[start : start + args.batch_size]]
        x = torch.stack([image for image, _ in batch])
        labels = torch.tensor([label for _, label in batch])
        with torch.no_grad():
            target = model(x).argmax(dim=1)
        correct += int((target == labels).sum())
        begin = time.perf_counter()
        reference = shap.attribute(
            x,
            target=target,
            num_permutations=args.num_permutations,
            seed=args.seed,
            return_weights=True,
            internal_batch_size=1024,
        )[1]
        reference_seconds += time.perf_counter() - begin
        for name, weights_of in methods.items():
            begin = time.perf_counter()
            weights = weights_of(x, target)
            seconds[name] += time.perf_counter() - begin
            scores[name].append(coefficient_cosine_similarity(weights, reference))

    n = len(indices)
    print(
        f"\nCIFAR-10 ResNet-20, layer3[-2] (K = 64, non-linear head), {n} seeded test "
        f"images (accuracy {correct / n:.3f}), predicted class; reference SHAP-CAM with "
        f"{args.num_permutations} permutations ({1000 * reference_seconds / n:.0f} ms/image)\n"
    )
    print("| method | mean cosine to SHAP-CAM | std | ms / image |")
    print("|---|---|---|---|")
    rows: List[Tuple[str, Tensor]] = [(name, torch.cat(s)) for name, s in scores.items()]
    for name, values in rows:
        print(
            f"| {name} | {values.mean().item():.3f} | {values.std().item():.3f} | "
            f"{1000 * seconds[name] / n:.1f} |"
        )


if __name__ == "__main__":
    main()
