#!/usr/bin/env python3
"""``captum-cams``: the command line (also ``python -m captum_cams``).

``captum-cams`` with no command runs the main job, ``captum-cams benchmark``: every
method and every metric on the embedded default (the project's ground-truth dataset
and its trained model, inside the package), a results table, per-example scores
(``results.json``, ``scores.csv``) and figures in ``--out``. Real inputs come with
``--model`` (a torchvision name, or ``path/to/file.py:FUNCTION`` /
``package.module:FUNCTION`` returning the ``nn.Module``), ``--weights`` (an enum,
``none`` or a checkpoint), ``--layer``, ``--data`` (an image folder), ``--annotations``
(Pascal-VOC XML), the preprocessing (``--input-size``, ``--resize``, ``--mean``,
``--std``), ``--labels`` (class names) and ``--library-data`` (Libra-CAM's references).
Under ``torchrun`` the images are split across the processes and rank 0 writes.

``captum-cams explain IMAGE ...`` explains image files and saves an overlay figure.

Every user error (an unknown method, a missing folder, a file that is not an image, a
layer that does not exist, an ``--out`` that cannot be written, ...) prints one line and
exits with status 2, before any model pass. Ctrl-C prints one line and exits with 130;
the run's files are staged beside ``--out`` and moved in together, so an interrupted or
failed run leaves the previous run's files as they were.
"""

import argparse
import sys
import time
from pathlib import Path
from typing import Dict, List, NoReturn, Optional, Sequence

import torch

from captum_cams._utils.text import count_of
from captum_cams.kit.benchmark import DEFAULT_METHODS, METHODS, METRICS, parse_names
from captum_cams.kit.inputs import InputError, LoadedModel, is_factory_spec

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
    from captum_cams.kit.inputs import (
        check_model_output,
        load_model,
        parse_channel_values,
        read_labels,
        resolve_layer,
        with_preprocess_options,
    )

    # every option is read before the model is built: a typo costs nothing
    mean = None if args.mean is None else parse_channel_values(args.mean, "--mean")
    std = None if args.std is None else parse_channel_values(args.std, "--std", positive=True)
    labels = None if args.labels is None else read_labels(args.labels)
    _positive(args.input_size, "--input-size")
    _positive(args.resize, "--resize")
    loaded = load_model(args.model, args.weights)
    loaded.preprocess = with_preprocess_options(
        loaded.preprocess, args.input_size, args.resize, mean, std
    )
    size = loaded.preprocess.crop
    sample = torch.zeros(1, 3, size, size)
    num_classes = check_model_output(loaded, sample)
    if labels is not None:
        if len(labels) != num_classes:
            raise CliError(
                f"--labels: {args.labels} has {len(labels)} names but the model has "
                f"{num_classes} outputs"
            )
        loaded.classes = labels
    elif loaded.classes is not None and len(loaded.classes) != num_classes:
        loaded.classes = None  # the model's names do not fit its outputs: indices instead
    layer_name, layer = resolve_layer(
        loaded.model, args.layer if args.layer is not None else loaded.default_layer, sample
    )
    return loaded, layer_name, layer


def _warnings(loaded: LoadedModel, args: argparse.Namespace) -> List[str]:
    r"""One line each: an untrained network, and preprocessing the model did not give."""
    lines = []
    if loaded.untrained:
        lines.append(
            f"captum-cams: warning: {args.model} has random weights (--weights "
            f"{args.weights or 'not given'}): its predictions and maps mean nothing; give "
            "--weights DEFAULT (a torchvision enum) or a checkpoint file"
        )
    given = any(v is not None for v in (args.input_size, args.resize, args.mean, args.std))
    if loaded.preprocess_origin == "default" and is_factory_spec(args.model) and not given:
        prep = loaded.preprocess
        lines.append(
            f"captum-cams: note: {args.model} gives no input_size/mean/std attributes, so "
            f"ImageNet's preprocessing is assumed (resize {prep.resize}, crop {prep.crop}, "
            "ImageNet mean and std); set --input-size, --resize, --mean, --std if it differs"
        )
    return lines


def _library_files(args: argparse.Namespace) -> Optional[List[Path]]:
    from captum_cams.kit.inputs import list_images

    if args.library_data is None:
        return None
    return list_images(args.library_data, "--library-data")


def _positive(value: Optional[int], option: str) -> None:
    if value is not None and value < 1:
        raise CliError(f"{option} must be at least 1; got {value}")


def benchmark(args: argparse.Namespace) -> int:
    r"""
    The ``benchmark`` command: see :func:`captum_cams.kit.benchmark.run_benchmark`.

    Args:
        args (argparse.Namespace): the parsed command line of ``captum-cams benchmark``.

    Returns:
        *int*: the exit status (0 on success).

    Examples::

        >>> main(["benchmark", "--num-images", "16", "--out", "results"])
    """
    from captum_cams._utils.distributed import init_distributed_from_env, is_main_process
    from captum_cams.kit.benchmark import (
        BenchmarkData,
        EmbeddedData,
        FolderData,
        check_output_folder,
        format_table,
        metrics_for,
        run_benchmark,
    )
    from captum_cams.kit.inputs import check_device, list_images

    methods = parse_names(args.methods, METHODS, "--methods")
    metric_names = parse_names(args.metrics, METRICS, "--metrics")
    _positive(args.num_images, "--num-images")
    _positive(args.batch_size, "--batch-size")
    if args.annotations is not None and args.data is None:
        raise CliError("--annotations needs --data (the images the annotations are for)")
    if args.annotations is not None and not Path(args.annotations).is_dir():
        raise CliError(f"--annotations: folder not found: {args.annotations}")
    device = check_device(args.device)
    if is_main_process():
        check_output_folder(args.out)  # before any model is loaded or run
    library_files = _library_files(args)
    loaded, layer_name, layer = _model_and_layer(args, device)
    data: BenchmarkData
    if args.data is None:
        if args.model not in EMBEDDED_TASKS:
            raise CliError(f"--data is needed with --model {args.model} (an image folder)")
        data = EmbeddedData(args.num_images or DEFAULT_NUM_IMAGES, EMBEDDED_TASKS[args.model])
    else:
        files = list_images(args.data)
        if args.num_images is not None:
            files = files[: args.num_images]
        data = FolderData(files, loaded.preprocess, args.annotations, root=args.data)
    library_data = None
    if library_files is not None and "libracam" in methods:
        library_data = FolderData(library_files, loaded.preprocess, root=args.library_data)
    # asked for: each must have what it needs; defaulted: every metric the data allows
    metric_names = metrics_for(data, None if args.metrics is None else metric_names)
    torch.manual_seed(args.seed)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL's collectives use the current device
    distributed = init_distributed_from_env("nccl" if device.type == "cuda" else "gloo")
    try:
        if is_main_process():
            for line in _warnings(loaded, args):
                print(line, file=sys.stderr)
            print(
                f"captum-cams benchmark: {count_of(len(data), 'image')}, model {loaded.name}, "
                f"layer {layer_name}, {count_of(len(methods), 'method')}, "
                f"{count_of(len(metric_names), 'metric')}, {device}"
            )
        start = time.perf_counter()
        result = run_benchmark(
            loaded.model, layer, data, methods, metric_names, out=args.out,
            batch_size=args.batch_size, seed=args.seed, device=device, progress=not args.quiet,
            library_data=library_data, class_names=loaded.classes,
        )  # fmt: skip
        if is_main_process():
            print(format_table(result))
            print(f"{time.perf_counter() - start:.1f} s in all; files in {args.out}:")
            print("  " + ", ".join(path.name for path in result.files))
    finally:
        if distributed:
            import torch.distributed as dist

            dist.destroy_process_group()
    return 0


#: Most rows of ``explain.png``: a figure, not a catalogue, whatever the number of images.
EXPLAIN_FIGURE_ROWS = 12

#: The one-line warning of ``explain`` when the embedded model meets image files.
EMBEDDED_ON_PHOTOS = (
    "captum-cams: warning: the embedded model was trained on synthetic shapes only, so its "
    "predictions (and maps) on real photos mean nothing; to explain your own network give "
    "--model NAME --weights path/to/checkpoint.pt"
)

#: The one-line warning of ``explain`` when the default methods meet a model of the
#: user's and no ``--library-data``: Libra-CAM is left out, the others run.
LIBRA_CAM_LEFT_OUT = (
    "captum-cams: warning: Libra-CAM left out: it needs a reference library of images "
    "from your model's task; pass --library-data FOLDER to include it"
)


def _explain_files(paths: Sequence[str]) -> List[Path]:
    from captum_cams.kit.inputs import list_images

    files: List[Path] = []
    for path in paths:  # a folder stands for its image files
        files.extend(list_images(path) if Path(path).is_dir() else [Path(path)])
    return files  # FolderData checks every header before any work


def explain(args: argparse.Namespace) -> int:
    r"""
    The ``explain`` command: the methods on image files (or the embedded dataset).

    Args:
        args (argparse.Namespace): the parsed command line of ``captum-cams explain``.

    Returns:
        *int*: the exit status (0 on success).

    Examples::

        >>> main(["explain", "cat.jpg", "--model", "resnet50", "--out", "maps"])
    """
    from tqdm.auto import tqdm

    from captum_cams.kit.benchmark import (
        BenchmarkData,
        EmbeddedData,
        FolderData,
        MethodContext,
        as_data_batch,
        attribute_batch,
        build_methods,
        check_output_folder,
    )
    from captum_cams.kit.benchmark.methods import LIBRARY_NEEDED
    from captum_cams.kit.benchmark.report import GRID_DPI
    from captum_cams.kit.inputs import check_device
    from captum_cams.metrics import energy_pointing_game
    from captum_cams.visualization import overlay_grid, save_figure

    names = parse_names(args.methods, METHODS, "--methods")
    _positive(args.num_images, "--num-images")
    _positive(args.batch_size, "--batch-size")
    device = check_device(args.device)
    check_output_folder(args.out)  # before any model is loaded or run
    files = _explain_files(args.images) if args.images else None
    embedded = args.model in EMBEDDED_TASKS
    if files is None and not embedded:
        raise CliError(f"give IMAGE files to explain with --model {args.model}")
    notes: List[str] = []
    if "libracam" in names and not embedded and args.library_data is None:
        if args.methods is not None:  # asked for by name: refused before any model pass
            raise CliError(LIBRARY_NEEDED)
        names.remove("libracam")  # the default set: the others run, with one line
        notes.append(LIBRA_CAM_LEFT_OUT)
    library_files = _library_files(args) if "libracam" in names else None
    loaded, layer_name, layer = _model_and_layer(args, device)
    model = loaded.model.to(device)
    data: BenchmarkData
    if files is not None:
        data = FolderData(files, loaded.preprocess)  # every file's header checked first
        if embedded:
            notes.insert(0, EMBEDDED_ON_PHOTOS)
    else:
        data = EmbeddedData(args.num_images or 6, EMBEDDED_TASKS[args.model])
    library_data = None
    if library_files is not None:
        library_data = FolderData(library_files, loaded.preprocess, root=args.library_data)
    for line in notes + _warnings(loaded, args):
        print(line, file=sys.stderr)
    # the embedded models' Libra-CAM library comes from their own task's training split
    task = EmbeddedData(1, EMBEDDED_TASKS[args.model]) if embedded else None
    context = MethodContext(model, layer, task, device, args.seed, library_data)
    attributions = build_methods(names, context)
    seconds = dict.fromkeys(names, 0.0)
    energy: Dict[str, float] = dict.fromkeys(names, 0.0)
    shown: Dict[str, list] = {name: [] for name in names}
    figure_rows: Dict[str, list] = {"images": [], "titles": [], "outlines": []}
    predictions: List[str] = []
    box_share, count = 0.0, len(data)
    bar = tqdm(
        total=count * len(names), desc="captum-cams explain", unit="map", file=sys.stderr,
        disable=args.quiet,
    )  # fmt: skip
    try:
        for start in range(0, count, args.batch_size):  # streamed: a batch in memory at a time
            indices = range(start, min(start + args.batch_size, count))
            batch = as_data_batch(data.load(indices))
            images = batch.images.to(device)
            masks = batch.masks.to(device) if batch.masks is not None else None
            with torch.no_grad():
                probabilities = torch.softmax(model(images).float(), dim=1)
            confidence, target = probabilities.max(dim=1)
            for name, attribution in attributions.items():
                bar.set_postfix_str(name)
                # methods of many passes go image by image, so the bar moves
                step = 1 if METHODS[name].many_passes else len(indices)
                pieces = []
                for first in range(0, len(indices), step):
                    part = slice(first, first + step)
                    maps, elapsed = attribute_batch(
                        name, attribution, images[part], target[part], args.seed + start + first
                    )
                    pieces.append(maps)
                    seconds[name] += elapsed
                    bar.update(maps.shape[0])
                maps = torch.cat(pieces)
                if masks is not None:
                    energy[name] += float(energy_pointing_game(maps, masks).sum())
                room = EXPLAIN_FIGURE_ROWS - sum(len(m) for m in shown[name])
                if room > 0:
                    shown[name].append(maps[:room].cpu())
            room = EXPLAIN_FIGURE_ROWS - sum(len(i) for i in figure_rows["images"])
            if room > 0:
                figure_rows["images"].append(batch.images[:room])
                shown_names = data.names(indices)[:room]
                figure_rows["titles"] += [
                    f"{title}\npredicted: {_class_name(loaded.classes, int(c))}"
                    for title, c in zip(shown_names, target[:room])
                ]
                predictions += [
                    f"  {title}: {_class_name(loaded.classes, int(c))} ({float(p):.3f})"
                    for title, c, p in zip(shown_names, target[:room], confidence[:room])
                ]
                if batch.part_masks is not None:
                    figure_rows["outlines"].append(batch.part_masks[:room])
            if masks is not None:
                box_share += float(masks.flatten(1).float().mean(1).sum())
    finally:
        bar.close()
    print(f"model {loaded.name}, layer {layer_name}, {count_of(count, 'image')}")
    more = f", the first {len(predictions)}" if len(predictions) < count else ""
    print(f"predicted class (probability){more}:")
    print("\n".join(predictions))
    print(f"{'method':<12} {'ms / image':>10} {'energy in box %':>16}")
    for name in names:
        cell = f"{100 * energy[name] / count:16.1f}" if data.has_boxes else f"{'-':>16}"
        print(f"{name:<12} {1000 * seconds[name] / count:10.1f} {cell}")
    print("ms / image: the method's time per image")
    if data.has_boxes:
        print("energy in box %: the share of the map's mass inside the object's box, mean")
        share = 100 * box_share / count
        print(f"the boxes cover {share:.1f} % of the images: a random map scores about that")
    outlines = torch.cat(figure_rows["outlines"]) if figure_rows["outlines"] else None
    caption = "Each map explains the class the model predicts for its image."
    if outlines is not None:
        caption += " Cyan outlines: the object's ground-truth parts."
    figure = overlay_grid(
        torch.cat(figure_rows["images"]),
        {METHODS[name].title: torch.cat(shown[name]) for name in names},
        row_titles=figure_rows["titles"],
        outlines=outlines,
        caption=caption,
    )
    output = Path(args.out) / "explain.png"
    save_figure(figure, output, dpi=GRID_DPI)
    rows = len(figure_rows["titles"])
    shown_rows = f" (the first {count_of(rows, 'image')})" if rows < count else ""
    print(f"figure written to {output}{shown_rows}")
    return 0


def _class_name(classes: Optional[Sequence[str]], index: int) -> str:
    return classes[index] if classes is not None and 0 <= index < len(classes) else f"class {index}"


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default="embedded",
        help="'embedded' (default: the package's model for the main job's ClutteredShapes "
        "task), 'embedded-shapes' (the tutorials' model for GroundTruthShapes), a "
        "torchvision classification model name, e.g. resnet18, or your own model: "
        "path/to/file.py:FUNCTION or package.module:FUNCTION, a function called with no "
        "arguments that returns the nn.Module",
    )
    parser.add_argument(
        "--weights",
        default=None,
        help="a torchvision weights enum of --model (IMAGENET1K_V1, DEFAULT), 'none', or a "
        "checkpoint path (state dict; loaded with weights_only=True; .safetensors too); "
        "for a FUNCTION --model, a checkpoint loaded into the module it returns",
    )
    parser.add_argument(
        "--input-size",
        type=int,
        default=None,
        help="side of the square centre crop the model takes (default: the weights' or "
        "the FUNCTION's input_size attribute, else 224)",
    )
    parser.add_argument(
        "--resize",
        type=int,
        default=None,
        help="shorter side before the centre crop (default: the weights' or the "
        "FUNCTION's resize_size attribute, else input size x 256/224)",
    )
    parser.add_argument(
        "--mean",
        default=None,
        help="per-channel mean of the normalisation, on [0, 1] pixels: 0.5 or "
        "0.485,0.456,0.406 (default: the weights' or the FUNCTION's mean attribute, else "
        "ImageNet's)",
    )
    parser.add_argument(
        "--std", default=None, help="per-channel std of the normalisation, as --mean"
    )
    parser.add_argument(
        "--labels",
        default=None,
        help="class names, one per line (line i names output i); default: the weights' "
        "or the FUNCTION's categories",
    )
    parser.add_argument(
        "--library-data",
        default=None,
        help="an image folder of your model's task for Libra-CAM's reference library "
        "(its first 200 images; default: --data for benchmark; explain leaves Libra-CAM "
        "out without it)",
    )
    parser.add_argument(
        "--layer",
        default=None,
        help="the CAM layer's module name, e.g. layer4 (default: the last feature map)",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 or auto (default cpu)")
    parser.add_argument(
        "--methods",
        default=None,
        help=f"comma-separated, from: {', '.join(METHODS)}, or 'all' (default: "
        f"{', '.join(DEFAULT_METHODS)})",
    )
    parser.add_argument("--out", default="captum_cams_out", help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of sampling methods")


def _add_benchmark_options(parser: argparse.ArgumentParser) -> None:
    _add_model_options(parser)
    parser.add_argument(
        "--metrics",
        default=None,
        help=f"comma-separated, from: {', '.join(METRICS)} (default: those the data "
        "allows, ROAD only when named)",
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
        "images",
        nargs="*",
        help="image files or folders of them (default: images of the embedded dataset)",
    )
    _add_model_options(explain_parser)
    explain_parser.add_argument(
        "--num-images", type=int, default=None, help="embedded images when no IMAGE is given"
    )
    explain_parser.add_argument(
        "--batch-size", type=int, default=8, help="images in memory at a time (default 8)"
    )
    explain_parser.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_benchmark_options(bench)
    _add_benchmark_options(parser)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    r"""
    The ``captum-cams`` entry point.

    Args:
        argv (list[str], optional): the arguments; ``sys.argv[1:]`` when omitted.

    Returns:
        *int*: the exit status (0 success, 2 a user error, 130 interrupted by Ctrl-C).

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
    except KeyboardInterrupt:  # Ctrl-C: one line, and --out as it was before the run
        print("\ncaptum-cams: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
