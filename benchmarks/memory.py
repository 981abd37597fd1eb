#!/usr/bin/env python3
r"""Memory of the CAM methods: no growth over many calls, and a peak bounded by
``internal_batch_size``.

1. **Growth over consecutive calls.** For each method, in a fresh subprocess: the
   embedded default model (``ShapesNet``, its CAM layer ``64 x 16 x 16``), a batch of
   4 images of the ground-truth dataset (64 x 64), a new method object per call (as
   ``Method(model, layer).attribute(x)`` in a loop does). After ``--warmup`` calls, the
   peak resident set size (``ru_maxrss``) is read; after ``--calls`` more calls it is
   read again. Reported: the growth of the peak and of the current RSS (psutil), and
   the forward hooks left on the model and entries in the fx-split cache at the end
   (both must be 0 / at most 1).
2. **Peak vs internal_batch_size.** For Score-CAM and Integrated Grad-CAM, in a
   fresh subprocess per setting: torchvision ``resnet18`` (random weights), layer4
   (512 channels), ``--peak-batch`` images of ``--peak-image-size`` pixels (default one
   64 x 64 image: 512 masked inputs for Score-CAM, 16 path points for Integrated
   Grad-CAM); one Grad-CAM call first (allocator and kernels warm), then one call of
   the method. Reported: the rise of the process's peak RSS during that call.

Libra-CAM uses a library of 30 random-input activations (:func:`random_input_library`).

Run ``python benchmarks/memory.py --help``; benchmarks/README.md has the commands.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = (
    "gradcam",
    "gradcam++",
    "xgradcam",
    "layercam",
    "liftcam",
    "ablationcam",
    "scorecam",
    "shapcam",
    "igcam",
    "tft",
    "libracam",
)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _current_rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def random_input_library(model: Any, layer: Any, x: Any, references: int = 30) -> Any:
    r"""A library of ``references`` activations of noise images shaped like ``x``,
    shared by every class (the cost of Libra-CAM does not depend on how the
    references were chosen)."""
    import torch

    import captum_cams as cc

    captured: List[Any] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: captured.append(out.detach()))
    try:
        with torch.no_grad():
            generator = torch.Generator().manual_seed(1)
            noise = torch.randn((references,) + tuple(x.shape[1:]), generator=generator)
            num_classes = int(model(noise).shape[1])
    finally:
        handle.remove()
    every = torch.arange(references)
    return cc.ReferenceLibrary(captured[0], [every] * num_classes, 1e-4, references)


def _libra_cam(model: Any, layer: Any) -> Callable[..., Any]:
    r"""Libra-CAM with R = 30 references from random inputs (see ``speed.py``); the
    library is built once, the method object per call."""
    import captum_cams as cc

    libraries: dict = {}

    def run(x: Any, t: Any, ibs: Any) -> Any:
        key = tuple(x.shape[1:])
        if key not in libraries:
            libraries[key] = random_input_library(model, layer, x, references=30)
        return cc.LayerLibraCam(model, layer, library=libraries[key]).attribute(
            x, target=t, internal_batch_size=ibs
        )

    return run


def _method(name: str, model: Any, layer: Any) -> Callable[..., Any]:
    r"""``(images, target, internal_batch_size) -> maps`` building the method per call."""
    import captum_cams as cc

    simple = {
        "gradcam": cc.LayerGradCam,
        "gradcam++": cc.LayerGradCamPlusPlus,
        "xgradcam": cc.LayerXGradCam,
        "layercam": cc.LayerCam,
        "liftcam": cc.LayerLiftCam,
    }
    if name in simple:
        return lambda x, t, ibs: simple[name](model, layer).attribute(
            x, target=t, relu_attributions=True
        )
    if name == "ablationcam":
        return lambda x, t, ibs: cc.LayerAblationCam(model, layer).attribute(
            x, target=t, internal_batch_size=ibs
        )
    if name == "scorecam":
        return lambda x, t, ibs: cc.LayerScoreCam(model, layer).attribute(
            x, target=t, internal_batch_size=ibs
        )
    if name == "shapcam":
        return lambda x, t, ibs: cc.LayerShapCam(model, layer).attribute(
            x, target=t, num_permutations=2, internal_batch_size=ibs
        )
    if name == "igcam":
        return lambda x, t, ibs: cc.LayerIntegratedGradCam(model, layer).attribute(
            x, target=t, n_steps=16, internal_batch_size=ibs
        )
    if name == "tft":
        return lambda x, t, ibs: cc.ThresholdFineTuned(cc.LayerGradCam(model, layer)).attribute(
            x, target=t, max_examples_per_batch=ibs, relu_attributions=True
        )
    if name == "libracam":
        return _libra_cam(model, layer)
    raise SystemExit(f"unknown method {name!r}; choose from {', '.join(METHODS)}")


def _hook_count(model: Any) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )


def growth_child(method: str, calls: int, warmup: int) -> Dict[str, Any]:
    import torch

    from captum_cams.attr import _head
    from captum_cams.kit.datasets import make_batch
    from captum_cams.kit.models import embedded_default_layer, load_embedded_default

    torch.manual_seed(0)
    model = load_embedded_default()
    layer = embedded_default_layer(model)
    images, labels = make_batch(4)[:2]
    run = _method(method, model, layer)
    for _ in range(warmup):
        run(images, labels, 64)
    peak_before, current_before = _peak_rss_mb(), _current_rss_mb()
    for _ in range(calls):
        run(images, labels, 64)
    return {
        "method": method,
        "calls": calls,
        "peak_growth_mb": _peak_rss_mb() - peak_before,
        "current_growth_mb": _current_rss_mb() - current_before,
        "peak_mb": _peak_rss_mb(),
        "hooks_left": _hook_count(model),
        "split_cache_entries": sum(len(v) for v in _head._SPLIT_CACHE.values()),
    }


def peak_child(
    method: str, internal_batch_size: Optional[int], batch: int, size: int
) -> Dict[str, Any]:
    import torch
    import torchvision

    import captum_cams as cc

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    layer = model.layer4
    images = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    target = [3] * batch
    cc.LayerGradCam(model, layer).attribute(images, target=target)
    before = _peak_rss_mb()
    _method(method, model, layer)(images, target, internal_batch_size)
    return {
        "method": method,
        "internal_batch_size": internal_batch_size,
        "peak_rise_mb": _peak_rss_mb() - before,
        "peak_mb": _peak_rss_mb(),
    }


def _in_subprocess(args: List[str], threads: int) -> Dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env["OMP_NUM_THREADS"] = str(threads)
    result = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _csv(value: str) -> List[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--methods", type=_csv, default=list(METHODS),
        help=f"growth part, from {', '.join(METHODS)}",
    )  # fmt: skip
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--peak-methods", type=_csv, default=["scorecam", "igcam", "libracam"])
    parser.add_argument(
        "--peak-sizes", type=lambda v: [None if b == "None" else int(b) for b in _csv(v)],
        default=[2, 8, 32, 128, None],
        help="internal_batch_size values of the peak part (None: the default, from the pass "
        "budget)",
    )  # fmt: skip
    parser.add_argument("--peak-batch", type=int, default=1, help="images per call")
    parser.add_argument("--peak-image-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-growth", action="store_true")
    parser.add_argument("--skip-peak", action="store_true")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        import torch

        torch.set_num_threads(args.threads)
        kind, method, *rest = args.child
        if kind == "growth":
            out = growth_child(method, int(rest[0]), int(rest[1]))
        else:
            size = None if rest[0] == "None" else int(rest[0])
            out = peak_child(method, size, int(rest[1]), int(rest[2]))
        print(json.dumps(out))
        return

    print(f"# command: python {' '.join(sys.argv)}  ({args.threads} thread(s), CPU)")
    if not args.skip_growth:
        print(
            f"\n### RSS growth over {args.calls} consecutive calls (after {args.warmup} "
            "warm-up calls), embedded model, batch 4 x 3 x 64 x 64, a new object per call\n"
        )
        print(
            "| method | peak RSS growth MB | current RSS growth MB | peak RSS MB | hooks left "
            "| fx-split cache entries |"
        )
        print("|---|---|---|---|---|---|")
        for method in args.methods:
            r = _in_subprocess(["growth", method, str(args.calls), str(args.warmup)], args.threads)
            print(
                f"| {method} | {r['peak_growth_mb']:.1f} | {r['current_growth_mb']:.1f} | "
                f"{r['peak_mb']:.0f} | {r['hooks_left']} | {r['split_cache_entries']} |",
                flush=True,
            )
    if not args.skip_peak:
        print(
            f"\n### Peak RSS rise of one call vs internal_batch_size, resnet18 layer4 "
            f"(512 channels), {args.peak_batch} x 3 x {args.peak_image_size} x "
            f"{args.peak_image_size}\n"
        )
        print("| method | internal_batch_size | rows per call | peak RSS rise MB |")
        print("|---|---|---|---|")
        rows = {
            "scorecam": 512 * args.peak_batch,
            "igcam": 16 * args.peak_batch,
            "libracam": 40 * args.peak_batch,  # 30 references + 10 thresholds
        }
        for method in args.peak_methods:
            for size in args.peak_sizes:
                r = _in_subprocess(
                    ["peak", method, str(size), str(args.peak_batch), str(args.peak_image_size)],
                    args.threads,
                )
                print(
                    f"| {method} | {size} | {rows.get(method, '?')} | {r['peak_rise_mb']:.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
