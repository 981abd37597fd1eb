#!/usr/bin/env python3
"""Inputs named on the command line: preprocessing keeps boxes on their pixels,
checkpoints load with weights_only=True, layers are found or refused by name."""

import collections
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from captum_cams.kit.inputs import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    InputError,
    Preprocess,
    annotation_mask,
    check_image_file,
    list_images,
    load_model,
    open_image,
    resolve_layer,
    unit_pixels,
)


class _NotWeights:
    """A pickled object of its own class: ``weights_only=True`` refuses to build it."""


def test_mask_follows_the_image_geometry() -> None:
    # a 300 x 400 image: shorter side 300 -> 256 gives 256 x 341 (400 * 256 / 300 = 341.3),
    # the 224 centre crop starts at row (256 - 224) // 2 = 16, column (341 - 224) // 2 = 58
    prep = Preprocess(256, 224)
    mask = torch.zeros(1, 300, 400, dtype=torch.bool)
    mask[:, 150:300, 200:400] = True  # the lower right quarter
    out = prep.mask(mask)
    assert out.shape == (1, 224, 224) and out.dtype == torch.bool
    rows = out[0].any(1).nonzero().flatten()
    cols = out[0].any(0).nonzero().flatten()
    assert int(rows[0]) == 128 - 16 and int(rows[-1]) == 223  # 150 * 256/300 = 128
    assert int(cols[0]) == 171 - 58 and int(cols[-1]) == 223  # 200 * 341/400 = 170.5
    picture = Image.new("RGB", (400, 300), (255, 0, 0))
    image = Preprocess(256, 224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)).image(picture)
    assert image.shape == (3, 224, 224)
    torch.testing.assert_close(image[0], torch.ones(224, 224))  # (1 - 0.5) / 0.5
    torch.testing.assert_close(image[1], -torch.ones(224, 224))


def test_checkpoint_round_trip_and_refusals(tmp_path: Path) -> None:
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None)
    path = tmp_path / "r18.pt"
    torch.save({"state_dict": model.state_dict()}, path)
    loaded = load_model("resnet18", str(path))
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key
    assert loaded.preprocess.crop == 224 and not loaded.model.training

    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": model.state_dict(), "extra": _NotWeights()}, evil)
    with pytest.raises(InputError, match="cannot load .* with weights_only=True"):
        load_model("resnet18", str(evil))
    text = tmp_path / "text.pt"
    text.write_text("hello")
    with pytest.raises(InputError, match="cannot load"):
        load_model("resnet18", str(text))
    with pytest.raises(InputError, match="does not fit the model"):
        load_model("resnet34", str(path))


def test_safetensors_checkpoint(tmp_path: Path) -> None:
    safetensors = pytest.importorskip("safetensors.torch")
    from captum_cams.kit.models import load_embedded_default

    reference = load_embedded_default()
    path = tmp_path / "shapes.safetensors"
    safetensors.save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, path)
    loaded = load_model("embedded-shapes", str(path))
    for key, value in reference.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key


def test_layer_by_name_or_the_last_feature_map() -> None:
    model = nn.Sequential(
        collections.OrderedDict(
            conv1=nn.Conv2d(3, 4, 3, padding=1),
            relu=nn.ReLU(),
            conv2=nn.Conv2d(4, 5, 3, stride=2, padding=1),
            pool=nn.AdaptiveAvgPool2d(2),  # 2 x 2: a map, but a pooling layer
            flat=nn.Flatten(),
            fc=nn.Linear(20, 3),
        )
    )
    sample = torch.zeros(1, 3, 8, 8)
    assert resolve_layer(model, None, sample)[0] == "conv2"
    name, module = resolve_layer(model, "conv1", sample)
    assert name == "conv1" and module is model.conv1
    with pytest.raises(InputError, match=r"no module named 'conv3'.*did you mean conv2, conv1\?"):
        resolve_layer(model, "conv3", sample)
    with pytest.raises(InputError, match=r"'fc' outputs \(1, 3\), not an N x C x h x w"):
        resolve_layer(model, "fc", sample)
    import torchvision

    resnet = torchvision.models.resnet18(weights=None).eval()
    assert resolve_layer(resnet, None, torch.zeros(1, 3, 64, 64))[0] == "layer4"


def test_image_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--data: no image files"):
        list_images(str(tmp_path))
    Image.new("RGB", (8, 8)).save(tmp_path / "b.png")
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "sub" / "a.JPG", format="JPEG")
    (tmp_path / "notes.txt").write_text("skip me")
    assert [p.name for p in list_images(str(tmp_path))] == ["b.png", "a.JPG"]
    check_image_file(tmp_path / "b.png")
    with pytest.raises(InputError, match="not a readable image"):
        check_image_file(tmp_path / "notes.txt")


def test_every_torch_load_in_the_package_is_weights_only() -> None:
    import ast

    package = Path(__file__).resolve().parents[2] / "captum_cams"
    unsafe = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name != "load" or not (
                isinstance(func, ast.Attribute) and getattr(func.value, "id", "") == "torch"
            ):
                continue
            flags = {k.arg: k.value for k in node.keywords}
            value = flags.get("weights_only")
            if not (isinstance(value, ast.Constant) and value.value is True):
                unsafe.append(f"{path.relative_to(package.parent)}:{node.lineno}")
    assert not unsafe, f"torch.load without weights_only=True at {unsafe}"


# --- images over the decompression-bomb limit, and wide modes -------------------------------


@pytest.mark.parametrize("reader", [open_image, check_image_file], ids=["open", "check"])
@pytest.mark.parametrize("factor", [1.1, 3.0])  # PIL warns between 1x and 2x, raises above
@pytest.mark.parametrize("suffix", [".png", ".bmp"])
def test_images_over_the_pixel_limit_are_refused_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reader: object, factor: float, suffix: str
) -> None:
    path = tmp_path / f"huge{suffix}"
    Image.new("RGB", (40, 25)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", int(40 * 25 / factor))
    before = path.read_bytes()
    with pytest.raises(InputError, match=rf"^image .*huge\{suffix}.* decompression-bomb limit"):
        reader(path)  # type: ignore[operator]
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == [path.name]
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 40 * 25)  # at the limit: accepted
    reader(path)  # type: ignore[operator]


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("top", [1, 255, 256, 40000, 65535])
def test_16_bit_images_are_scaled_by_their_range_not_clipped(
    tmp_path: Path, suffix: str, top: int
) -> None:
    values = np.linspace(0, top, 5 * 5).round().astype(np.uint16).reshape(5, 5)
    path = tmp_path / f"gray16{suffix}"
    Image.fromarray(values).save(path)
    picture = open_image(path)
    assert picture.mode in ("I;16", "I")  # what PIL makes of a 16-bit file
    pixels = unit_pixels(picture)
    expected = torch.from_numpy(values.astype(np.float64) / 65535.0).float()
    assert pixels.shape == (3, 5, 5) and pixels.dtype == torch.float32
    for channel in pixels:
        torch.testing.assert_close(channel, expected, rtol=0, atol=1e-7)
    assert Preprocess(5, 5).image(picture).max().item() == pytest.approx(  # no resize
        top / 65535, abs=1e-6
    )


@pytest.mark.parametrize(
    "mode, values, ok",
    [
        ("F", [0.0, 0.25, 1.0], True),
        ("F", [0.0, 1.5], False),
        ("F", [-0.1, 0.5], False),
        ("F", [0.0, float("nan")], False),
        ("F", [0.0, float("inf")], False),
        ("I", [0, 65535], True),
        ("I", [0, 65536], False),
        ("I", [-1, 10], False),
    ],
)
def test_wide_modes_are_kept_exactly_or_refused(
    tmp_path: Path, mode: str, values: list, ok: bool
) -> None:
    dtype = np.float32 if mode == "F" else np.int32
    array = np.array(values, dtype=dtype).reshape(1, -1)
    path = tmp_path / "wide.tif"
    Image.fromarray(array).save(path)
    if ok:
        scale = 1.0 if mode == "F" else 65535.0
        pixels = unit_pixels(open_image(path))
        expected = torch.tensor(values, dtype=torch.float64) / scale
        torch.testing.assert_close(pixels[0, 0].double(), expected, rtol=0, atol=1e-7)
        return
    with pytest.raises(InputError, match=rf"^.*wide\.tif: .*mode {mode}\) with values in"):
        open_image(path)
    with pytest.raises(InputError, match=rf"^scan: .*mode {mode}\) with values in"):
        Preprocess(1, 1).image(Image.fromarray(array), name="scan")


@pytest.mark.parametrize("mode", ["L", "P", "RGB", "RGBA", "CMYK", "1"])
def test_8_bit_modes_keep_their_values(mode: str) -> None:
    picture = Image.new("RGB", (3, 2), (10, 128, 255)).convert(mode)
    expected = np.asarray(picture.convert("RGB"), dtype=np.float32) / 255.0
    pixels = unit_pixels(picture)
    torch.testing.assert_close(pixels, torch.from_numpy(expected).permute(2, 0, 1))


# --- annotations are checked before their mask is allocated ---------------------------------


def _annotation(folder: Path, stem: str, height: object, width: object) -> None:
    folder.mkdir(exist_ok=True)
    (folder / f"{stem}.xml").write_text(
        f"<annotation><size><width>{width}</width><height>{height}</height></size>"
        "<object><name>dog</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax>"
        "<ymax>2</ymax></bndbox></object></annotation>"
    )


@pytest.mark.parametrize(
    "height, width, message",
    [
        (60000, 60000, "is for a 60000x60000 image but"),
        (1, 10**9, "is for a 1x1000000000 image but"),
        (8, 9, "is for a 8x9 image but"),
        (0, 5, "size/height must be a positive whole number"),
        (-3, 5, "size/height must be a positive whole number"),
        (6, "nan", "size/width must be a positive whole number"),
        (6, 2.5, "size/width must be a positive whole number"),
        (6, "1e400", "size/width must be a positive whole number"),
    ],
)
def test_annotations_of_absurd_or_other_sizes_are_refused_before_allocation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, height: object, width: object, message: str
) -> None:
    import captum_cams.kit.datasets.voc as voc

    def no_allocation(*args: object, **kwargs: object) -> None:
        raise AssertionError("a mask was allocated before the size was checked")

    monkeypatch.setattr(voc, "boxes_to_masks", no_allocation)
    _annotation(tmp_path / "ann", "img", height, width)
    image = tmp_path / "img.png"
    with pytest.raises(InputError, match=rf"^--annotations: .*img\.xml.*{message}"):
        annotation_mask(str(tmp_path / "ann"), image, (6, 5))


class _PairOut(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple:
        return x, None  # as attention modules return (output, None)


class _WithPair(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.pair = _PairOut()
        self.unused = nn.Conv2d(4, 4, 1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pair(self.conv(x))[0].mean((2, 3)))


def test_named_layers_that_give_no_feature_map_are_refused_by_name() -> None:
    model, sample = _WithPair().eval(), torch.zeros(1, 3, 8, 8)
    assert resolve_layer(model, "conv", sample) == ("conv", model.conv)
    assert resolve_layer(model, None, sample)[0] == "conv"  # (Tensor, None) is skipped
    with pytest.raises(InputError, match=r"--layer: 'unused' outputs no tensor, not an N x C"):
        resolve_layer(model, "unused", sample)
    with pytest.raises(InputError, match=r"--layer: 'pair' does not output tensors only"):
        resolve_layer(model, "pair", sample)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


_FACTORY_FILE = """
import torch.nn as nn


class Net(nn.Module):
    def __init__(self, classes=3):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, classes))

    def forward(self, x):
        return self.head(self.features(x))


def build():
    return Net()


def build_preprocessed():
    net = Net()
    net.input_size, net.mean, net.std, net.categories = 32, (0.5,) * 3, 0.25, ["a", "b", "c"]
    return net


def build_from_attributes():
    return Net()


build_from_attributes.input_size = 48
build_from_attributes.resize_size = 64


def needs_arguments(classes):
    return Net(classes)


def not_a_model():
    return {"weights": 1}


NOT_CALLABLE = 3
"""


def _factory_file(folder: Path, text: str = _FACTORY_FILE, name: str = "nets.py") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_a_model_from_a_function_in_a_file(tmp_path: Path) -> None:
    path = _factory_file(tmp_path)
    loaded = load_model(f"{path}:build")
    assert isinstance(loaded.model, nn.Module) and not loaded.model.training
    assert loaded.preprocess_origin == "default" and not loaded.untrained
    assert (loaded.preprocess.resize, loaded.preprocess.crop) == (256, 224)
    assert loaded.classes is None
    # a checkpoint of the module it returns, loaded with weights_only=True
    torch.manual_seed(1)
    reference = load_model(f"{path}:build").model
    checkpoint = tmp_path / "net.pt"
    torch.save(reference.state_dict(), checkpoint)
    loaded = load_model(f"{path}:build", str(checkpoint))
    for key, value in reference.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key
    assert load_model(f"{path}:build", "none").untrained
    # preprocessing and class names from attributes of the module, then of the function
    loaded = load_model(f"{path}:build_preprocessed")
    assert loaded.preprocess_origin == "model" and loaded.classes == ["a", "b", "c"]
    assert (loaded.preprocess.resize, loaded.preprocess.crop) == (37, 32)  # 32 * 256 / 224
    assert loaded.preprocess.mean == (0.5,) * 3 and loaded.preprocess.std == (0.25,) * 3
    loaded = load_model(f"{path}:build_from_attributes")
    assert (loaded.preprocess.resize, loaded.preprocess.crop) == (64, 48)


def test_a_model_from_a_function_in_a_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "mypackage"
    package.mkdir()
    (package / "__init__.py").write_text("")
    _factory_file(package, name="models.py")
    monkeypatch.chdir(tmp_path)  # a package in the working directory, as python -m finds it
    before = list(sys.path)
    assert isinstance(load_model("mypackage.models:build").model, nn.Module)
    assert sys.path == before  # the folder was on sys.path only while importing and calling
    with pytest.raises(InputError, match=r"^--model: no module named 'nosuchpackage'"):
        load_model("nosuchpackage.models:build")


@pytest.mark.parametrize(
    "spec, weights, message",
    [
        ("{folder}/missing.py:build", None, "--model: file not found: "),
        ("{file}:", None, "names no function: give path/to/file.py:FUNCTION"),
        ("{file}:nope", None, r"has no attribute 'nope' \(it defines: .*build"),
        ("{file}:NOT_CALLABLE", None, "is a int, not a function returning a model"),
        ("{file}:needs_arguments", None, r"needs_arguments\(\) raised TypeError: .*called with no"),
        ("{file}:not_a_model", None, r"not_a_model\(\) returned a dict, not a torch.nn.Module"),
        ("{broken}:build", None, r"importing .*broken.py failed \(NameError: name 'undefined'"),
        ("{file}:build", "IMAGENET1K_V1", "--weights: 'IMAGENET1K_V1' is neither a checkpoint"),
        ("{file}:build", "{folder}/no.pt", "--weights: checkpoint not found"),
    ],
)
def test_function_models_are_refused_in_one_line(
    spec: str, weights: object, message: str, tmp_path: Path
) -> None:
    path = _factory_file(tmp_path)
    broken = _factory_file(tmp_path, "x = undefined\n", "broken.py")
    names = dict(folder=tmp_path, file=path, broken=broken)
    weights = None if weights is None else str(weights).format(**names)
    with pytest.raises(InputError, match=message) as error:
        load_model(spec.format(**names), weights)  # type: ignore[arg-type]
    assert "\n" not in str(error.value)


def test_preprocessing_options_labels_and_the_model_output(tmp_path: Path) -> None:
    from captum_cams.kit.inputs import (
        check_model_output,
        parse_channel_values,
        read_labels,
        with_preprocess_options,
    )

    base = Preprocess(256, 224, IMAGENET_MEAN, IMAGENET_STD)
    changed = with_preprocess_options(base, input_size=192)
    assert (changed.resize, changed.crop, changed.mean) == (219, 192, IMAGENET_MEAN)
    changed = with_preprocess_options(base, resize=300, mean=(0.5,) * 3, std=(0.5,) * 3)
    assert (changed.resize, changed.crop, changed.std) == (300, 224, (0.5,) * 3)
    with pytest.raises(InputError, match="--resize: 200 is smaller than the input size 224"):
        with_preprocess_options(base, resize=200)
    assert parse_channel_values("0.5", "--mean") == (0.5, 0.5, 0.5)
    assert parse_channel_values(" 0.1, 0.2,0.3", "--mean") == (0.1, 0.2, 0.3)
    for text, message in [("a,b,c", "not numbers"), ("1,2", "3 finite numbers"), ("nan", "3")]:
        with pytest.raises(InputError, match=f"--mean.*{message}"):
            parse_channel_values(text, "--mean")
    with pytest.raises(InputError, match="--std must be positive"):
        parse_channel_values("0.2,0,0.2", "--std", positive=True)

    labels = tmp_path / "labels.txt"
    labels.write_text("cat\n dog \nbird\n\n")
    assert read_labels(str(labels)) == ["cat", "dog", "bird"]
    labels.write_text("cat\n\nbird\n")
    with pytest.raises(InputError, match="--labels: line 2 of .* is empty"):
        read_labels(str(labels))
    labels.write_text("\n\n")
    with pytest.raises(InputError, match="holds no class name"):
        read_labels(str(labels))
    with pytest.raises(InputError, match="--labels: file not found"):
        read_labels(str(tmp_path / "none.txt"))

    loaded = load_model(f"{_factory_file(tmp_path)}:build")
    assert check_model_output(loaded, torch.zeros(1, 3, 16, 16)) == 3
    loaded.model = nn.Conv2d(3, 2, 3)  # returns a feature map, not logits
    with pytest.raises(InputError, match=r"returns \(1, 2, 14, 14\), not N x classes logits"):
        check_model_output(loaded, torch.zeros(1, 3, 16, 16))
    loaded.model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))  # a fixed input size
    with pytest.raises(InputError, match=r"fails on a 1 x 3 x 16 x 16 input .*--input-size"):
        check_model_output(loaded, torch.zeros(1, 3, 16, 16))


def test_tensor_attributes_of_a_model_are_not_read_as_preprocessing() -> None:
    from captum_cams.kit.inputs import _factory_preprocess

    class Normalising(nn.Module):  # normalises its inputs itself, from buffers
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", torch.tensor([0.4, 0.4, 0.4]))
            self.register_buffer("std", torch.tensor([0.2, 0.2, 0.2]))

    preprocess, given = _factory_preprocess(Normalising(), object(), "x.py:f")
    assert not given and preprocess.mean == IMAGENET_MEAN
