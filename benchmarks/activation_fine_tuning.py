#!/usr/bin/env python3
r"""TFT and AFT on the CIFAR-10 ResNet-20: the idea of Tables 3 and 4 of Han, Lee & Lee.

For each of the paper's four CAM methods (Grad-CAM, Grad-CAM++, Ablation-CAM,
Layer-CAM) at ``layer3`` (64 x 8 x 8):

1. TFT masks ``M_τ*`` of a seeded subset of the training images (true labels), made
   with the original model (:func:`captum_cams.generate_tft_masks`, cached on disk).
2. A short activation fine-tune (:class:`captum_cams.ActivationFineTuner`) on that
   subset: ``conv1`` to ``layer2`` frozen, ``layer3``, ``linear`` and the tuner trained
   on ``CE + λ·MSE``.
3. On seeded test images, target = the explained model's predicted class, maps
   unthresholded (``mm(up(map)) ⊙ x``, removed pixels 0 in the normalised input):
   average increase (% of images whose probability rises,
   :func:`~captum_cams.metrics.increase_in_confidence`) and average drop
   (:func:`~captum_cams.metrics.average_drop`, %) for
   Original (the method on the original model), TFT (the method's maps threshold
   fine-tuned, :class:`captum_cams.ThresholdFineTuned`) and AFT (the method on the
   fine-tuned model, scored with that model); as a control, CE-only (the same
   fine-tune with λ = 0, i.e. without the tuner's loss).
4. Top-1 accuracy of the original and the fine-tuned models on seeded test images.
5. TFT's runtime over its base method: medians of repeated, interleaved timings of
   ``ThresholdFineTuned(method).attribute`` and ``method.attribute`` on one batch,
   and their ratio (same run).

Runs in one process, or under ``torchrun`` (mask generation and training are
shared out; evaluation runs on rank 0). Run from the repository root::

    CAPTUM_CAMS_CIFAR10=/path/to/cifar10 python benchmarks/activation_fine_tuning.py

``CAPTUM_CAMS_CIFAR10`` defaults to ``../shared/data/cifar10`` next to the repository.
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from captum_cams import (  # noqa: E402
    ActivationFineTuner,
    LayerAblationCam,
    LayerCam,
    LayerGradCam,
    LayerGradCamPlusPlus,
    ThresholdFineTuned,
    generate_tft_masks,
)
from captum_cams._utils.distributed import (  # noqa: E402
    barrier,
    init_distributed_from_env,
    is_main_process,
)
from captum_cams.datasets import cifar10_test_set, cifar10_train_set  # noqa: E402
from captum_cams.metrics import average_drop, increase_in_confidence  # noqa: E402
from captum_cams.models import load_cifar_resnet  # noqa: E402

CHECKPOINT = "resnet20-12fca82f.th"
METHODS: Dict[str, Callable[[nn.Module, nn.Module], object]] = {
    "Grad-CAM": LayerGradCam,
    "Grad-CAM++": LayerGradCamPlusPlus,
    "Ablation-CAM": LayerAblationCam,
    "Layer-CAM": LayerCam,
}


def _cifar_root() -> Path:
    default = REPO / ".." / "shared" / "data" / "cifar10"
    root = Path(os.environ.get("CAPTUM_CAMS_CIFAR10", default)).resolve()
    if not (root / CHECKPOINT).is_file() or not (root / "test").is_dir():
        sys.exit(
            f"CIFAR-10 folder not found at {root} (need {CHECKPOINT}, test/ and train.tar.gz); "
            "set CAPTUM_CAMS_CIFAR10 to the shared cifar10 folder"
        )
    return root


def _sample(data, num: int, seed: int) -> TensorDataset:
    r"""A seeded subset of an ImageFolder, decoded once into tensors."""
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:num]
    items = [data[int(i)] for i in order]
    return TensorDataset(
        torch.stack([image for image, _ in items]), torch.tensor([label for _, label in items])
    )


def _predicted(model: nn.Module, x: Tensor, batch: int) -> Tensor:
    with torch.no_grad():
        return torch.cat([model(x[i : i + batch]).argmax(1) for i in range(0, len(x), batch)])


def _maps(method, x: Tensor, target: Tensor, batch: int) -> Tensor:
    r"""``method.attribute`` in batches."""
    return torch.cat(
        [
            method.attribute(x[i : i + batch], target=target[i : i + batch]).detach()
            for i in range(0, len(x), batch)
        ]
    )


def _scores(model: nn.Module, x: Tensor, maps: Tensor, target: Tensor) -> Dict[str, float]:
    increase = increase_in_confidence(model, x, maps, target, max_examples_per_batch=250)
    drop = average_drop(model, x, maps, target, max_examples_per_batch=250)
    return {"increase": 100 * float(increase.mean()), "drop": 100 * float(drop.mean())}


def _timings(base, tuned, x: Tensor, target: Tensor, repeats: int) -> Dict[str, float]:
    r"""Medians of interleaved timings of the base method and its TFT version."""
    base.attribute(x, target=target)  # warm-up
    tuned.attribute(x, target=target)
    base_times: List[float] = []
    tft_times: List[float] = []
    for _ in range(repeats):
        started = time.perf_counter()
        base.attribute(x, target=target)
        base_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        tuned.attribute(x, target=target)
        tft_times.append(time.perf_counter() - started)
    base_s, tft_s = statistics.median(base_times), statistics.median(tft_times)
    return {"base_s": base_s, "tft_s": tft_s, "ratio": tft_s / base_s}


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-images", type=int, default=2000)
    parser.add_argument("--eval-images", type=int, default=500)
    parser.add_argument("--accuracy-images", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"])
    parser.add_argument("--mask-weight", type=float, default=1.0, help="λ")
    parser.add_argument(
        "--control",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also fine-tune with λ = 0 (CE only) and score that model",
    )
    parser.add_argument("--timing-batch", type=int, default=64)
    parser.add_argument("--timing-repeats", type=int, default=7)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument(
        "--cache-dir", default=str(Path.home() / ".cache" / "captum_cams" / "aft_benchmark")
    )
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    init_distributed_from_env()
    main_process = is_main_process()

    root = _cifar_root()
    model = load_cifar_resnet(root / CHECKPOINT)
    train = _sample(cifar10_train_set(root), args.train_images, args.seed)
    test = _sample(cifar10_test_set(root), max(args.eval_images, args.accuracy_images), args.seed)
    x_eval = test.tensors[0][: args.eval_images]
    x_acc, y_acc = (t[: args.accuracy_images] for t in test.tensors)
    predicted = _predicted(model, x_eval, 250)
    accuracy = float((_predicted(model, x_acc, 250) == y_acc).float().mean())

    fit_options = dict(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        optimizer=args.optimizer,
        seed=args.seed,
    )
    control_model = None
    if args.control:
        # the same fine-tune without the tuner's loss (λ = 0): what plain fine-tuning
        # on these images does to the maps and the accuracy
        control_model = ActivationFineTuner(model, model.layer3, mask_weight=0.0).fit(
            train, torch.zeros(len(train), 1, 8, 8), **fit_options
        )
        control_predicted = _predicted(control_model, x_eval, 250)
        control_accuracy = float((_predicted(control_model, x_acc, 250) == y_acc).float().mean())

    results: Dict[str, Dict] = {}
    for name in args.methods.split(","):
        method = METHODS[name]
        started = time.perf_counter()
        masks = generate_tft_masks(
            method(model, model.layer3),
            train,
            cache_dir=Path(args.cache_dir) / f"{name}-n{args.train_images}-s{args.seed}",
            batch_size=args.batch_size,
            shard_size=500,
        )
        mask_s = time.perf_counter() - started
        started = time.perf_counter()
        fine_tuner = ActivationFineTuner(model, model.layer3, mask_weight=args.mask_weight)
        tuned_model = fine_tuner.fit(train, masks, **fit_options)
        train_s = time.perf_counter() - started
        if not main_process:
            continue

        base = method(model, model.layer3)
        tft = ThresholdFineTuned(method(model, model.layer3))
        after = method(tuned_model, tuned_model.layer3)
        tuned_predicted = _predicted(tuned_model, x_eval, 250)
        batch = 100
        original_maps = _maps(base, x_eval, predicted, batch)
        tft_maps = _maps(tft, x_eval, predicted, batch)
        aft_maps = _maps(after, x_eval, tuned_predicted, batch)
        tuned_accuracy = float((_predicted(tuned_model, x_acc, 250) == y_acc).float().mean())
        timing_x = x_eval[: args.timing_batch]
        results[name] = {
            "Original": _scores(model, x_eval, original_maps, predicted),
            "TFT": _scores(model, x_eval, tft_maps, predicted),
            "AFT": _scores(tuned_model, x_eval, aft_maps, tuned_predicted),
            "accuracy_before": 100 * accuracy,
            "accuracy_after": 100 * tuned_accuracy,
            "masks_unchanged_fraction": float(masks.thresholds.isnan().float().mean()),
            "mask_mean": float(masks.masks.mean()),
            "history": fine_tuner.history,
            "mask_s": mask_s,
            "train_s": train_s,
            "timing": _timings(
                base, tft, timing_x, predicted[: args.timing_batch], args.timing_repeats
            ),
        }
        if control_model is not None:
            control = method(control_model, control_model.layer3)
            control_maps = _maps(control, x_eval, control_predicted, batch)
            results[name]["CE-only"] = _scores(
                control_model, x_eval, control_maps, control_predicted
            )
            results[name]["accuracy_control"] = 100 * control_accuracy
        print(f"done: {name}: {json.dumps(results[name])}", file=sys.stderr, flush=True)
    barrier()
    if not main_process:
        return

    print(
        f"CIFAR-10 ResNet-20 (layer3); AFT on {args.train_images} seeded training images, "
        f"{args.epochs} epoch(s), {args.optimizer} lr {args.lr}, λ = {args.mask_weight}, "
        f"batch {args.batch_size}; quality on {args.eval_images} and accuracy on "
        f"{args.accuracy_images} seeded test images; seed {args.seed}\n"
    )
    print("Table 3 — average increase % ↑ / average drop % ↓ (unthresholded maps)\n")
    columns = ["Original", "TFT", "AFT"] + (["CE-only"] if args.control else [])
    print("| method | " + " | ".join(f"{c} AI | {c} AD" for c in columns) + " |")
    print("|---" * (1 + 2 * len(columns)) + "|")
    for name, r in results.items():
        cells = [f"{r[k]['increase']:.2f} | {r[k]['drop']:.2f}" for k in columns]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\nTable 4 — top-1 accuracy % before / after AFT\n")
    extra = " after CE-only |" if args.control else ""
    print("| method | before | after AFT | change |" + extra)
    print("|---|---|---|---|" + ("---|" if args.control else ""))
    for name, r in results.items():
        before, after = r["accuracy_before"], r["accuracy_after"]
        row = f"| {name} | {before:.2f} | {after:.2f} | {after - before:+.2f} |"
        if args.control:
            row += f" {r['accuracy_control']:.2f} |"
        print(row)
    print(f"\nTFT runtime over its base method (batch of {args.timing_batch}, medians of ")
    print(f"{args.timing_repeats} interleaved runs)\n")
    print("| method | base s | TFT s | ratio | TFT extra s / image |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        t = r["timing"]
        extra = (t["tft_s"] - t["base_s"]) / args.timing_batch
        print(f"| {name} | {t['base_s']:.3f} | {t['tft_s']:.3f} | {t['ratio']:.2f} | {extra:.4f} |")
    print("\nCost: " + ", ".join(
        f"{name} masks {r['mask_s']:.0f} s, AFT {r['train_s']:.0f} s" for name, r in results.items()
    ))  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
