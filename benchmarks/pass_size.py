#!/usr/bin/env python3
r"""Where rows per pass stop paying: the forward time per row of an ImageNet network
at 192–224 px against the rows per pass, on the CPU, one thread — the measurement
behind the default pass budget (``captum_cams._utils.batching``).

For one network (``--model``: the shared MobileNetV1 at 192 px with its real weights,
or a torchvision network at 224 px with random weights) and ``--rows`` random inputs,
every pass size of ``--sizes`` runs all rows through the model in passes of that many
rows under ``torch.no_grad()``; the sizes take turns (alternating order) for
``--rounds`` rounds. Printed per size: the median and smallest milliseconds per row,
the largest module output of one pass (MiB; measured with a forward hook), the
working set the budget assumes for one pass (input + 3 x the largest activation, per
row, times the rows) and the minor page faults per row (fresh pages the allocator
asked the kernel for: each pass that allocates above glibc's mmap threshold pays them).

Run ``python benchmarks/pass_size.py --help``; ``docs/speed.md`` has the results.
"""

import argparse
import resource
import statistics
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torchvision
from torch import nn

from captum_cams._utils.batching import LIVE_ACTIVATIONS


def _model(name: str) -> Tuple[nn.Module, int]:
    torch.manual_seed(0)
    if name == "mobilenet":
        from captum_cams.kit.datasets import IMAGENET_MOBILENET_FILE, imagenet_root
        from captum_cams.kit.models import mobilenet_v1_075_192

        return mobilenet_v1_075_192(imagenet_root() / IMAGENET_MOBILENET_FILE), 192
    return getattr(torchvision.models, name)(weights=None).eval(), 224


def _largest_output(model: nn.Module, x: torch.Tensor) -> int:
    sizes: List[int] = []

    def hook(_module: nn.Module, _inputs: object, output: object) -> None:
        if isinstance(output, torch.Tensor):
            sizes.append(output.numel() * output.element_size())

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return max(sizes)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="mobilenet",
                        help="mobilenet or a torchvision model, e.g. resnet50")  # fmt: skip
    parser.add_argument("--rows", type=int, default=48)
    parser.add_argument("--sizes", default="1,2,3,4,6,8,16")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    sizes = [int(v) for v in args.sizes.split(",")]
    model, side = _model(args.model)
    x = torch.randn(args.rows, 3, side, side, generator=torch.Generator().manual_seed(1))
    largest = _largest_output(model, x[:1])
    row = x[0].numel() * x.element_size()
    print(f"# {args.model} at {side} px, {args.rows} rows, {args.rounds} rounds, one thread; "
          f"largest activation {largest / 2**20:.2f} MiB per row")  # fmt: skip
    print(f"# command: python {' '.join(sys.argv)}")
    times: Dict[int, List[float]] = {size: [] for size in sizes}
    faults: Dict[int, float] = {}
    with torch.no_grad():
        model(x[:2])  # warm
        for round_index in range(args.rounds):
            for size in sizes if round_index % 2 == 0 else sizes[::-1]:
                before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                start = time.perf_counter()
                for first in range(0, args.rows, size):
                    model(x[first : first + size])
                times[size].append((time.perf_counter() - start) / args.rows * 1000)
                faults[size] = (
                    resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
                ) / args.rows
    print("| rows per pass | ms per row, median (min) | largest activation of a pass, MiB "
          "| working set the budget assumes, MiB | page faults per row |")  # fmt: skip
    print("|---|---|---|---|---|")
    for size in sizes:
        assumed = size * (row + LIVE_ACTIVATIONS * max(largest, row)) / 2**20
        print(f"| {size} | {statistics.median(times[size]):.1f} ({min(times[size]):.1f}) | "
              f"{size * largest / 2**20:.1f} | {assumed:.1f} | {faults[size]:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
