#!/usr/bin/env python3
"""``captum-cams``: the command line (also ``python -m captum_cams``).

``captum-cams`` with no command runs the main job, ``captum-cams benchmark``: every
method and every metric on the embedded default (the project's ground-truth dataset
and its trained model, inside the package), a results table, per-example scores
(``results.json``, ``scores.csv``) and figures in ``--out``. Real inputs come with
``--model`` (a torchvision name), ``--weights`` (its enum, ``none`` or a checkpoint),
``--layer``, ``--data`` (an image folder) and ``--annotations`` (Pascal-VOC XML).
Under ``torchrun`` the images are split across the processes and rank 0 writes.

``captum-cams explain IMAGE ...`` explains image files and saves an overlay figure.

Every user error (an unknown method, a missing folder, a file that is not an image, a
layer that does not exist, ...) prints one line and exits with status 2.
"""

import argparse
import sys
import time
from pathlib import Path
from typing import Dict, NoReturn, Optional, Sequence

import torch

from captum_cams._utils.inputs import InputError
from captum_cams.benchmark import METHODS, METRICS, parse_names

#: A user error: reported as one line and exit status 2, never a traceback.
CliError = InputError

__all__ = ["CliError", "DEFAULT_NUM_IMAGES", "build_parser", "main"]

#: Images of the embedded default the benchmark runs on when ``--num-images`` is not
#: given: about 3 CPU minutes for every method and metric on 2 cores.
DEFAULT_NUM_IMAGES = 48


#: The embedded models and the dataset each was trained on.
EMBEDDED_TASKS: Dict[str, str] = {"embedded": "cluttered", "embedded-shapes": "shapes"}


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (usage is for ``--help``)."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def _model_and_layer(args: argparse.Namespace, device: torch.device) -> tuple:
    from captum_cams._utils.inputs import load_model, resolve_layer

    loaded = load_model(args.model, args.weights)
    size = loaded.preprocess.crop
    sample = torch.zeros(1, 3, size, size)
    layer_name, layer = resolve_layer(
        loaded.model, args.layer if args.layer is not None else loaded.default_layer, sample
    )
    return loaded, layer_name, layer


def _positive(value: Optional[int], option: str) -> None:
    if value is not None and value < 1:
        raise CliError(f"{option} must be at least 1; got {value}")


def benchmark(args: argparse.Namespace) -> int:
    r"""The ``benchmark`` command: see :func:`captum_cams.benchmark.run_benchmark`."""
    from captum_cams._utils.distributed import init_distributed_from_env, is_main_process
    from captum_cams._utils.inputs import check_device, list_images
    from captum_cams.benchmark import (
        BenchmarkData,
        EmbeddedData,
        FolderData,
        format_table,
        metrics_for,
        run_benchmark,
    )

    methods = parse_names(args.methods, METHODS, "--methods")
    metric_names = parse_names(args.metrics, METRICS, "--metrics")
    _positive(args.num_images, "--num-images")
    _positive(args.batch_size, "--batch-size")
    if args.annotations is not None and args.data is None:
        raise CliError("--annotations needs --data (the images the annotations are for)")
    if args.annotations is not None and not Path(args.annotations).is_dir():
        raise CliError(f"--annotations: folder not found: {args.annotations}")
    device = check_device(args.device)
    loaded, layer_name, layer = _model_and_layer(args, device)
    data: BenchmarkData
    if args.data is None:
        if args.model not in EMBEDDED_TASKS:
            raise CliError("--data is needed with a torchvision --model (an image folder)")
        data = EmbeddedData(args.num_images or DEFAULT_NUM_IMAGES, EMBEDDED_TASKS[args.model])
    else:
        files = list_images(args.data)
        if args.num_images is not None:
            files = files[: args.num_images]
        data = FolderData(files, loaded.preprocess, args.annotations, root=args.data)
    # asked for: each must have what it needs; defaulted: every metric the data allows
    metric_names = metrics_for(data, None if args.metrics is None else metric_names)
    torch.manual_seed(args.seed)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL's collectives use the current device
    distributed = init_distributed_from_env("nccl" if device.type == "cuda" else "gloo")
    try:
        if is_main_process():
            print(
                f"captum-cams benchmark: {len(data)} images, model {loaded.name}, layer "
                f"{layer_name}, {len(methods)} methods, {len(metric_names)} metrics, {device}"
            )
        start = time.perf_counter()
        result = run_benchmark(
            loaded.model, layer, data, methods, metric_names, out=args.out,
            batch_size=args.batch_size, seed=args.seed, device=device, progress=not args.quiet,
        )  # fmt: skip
        if is_main_process():
            print(format_table(result))
            print(f"({time.perf_counter() - start:.1f} s in all; files in {args.out}:")
            print("  " + ", ".join(path.name for path in result.files) + ")")
    finally:
        if distributed:
            import torch.distributed as dist

            dist.destroy_process_group()
    return 0


def explain(args: argparse.Namespace) -> int:
    r"""The ``explain`` command: the methods on image files (or the embedded dataset)."""
    from captum_cams._utils.inputs import check_device, open_image
    from captum_cams.benchmark import (
        EmbeddedData,
        MethodContext,
        attribute_batch,
        build_methods,
        predicted_class,
    )
    from captum_cams.metrics import energy_pointing_game
    from captum_cams.visualization import overlay_grid, save_figure

    import matplotlib.pyplot as plt

    names = parse_names(args.methods, METHODS, "--methods")
    _positive(args.num_images, "--num-images")
    device = check_device(args.device)
    loaded, layer_name, layer = _model_and_layer(args, device)
    model = loaded.model.to(device)
    masks: Optional[torch.Tensor] = None
    outlines: Optional[torch.Tensor] = None
    if args.images:
        images = torch.stack([loaded.preprocess.image(open_image(path)) for path in args.images])
        titles = [Path(path).name for path in args.images]
    else:
        if args.model not in EMBEDDED_TASKS:
            raise CliError("give IMAGE files to explain with a torchvision --model")
        data = EmbeddedData(args.num_images or 6, EMBEDDED_TASKS[args.model])
        batch = data.load(range(len(data)))
        images, masks, outlines = batch.images, batch.masks, batch.part_masks
        titles = data.names(range(len(data)))
    images = images.to(device)
    target = predicted_class(model, images)
    if loaded.classes is not None:
        titles = [f"{t}: {loaded.classes[int(c)]}" for t, c in zip(titles, target)]
    else:
        titles = [f"{t}: class {int(c)}" for t, c in zip(titles, target)]
    context = MethodContext(model, layer, None, device, args.seed)
    maps_by_method: Dict[str, torch.Tensor] = {}
    print(f"model {loaded.name}, layer {layer_name}")
    print(f"{'method':<12} {'seconds':>8} {'energy in box':>14}")
    for name, attribution in build_methods(names, context).items():
        maps, elapsed = attribute_batch(name, attribution, images, target, args.seed)
        maps_by_method[METHODS[name].title] = maps.cpu()
        energy = (
            f"{float(energy_pointing_game(maps, masks).mean()):14.3f}"
            if masks is not None
            else f"{'-':>14}"
        )
        print(f"{name:<12} {elapsed:8.3f} {energy}")
    if masks is not None:
        share = float(masks.flatten(1).float().mean())
        print(f"(the boxes cover {share:.3f} of the images: a random map scores about that)")
    figure = overlay_grid(images.cpu(), maps_by_method, row_titles=titles, outlines=outlines)
    output = Path(args.out) / "explain.png"
    save_figure(figure, output)
    plt.close(figure)
    print(f"figure written to {output}")
    return 0


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default="embedded",
        help="'embedded' (default: the package's model for the main job's ClutteredShapes "
        "task), 'embedded-shapes' (the tutorials' model for GroundTruthShapes) or a "
        "torchvision classification model name, e.g. resnet18",
    )
    parser.add_argument(
        "--weights",
        default=None,
        help="a torchvision weights enum of --model (IMAGENET1K_V1, DEFAULT), 'none', or a "
        "checkpoint path (state dict; loaded with weights_only=True; .safetensors too)",
    )
    parser.add_argument(
        "--layer",
        default=None,
        help="the CAM layer's module name, e.g. layer4 (default: the last feature map)",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 or auto (default cpu)")
    parser.add_argument(
        "--methods", default=None, help=f"comma-separated, from: {', '.join(METHODS)} (default all)"
    )
    parser.add_argument("--out", default="captum_cams_out", help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of sampling methods")


def _add_benchmark_options(parser: argparse.ArgumentParser) -> None:
    _add_model_options(parser)
    parser.add_argument(
        "--metrics",
        default=None,
        help=f"comma-separated, from: {', '.join(METRICS)} (default: all the data allows)",
    )
    parser.add_argument(
        "--num-images",
        type=int,
        default=None,
        help=f"images to run on (default: {DEFAULT_NUM_IMAGES} of the embedded default, "
        "or every image of --data)",
    )
    parser.add_argument("--batch-size", type=int, default=16, help="images per batch")
    parser.add_argument(
        "--data", default=None, help="an image folder (ImageFolder tree or flat) instead"
    )
    parser.add_argument(
        "--annotations",
        default=None,
        help="Pascal-VOC Annotations folder (<image stem>.xml) for the box metrics",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    r"""
    The ``captum-cams`` argument parser.

    Returns:
        *argparse.ArgumentParser*: with the ``benchmark`` and ``explain`` commands;
        with no command the benchmark's options apply.

    Examples::

        >>> build_parser().parse_args(["benchmark", "--methods", "gradcam"]).methods
        'gradcam'
    """
    parser = _Parser(
        prog="captum-cams",
        description="Class-activation maps for CNN image classifiers, next to Captum. "
        "With no command: the benchmark on the embedded default.",
    )
    commands = parser.add_subparsers(dest="command")
    bench = commands.add_parser(
        "benchmark", help="every method and metric: a table, per-example scores, figures"
    )
    explain_parser = commands.add_parser(
        "explain", help="explain image files with CAM methods and save an overlay figure"
    )
    explain_parser.add_argument(
        "images", nargs="*", help="image files (default: images of the embedded dataset)"
    )
    _add_model_options(explain_parser)
    explain_parser.add_argument(
        "--num-images", type=int, default=None, help="embedded images when no IMAGE is given"
    )
    _add_benchmark_options(bench)
    _add_benchmark_options(parser)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    r"""
    The ``captum-cams`` entry point.

    Args:
        argv (list[str], optional): the arguments; ``sys.argv[1:]`` when omitted.

    Returns:
        *int*: the exit status (0 success, 2 a user error).

    Examples::

        >>> main(["benchmark", "--methods", "gradcam", "--num-images", "4"])
        0
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, or a one-line argparse error
        return int(stop.code or 0)
    try:
        if args.command == "explain":
            return explain(args)
        return benchmark(args)
    except InputError as error:
        print(f"captum-cams: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
