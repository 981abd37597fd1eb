#!/usr/bin/env python3
"""Shared fixtures: small random-weight models and the shared CIFAR-10 folder."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest
import torch

# two intra-op threads, shared among pytest-xdist's workers (the README's test command
# runs one per core): more threads than cores slows every worker down
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // _WORKERS)))


@pytest.fixture(autouse=True)
def _deterministic() -> Iterator[None]:
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def cifar10_root() -> Path:
    from captum_cams.kit.datasets.cifar10 import find_cifar10_root

    root = find_cifar10_root()
    if root is None:
        pytest.skip(
            "shared CIFAR-10 folder not found: set CAPTUM_CAMS_CIFAR10 or place "
            "../shared/data/cifar10 beside the project"
        )
    return root


def _worker_environment() -> dict:
    """This environment, with the repository on ``PYTHONPATH`` and one OpenMP thread:
    what the distributed tests' worker processes run with."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    env["OMP_NUM_THREADS"] = "1"
    return env


@pytest.fixture(scope="session")
def torchrun() -> Callable[..., None]:
    """Runs a script under ``torchrun --standalone`` (gloo on CPU) and fails with its output."""

    def run(script: Path, *args: str, nproc: int = 2, timeout: float = 300.0) -> None:
        env = _worker_environment()
        command = [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={nproc}", str(script), *args,
        ]  # fmt: skip
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            pytest.fail(f"torchrun exited {done.returncode}:\n{done.stdout}\n{done.stderr}")

    return run


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def gloo_processes(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., None]:
    """Runs ``nproc`` copies of a script with the environment torchrun gives its workers
    (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``/``PORT`` …) but without torchrun's launcher
    process, whose own import of torch costs the suite seconds per test; as torchrun,
    stops the others when one fails, and fails with every worker's output. The CLI's
    torchrun test runs the real launcher."""
    logs = tmp_path_factory.mktemp("gloo_logs")

    def start(script: Path, args: tuple, nproc: int, run_id: str) -> list:
        env = _worker_environment()
        env.update(
            MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()),
            WORLD_SIZE=str(nproc), LOCAL_WORLD_SIZE=str(nproc),
        )  # fmt: skip
        workers = []
        for rank in range(nproc):
            with open(logs / f"{run_id}.{rank}", "w") as log:
                workers.append(
                    subprocess.Popen(
                        [sys.executable, str(script), *args],
                        env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        return workers

    def run(script: Path, *args: str, nproc: int = 2, timeout: float = 300.0) -> None:
        for _attempt in range(3):  # the free port can be taken before rank 0 binds it
            run_id = f"{script.stem}-{os.getpid()}-{time.monotonic_ns()}"
            workers = start(script, args, nproc, run_id)
            deadline = time.monotonic() + timeout
            try:
                while True:
                    codes = [w.poll() for w in workers]  # every worker, no short cut
                    if None not in codes or any(code not in (None, 0) for code in codes):
                        break  # all done, or one failed: the others would wait for it
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.05)
            finally:
                for worker in workers:
                    if worker.poll() is None:
                        worker.kill()
                    worker.wait()
            codes = [w.returncode for w in workers]
            outputs = [(logs / f"{run_id}.{rank}").read_text() for rank in range(nproc)]
            if codes == [0] * nproc:
                return
            if not any("address already in use" in out.lower() for out in outputs):
                break
        report = [f"rank {r} exited {c}:\n{o}" for r, (c, o) in
                  enumerate(zip(codes, outputs))]  # fmt: skip
        pytest.fail("\n".join(report))

    return run


def damage_file(path: Path, kind: str) -> None:
    """Damages a file written by torch.save the ways a copy or a disk can: ``truncated``
    (half of it), ``tail cut`` (all but the last 10 bytes), ``third`` (the first third),
    ``one byte``, ``empty``, ``text`` (not a torch file at all)."""
    whole = path.read_bytes()
    contents = {
        "truncated": whole[: len(whole) // 2],
        "tail cut": whole[:-10],
        "third": whole[: len(whole) // 3],
        "one byte": whole[:1],
        "empty": b"",
        "text": b"epoch = 3\n",
    }
    path.write_bytes(contents[kind])


@pytest.fixture
def damage() -> Callable[[Path, str], None]:
    return damage_file
