#!/usr/bin/env python3
"""``captum-cams``: the command line.

``captum-cams`` (or ``captum-cams explain``) explains images with the CAM methods
and saves an overlay figure. With no image given it runs on the embedded default:
the project's ground-truth dataset and its trained model, so it needs no download,
and it also prints how much of each map's energy falls in the object's box.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Type

import torch

from captum_cams.attr import (
    CamBase,
    LayerAblationCam,
    LayerCam,
    LayerGradCam,
    LayerGradCamPlusPlus,
    LayerIntegratedGradCam,
    LayerLiftCam,
    LayerScoreCam,
    LayerShapCam,
    LayerXGradCam,
)

#: The methods the command line knows, by the names it accepts.
METHODS: Dict[str, Type[CamBase]] = {
    "gradcam": LayerGradCam,
    "gradcam++": LayerGradCamPlusPlus,
    "xgradcam": LayerXGradCam,
    "layercam": LayerCam,
    "ablationcam": LayerAblationCam,
    "scorecam": LayerScoreCam,
    "liftcam": LayerLiftCam,
    "shapcam": LayerShapCam,
    "igcam": LayerIntegratedGradCam,
}


class CliError(Exception):
    """A user error: reported as one line and a non-zero exit, never a traceback."""


def _parse_methods(text: str) -> List[str]:
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in METHODS]
    if unknown or not names:
        raise CliError(
            f"unknown method(s) {', '.join(unknown) or '(none given)'}; choose from "
            f"{', '.join(METHODS)}"
        )
    return names


def _load_image(path: str, size: int) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError
    import torchvision.transforms.functional as TF

    if not os.path.isfile(path):
        raise CliError(f"image not found: {path}")
    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB").resize((size, size))
    except (UnidentifiedImageError, OSError) as error:
        raise CliError(f"not a readable image: {path} ({error})") from error
    return TF.to_tensor(rgb)


def _save_figure(figure: "object", path: Path) -> None:
    """Writes the figure to a temporary file in the same folder, then renames it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix, dir=path.parent)
    os.close(handle)
    try:
        figure.savefig(temporary, dpi=100)  # type: ignore[attr-defined]
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp's 0600 is not what a user expects
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def explain(args: argparse.Namespace) -> int:
    r"""Runs the methods on the chosen images, prints a summary, saves the figure."""
    from captum_cams.datasets import CLASSES, make_batch
    from captum_cams.metrics import boxes_to_masks, energy_pointing_game
    from captum_cams.models import embedded_default_layer, load_embedded_default
    from captum_cams.visualization import overlay_grid

    import matplotlib.pyplot as plt

    names = _parse_methods(args.methods)
    if args.num_images < 1:
        raise CliError(f"--num-images must be at least 1; got {args.num_images}")
    torch.manual_seed(args.seed)
    model = load_embedded_default()
    layer = embedded_default_layer(model)
    box_masks: Optional[torch.Tensor] = None
    if args.images:
        images = torch.stack([_load_image(path, 64) for path in args.images])
        with torch.no_grad():
            labels = model(images).argmax(1)
        row_titles = [f"{Path(p).name}: {CLASSES[int(c)]}" for p, c in zip(args.images, labels)]
    else:
        batch = make_batch(args.num_images, split="test", seed=args.seed)
        images, labels = batch.images, batch.labels
        box_masks = boxes_to_masks(batch.boxes, images.shape[-2:])
        row_titles = [CLASSES[int(c)] for c in labels]

    maps_by_method: Dict[str, torch.Tensor] = {}
    print(f"{'method':<12} {'seconds':>8} {'energy in box':>14}")
    for name in names:
        start = time.perf_counter()
        maps = METHODS[name](model, layer).attribute(images, target=labels)
        elapsed = time.perf_counter() - start
        maps_by_method[name] = maps
        energy = (
            f"{float(energy_pointing_game(maps, box_masks).mean()):14.3f}"
            if box_masks is not None
            else f"{'-':>14}"
        )
        print(f"{name:<12} {elapsed:8.3f} {energy}")
    if box_masks is not None:
        share = float(box_masks.flatten(1).float().mean())
        print(f"(the boxes cover {share:.3f} of the images: a random map scores about that)")

    figure = overlay_grid(images, maps_by_method, row_titles=row_titles)
    output = Path(args.out) / "explain.png"
    _save_figure(figure, output)
    plt.close(figure)  # type: ignore[arg-type]
    print(f"figure written to {output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="captum-cams",
        description="Class-activation maps for CNN image classifiers, next to Captum.",
    )
    commands = parser.add_subparsers(dest="command")
    explain_parser = commands.add_parser(
        "explain", help="explain images with CAM methods and save an overlay figure"
    )
    explain_parser.add_argument(
        "images", nargs="*", help="image files (default: the embedded ground-truth dataset)"
    )
    for target in (parser, explain_parser):
        target.add_argument(
            "--methods",
            default=",".join(METHODS),
            help=f"comma-separated, from: {', '.join(METHODS)}",
        )
        target.add_argument(
            "--num-images", type=int, default=6, help="images of the embedded dataset to explain"
        )
        target.add_argument("--out", default="captum_cams_out", help="output folder")
        target.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    r"""
    The ``captum-cams`` entry point.

    Args:
        argv (list[str], optional): the arguments; ``sys.argv[1:]`` when omitted.

    Returns:
        *int*: the exit status (0 success, 2 a user error).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args.images = []
    try:
        return explain(args)
    except CliError as error:
        print(f"captum-cams: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
