"""What the tests of ``examples/train_ornet.py`` share: the tiny run's arguments, torchrun, a copied run."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import lowcam.data

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))

__all__ = ["EXAMPLES", "EXTRA_CAM", "copy_run", "free_port", "tiny_args", "tiny_dataset", "torchrun"]


#: one extra CAM row (the usual stride-32 CAM) next to the like-for-like one
EXTRA_CAM = ("--cam.extra_output_strides", "[32]")


def tiny_args(data: Path, out: Path, *extra: str) -> list[str]:
    """The synthetic config shrunk to seconds: 32×32 crops, 1 epoch per stage, a 4-wide generator."""
    return [
        "--config", str(EXAMPLES / "configs" / "synthetic.yaml"),
        "--data.root", str(data), "--output_dir", str(out),
        "--data.resize", "36", "--data.crop", "32", "--data.score_size", "32", "--model.base_width", "4",
        "--evaluator.epochs", "1", "--coarse.epochs", "1", "--fine.epochs", "1", "--cam.epochs", "1",
        "--evaluator.batch_size", "8", "--coarse.batch_size", "8", "--fine.batch_size", "8",
        "--cam.batch_size", "8", "--eval.batch_size", "5", "--eval.pictures", "4",
        "--fine.area.topk", "3", "--fine.area.skip", "1",
        "--runtime.progress", "false", "--runtime.num_threads", "0",
        *extra,
    ]  # fmt: skip


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def torchrun(args: list[str], timeout: float = 120) -> tuple[int, str]:
    """``torchrun --nproc_per_node=2 examples/train_ornet.py *args`` (gloo, one thread each): its exit
    status and output; a run past ``timeout`` is killed, with its whole process group, and fails the test."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
        str(EXAMPLES / "train_ornet.py"), *args,
    ]  # fmt: skip
    # own process group, so that a hang cannot leave orphaned workers behind
    launcher = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        output, _ = launcher.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(launcher.pid, signal.SIGKILL)
        output, _ = launcher.communicate()
        pytest.fail("torchrun timed out (a hang?):\n" + output[-3000:])
    return launcher.returncode, output


def copy_run(trained: Path, target: Path) -> Path:
    shutil.copytree(trained, target)
    return target


def tiny_dataset(root: Path, *, min_size: int = 36, max_size: int = 48) -> Path:
    """A tiny synthetic CUB-format set in ``root``: 3 classes, 6 training and 4 test images each (seed 1)."""
    spec = lowcam.data.ShapesSpec(
        classes=3, train_per_class=6, test_per_class=4, min_size=min_size, max_size=max_size, seed=1
    )
    lowcam.data.write_shapes(root, spec)
    return root
