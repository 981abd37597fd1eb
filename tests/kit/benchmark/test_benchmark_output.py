#!/usr/bin/env python3
"""Reliability of the benchmark's work and files: output locations checked first, one
run's set of files or the previous one (never a mix), stale staging folders removed,
batches made lazily whatever the number of images."""

import os
import sys
from pathlib import Path
from typing import Dict, List

import pytest
import torch

from captum_cams.kit.benchmark import (
    BENCHMARK_FILES,
    BenchmarkData,
    DataBatch,
    EmbeddedData,
    check_output_folder,
    run_benchmark,
    staged_output,
)
from captum_cams.kit.inputs import InputError
from captum_cams.kit.models import embedded_default_layer, load_embedded_default


def _bad_outputs(tmp_path: Path) -> Dict[str, Path]:
    a_file = tmp_path / "a_file"
    a_file.write_text("mine")
    cases = {"is a file": a_file, "under a file": a_file / "deeper" / "out"}
    if sys.platform.startswith("linux"):
        cases["not writable"] = Path("/proc/captum_cams_out")  # refused even to root
    return cases


def test_bad_output_locations_are_refused_with_their_name(tmp_path: Path) -> None:
    for what, out in _bad_outputs(tmp_path).items():
        with pytest.raises(InputError, match="--out: ") as error:
            check_output_folder(out)
        assert str(out) in str(error.value) or str(out.parent) in str(error.value), what
    assert (tmp_path / "a_file").read_text() == "mine"
    check_output_folder(tmp_path / "new" / "deeper")  # missing folders are fine...
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]  # ...and not made


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True, reason="root")
def test_a_read_only_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(InputError, match="--out: cannot write into"):
            check_output_folder(folder / "out")
    finally:
        folder.chmod(0o700)


def _old_run(out: Path) -> Dict[str, bytes]:
    out.mkdir(parents=True, exist_ok=True)
    for name in ("results.json", "scores.csv", "threshold_sweep.png", "notes.txt"):
        (out / name).write_bytes(f"old {name}".encode())
    return {p.name: p.read_bytes() for p in out.iterdir()}


def _leftovers(folder: Path) -> List[str]:
    return [p.name for p in folder.rglob(".captum-cams-*")]


def test_a_complete_run_replaces_the_whole_set(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _old_run(out)
    with staged_output(out, BENCHMARK_FILES) as stage:
        (stage / "results.json").write_text("new")
        (stage / "scores.csv").write_text("new")
        assert (out / "results.json").read_text() == "old results.json"  # not yet
    assert (out / "results.json").read_text() == "new" == (out / "scores.csv").read_text()
    # the old run's figure is gone (this run drew none); the user's own file stays
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "results.json", "scores.csv"]
    assert not _leftovers(tmp_path)


@pytest.mark.parametrize("failure", [RuntimeError, KeyboardInterrupt])
def test_a_failed_or_interrupted_run_leaves_the_old_set(tmp_path: Path, failure: type) -> None:
    out = tmp_path / "out"
    before = _old_run(out)
    with pytest.raises(failure):
        with staged_output(out, BENCHMARK_FILES) as stage:
            (stage / "results.json").write_text("new")
            raise failure()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not _leftovers(tmp_path)


def test_stale_staging_folders_are_removed_at_the_next_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    dead = tmp_path / ".captum-cams-out.999999999.abc.tmp"  # no such process
    alive = tmp_path / f".captum-cams-out.{os.getpid()}.def.tmp"  # a run in progress
    other = tmp_path / ".captum-cams-elsewhere.999999999.abc.tmp"  # another --out's
    for folder in (dead, alive, other):
        folder.mkdir()
        (folder / "results.json").write_text("partial")
    with staged_output(out, BENCHMARK_FILES) as stage:
        (stage / "results.json").write_text("new")
    assert not dead.exists() and alive.exists() and other.exists()


def test_a_figure_that_fails_leaves_the_old_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import captum_cams.visualization as visualization

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the figure failed")

    monkeypatch.setattr(visualization, "plot_rpi_curves", broken)
    model = load_embedded_default()
    out = tmp_path / "out"
    before = _old_run(out)
    with pytest.raises(RuntimeError, match="the figure failed"):
        run_benchmark(
            model, embedded_default_layer(model), EmbeddedData(2, task="shapes"), ["gradcam"],
            ["average_drop", "tft_rpi"], out=str(out), progress=False,
        )  # fmt: skip
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not _leftovers(tmp_path)


def test_a_bad_out_is_found_before_any_work(tmp_path: Path) -> None:
    class Untouchable(BenchmarkData):
        def __len__(self) -> int:
            return 4

        def load(self, indices: object) -> DataBatch:
            raise AssertionError("work started before --out was checked")

    model = load_embedded_default()
    for out in _bad_outputs(tmp_path).values():
        with pytest.raises(InputError, match="--out: "):
            run_benchmark(model, embedded_default_layer(model), Untouchable(), ["libracam"],
                          ["average_drop"], out=str(out), progress=False)  # fmt: skip


class _Stop(Exception):
    pass


class _Endless(BenchmarkData):
    """As many images as asked, rendered on demand; stops the run at its third batch."""

    def __init__(self, count: int) -> None:
        self.count, self.loads = count, []  # type: ignore[var-annotated]

    def __len__(self) -> int:
        return self.count

    def load(self, indices: object) -> DataBatch:
        self.loads.append(list(indices))  # type: ignore[call-overload]
        if len(self.loads) == 3:
            raise _Stop()
        return DataBatch(torch.rand(len(self.loads[-1]), 3, 64, 64), None, None)

    def names(self, indices: object) -> List[str]:
        return [str(i) for i in indices]  # type: ignore[attr-defined]


@pytest.mark.parametrize("rank, world_size", [(0, 1), (1, 3)])
def test_batches_are_made_as_they_run_for_any_number_of_images(
    rank: int, world_size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import captum_cams.kit.benchmark.runner as runner

    monkeypatch.setattr(runner, "rank_and_world_size", lambda: (rank, world_size))
    model = load_embedded_default()
    data = _Endless(10**15)  # a list of its batches would not fit any memory
    with pytest.raises(_Stop):
        run_benchmark(model, embedded_default_layer(model), data, ["gradcam"],
                      ["average_drop"], batch_size=4, progress=False)  # fmt: skip
    first = [rank, rank + world_size, rank + 2 * world_size]
    assert data.loads == [list(range(4 * b, 4 * b + 4)) for b in first]
