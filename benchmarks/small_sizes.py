#!/usr/bin/env python3
r"""
The package at its defaults against an earlier checkout of itself, at the small sizes
its earlier speed tables used: torchvision ResNet-18 and ResNet-50 (random weights)
at ``layer4`` with 224 px inputs for the gradient methods, TFT and the metrics, 64 px
for Score- and Ablation-CAM; and the CIFAR-10 ResNet-20 at 32 px (``layer3``), where rows
are smallest and a pass's fixed cost weighs most. Target 3, CPU, one thread.

Each case runs in one fresh process that imports both checkouts (one after the other,
under the same module name) and builds the case with each; after one call of each
(warm-up), every round calls each item of both checkouts once, in a freshly shuffled
order (a call shorter than ``--min-time`` repeated within its turn). Both checkouts'
calls thus share the process, its allocator's state included: the heap a process has
grown decides whether a pass's large tensors cost fresh, zero-filled pages, and two
processes differ there by more than the code does. ``--separate-processes`` runs one
process per checkout and round instead (alternating which goes first). A cell is
checkout / earlier checkout: the median over the rounds of the ratio within a round,
with the smallest and largest. Only the public API both checkouts share is called,
with every chunking argument left at its default.

Example::

    git worktree add /tmp/before a97cb1d^      # the code before the pass budget
    OMP_NUM_THREADS=1 python benchmarks/small_sizes.py --before /tmp/before --rounds 3
"""

import argparse
import importlib
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

CASES = ("resnet18:1", "resnet18:8", "resnet50:1", "resnet50:8", "resnet20:8", "resnet20:64")
ITEMS = (
    "gradcam",
    "igcam",
    "tft",
    "scorecam",
    "ablationcam",
    "average_drop",
    "deletion_auc",
)


def _calls(model_name: str, batch_size: int) -> Dict[str, Callable[[], Any]]:
    r"""The cases of one model and batch size, built with the checkout on ``sys.path``."""
    import torch
    import torchvision

    from captum_cams import (
        LayerAblationCam,
        LayerGradCam,
        LayerIntegratedGradCam,
        LayerScoreCam,
        ThresholdFineTuned,
    )
    from captum_cams.metrics import average_drop, deletion_auc

    torch.manual_seed(0)
    if model_name == "resnet20":
        try:
            from captum_cams.kit.models import resnet20
        except ImportError:  # checkouts from before the kit held the models
            from captum_cams.models import resnet20  # type: ignore[no-redef]

        model = resnet20().eval()  # random weights: the time does not depend on them
        layer, size, small = model.layer3, 32, 32
    else:
        model = getattr(torchvision.models, model_name)(weights=None).eval()
        with torch.no_grad():  # logits of a usable scale: softmax does not saturate
            model.fc.weight.mul_(0.05)
        layer, size, small = model.layer4, 224, 64
    x = torch.randn(batch_size, 3, size, size)
    x_small = torch.randn(batch_size, 3, small, small)
    target = 3
    maps = LayerGradCam(model, layer).attribute(x, target=target).detach()
    return {
        "gradcam": lambda: LayerGradCam(model, layer).attribute(x, target=target),
        "igcam": lambda: LayerIntegratedGradCam(model, layer).attribute(
            x, target=target, n_steps=8
        ),
        "tft": lambda: ThresholdFineTuned(LayerGradCam(model, layer)).attribute(x, target=target),
        "scorecam": lambda: LayerScoreCam(model, layer).attribute(x_small, target=target),
        "ablationcam": lambda: LayerAblationCam(model, layer).attribute(x_small, target=target),
        "average_drop": lambda: average_drop(model, x, maps, target=target),
        "deletion_auc": lambda: deletion_auc(model, x, maps, target=target),
    }


def _repeats_after_warm_up(call: Callable[[], Any], min_time: float) -> int:
    r"""Calls ``call`` once (kernels and caches for these shapes) and returns how many
    calls fill ``min_time``."""
    start = time.perf_counter()
    call()
    return max(1, int(min_time / max(time.perf_counter() - start, 1e-6)))


def _seconds_per_call(call: Callable[[], Any], repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        call()
    return (time.perf_counter() - start) / repeats


def _import_checkout(tree: Path) -> None:
    r"""Makes ``tree``'s ``captum_cams`` the one ``import captum_cams`` finds, dropping
    the modules of any checkout imported before (whose objects keep working)."""
    for name in [name for name in sys.modules if name.split(".")[0] == "captum_cams"]:
        del sys.modules[name]
    sys.path[:] = [str(tree)] + [entry for entry in sys.path if entry != str(tree)]
    importlib.invalidate_caches()
    module = importlib.import_module("captum_cams")
    if not str(module.__file__).startswith(str(tree)):
        raise SystemExit(f"imported {module.__file__}, not the checkout in {tree}")


def child_both(
    case: str, items: Sequence[str], min_time: float, rounds: int, trees: Dict[str, Path]
) -> None:
    r"""Times every item of ``case`` with both checkouts in this process, round-robin
    in a shuffled order per round; prints ``{checkout: {item: [seconds per round]}}``."""
    import torch

    torch.set_num_threads(1)
    model_name, batch = case.split(":")
    calls: Dict[Tuple[str, str], Callable[[], Any]] = {}
    for name, tree in trees.items():
        _import_checkout(tree)
        built = _calls(model_name, int(batch))
        for item in items:
            calls[(name, item)] = built[item]
    repeats = {key: _repeats_after_warm_up(call, min_time) for key, call in calls.items()}
    seconds: Dict[str, Dict[str, List[float]]] = {name: {} for name in trees}
    keys = list(calls)
    for round_index in range(rounds):
        random.Random(round_index).shuffle(keys)
        for key in keys:
            took = _seconds_per_call(calls[key], repeats[key])
            seconds[key[0]].setdefault(key[1], []).append(took)
    print(json.dumps(seconds), flush=True)


def child(case: str, items: Sequence[str], min_time: float) -> None:
    r"""Times every item of ``case`` in this process (the checkout is on ``sys.path``)."""
    import torch

    torch.set_num_threads(1)
    model_name, batch = case.split(":")
    calls = _calls(model_name, int(batch))
    seconds: Dict[str, float] = {}
    for item in items:
        repeats = _repeats_after_warm_up(calls[item], min_time)
        seconds[item] = _seconds_per_call(calls[item], repeats)
    print(json.dumps(seconds), flush=True)


def _child_output(arguments: List[str], tree: Path, label: str) -> Any:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, os.path.abspath(__file__), *arguments],
        capture_output=True, text=True, env=env, cwd=str(tree),
    )  # fmt: skip
    if result.returncode != 0:
        raise SystemExit(f"{label}: {result.stderr.strip()[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _run(tree: Path, case: str, items: Sequence[str], min_time: float) -> Dict[str, float]:
    arguments = ["--child", case, "--items", ",".join(items), "--min-time", str(min_time)]
    return _child_output(arguments, tree, f"{tree} {case}")


def _run_separately(
    trees: Dict[str, Path], case: str, items: Sequence[str], min_time: float, rounds: int
) -> Dict[str, Dict[str, List[float]]]:
    r"""One process per checkout and round, alternating which goes first."""
    seconds: Dict[str, Dict[str, List[float]]] = {
        name: {item: [] for item in items} for name in trees
    }
    for round_index in range(rounds):
        order = ["before", "after"] if round_index % 2 == 0 else ["after", "before"]
        measured = {name: _run(trees[name], case, items, min_time) for name in order}
        for item in items:
            for name in trees:
                seconds[name][item].append(measured[name][item])
    return seconds


def _run_both(
    trees: Dict[str, Path], case: str, items: Sequence[str], min_time: float, rounds: int
) -> Dict[str, Dict[str, List[float]]]:
    arguments = [
        "--child-both", case, "--items", ",".join(items), "--min-time", str(min_time),
        "--rounds", str(rounds), "--before", str(trees["before"]), "--after", str(trees["after"]),
    ]  # fmt: skip
    return _child_output(arguments, trees["after"], case)


def _summary(values: List[float]) -> Tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", help="the earlier checkout (a directory)")
    parser.add_argument("--after", default=str(Path(__file__).resolve().parents[1]),
                        help="the checkout measured (default: this one)")  # fmt: skip
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--items", default=",".join(ITEMS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--min-time", type=float, default=0.5)
    parser.add_argument("--separate-processes", action="store_true",
                        help="one process per checkout and round (not both in one)")  # fmt: skip
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-both", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    items = [item for item in args.items.split(",") if item]
    if args.child:
        child(args.child, items, args.min_time)
        return
    if not args.before:
        parser.error("--before is required: the checkout to compare against")
    trees = {"before": Path(args.before).resolve(), "after": Path(args.after).resolve()}
    if args.child_both:
        child_both(args.child_both, items, args.min_time, args.rounds, trees)
        return
    print(f"# command: python {' '.join(sys.argv)}")
    print(f"# before: {trees['before']}  after: {trees['after']}", flush=True)
    mode = "one process per checkout" if args.separate_processes else "both in one process"
    print(f"# {mode}", flush=True)
    print("\n| model, batch | item | n | after s | before s | after / before (min–max) |")
    print("|---|---|---|---|---|---|")
    for case in args.cases.split(","):
        run = _run_separately if args.separate_processes else _run_both
        seconds = run(trees, case, items, args.min_time, args.rounds)
        ratios = {
            item: [a / b for a, b in zip(seconds["after"][item], seconds["before"][item])]
            for item in items
        }
        model_name, batch = case.split(":")
        for item in items:
            median, low, high = _summary(ratios[item])
            after = statistics.median(seconds["after"][item])
            before = statistics.median(seconds["before"][item])
            cells = f"{after:.3g} | {before:.3g} | **{median:.2f}** ({low:.2f}–{high:.2f})"
            print(f"| {model_name}, {batch} | {item} | {args.rounds} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
