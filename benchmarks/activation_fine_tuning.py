#!/usr/bin/env python3
r"""TFT and AFT on the CIFAR-10 ResNet-20: the idea of Tables 3 and 4 of Han, Lee & Lee.

For each of the paper's four CAM methods (Grad-CAM, Grad-CAM++, Ablation-CAM,
Layer-CAM) at ``layer3`` (64 x 8 x 8):

0. The original model. The shared checkpoint was trained on the lossless CIFAR-10
   images, but the training images here are JPEGs; fine-tuning it on them moves its
   maps by itself (earlier runs of this script: average increase −2.6 to −4.6 points
   with and without the tuner's loss). So, as in the paper, where the original model
   was trained on the data AFT fine-tunes on, the original model here is the
   checkpoint fine-tuned on the training subset with cross-entropy alone (``layer3``
   onward, ``--adapt-epochs`` epochs at ``--adapt-lr``; cached on disk).
1. TFT masks ``M_τ*`` of the training subset (true labels), made with the original
   model (:func:`captum_cams.generate_tft_masks`, cached on disk).
2. AFT (:class:`captum_cams.ActivationFineTuner`) on that subset, once per seed:
   ``conv1`` to ``layer2`` frozen, ``layer3``, ``linear`` and the tuner trained on
   ``CE + λ·MSE``. Control (CE-only): the same fine-tune, same seeds, with λ = 0.
   The loss is the paper's by default (``ActivationFineTuner.fit``'s defaults: binary
   targets at the layer's resolution, squared error summed over the 8 x 8 cells, every
   item counted, also those whose map TFT left unchanged).
3. On seeded test images, target = the explained model's predicted class, scored as
   the paper scores Tables 3–4: the binary-masked image of a thresholded map, each
   method at its usual threshold (the paper's Table 1: Grad-CAM and Layer-CAM keep the
   top 15 % of the pixels, Grad-CAM++ 50 %, Ablation-CAM 20 %; TFT with its own
   binary mask ``1[I_τ* ≠ 0]``), removed pixels 0 in the normalised input:
   average increase (% of images whose probability rises,
   :func:`~captum_cams.metrics.increase_in_confidence`) and average drop
   (:func:`~captum_cams.metrics.average_drop`, %) for Original (the method on the
   original model), TFT (its maps threshold fine-tuned,
   :class:`captum_cams.ThresholdFineTuned`), AFT (the method on each fine-tuned model,
   scored with that model) and CE-only; every seed's AFT model on its own, the mean
   over the seeds with a 95 % t-interval over the seeds, and the paired differences
   from Original with 95 % intervals over the images. The unthresholded soft masks
   (``mm(up(map)) ⊙ x``, the earlier runs' scoring) are reported as well.
4. Top-1 accuracy of the checkpoint, the original model and the fine-tuned models.
5. TFT's runtime over its base method: medians of repeated, interleaved timings of
   ``ThresholdFineTuned(method).attribute`` and ``method.attribute`` on one batch,
   and their ratio (same run).

Runs in one process, or under ``torchrun`` (adaptation, mask generation and training
are shared out; evaluation runs on rank 0). Run from the repository root::

    CAPTUM_CAMS_CIFAR10=/path/to/cifar10 python benchmarks/activation_fine_tuning.py

``CAPTUM_CAMS_CIFAR10`` defaults to ``../shared/data/cifar10`` next to the repository.
"""

import argparse
import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

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
    threshold_fine_tuning,
)
from captum_cams._utils.batching import evaluate_in_chunks  # noqa: E402
from captum_cams._utils.distributed import (  # noqa: E402
    barrier,
    init_distributed_from_env,
    is_main_process,
)
from captum_cams._utils.files import atomic_path  # noqa: E402
from captum_cams.kit.datasets import cifar10_test_set, cifar10_train_set  # noqa: E402
from captum_cams.kit.models import load_cifar_resnet  # noqa: E402
from captum_cams.metrics import average_drop, increase_in_confidence  # noqa: E402

CHECKPOINT = "resnet20-12fca82f.th"
#: The paired differences reported: (new, reference).
COMPARISONS = [("TFT", "Original"), ("AFT", "Original"), ("AFT", "CE-only")]


METHODS: Dict[str, Callable[[nn.Module, nn.Module], object]] = {
    "Grad-CAM": LayerGradCam,
    "Grad-CAM++": LayerGradCamPlusPlus,
    "Ablation-CAM": LayerAblationCam,
    "Layer-CAM": LayerCam,
}
#: Keyword arguments of every ``attribute`` call: Grad-CAM's paper map is ReLU'd
#: (``LayerGradCam`` has Captum's default, none); the others ReLU by default.
ATTRIBUTE_KWARGS: Dict[str, Dict[str, Any]] = {"Grad-CAM": {"relu_attributions": True}}
#: Each method's usual threshold in the paper's Table 1: the fraction of pixels kept.
KEEP_TOP = {"Grad-CAM": 0.15, "Grad-CAM++": 0.5, "Ablation-CAM": 0.2, "Layer-CAM": 0.15}
#: Two-sided 95 % Student t quantiles by degrees of freedom (intervals over seeds).
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306}
#: The scorings reported: the paper's binary masks, and the unthresholded soft masks.
SCORINGS = ("paper", "soft")


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


def _in_batches(compute: Callable[[Tensor], Tensor], num_items: int, batch: int) -> Tensor:
    r"""``compute(rows)`` on consecutive batches of row indices, results in row order."""
    return evaluate_in_chunks(compute, num_items, batch, torch.device("cpu"))


def _predicted(model: nn.Module, x: Tensor, batch: int) -> Tensor:
    with torch.no_grad():
        return _in_batches(lambda rows: model(x[rows]).argmax(1), len(x), batch)


def _maps(method, x: Tensor, target: Tensor, batch: int, kwargs: Dict[str, Any]) -> Tensor:
    r"""``method.attribute`` (with ``kwargs``) in batches."""
    return _in_batches(
        lambda rows: method.attribute(x[rows], target=target[rows], **kwargs).detach(),
        len(x),
        batch,
    )


def _per_image(
    model: nn.Module, x: Tensor, maps: Tensor, target: Tensor, keep_top: Optional[float]
) -> Dict[str, Tensor]:
    r"""
    Per-image increase (0/1) and drop (in [0, 1]) of the masked images: the binary
    mask of the top ``keep_top`` of the pixels, or the soft ``mm(up(map))`` (None).
    """
    options = dict(max_examples_per_batch=250, keep_top_fraction=keep_top, binary=True)
    if keep_top is None:
        options = dict(max_examples_per_batch=250)
    increase = increase_in_confidence(model, x, maps, target, **options)
    drop = average_drop(model, x, maps, target, **options)
    return {"increase": increase.double(), "drop": drop.double()}


def _both_scorings(
    model: nn.Module, x: Tensor, maps: Tensor, target: Tensor, keep_top: float
) -> Dict[str, Dict[str, Tensor]]:
    r"""The paper's scoring (binary top-``keep_top`` mask) and the soft one."""
    return {
        "paper": _per_image(model, x, maps, target, keep_top),
        "soft": _per_image(model, x, maps, target, None),
    }


def _scored(
    name: str, model: nn.Module, x: Tensor, target: Tensor, keep_top: float
) -> Dict[str, Dict[str, Tensor]]:
    r"""Per-image scores of method ``name``'s maps on ``model`` for ``target``."""
    maps = _maps(METHODS[name](model, model.layer3), x, target, 100, ATTRIBUTE_KWARGS.get(name, {}))
    return _both_scorings(model, x, maps, target, keep_top)


def _tft_maps(model: nn.Module, x: Tensor, maps: Tensor, target: Tensor, batch: int) -> Tensor:
    r"""
    The maps threshold fine-tuned, in batches: what ``ThresholdFineTuned`` does after
    running its method, without running the method a second time.
    """
    return _in_batches(
        lambda rows: threshold_fine_tuning(model, x[rows], maps[rows], target[rows]).tuned_maps,
        len(x),
        batch,
    )


def _seed_mean(runs: List[Dict[str, Tensor]]) -> Dict[str, Tensor]:
    r"""Per-image values averaged over the seeds' models."""
    return {key: torch.stack([run[key] for run in runs]).mean(0) for key in runs[0]}


def _over_seeds(values: List[float]) -> List[float]:
    r"""Mean of per-seed values and the half-width of its 95 % t-interval over seeds."""
    if len(values) < 2:
        return [values[0], float("nan")]
    t = T_975.get(len(values) - 1, 1.96)
    return [statistics.mean(values), t * statistics.stdev(values) / len(values) ** 0.5]


def _percent(values: Dict[str, Tensor]) -> Dict[str, float]:
    return {key: 100 * float(v.mean()) for key, v in values.items()}


def _paired_difference(new: Dict[str, Tensor], old: Dict[str, Tensor]) -> Dict[str, List[float]]:
    r"""Mean of ``new − old`` over the images, in points, with a 95 % normal interval."""
    out = {}
    for key in new:
        difference = 100 * (new[key] - old[key])
        half = 1.96 * float(difference.std()) / len(difference) ** 0.5
        out[key] = [float(difference.mean()), half]
    return out


def _accuracy(predicted: Tensor, y: Tensor) -> float:
    return 100 * float((predicted == y).float().mean())


def _fine_tune_with_cross_entropy(
    model: nn.Module, train: TensorDataset, **fit_options: object
) -> nn.Module:
    r"""``layer3`` onward fine-tuned with CE alone: AFT with λ = 0, so no masks."""
    return ActivationFineTuner(model, model.layer3, mask_weight=0.0).fit(
        train, torch.zeros(len(train), 1, 8, 8), **fit_options
    )


def _original_model(
    checkpoint: nn.Module, train: TensorDataset, args: argparse.Namespace, cache_dir: Path
) -> Tuple[nn.Module, str]:
    r"""
    The checkpoint fine-tuned on the training JPEGs with cross-entropy alone (cached),
    and a name for it and the training images that keys the mask caches made with it.
    """
    if args.adapt_epochs == 0:
        return checkpoint, f"checkpoint-n{args.train_images}-s{args.seed}"
    name = (
        f"original-n{args.train_images}-e{args.adapt_epochs}-lr{args.adapt_lr}-"
        f"{args.optimizer}-b{args.batch_size}-s{args.seed}"
    )
    path = cache_dir / f"{name}.pt"
    if path.is_file():
        model = copy.deepcopy(checkpoint)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return model.eval(), name
    model = _fine_tune_with_cross_entropy(
        checkpoint,
        train,
        epochs=args.adapt_epochs,
        batch_size=args.batch_size,
        lr=args.adapt_lr,
        optimizer=args.optimizer,
        seed=args.seed,
    )
    if is_main_process():
        with atomic_path(path) as temporary:
            torch.save(model.state_dict(), temporary)
    barrier()
    return model.eval(), name


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


def _print_tables(
    args: argparse.Namespace, results: Dict[str, Dict], accuracy: Dict[str, float]
) -> None:
    seeds = ", ".join(str(seed) for seed in args.seeds)
    print(
        f"CIFAR-10 ResNet-20 (layer3). Original model: the checkpoint fine-tuned with CE on "
        f"{args.train_images} seeded training JPEGs ({args.adapt_epochs} epochs, lr "
        f"{args.adapt_lr}). AFT on the same images: {args.epochs} epoch(s), {args.optimizer} "
        f"lr {args.lr}, λ = {args.mask_weight}, batch {args.batch_size}, seeds {seeds}; "
        f"mask target {args.mask_target}, squared error {args.mask_reduction} over cells"
        f"{', unchanged maps skipped' if args.skip_unchanged else ', every item counted'}; "
        f"CE-only: the same with λ = 0. Quality and accuracy on {args.eval_images} seeded "
        f"test images; seed {args.seed}\n"
    )
    columns = ["Original", "TFT", "AFT", "CE-only"]
    for scoring in SCORINGS:
        if scoring == "paper":
            print("Table 3, scored as the paper: binary mask of each method's thresholded map")
            print("(top 15 % Grad-CAM and Layer-CAM, 50 % Grad-CAM++, 20 % Ablation-CAM; TFT: its")
            print("own binary mask) — average increase % ↑ / average drop % ↓; AFT and CE-only:")
            print("mean over the seeds' models\n")
        else:
            print("\nThe same, scored with unthresholded soft masks mm(up(map)) ⊙ x (not the")
            print("paper's scoring; the earlier runs')\n")
        print("| method | " + " | ".join(f"{c} AI | {c} AD" for c in columns) + " |")
        print("|---" * (1 + 2 * len(columns)) + "|")
        for name, r in results.items():
            row = r["scorings"][scoring]
            cells = [f"{row[k]['increase']:.2f} | {row[k]['drop']:.2f}" for k in columns]
            print(f"| {name} | " + " | ".join(cells) + " |")
        print(f"\nDifferences in points ({scoring} scoring), paired over the images, ± 95 %")
        print("interval (AI: higher is better; AD: lower is better)\n")
        print(
            "| method | "
            + " | ".join(f"{a} − {b} AI | {a} − {b} AD" for a, b in COMPARISONS)
            + " |"
        )
        print("|---" * (1 + 2 * len(COMPARISONS)) + "|")
        for name, r in results.items():
            cells = []
            for a, b in COMPARISONS:
                d = r["scorings"][scoring]["differences"][f"{a} - {b}"]
                cells += [f"{m:+.2f} ± {h:.2f}" for m, h in (d["increase"], d["drop"])]
            print(f"| {name} | " + " | ".join(cells) + " |")
        print(f"\nAFT per seed ({scoring} scoring): AI / AD % of each seed's model; AFT −")
        print("Original over the seeds: mean ± 95 % t-interval over the seeds; the paper's")
        print("gain is AI ×1.35–1.5\n")
        print(
            "| method | Original AI / AD | AFT per seed (AI / AD) | AFT − Original AI | "
            "AFT − Original AD | AI ratio AFT / Original per seed |"
        )
        print("|---|---|---|---|---|---|")
        for name, r in results.items():
            row = r["scorings"][scoring]
            seeds_cells = "; ".join(
                f"{p['increase']:.2f} / {p['drop']:.2f}" for p in row["AFT per seed"]
            )
            over = row["AFT - Original over seeds"]
            ratios = ", ".join(f"×{v:.2f}" for v in row["AI ratio AFT / Original per seed"])
            print(
                f"| {name} | {row['Original']['increase']:.2f} / {row['Original']['drop']:.2f} "
                f"| {seeds_cells} | {over['increase'][0]:+.2f} ± {over['increase'][1]:.2f} | "
                f"{over['drop'][0]:+.2f} ± {over['drop'][1]:.2f} | {ratios} |"
            )
    print(f"\nTable 4 — top-1 accuracy % ({args.eval_images} test images; the checkpoint: "
          f"{accuracy['checkpoint']:.2f}, CE-only: {accuracy['CE-only']:.2f})\n")  # fmt: skip
    print("| method | original | after AFT (per seed) | change (mean) |")
    print("|---|---|---|---|")
    for name, r in results.items():
        after = r["accuracy_after"]
        change = statistics.mean(after) - accuracy["original"]
        per_seed = ", ".join(f"{a:.2f}" for a in after)
        print(f"| {name} | {accuracy['original']:.2f} | {per_seed} | {change:+.2f} |")
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


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-images", type=int, default=5000)
    parser.add_argument("--eval-images", type=int, default=2000)
    parser.add_argument("--adapt-epochs", type=int, default=4, help="0: the checkpoint as is")
    parser.add_argument("--adapt-lr", type=float, default=1e-3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"])
    parser.add_argument(
        "--mask-weight", type=float, default=1.0, help="λ (of the squared error summed over cells)"
    )
    parser.add_argument("--mask-target", default="binary", choices=["binary", "area"])
    parser.add_argument("--mask-reduction", default="sum", choices=["sum", "mean"])
    parser.add_argument(
        "--seeds",
        type=lambda text: [int(v) for v in text.split(",")],
        default=[0, 1, 2],
        help="AFT and CE-only fine-tunes, one per seed (comma-separated)",
    )
    parser.add_argument(
        "--skip-unchanged",
        action="store_true",
        help="items whose map TFT left unchanged add nothing to the squared error "
        "(ActivationFineTuner.fit's skip_unchanged=True; not the paper)",
    )
    parser.add_argument("--timing-batch", type=int, default=64)
    parser.add_argument("--timing-repeats", type=int, default=7)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument(
        "--cache-dir", default=str(Path.home() / ".cache" / "captum_cams" / "aft_benchmark")
    )
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--seed", type=int, default=0, help="picks the images")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    init_distributed_from_env()
    main_process = is_main_process()

    root = _cifar_root()
    cache_dir = Path(args.cache_dir)
    checkpoint = load_cifar_resnet(root / CHECKPOINT)
    train = _sample(cifar10_train_set(root), args.train_images, args.seed)
    x_eval, y_eval = _sample(cifar10_test_set(root), args.eval_images, args.seed).tensors
    model, original_name = _original_model(checkpoint, train, args, cache_dir)
    fit_options = dict(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer
    )
    # the same fine-tune without the tuner's loss (λ = 0): what fine-tuning alone does
    controls = [
        _fine_tune_with_cross_entropy(model, train, seed=seed, **fit_options) for seed in args.seeds
    ]
    # every model's predicted classes, once: the targets explained and the accuracy
    predicted = _predicted(model, x_eval, 250)
    control_predicted = [_predicted(c, x_eval, 250) for c in controls]
    accuracy = {
        "checkpoint": _accuracy(_predicted(checkpoint, x_eval, 250), y_eval),
        "original": _accuracy(predicted, y_eval),
        "CE-only": statistics.mean(_accuracy(p, y_eval) for p in control_predicted),
    }

    results: Dict[str, Dict] = {}
    for name in args.methods.split(","):
        method = METHODS[name]
        base = method(model, model.layer3)  # the method on the original model
        started = time.perf_counter()
        masks = generate_tft_masks(
            base,
            train,
            cache_dir=cache_dir / f"{name}-masks-of-{original_name}",
            batch_size=args.batch_size,
            shard_size=500,
            attribute_kwargs=ATTRIBUTE_KWARGS.get(name),
        )
        mask_s = time.perf_counter() - started
        started = time.perf_counter()
        tuned_models = [
            ActivationFineTuner(model, model.layer3, mask_weight=args.mask_weight).fit(
                train,
                masks,
                seed=seed,
                skip_unchanged=args.skip_unchanged,
                mask_target=args.mask_target,
                mask_reduction=args.mask_reduction,
                **fit_options,
            )  # fmt: skip
            for seed in args.seeds
        ]
        train_s = time.perf_counter() - started
        if not main_process:
            continue

        tuned_predicted = [_predicted(m, x_eval, 250) for m in tuned_models]
        keep_top = KEEP_TOP[name]
        original_maps = _maps(base, x_eval, predicted, 100, ATTRIBUTE_KWARGS.get(name, {}))
        tft_maps = _tft_maps(model, x_eval, original_maps, predicted, 100)
        original = _both_scorings(model, x_eval, original_maps, predicted, keep_top)
        tft = {  # TFT scored with its own binary mask 1[I_τ* ≠ 0] (paper), or soft
            "paper": _per_image(model, x_eval, (tft_maps != 0).to(tft_maps.dtype), predicted, None),
            "soft": _per_image(model, x_eval, tft_maps, predicted, None),
        }
        aft_runs = [
            _scored(name, m, x_eval, t, keep_top) for m, t in zip(tuned_models, tuned_predicted)
        ]
        ce_runs = [
            _scored(name, c, x_eval, t, keep_top) for c, t in zip(controls, control_predicted)
        ]
        scorings: Dict[str, Dict] = {}
        for scoring in SCORINGS:
            per_image = {
                "Original": original[scoring],
                "TFT": tft[scoring],
                "AFT": _seed_mean([run[scoring] for run in aft_runs]),
                "CE-only": _seed_mean([run[scoring] for run in ce_runs]),
            }
            base_percent = _percent(per_image["Original"])
            seeds_percent = [_percent(run[scoring]) for run in aft_runs]
            scorings[scoring] = {
                **{key: _percent(values) for key, values in per_image.items()},
                "differences": {
                    f"{a} - {b}": _paired_difference(per_image[a], per_image[b])
                    for a, b in COMPARISONS
                },
                "AFT per seed": seeds_percent,
                "AFT - Original over seeds": {
                    key: _over_seeds([p[key] - base_percent[key] for p in seeds_percent])
                    for key in ("increase", "drop")
                },
                "AI ratio AFT / Original per seed": [
                    p["increase"] / base_percent["increase"]
                    if base_percent["increase"]
                    else float("nan")
                    for p in seeds_percent
                ],
            }
        timing_x = x_eval[: args.timing_batch]
        results[name] = {
            "keep_top": keep_top,
            "scorings": scorings,
            "accuracy_after": [_accuracy(t, y_eval) for t in tuned_predicted],
            "masks_unchanged_fraction": float(masks.thresholds.isnan().float().mean()),
            "mask_mean": float(masks.masks.mean()),
            "mask_s": mask_s,
            "train_s": train_s,
            "timing": _timings(
                base,
                ThresholdFineTuned(base),
                timing_x,
                predicted[: args.timing_batch],
                args.timing_repeats,
            ),
        }
        print(f"done: {name}: {json.dumps(results[name])}", file=sys.stderr, flush=True)
    barrier()
    if not main_process:
        return
    _print_tables(args, results, accuracy)
    if args.json:
        with atomic_path(args.json) as temporary:
            temporary.write_text(json.dumps({"accuracy": accuracy, "methods": results}, indent=1))


if __name__ == "__main__":
    main()
