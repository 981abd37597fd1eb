#!/usr/bin/env python3
"""Draws ``docs/images/explain_next_to_captum.png``, the README's picture.

It runs the README's ten lines as printed — Captum's ``LayerGradCam`` beside two of
this package's methods, one ``overlay_grid`` — on the embedded default (the package's
own shapes and the small CNN trained on them), because photos that may not be
redistributed cannot be committed. From the repository root::

    python docs/make_readme_figure.py
"""

from pathlib import Path

import torch
from captum.attr import LayerGradCam

from captum_cams import LayerLiftCam, LayerScoreCam
from captum_cams.kit.datasets import CLASSES, make_batch
from captum_cams.kit.models import embedded_default_layer, load_embedded_default
from captum_cams.visualization import overlay_grid, save_figure

OUT = Path(__file__).resolve().parent / "images" / "explain_next_to_captum.png"


def main() -> None:
    torch.set_num_threads(1)
    model = load_embedded_default()
    layer = embedded_default_layer(model)
    batch = make_batch(3, split="test", seed=0)
    images, labels = batch.images, batch.labels

    maps = {
        "Grad-CAM (Captum)": LayerGradCam(model, layer).attribute(
            images, target=labels, relu_attributions=True
        ),
        "Score-CAM": LayerScoreCam(model, layer).attribute(images, target=labels),
        "LIFT-CAM": LayerLiftCam(model, layer).attribute(images, target=labels),
    }
    figure = overlay_grid(
        images,
        maps,
        row_titles=[CLASSES[int(c)] for c in labels],
        caption="Each map explains the image's true class, which the model predicts.",
    )
    save_figure(figure, OUT, dpi=90)
    print(f"{OUT}: {OUT.stat().st_size // 1000} kB")


if __name__ == "__main__":
    main()
