#!/usr/bin/env python3
"""ReferenceLibrary: the first R inputs with softmax_ℓ < τ per class, each stored once;
the confidence filter; float16 storage and the byte count; save/load round trip; a
tampered file is refused without running its code; a library built for another layer
or class count is refused; 2 gloo processes build the single-process library."""

import os
import re
from pathlib import Path
from typing import Callable, List

import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from captum_cams import LayerLibraCam, ReferenceLibrary


class Net(nn.Module):
    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.pre = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.Softplus())
        self.layer = nn.Sequential(nn.Conv2d(6, 5, 3, stride=2, padding=1), nn.Softplus())
        self.head = nn.Sequential(
            nn.Conv2d(5, 5, 1),
            nn.Tanh(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(5, classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.layer(self.pre(x)))


def make_net(bias: List[float]) -> Net:
    torch.manual_seed(0)
    net = Net(len(bias)).double().eval()
    x = torch.randn(30, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():  # logits that vary across inputs, centred on ``bias``
        linear = net.head[-1]
        linear.weight.mul_(400)
        features = net.head[:-1](net.layer(net.pre(x))).mean(0)
        linear.bias.copy_(torch.tensor(bias, dtype=torch.float64) - linear.weight @ features)
    return net


def loader(num: int = 20, batch_size: int = 3, seed: int = 1) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(num, 3, 8, 8, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 4, (num,), generator=generator)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size)


def test_dominant_class_inputs_are_stored_once() -> None:
    # class 0 dominates: every input is < 1e-4 likely for classes 1, 2, 3
    net = make_net([300.0, 0.0, 0.0, 0.0])
    data = loader(10)
    library = ReferenceLibrary.build(net, net.layer, data, 4, max_per_class=3, progress=False)
    assert library.num_entries == 3  # not 3 classes x 3 copies
    assert library.counts() == [0, 3, 3, 3]
    for label in (1, 2, 3):
        assert library.class_indices[label].tolist() == [0, 1, 2]
    assert library.source_indices.tolist() == [0, 1, 2]
    x = data.dataset.tensors[0][:3]
    with torch.no_grad():
        expected = net.layer(net.pre(x))
    torch.testing.assert_close(library.references(2), expected.float())
    k, h, w = library.activation_shape
    assert (k, h, w) == (5, 4, 4)
    assert library.entry_nbytes == 5 * 4 * 4 * 4
    assert library.nbytes == 3 * library.entry_nbytes + 9 * 8 + 3 * 8
    # the estimate uses the same per-entry cost (9 class slots = 3 classes x R = 3)
    estimate = ReferenceLibrary.estimate_nbytes(3, 3, (5, 4, 4), torch.float32, num_entries=3)
    assert estimate == library.nbytes
    assert (
        ReferenceLibrary.estimate_nbytes(3, 3, (5, 4, 4), torch.float32) == 9 * 320 + 9 * 8 + 9 * 8
    )
    half = ReferenceLibrary.build(
        net, net.layer, data, 4, max_per_class=3, dtype=torch.float16, progress=False
    )
    assert half.dtype == torch.float16 and half.entry_nbytes == library.entry_nbytes // 2
    torch.testing.assert_close(
        half.references(1).float(), library.references(1), atol=2e-3, rtol=2e-3
    )


@pytest.mark.parametrize("min_confidence", [None, 0.5])
def test_first_r_qualifying_inputs_per_class(min_confidence) -> None:
    net = make_net([0.0, 0.5, -0.5, 0.2])
    x = loader(30).dataset.tensors[0]
    with torch.no_grad():
        y = net(x).argmax(1)
    y[::3] = (y[::3] + 1) % 4  # every third label wrong: the filter must drop those
    data = DataLoader(TensorDataset(x, y), batch_size=3)
    tau, r = 0.2, 4
    library = ReferenceLibrary.build(
        net, net.layer, data, 4, tau=tau, max_per_class=r, min_confidence=min_confidence,
        progress=False,
    )  # fmt: skip
    with torch.no_grad():
        p = torch.softmax(net(x), 1)
    for label in range(4):
        ok = p[:, label] < tau
        if min_confidence is not None:
            ok &= (p.argmax(1) == y) & (p.max(1).values >= min_confidence)
        expected = ok.nonzero().flatten()[:r].tolist()
        got = library.source_indices[library.class_indices[label]].tolist()
        assert got == expected
    assert sum(library.counts()) > library.num_entries  # some inputs serve several classes


def test_save_load_round_trip_and_no_partial_files(tmp_path: Path) -> None:
    net = make_net([0.0, 0.5, -0.5, 0.2])
    library = ReferenceLibrary.build(
        net, net.layer, loader(30), 4, tau=0.2, max_per_class=4, min_confidence=0.3, progress=False
    )
    path = tmp_path / "library.pt"
    library.save(path)
    assert os.listdir(tmp_path) == ["library.pt"]
    loaded = ReferenceLibrary.load(path)
    assert torch.equal(loaded.activations, library.activations)
    assert [i.tolist() for i in loaded.class_indices] == [i.tolist() for i in library.class_indices]
    assert torch.equal(loaded.source_indices, library.source_indices)
    assert (loaded.tau, loaded.max_per_class, loaded.min_confidence) == (0.2, 4, 0.3)


class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # what a malicious pickle does on load
        return (open, (str(self.marker), "w"))


def test_tampered_file_is_refused_without_running_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "library.pt"
    net = make_net([300.0, 0.0, 0.0, 0.0])
    state = ReferenceLibrary.build(net, net.layer, loader(6), 4, max_per_class=2, progress=False)
    tampered = state.state_dict()
    tampered["tau"] = Payload(marker)
    torch.save(tampered, path)
    with pytest.raises(ValueError, match="safely"):
        ReferenceLibrary.load(path)
    assert not marker.exists()
    torch.save({"format": "something else"}, path)
    with pytest.raises(ValueError, match="not a captum_cams reference library"):
        ReferenceLibrary.load(path)
    broken = state.state_dict()
    broken["class_counts"] = torch.tensor([0, 2, 2, 3])
    torch.save(broken, path)
    with pytest.raises(ValueError, match="damaged"):
        ReferenceLibrary.load(path)


def test_library_of_another_layer_or_class_count_is_refused() -> None:
    net = make_net([300.0, 0.0, 0.0, 0.0])
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    library = ReferenceLibrary.build(net, net.pre, loader(6), 4, max_per_class=2, progress=False)
    with pytest.raises(ValueError, match="another layer"):
        LayerLibraCam(net, net.layer, library=library).attribute(x, target=1)
    five = make_net([300.0, 0.0, 0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="4 classes"):
        LayerLibraCam(five, five.pre, library=library).attribute(x, target=1)
    with pytest.raises(ValueError, match="num_classes"):
        ReferenceLibrary.build(net, net.layer, loader(6), 5, progress=False)


def test_argument_errors() -> None:
    net = make_net([300.0, 0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="tau"):
        ReferenceLibrary.build(net, net.layer, loader(6), 4, tau=1.5, progress=False)
    with pytest.raises(ValueError, match="max_per_class"):
        ReferenceLibrary.build(net, net.layer, loader(6), 4, max_per_class=0, progress=False)
    with pytest.raises(ValueError, match="dataloader"):
        ReferenceLibrary.build(net, net.layer, [torch.zeros(2, 3, 8, 8)], 4, progress=False)
    with pytest.raises(ValueError, match="no input qualified"):
        ReferenceLibrary.build(net, net.layer, loader(6), 4, tau=1e-300, progress=False)


WORKER = """
import sys, torch
from torch.utils.data import DataLoader, TensorDataset
from captum_cams import ReferenceLibrary
from captum_cams._utils.distributed import init_distributed_from_env, is_main_process
sys.path.insert(0, sys.argv[1])
from test_reference_library import make_net
assert init_distributed_from_env("gloo")
net = make_net([0.0, 0.5, -0.5, 0.2])
x, y = torch.load(sys.argv[2], weights_only=True)
library = ReferenceLibrary.build(
    net, net.layer, DataLoader(TensorDataset(x, y), batch_size=3), 4, tau=0.2, max_per_class=4)
library.save(sys.argv[3] + (".0" if is_main_process() else ".1"))
"""


def test_two_gloo_processes_build_the_single_process_library(
    tmp_path: Path, gloo_processes: Callable[..., None]
) -> None:
    data = loader(31, batch_size=3, seed=2)
    torch.save(data.dataset.tensors, tmp_path / "data.pt")
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    here, data_file, lib = Path(__file__).parent, tmp_path / "data.pt", tmp_path / "lib"
    gloo_processes(script, str(here), str(data_file), str(lib))
    net = make_net([0.0, 0.5, -0.5, 0.2])
    single = ReferenceLibrary.build(
        net, net.layer, data, 4, tau=0.2, max_per_class=4, progress=False
    )
    assert single.num_entries > 4
    for rank in (0, 1):
        other = ReferenceLibrary.load(tmp_path / f"lib.{rank}")
        assert torch.equal(other.activations, single.activations)
        assert torch.equal(other.source_indices, single.source_indices)
        assert [i.tolist() for i in other.class_indices] == [
            i.tolist() for i in single.class_indices
        ]


def _saved_library(tmp_path: Path) -> Path:
    net = make_net([300.0, 0.0, 0.0, 0.0])
    library = ReferenceLibrary.build(net, net.layer, loader(6), 4, max_per_class=2, progress=False)
    path = tmp_path / "library.pt"
    library.save(path)
    return path


@pytest.mark.parametrize(
    "kind, message",
    [
        ("truncated", "is not a readable reference library: truncated"),
        ("tail cut", "is not a readable reference library: truncated"),
        ("third", "is not a readable reference library: truncated"),
        ("one byte", "is not a readable reference library"),
        ("empty", "is empty, not a reference library"),
        ("text", "is not a readable reference library"),
        ("png", "is not a readable reference library"),
        ("tensor", "is not a captum_cams reference library"),
        ("other dict", "is not a captum_cams reference library"),
    ],
)
def test_files_that_are_not_a_library_are_named(
    tmp_path: Path, damage: Callable[[Path, str], None], kind: str, message: str
) -> None:
    path = _saved_library(tmp_path)
    if kind in ("truncated", "tail cut", "third", "one byte", "empty", "text"):
        damage(path, kind)
    elif kind == "png":
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    elif kind == "tensor":
        torch.save(torch.zeros(3), path)
    else:
        torch.save({"weights": torch.zeros(3)}, path)
    before = path.read_bytes()
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))} {message}"):
        ReferenceLibrary.load(path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["library.pt"]


def test_missing_files_and_folders_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"reference library not found: .*absent\.pt"):
        ReferenceLibrary.load(tmp_path / "absent.pt")
    with pytest.raises(IsADirectoryError, match="is a folder, not a file"):
        ReferenceLibrary.load(tmp_path)
    path = _saved_library(tmp_path)
    library = ReferenceLibrary.load(path)
    for target, error in (
        (tmp_path / "absent" / "library.pt", FileNotFoundError),
        (tmp_path / "absent" / "deeper" / "library.pt", FileNotFoundError),
        (path / "library.pt", NotADirectoryError),
    ):
        with pytest.raises(error, match=rf"cannot write {re.escape(str(target))}"):
            library.save(target)
    assert os.listdir(tmp_path) == ["library.pt"]


class ShiftedBeforeTheLayer(nn.Module):
    r"""``net(x + shift)``: the extra argument changes the layer's activations."""

    def __init__(self, net: Net) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor, shift: Tensor) -> Tensor:
        return self.net(x + shift)


class OffsetAfterTheLayer(nn.Module):
    r"""``net(x) + offset``: the extra argument changes the logits only."""

    def __init__(self, net: Net) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor, offset: Tensor) -> Tensor:
        return self.net(x) + offset


@pytest.mark.parametrize("where", ["before", "after"])
def test_additional_forward_args_reach_the_model_for_every_batch(where: str) -> None:
    net = make_net([0.0, 0.5, -0.5, 0.2])
    x = loader(30).dataset.tensors[0]
    tau, r = 0.2, 4
    if where == "before":
        model: nn.Module = ShiftedBeforeTheLayer(net)
        shift = torch.linspace(-1.0, 1.0, 3 * 8 * 8, dtype=torch.float64).reshape(3, 8, 8)
        extra = (shift,)  # a tuple, as Captum takes several extra arguments
        with torch.no_grad():
            activations = net.layer(net.pre(x + shift))
            logits = net.head(activations)
    else:
        model = OffsetAfterTheLayer(net)
        offset = torch.tensor([0.0, 0.0, 0.0, -300.0], dtype=torch.float64)
        extra = offset  # one bare value, as Captum also takes it
        with torch.no_grad():
            activations = net.layer(net.pre(x))
            logits = net(x) + offset
    library = ReferenceLibrary.build(
        model, net.layer, DataLoader(TensorDataset(x, torch.zeros(30, dtype=torch.long)), 3),
        4, tau=tau, max_per_class=r, dtype=torch.float64, additional_forward_args=extra,
        progress=False,
    )  # fmt: skip
    p = torch.softmax(logits, 1)
    with torch.no_grad():
        p_without = torch.softmax(net(x), 1)
    changed = False
    for label in range(4):
        expected = (p[:, label] < tau).nonzero().flatten()[:r].tolist()
        changed |= expected != (p_without[:, label] < tau).nonzero().flatten()[:r].tolist()
        chosen = library.class_indices[label]
        assert library.source_indices[chosen].tolist() == expected
        assert torch.equal(library.references(label), activations[expected])
    assert changed  # the extra argument matters: the test would see it dropped
    assert not net.layer._forward_hooks and not net.layer._forward_pre_hooks
    if where == "after":  # the offset makes class 3 unlikely for every input
        assert library.source_indices[library.class_indices[3]].tolist() == list(range(r))


def test_additional_forward_args_missing_fails_as_the_model_does() -> None:
    net = make_net([0.0, 0.5, -0.5, 0.2])
    with pytest.raises(TypeError, match="offset"):
        ReferenceLibrary.build(OffsetAfterTheLayer(net), net.layer, loader(6), 4, progress=False)
    assert not net.layer._forward_hooks
