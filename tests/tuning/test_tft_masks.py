#!/usr/bin/env python3
"""TFT masks of a dataset: equal to a direct per-item recomputation for the four CAM
methods of the paper, cached in shards that a second run loads and an interrupted run
resumes, a cache of other settings refused, bad arguments named. (The 2-process gloo
run is in tests/tuning/test_activation_fine_tuning.py, together with DDP training.)"""

from pathlib import Path
from typing import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import TensorDataset

import captum_cams
from captum_cams import (
    LayerAblationCam,
    LayerCam,
    LayerGradCam,
    LayerGradCamPlusPlus,
    threshold_fine_tuning,
)
from captum_cams.tuning import TFTMasks, generate_tft_masks


def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return (
        nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(4, 6, 3, padding=1, stride=2),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(6, 3),
        )
        .double()
        .eval()
    )


def tiny_data(n: int = 10, seed: int = 3) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, 8, 8, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 3, (n,), generator=generator)
    return TensorDataset(images, labels)


METHODS = {
    "grad-cam": LayerGradCam,
    "grad-cam++": LayerGradCamPlusPlus,
    "ablation-cam": LayerAblationCam,
    "layer-cam": LayerCam,
}


def direct_masks(
    method: type, model: nn.Module, data: TensorDataset, predicted: bool, paper: bool = True
) -> tuple:
    r"""
    One item at a time: CAM, TFT, binary mask, 2 x 2 average pooling to the 4 x 4
    layer. Where every RPI is 0, Algorithm 1's map at T[0] = 0.1 (``paper``) or the
    untouched map's ``1[I ≠ 0]``.
    """
    masks, taus = [], []
    for image, label in data:
        x = image.unsqueeze(0)
        target = int(model(x).argmax()) if predicted else int(label)
        cam = method(model, model[2]).attribute(x, target=target)
        result = threshold_fine_tuning(model, x, cam, target=target)
        keep = (result.tuned_maps != 0).double()
        if paper and torch.isnan(result.thresholds).all():
            keep = (result.tuned_maps >= 0.1).double()
        masks.append(F.avg_pool2d(keep, 2).float())
        taus.append(result.thresholds.float())
    return torch.cat(masks), torch.cat(taus)


@pytest.mark.parametrize("name", list(METHODS))
def test_masks_equal_a_direct_per_item_recomputation(name: str) -> None:
    model, data = tiny_cnn(), tiny_data()
    method = METHODS[name]
    result = generate_tft_masks(
        method(model, model[2]), data, batch_size=4, shard_size=6, show_progress=False
    )
    assert isinstance(result, TFTMasks)
    expected_masks, expected_taus = direct_masks(method, model, data, predicted=False)
    assert result.masks.shape == (10, 1, 4, 4) and result.masks.dtype == torch.float32
    torch.testing.assert_close(result.masks, expected_masks, rtol=0, atol=1e-7)
    torch.testing.assert_close(result.thresholds, expected_taus, equal_nan=True)
    # fractions of the 4 input pixels of each cell
    assert set((result.masks * 4).round().unique().tolist()) <= {0.0, 1.0, 2.0, 3.0, 4.0}
    assert torch.allclose(result.masks * 4, (result.masks * 4).round())


def test_unchanged_items_get_the_first_thresholds_mask() -> None:
    model, data = tiny_cnn(), tiny_data(n=12)
    cam = LayerGradCam(model, model[2])
    paper = generate_tft_masks(cam, data, show_progress=False)
    old = generate_tft_masks(cam, data, show_progress=False, unchanged_masks="unthresholded")
    unchanged = torch.isnan(paper.thresholds)
    assert bool(unchanged.any()) and not bool(unchanged.all())
    torch.testing.assert_close(paper.masks, direct_masks(LayerGradCam, model, data, False)[0])
    torch.testing.assert_close(
        old.masks, direct_masks(LayerGradCam, model, data, False, paper=False)[0]
    )
    assert torch.equal(paper.masks[~unchanged], old.masks[~unchanged])
    assert not torch.equal(paper.masks[unchanged], old.masks[unchanged])
    with pytest.raises(ValueError, match="unchanged_masks"):
        generate_tft_masks(cam, data, show_progress=False, unchanged_masks="none")


def test_predicted_target_and_mask_size() -> None:
    model, data = tiny_cnn(), tiny_data(n=5)
    result = generate_tft_masks(
        LayerGradCam(model, model[2]), data, target="predicted", show_progress=False
    )
    expected_masks, _ = direct_masks(LayerGradCam, model, data, predicted=True)
    torch.testing.assert_close(result.masks, expected_masks, rtol=0, atol=1e-7)
    full = generate_tft_masks(
        LayerGradCam(model, model[2]), data, mask_size=(8, 8), show_progress=False
    )
    assert full.masks.shape == (5, 1, 8, 8)
    assert set(full.masks.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(F.avg_pool2d(full.masks, 2), direct_masks(
        LayerGradCam, model, data, predicted=False
    )[0], rtol=0, atol=1e-7)  # fmt: skip


class CountingCam(LayerGradCam):
    calls: int = 0

    def attribute(self, inputs: Tensor, *args, **kwargs):  # type: ignore[override]
        CountingCam.calls += inputs.shape[0]
        return super().attribute(inputs, *args, **kwargs)


def test_cache_is_written_in_shards_loaded_and_resumed(tmp_path: Path) -> None:
    model, data = tiny_cnn(), tiny_data()
    cache = tmp_path / "cache"
    CountingCam.calls = 0
    first = generate_tft_masks(
        CountingCam(model, model[2]), data, cache_dir=cache, shard_size=4, show_progress=False
    )
    assert CountingCam.calls == 10
    shards = sorted(p.name for p in cache.glob("shard_*.pt"))
    assert shards == ["shard_000000.pt", "shard_000001.pt", "shard_000002.pt"]
    assert not list(cache.glob(".*tmp"))  # no temporary file left behind
    saved = torch.load(cache / "shard_000002.pt", weights_only=True)
    assert torch.equal(saved["masks"], first.masks[8:])

    # a finished cache: nothing is computed again
    again = generate_tft_masks(
        CountingCam(model, model[2]), data, cache_dir=cache, shard_size=4, show_progress=False
    )
    assert CountingCam.calls == 10
    assert torch.equal(again.masks, first.masks)
    assert torch.equal(again.thresholds.nan_to_num(-1), first.thresholds.nan_to_num(-1))

    # an interrupted run: one shard missing, a stale temporary file; only that shard runs
    (cache / "shard_000001.pt").unlink()
    (cache / ".shard_000001.pt.abc.tmp").write_bytes(b"half written")
    resumed = generate_tft_masks(
        CountingCam(model, model[2]), data, cache_dir=cache, shard_size=4, show_progress=False
    )
    assert CountingCam.calls == 14
    assert torch.equal(resumed.masks, first.masks)


def test_a_cache_of_other_settings_is_refused(tmp_path: Path) -> None:
    model, data = tiny_cnn(), tiny_data(n=4)
    generate_tft_masks(LayerGradCam(model, model[2]), data, cache_dir=tmp_path, show_progress=False)
    with pytest.raises(ValueError, match="cache_dir"):
        generate_tft_masks(LayerCam(model, model[2]), data, cache_dir=tmp_path, show_progress=False)
    with pytest.raises(ValueError, match="cache_dir"):
        generate_tft_masks(
            LayerGradCam(model, model[2]),
            data,
            cache_dir=tmp_path,
            thresholds=(0.5,),
            show_progress=False,
        )


def test_attribute_kwargs_reach_every_call_and_the_cache_record(tmp_path: Path) -> None:
    model, data = tiny_cnn(), tiny_data(n=6)
    relu = generate_tft_masks(
        LayerGradCam(model, model[2]), data, batch_size=4, cache_dir=tmp_path,
        show_progress=False, attribute_kwargs={"relu_attributions": True},
    )  # fmt: skip
    masks, taus = [], []  # one item at a time, Grad-CAM's paper map (ReLU) by hand
    for image, label in data:
        x = image.unsqueeze(0)
        cam = LayerGradCam(model, model[2]).attribute(x, target=int(label)).clamp(min=0)
        result = threshold_fine_tuning(model, x, cam, target=int(label))
        keep = (result.tuned_maps != 0).double()
        if torch.isnan(result.thresholds).all():
            keep = (result.tuned_maps >= 0.1).double()
        masks.append(F.avg_pool2d(keep, 2).float())
        taus.append(result.thresholds.float())
    torch.testing.assert_close(relu.masks, torch.cat(masks), rtol=0, atol=1e-7)
    torch.testing.assert_close(relu.thresholds, torch.cat(taus), equal_nan=True)
    plain = generate_tft_masks(LayerGradCam(model, model[2]), data, show_progress=False)
    assert not torch.equal(plain.masks, relu.masks)  # the argument made a difference
    with pytest.raises(ValueError, match="attribute_kwargs"):  # another record: refused
        generate_tft_masks(
            LayerGradCam(model, model[2]), data, batch_size=4, cache_dir=tmp_path,
            show_progress=False,
        )  # fmt: skip
    cam = LayerGradCam(model, model[2])
    with pytest.raises(TypeError, match="attribute_kwargs"):
        generate_tft_masks(cam, data, attribute_kwargs=[("relu_attributions", True)])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"attribute_kwargs\['weights'\]"):
        generate_tft_masks(cam, data, attribute_kwargs={"weights": torch.ones(2)})
    with pytest.raises(ValueError, match="'target'"):
        generate_tft_masks(cam, data, attribute_kwargs={"target": 1})


def test_bad_arguments_are_named() -> None:
    model, data = tiny_cnn(), tiny_data(n=2)
    cam = LayerGradCam(model, model[2])
    with pytest.raises(TypeError, match="attribution"):
        generate_tft_masks(model, data)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="target"):
        generate_tft_masks(cam, data, target="true")
    with pytest.raises(ValueError, match="shard_size"):
        generate_tft_masks(cam, data, shard_size=0)
    with pytest.raises(ValueError, match="mask_size"):
        generate_tft_masks(cam, data, mask_size=(4,))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="thresholds"):
        generate_tft_masks(cam, data, thresholds=(0.0,))
    with pytest.raises(ValueError, match="dataset"):
        generate_tft_masks(cam, tiny_data(n=0))
    with pytest.raises(TypeError, match="dataset items"):
        generate_tft_masks(cam, [torch.zeros(3, 8, 8)])  # type: ignore[arg-type]


def test_exported_from_the_package() -> None:
    assert captum_cams.generate_tft_masks is generate_tft_masks
    assert captum_cams.TFTMasks is TFTMasks


# --- the cache records what made it ----------------------------------------------------------


def _snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _changed_weights() -> nn.Module:
    model = tiny_cnn()
    with torch.no_grad():
        model[2].weight[0, 0, 0, 0] += 1e-6
    return model


def _changed_item(index: int, label: bool = False) -> TensorDataset:
    images, labels = (t.clone() for t in tiny_data(n=6).tensors)
    if label:
        labels[index] = (labels[index] + 1) % 3
    else:
        images[index, 0, 0, 0] += 1e-9
    return TensorDataset(images, labels)


CHANGES = {
    "layer": (lambda m: LayerGradCam(m, m[0]), None, {}, "other method settings"),
    "method": (lambda m: LayerCam(m, m[2]), None, {}, "another CAM method"),
    "weights": ("model", None, {}, "another model"),
    "dataset": (None, tiny_data(n=6, seed=4), {}, "another dataset"),
    "last image": (None, _changed_item(5), {}, "another dataset"),
    "first label": (None, _changed_item(0, label=True), {}, "another dataset"),
    "length": (None, tiny_data(n=7), {}, "a dataset of another length"),
    "thresholds": (None, None, {"thresholds": (0.5, 1.0)}, "another thresholds"),
    "mode": (None, None, {"threshold_mode": "rank"}, "another threshold_mode"),
    "target": (None, None, {"target": "predicted"}, "another target"),
    "mask_size": (None, None, {"mask_size": (2, 2)}, "another mask_size"),
    "shard_size": (None, None, {"shard_size": 5}, "another shard_size"),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_cache_made_otherwise_is_refused_and_left_unchanged(tmp_path: Path, change: str) -> None:
    make, data, kwargs, reason = CHANGES[change]
    cache = tmp_path / "cache"
    model = tiny_cnn()
    generate_tft_masks(
        LayerGradCam(model, model[2]), tiny_data(n=6), cache_dir=cache, shard_size=4,
        show_progress=False,
    )  # fmt: skip
    before = _snapshot(cache)
    if make == "model":
        other = _changed_weights()
        attribution = LayerGradCam(other, other[2])
    else:
        attribution = make(model) if make is not None else LayerGradCam(model, model[2])
    options = {"shard_size": 4, **kwargs}
    with pytest.raises(
        ValueError, match=rf"^cache_dir '.*cache' holds masks made with other settings: .*{reason}"
    ):
        generate_tft_masks(
            attribution, data if data is not None else tiny_data(n=6), cache_dir=cache,
            show_progress=False, **options,
        )  # fmt: skip
    assert _snapshot(cache) == before


def test_equal_inputs_rebuilt_are_served_from_the_cache_without_computing(
    tmp_path: Path,
) -> None:
    model = tiny_cnn()
    CountingCam.calls = 0
    first = generate_tft_masks(
        CountingCam(model, model[2]), tiny_data(n=6), cache_dir=tmp_path, show_progress=False
    )
    assert CountingCam.calls == 6
    rebuilt = tiny_cnn()  # same seed: equal parameters, another object
    again = generate_tft_masks(
        CountingCam(rebuilt, rebuilt[2]), tiny_data(n=6), cache_dir=tmp_path, show_progress=False
    )
    assert CountingCam.calls == 6 and torch.equal(again.masks, first.masks)


def test_the_model_fingerprint_covers_buffers() -> None:
    from captum_cams.tuning.tft_masks import _model_fingerprint

    model = nn.Sequential(nn.Conv2d(3, 2, 1), nn.BatchNorm2d(2)).eval()
    before = _model_fingerprint(model)
    model[1].running_mean += 1e-3
    assert _model_fingerprint(model) != before


@pytest.mark.parametrize(
    "kind",
    ["truncated", "tail cut", "third", "one byte", "empty", "text", "wrong shape", "not a dict"],
)
def test_a_damaged_shard_is_named_and_not_overwritten(
    tmp_path: Path, damage: Callable[[Path, str], None], kind: str
) -> None:
    model, data = tiny_cnn(), tiny_data(n=6)
    generate_tft_masks(
        LayerGradCam(model, model[2]), data, cache_dir=tmp_path, shard_size=4, show_progress=False
    )
    shard = tmp_path / "shard_000001.pt"
    if kind in ("truncated", "tail cut", "third", "one byte", "empty", "text"):
        damage(shard, kind)
    elif kind == "wrong shape":
        torch.save({"masks": torch.zeros(2, 1, 8, 8), "thresholds": torch.zeros(2)}, shard)
    else:
        torch.save([torch.zeros(2)], shard)
    before = _snapshot(tmp_path)
    with pytest.raises(ValueError, match=r"shard_000001\.pt (is empty|is not|holds 8x8 masks)"):
        generate_tft_masks(
            LayerGradCam(model, model[2]), data, cache_dir=tmp_path, shard_size=4,
            show_progress=False,
        )  # fmt: skip
    assert _snapshot(tmp_path) == before


def test_shards_without_a_description_are_refused(tmp_path: Path) -> None:
    model, data = tiny_cnn(), tiny_data(n=6)
    generate_tft_masks(
        LayerGradCam(model, model[2]), data, cache_dir=tmp_path, shard_size=4, show_progress=False
    )
    (tmp_path / "meta.json").unlink()
    before = _snapshot(tmp_path)
    with pytest.raises(ValueError, match="holds mask shards but no meta.json"):
        generate_tft_masks(
            LayerGradCam(model, model[2]), data, cache_dir=tmp_path, shard_size=4,
            show_progress=False,
        )  # fmt: skip
    assert _snapshot(tmp_path) == before
