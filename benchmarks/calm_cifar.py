#!/usr/bin/env python3
r"""CALM on CIFAR-10: heads trained from scratch on ResNet-20's backbone, CPU scale.

The ideas of Table 2 (accuracy: CALM costs a little) and Fig. 5 (remove-and-classify:
CALM's maps point at the evidence better than CAM's) of Kim et al., "Keep CALM and
Improve Visual Feature Attribution", ICCV 2021, at CIFAR scale:

1. CAM = the trained ResNet-20 (``resnet20-12fca82f.th``), CAM layer ``layer3``
   (64 x 8 x 8), CAM map ``Σ_k w_yk A_k``.
2. The control "CAM fine-tuned": ResNet-20 with its ``linear`` re-initialised (a head
   from scratch, like CALM's; ``--copy-classifier`` keeps the trained one) trained on
   the same images with the same SGD settings, schedule and data order and
   cross-entropy (its ``linear`` at x10).
3. CALM_EM and CALM_ML = ``CALM.from_cifar_resnet(resnet20, copy_classifier=False)``
   (backbone ``conv1 … layer3``, branches g and h trained from scratch as in the
   paper: g with PyTorch's default initialisation, h from zeros, i.e. uniform
   ``p(z|x)``), each trained with :func:`captum_cams.calm.train_calm` (SGD, momentum
   0.9, Nesterov, weight decay 1e-4, lr 0.01, head learning rate x10, step decay x0.1
   — the authors' recipe, 40 epochs with decay at 30, shortened to ``--epochs`` with
   decay at ``--lr-decay-epochs``) on the same seeded subset of the training set.
   ``--authors-gradient`` trains with the authors' ``h / sum(h).detach()``.
4. Top-1 accuracy on a seeded subset of the test JPEGs (± 95 % normal interval).
5. Remove-and-classify (:func:`captum_cams.metrics.remove_and_classify`, 10 … 90 %
   of the pixels) on seeded test images with their true labels, with the zero
   baseline (the authors' evaluation script) and the blur baseline (the paper's
   text): the paper's ratio ``A_k / A_k^r`` (accuracy after erasing the map's top
   pixels over accuracy after erasing as many random pixels; lower is better) and
   the difference ``A_k − A_k^r``, each model classifying its own erased images;
   95 % intervals by a seeded bootstrap over the images (paired between models).
   CALM's map is the joint ``p(y, z | x)`` of the true class.

Run from the repository root::

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
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from captum_cams._utils.files import atomic_path  # noqa: E402
from captum_cams.calm import CALM, CALMAttribution, train_calm  # noqa: E402
from captum_cams.kit.datasets.cifar10 import (  # noqa: E402
    cifar10_test_set,
    cifar10_train_set,
    find_cifar10_root,
)
from captum_cams.kit.models import load_cifar_resnet  # noqa: E402
from captum_cams.metrics import remove_and_classify  # noqa: E402

CHECKPOINT = "resnet20-12fca82f.th"


def _parse(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-images", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument(
        "--lr-decay-epochs", type=int, default=2, help="x0.1 every this many epochs; 0: none"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.01, help="backbone lr (head x10)")
    parser.add_argument(
        "--copy-classifier",
        action="store_true",
        help="start branch g (and the control's linear) from ResNet-20's trained linear",
    )
    parser.add_argument(
        "--authors-gradient",
        action="store_true",
        help="train CALM with h / sum(h).detach() (the authors' code)",
    )
    parser.add_argument("--test-images", type=int, default=2000)
    parser.add_argument("--rc-images", type=int, default=1000, help="remove-and-classify images")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
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
    if not args.copy_classifier:
        model.linear.reset_parameters()  # a classifier from scratch, like CALM's heads
    head = list(model.linear.parameters())
    body = [p for n, p in model.named_parameters() if not n.startswith("linear.")]
    optimizer = torch.optim.SGD(
        [{"params": body, "lr": args.lr}, {"params": head, "lr": 10 * args.lr}],
        lr=args.lr,
        momentum=0.9,
        weight_decay=1e-4,
        nesterov=True,
    )
    step = args.lr_decay_epochs if args.lr_decay_epochs else 1
    scheduler = torch.optim.lr_scheduler.StepLR(
        optimizer, step_size=step, gamma=0.1 if args.lr_decay_epochs else 1.0
    )
    for epoch in range(args.epochs):
        generator = torch.Generator().manual_seed(args.seed + epoch)
        loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, generator=generator)
        for images, labels in tqdm(loader, desc="CAM fine-tuning", disable=args.no_progress):
            loss = nn.functional.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        scheduler.step()
    return model.eval()


def _interval(values: Tensor) -> float:
    r"""Half-width of the 95 % normal interval of the mean of ``values`` (1.96 s.e.)."""
    return 1.96 * float(values.std(correction=1)) / values.numel() ** 0.5


def _bootstrap_ratio(
    correct: Tensor, random_correct: Tensor, draws: Tensor
) -> Tuple[Tensor, Tensor]:
    r"""
    ``mean_k A_k / A_k^r`` and ``mean_k (A_k − A_k^r)`` for every bootstrap draw of
    images (rows of ``draws``), ``(B,)`` each.
    """
    acc = correct[draws].mean(dim=1)  # B x K
    rnd = random_correct[draws].mean(dim=1)
    return (acc / rnd).mean(dim=1), (acc - rnd).mean(dim=1)


def _percentile_interval(values: Tensor) -> Tuple[float, float]:
    finite = values[torch.isfinite(values)]
    low, high = torch.quantile(finite.double(), torch.tensor([0.025, 0.975], dtype=torch.double))
    return float(low), float(high)


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
        CALM.from_cifar_resnet(resnet, copy_classifier=args.copy_classifier),
        test_images,
        test_labels,
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
        model = CALM.from_cifar_resnet(resnet, copy_classifier=args.copy_classifier)
        model.detach_attention_normalizer = args.authors_gradient
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
            lr_decay_epochs=args.lr_decay_epochs or None,
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
    entropy: Dict[str, float] = {}
    for name, model in models.items():
        maps[name] = (model, CALMAttribution(model).attribute(rc_images, target=rc_labels))
        with torch.no_grad():  # how far p(z|x) is from uniform: 1 = uniform, 0 = one cell
            log_p = model.components(rc_images).log_saliency.flatten(1)
            h = -(log_p.exp() * log_p).sum(1) / torch.log(torch.tensor(float(log_p.shape[1])))
        entropy[name] = float(h.mean())
    results["normalised entropy of p(z|x)"] = entropy
    generator = torch.Generator().manual_seed(args.seed)
    num_rc = rc_images.shape[0]
    draws = torch.randint(0, num_rc, (args.bootstrap, num_rc), generator=generator)
    rc: Dict[str, Dict[str, Dict[str, object]]] = {}
    fractions: List[float] = []
    for baseline in ("zero", "blur"):
        rc[baseline] = {}
        for name, (model, attributions) in maps.items():
            res = remove_and_classify(
                model,
                rc_images,
                attributions,
                target=rc_labels,
                max_examples_per_batch=500,
                baselines=baseline,
                seed=args.seed,
            )
            fractions = res.fractions.tolist()
            ratio_draws, diff_draws = _bootstrap_ratio(res.correct, res.random_correct, draws)
            rc[baseline][name] = {
                "ratio": res.relative_accuracy.tolist(),
                "difference": res.accuracy_difference.tolist(),
                "accuracy": res.accuracy.tolist(),
                "random_accuracy": res.random_accuracy.tolist(),
                "mean_ratio": float(res.relative_accuracy.mean()),
                "mean_ratio_interval": _percentile_interval(ratio_draws),
                "mean_difference": float(res.accuracy_difference.mean()),
                "mean_difference_interval": _percentile_interval(diff_draws),
                "_ratio_draws": ratio_draws,
                "_diff_draws": diff_draws,
            }
    results["remove_and_classify"] = {
        "fractions": fractions,
        "images": num_rc,
        "bootstrap": args.bootstrap,
        "by_baseline": {
            b: {n: {k: v for k, v in r.items() if not k.startswith("_")} for n, r in rows.items()}
            for b, rows in rc.items()
        },
    }

    start = "from scratch" if not args.copy_classifier else "g started from ResNet-20's linear"
    gradient = "authors' h / sum(h).detach()" if args.authors_gradient else "the paper's gradient"
    print(
        f"\nCIFAR-10, ResNet-20 backbone; heads {start}; trained {args.epochs} epoch(s) on "
        f"{args.train_images} training images (lr {args.lr}, head x10, x0.1 every "
        f"{args.lr_decay_epochs or '-'} epochs, batch {args.batch_size}, seed {args.seed}, "
        f"{gradient}); accuracy on {args.test_images} test images (± 95 % interval)\n"
    )
    print("| model | test accuracy % | training s |\n|---|---|---|")
    for name, value in accuracy.items():
        half = 196 * (value * (1 - value) / args.test_images) ** 0.5
        print(f"| {name} | {100 * value:.2f} ± {half:.2f} | {seconds.get(name, 0.0):.0f} |")
    header = " | ".join(f"{round(100 * f)} %" for f in fractions)
    for baseline, rows in rc.items():
        print(
            f"\nRemove-and-classify, {num_rc} test images, true class, {baseline} baseline: "
            "the paper's ratio A_k / A_k^r (lower is better); mean over k with a 95 % "
            f"bootstrap interval ({args.bootstrap} resamples of the images)\n"
        )
        print(f"| map | {header} | mean ratio | mean difference (points) |")
        print("|---|" + "---|" * (len(fractions) + 2))
        for name, row in rows.items():
            cells = " | ".join(f"{v:.3f}" for v in row["ratio"])  # type: ignore[union-attr]
            low, high = row["mean_ratio_interval"]  # type: ignore[misc]
            dlow, dhigh = row["mean_difference_interval"]  # type: ignore[misc]
            print(
                f"| {name} | {cells} | {row['mean_ratio']:.3f} [{low:.3f}, {high:.3f}] | "
                f"{100 * row['mean_difference']:+.2f} [{100 * dlow:+.2f}, {100 * dhigh:+.2f}] |"
            )
        if "CAM (fine-tuned)" in rows:
            control = rows["CAM (fine-tuned)"]
            for name, row in rows.items():
                if not name.startswith("CALM"):
                    continue
                paired = row["_ratio_draws"] - control["_ratio_draws"]  # type: ignore[operator]
                low, high = _percentile_interval(paired)
                delta = row["mean_ratio"] - control["mean_ratio"]  # type: ignore[operator]
                results.setdefault("calm_minus_cam_ft", {})[f"{baseline} {name}"] = [  # type: ignore[union-attr]
                    delta,
                    low,
                    high,
                ]
                print(
                    f"\n{name} − CAM (fine-tuned), mean ratio, {baseline}: {delta:+.3f} "
                    f"[{low:+.3f}, {high:+.3f}] (paired bootstrap; negative: CALM better)"
                )
    for name, value in entropy.items():
        print(f"\n{name}: mean normalised entropy of p(z|x) {value:.3f} (1 = uniform)")
    if gap is not None:
        print(f"\nlargest |parameter of CALM_EM - parameter of CALM_ML| after training: {gap:.2e}")
    print(f"\ntotal {time.time() - started:.0f} s")
    if args.json:
        with atomic_path(args.json) as temporary:
            temporary.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
