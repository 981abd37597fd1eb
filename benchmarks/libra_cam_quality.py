#!/usr/bin/env python3
r"""Libra-CAM on the CIFAR-10 ResNet-20: the paper's Table 1 measures and Table 2
ablation, its cost relative to Grad-CAM, and the reference library's memory.

Setting (Lee & Han, IJCAI 2022, Tables 1 and 2, at CIFAR scale):

- model: the trained ResNet-20 (``resnet20-12fca82f.th``), CAM layer ``layer3``
  (64 x 8 x 8); target: the model's predicted class;
- reference library: ``ReferenceLibrary.build`` over a seeded random subset of the
  **training** set (``cifar10_train_set``), τ = 1e-4, R = 30, float32;
- evaluation: a seeded random sample of **test** images (never in the library);
- measures, for every method's map ``I`` (``mm(up(I))``, soft masks ``I_t ⊙ x``,
  removed pixels 0 in the normalised input, softmax probabilities):
  AUC of the API-vs-APD curve over ``t = 0, 0.1, …, 1``
  (:func:`captum_cams.metrics.api_apd_auc` of :func:`~captum_cams.metrics.threshold_sweep`),
  and API, APD, IR, DR of the map itself (``t = 0``: the soft mask ``I ⊙ x``);
- methods: Grad-CAM, Grad-CAM++, Score-CAM, LIFT-CAM (all this package's),
  Libra-CAM with its defaults — Algorithm 1 as printed: probability score, value
  thresholds 0.1 … 1.0 on the averaged map ``L`` itself — and Libra-CAM's
  ``variant="authors"`` (the authors' released pipeline, their off-by-one included);
- intervals: API, APD, IR, DR ± 1.96 standard errors over the images; AUC with a
  seeded bootstrap 95 % percentile interval over the images (``--bootstrap`` draws).

Ablation: Libra-CAM with the switches R (references; without: ``A_r = 0``),
F (reference filtering) and C (threshold calibration), and one more row: all three
with ``normalize_calibration=True`` (``L`` min-max normalised before calibration, a
departure from Algorithm 1 that the package did by default before).

Run from the repository root::

    CAPTUM_CAMS_CIFAR10=/path/to/cifar10 python benchmarks/libra_cam_quality.py

``CAPTUM_CAMS_CIFAR10`` defaults to ``../shared/data/cifar10`` relative to the
repository root. The training set is extracted once into ``~/.cache/captum_cams``.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from captum_cams import (  # noqa: E402
    LayerGradCam,
    LayerGradCamPlusPlus,
    LayerLibraCam,
    LayerLiftCam,
    LayerScoreCam,
    ReferenceLibrary,
)
from captum_cams.kit.datasets.cifar10 import cifar10_test_set, cifar10_train_set  # noqa: E402
from captum_cams.kit.models import load_cifar_resnet  # noqa: E402
from captum_cams.metrics import api_apd_auc, threshold_sweep  # noqa: E402
from captum_cams.metrics.confidence import ThresholdSweep  # noqa: E402

CHECKPOINT = "resnet20-12fca82f.th"

Explain = Callable[[Tensor, Tensor], Tensor]


def _cifar_root() -> Path:
    default = REPO / ".." / "shared" / "data" / "cifar10"
    root = Path(os.environ.get("CAPTUM_CAMS_CIFAR10", default)).resolve()
    if not (root / CHECKPOINT).is_file() or not (root / "train.tar.gz").is_file():
        sys.exit(
            f"CIFAR-10 folder not found at {root} (need {CHECKPOINT}, test/ and "
            "train.tar.gz); set CAPTUM_CAMS_CIFAR10 to the shared cifar10 folder"
        )
    return root


def _timed(explain: Explain, x: Tensor, target: Tensor, batch: int) -> Tuple[Tensor, List[float]]:
    r"""Maps of all images, batch by batch, and the seconds of every batch (after one
    untimed warm-up call on two images)."""
    explain(x[:2], target[:2])
    maps, seconds = [], []
    for i in range(0, len(x), batch):
        started = time.perf_counter()
        maps.append(explain(x[i : i + batch], target[i : i + batch]).detach())
        seconds.append(time.perf_counter() - started)
    return torch.cat(maps), seconds


def _measures(
    model: nn.Module, x: Tensor, maps: Tensor, target: Tensor, draws: Tensor
) -> Dict[str, Tuple[float, str]]:
    r"""Each measure's value and its 95 % interval as text (see the module)."""
    sweep = threshold_sweep(model, x, maps, target=target, max_examples_per_batch=500)
    n = x.shape[0]
    out: Dict[str, Tuple[float, str]] = {}
    aucs = torch.stack(
        [
            api_apd_auc(
                ThresholdSweep(
                    sweep.thresholds, *(t[rows] for t in sweep[1:6]), sweep.original[rows]
                )
            )
            for rows in draws
        ]
    )
    low, high = torch.quantile(aucs.double(), torch.tensor([0.025, 0.975], dtype=torch.double))
    out["AUC"] = (float(api_apd_auc(sweep)), f"[{float(low):.3f}, {float(high):.3f}]")
    for name in ("api", "apd", "ir", "dr"):
        values = getattr(sweep, name)[:, 0]
        half = 1.96 * float(values.std(correction=1)) / n**0.5
        out[name.upper()] = (float(values.mean()), f"± {half:.3f}")
    return out


def _row(
    name: str, m: Dict[str, Tuple[float, str]], seconds: List[float], base: List[float]
) -> str:
    ratio = sum(seconds) / sum(base)
    cells = " | ".join(f"{m[k][0]:.3f} {m[k][1]}" for k in ("AUC", "API", "APD", "IR", "DR"))
    return f"| {name} | {cells} | {sum(seconds):.1f} | ×{ratio:.1f} |"


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=400, help="test images evaluated")
    parser.add_argument("--bootstrap", type=int, default=500, help="AUC bootstrap draws")
    parser.add_argument("--library-images", type=int, default=2000, help="training images")
    parser.add_argument("--references", type=int, default=30, help="R per class")
    parser.add_argument("--tau", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--internal-batch-size", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)

    root = _cifar_root()
    model = load_cifar_resnet(root / CHECKPOINT)
    layer = model.layer3

    train = cifar10_train_set(root)
    generator = torch.Generator().manual_seed(args.seed)
    subset = torch.randperm(len(train), generator=generator)[: args.library_images].tolist()
    started = time.perf_counter()
    library = ReferenceLibrary.build(
        model, layer, DataLoader(Subset(train, subset), batch_size=200), 10,
        tau=args.tau, max_per_class=args.references, progress=False,
    )  # fmt: skip
    build_seconds = time.perf_counter() - started

    test = cifar10_test_set(root)
    order = torch.randperm(len(test), generator=torch.Generator().manual_seed(args.seed + 1))
    x = torch.stack([test[int(i)][0] for i in order[: args.images]])
    labels = torch.tensor([test[int(i)][1] for i in order[: args.images]])
    with torch.no_grad():
        target = model(x).argmax(dim=1)
    accuracy = float((target == labels).float().mean())

    libra = LayerLibraCam(model, layer, library=library)
    ib = args.internal_batch_size
    methods: Dict[str, Explain] = {
        "Grad-CAM": lambda xb, t: LayerGradCam(model, layer).attribute(
            xb, target=t, relu_attributions=True
        ),
        "Grad-CAM++": lambda xb, t: LayerGradCamPlusPlus(model, layer).attribute(xb, target=t),
        "Score-CAM": lambda xb, t: LayerScoreCam(model, layer).attribute(
            xb, target=t, internal_batch_size=ib
        ),
        "LIFT-CAM": lambda xb, t: LayerLiftCam(model, layer).attribute(xb, target=t),
        f"Libra-CAM (R={args.references})": lambda xb, t: libra.attribute(
            xb, target=t, internal_batch_size=ib
        ),
        f"Libra-CAM (R={args.references}), variant='authors'": lambda xb, t: libra.attribute(
            xb, target=t, internal_batch_size=ib, variant="authors"
        ),
    }
    draws = torch.randint(
        0, len(x), (args.bootstrap, len(x)), generator=torch.Generator().manual_seed(args.seed)
    )
    results: Dict[str, Tuple[Dict[str, Tuple[float, str]], List[float]]] = {}
    for name, explain in methods.items():
        maps, seconds = _timed(explain, x, target, args.batch_size)
        results[name] = (_measures(model, x, maps, target, draws), seconds)
        print(f"done: {name}", file=sys.stderr, flush=True)
    grad_cam_seconds = results["Grad-CAM"][1]

    ablation: Dict[str, Tuple[Dict[str, Tuple[float, str]], List[float]]] = {}
    for use_r, use_f, use_c, normalize in [
        (False, False, False, False),
        (False, False, True, False),
        (True, False, False, False),
        (True, True, False, False),
        (True, False, True, False),
        (True, True, True, False),
        (True, True, True, True),
    ]:
        name = " ".join(("✓" if flag else "–") for flag in (use_r, use_f, use_c))
        if normalize:
            name += " (C on mm(L): normalised variant, not the paper)"

        def explain(xb: Tensor, t: Tensor, r=use_r, f=use_f, c=use_c, n=normalize) -> Tensor:
            return libra.attribute(
                xb, target=t, internal_batch_size=ib, use_references=r, filter_references=f,
                calibrate=c, normalize_calibration=n,
            )  # fmt: skip

        if (use_r, use_f, use_c, normalize) == (True, True, True, False):
            ablation[name] = results[f"Libra-CAM (R={args.references})"]  # the same call
        else:
            maps, seconds = _timed(explain, x, target, args.batch_size)
            ablation[name] = (_measures(model, x, maps, target, draws), seconds)
        print(f"done: ablation {name}", file=sys.stderr, flush=True)

    print(
        f"CIFAR-10 ResNet-20 (layer3, 64 x 8 x 8), {len(x)} seeded test images (accuracy "
        f"{100 * accuracy:.1f} %), predicted class; library from {len(subset)} seeded "
        f"training images, tau = {args.tau:g}, R = {args.references}; soft masks, "
        f"thresholds 0, 0.1, ..., 1; {args.threads} CPU threads; seed {args.seed}; "
        f"intervals 95 % (AUC: bootstrap, {args.bootstrap} draws; others: ± 1.96 s.e.)\n"
    )
    header = "| method | AUC ↑ | API ↑ | APD ↓ | IR ↑ | DR ↓ | CPU s | time / Grad-CAM |"
    print("Table 1 measures\n")
    print(header)
    print("|---|---|---|---|---|---|---|---|")
    for name, (m, seconds) in results.items():
        print(_row(name, m, seconds, grad_cam_seconds))
    print("\nTable 2 ablation of Libra-CAM (R: references, F: filtering, C: calibration)\n")
    print(header.replace("| method |", "| R F C |"))
    print("|---|---|---|---|---|---|---|---|")
    for name, (m, seconds) in ablation.items():
        print(_row(name, m, seconds, grad_cam_seconds))

    libra_seconds = results[f"Libra-CAM (R={args.references})"][1]
    per_batch = [a / b for a, b in zip(libra_seconds, grad_cam_seconds)]
    print(
        f"\nLibra-CAM / Grad-CAM time: ×{sum(libra_seconds) / sum(grad_cam_seconds):.1f} "
        f"in total, median per batch of {args.batch_size} ×{statistics.median(per_batch):.1f}"
    )

    counts = library.counts()
    slots = sum(counts)
    sharing = slots / library.num_entries
    print(
        f"\nLibrary: {library.num_entries} unique activations for {slots} class slots "
        f"(references per class {min(counts)}..{max(counts)}; each stored input serves "
        f"{sharing:.1f} classes on average); {library.entry_nbytes} bytes per entry "
        f"({library.activation_shape}, {library.dtype}); {library.nbytes / 2**20:.2f} MiB; "
        f"built in {build_seconds:.1f} s"
    )
    shape = (2048, 7, 7)
    for dtype in (torch.float16, torch.float32):
        upper = ReferenceLibrary.estimate_nbytes(1000, 30, shape, dtype)
        shared = ReferenceLibrary.estimate_nbytes(
            1000, 30, shape, dtype, num_entries=int(round(1000 * 30 / sharing))
        )
        print(
            f"ImageNet estimate (1000 classes, R = 30, 2048 x 7 x 7, {dtype}): "
            f"{upper / 2**30:.2f} GiB with no input shared (30,000 entries); "
            f"{shared / 2**30:.2f} GiB at the sharing measured here"
        )


if __name__ == "__main__":
    main()
