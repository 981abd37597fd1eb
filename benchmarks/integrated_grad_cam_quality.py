#!/usr/bin/env python3
r"""Quality of Integrated Grad-CAM against Grad-CAM and Grad-CAM++.

Two parts, as in the paper's tables (Sattarzadeh et al., ICASSP 2021):

1. CIFAR-10 test images with the trained ResNet-20 (CAM layer ``layer3``, 8 x 8):
   Drop% (average drop, lower is better) and Increase% (increase in confidence,
   higher is better), both with the binary mask of the top 15 % pixels
   (``keep_top_fraction=0.15``); target: the model's predicted class; removed
   pixels become 0 in the normalised input space (the dataset's mean colour).
2. The project's ground-truth shapes with the embedded default model (16 x 16 CAM
   layer): energy-based pointing game and Bbox against the objects' boxes;
   target: the true label.

Integrated Grad-CAM runs with its defaults (zero baseline, ``n_steps=50``,
``riemann_right``). Images are a seeded random sample.

Run from the repository root::

    CAPTUM_CAMS_CIFAR10=/path/to/cifar10 python benchmarks/integrated_grad_cam_quality.py

``CAPTUM_CAMS_CIFAR10`` defaults to ``../shared/data/cifar10`` relative to the
repository root.
"""

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
from torch import Tensor, nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from captum_cams import (  # noqa: E402
    LayerGradCam,
    LayerGradCamPlusPlus,
    LayerIntegratedGradCam,
)
from captum_cams.kit.datasets import make_batch  # noqa: E402
from captum_cams.kit.models import (  # noqa: E402
    embedded_default_layer,
    load_cifar_resnet,
    load_embedded_default,
)
from captum_cams.metrics import (  # noqa: E402
    average_drop,
    bbox_score,
    energy_pointing_game,
    increase_in_confidence,
)

CIFAR_MEAN = [0.485, 0.456, 0.406]
CIFAR_STD = [0.229, 0.224, 0.225]
CHECKPOINT = "resnet20-12fca82f.th"

Explain = Callable[[nn.Module, nn.Module, Tensor, Tensor], Tensor]


def _methods(n_steps: int) -> Dict[str, Explain]:
    return {
        "Grad-CAM": lambda model, layer, x, t: LayerGradCam(model, layer).attribute(
            x, target=t, relu_attributions=True
        ),
        "Grad-CAM++": lambda model, layer, x, t: LayerGradCamPlusPlus(model, layer).attribute(
            x, target=t
        ),
        f"Integrated Grad-CAM (m={n_steps})": lambda model, layer, x, t: LayerIntegratedGradCam(
            model, layer
        ).attribute(x, target=t, n_steps=n_steps),
    }


def _cifar_root() -> Path:
    default = REPO / ".." / "shared" / "data" / "cifar10"
    root = Path(os.environ.get("CAPTUM_CAMS_CIFAR10", default)).resolve()
    if not (root / CHECKPOINT).is_file() or not (root / "test").is_dir():
        sys.exit(
            f"CIFAR-10 folder not found at {root} (need {CHECKPOINT} and test/<class>/*.jpg); "
            "set CAPTUM_CAMS_CIFAR10 to the shared cifar10 folder"
        )
    return root


def _cifar_sample(root: Path, num: int, seed: int) -> Tensor:
    from torchvision import datasets, transforms

    data = datasets.ImageFolder(
        str(root / "test"),
        transform=transforms.Compose(
            [transforms.ToTensor(), transforms.Normalize(mean=CIFAR_MEAN, std=CIFAR_STD)]
        ),
    )
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:num]
    return torch.stack([data[int(i)][0] for i in order])


def _in_batches(
    explain: Explain, model: nn.Module, layer: nn.Module, x: Tensor, target: Tensor, size: int
) -> Tensor:
    return torch.cat(
        [
            explain(model, layer, x[i : i + size], target[i : i + size])
            for i in range(0, len(x), size)
        ]
    )


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cifar-images", type=int, default=300)
    parser.add_argument("--shapes-images", type=int, default=300)
    parser.add_argument("--n-steps", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)

    root = _cifar_root()
    cifar = load_cifar_resnet(root / CHECKPOINT)
    x = _cifar_sample(root, args.cifar_images, args.seed)
    with torch.no_grad():
        predicted = cifar(x).argmax(dim=1)

    shapes_model = load_embedded_default()
    shapes = make_batch(args.shapes_images, split="test", seed=args.seed)
    boxes = shapes.boxes.clone()
    boxes[:, 2:] -= 1  # make_batch: exclusive x2, y2; the metrics: inclusive pixels
    size = tuple(shapes.images.shape[-2:])
    with torch.no_grad():
        shapes_accuracy = (shapes_model(shapes.images).argmax(1) == shapes.labels).float().mean()

    rows = []
    for name, explain in _methods(args.n_steps).items():
        started = time.perf_counter()
        maps = _in_batches(explain, cifar, cifar.layer3, x, predicted, args.batch_size)
        cifar_seconds = time.perf_counter() - started
        drop = average_drop(
            cifar, x, maps, predicted, keep_top_fraction=0.15, max_examples_per_batch=100
        )
        increase = increase_in_confidence(
            cifar, x, maps, predicted, keep_top_fraction=0.15, max_examples_per_batch=100
        )
        started = time.perf_counter()
        shape_maps = _in_batches(
            explain, shapes_model, embedded_default_layer(shapes_model), shapes.images,
            shapes.labels, args.batch_size,
        )  # fmt: skip
        shapes_seconds = time.perf_counter() - started
        energy = energy_pointing_game(shape_maps, boxes, image_size=size)
        bbox = bbox_score(shape_maps, boxes, image_size=size)
        rows.append(
            f"| {name} | {100 * drop.mean():.2f} | {100 * increase.mean():.2f} | "
            f"{100 * energy.mean():.2f} | {100 * bbox.mean():.2f} | "
            f"{cifar_seconds:.1f} / {shapes_seconds:.1f} |"
        )
        print(f"done: {name}", file=sys.stderr, flush=True)

    print(
        f"CIFAR-10 ResNet-20 (layer3, {len(x)} seeded test images, predicted class); "
        f"ground-truth shapes with the embedded model ({len(shapes.images)} test items, "
        f"accuracy {100 * shapes_accuracy:.1f} %, true class, boxes); seed {args.seed}\n"
    )
    print("| method | Drop% ↓ | Increase% ↑ | Energy PG % ↑ | Bbox % ↑ | CPU s (CIFAR / shapes) |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
