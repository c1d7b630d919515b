"""``examples/train_ornet.py`` end to end on a tiny synthetic set: every stage, checkpoints, metrics,
pictures, ``--resume`` equal to an unbroken run, bad data stopped before training, DistributedDataParallel
with two gloo processes equal to one process, and ``examples/cam_with_lowcam.py``.

Networks are built with ``weights=None``: nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))

import cam_with_lowcam  # noqa: E402
import synthetic  # noqa: E402
import train_ornet  # noqa: E402
from ornet import checkpoint  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    spec = synthetic.SyntheticSpec(
        classes=3, train_per_class=6, test_per_class=4, min_size=36, max_size=48, seed=1
    )
    synthetic.write_dataset(root, spec)
    return root


def tiny_args(data: Path, out: Path, *extra: str) -> list[str]:
    """The synthetic config shrunk to seconds: 32×32 crops, 1 epoch per stage, a 4-wide generator."""
    return [
        "--config", str(EXAMPLES / "configs" / "synthetic.yaml"),
        "--data.root", str(data), "--output_dir", str(out),
        "--data.resize", "36", "--data.crop", "32", "--data.score_size", "32", "--model.generator_width", "4",
        "--evaluator.epochs", "1", "--coarse.epochs", "1", "--fine.epochs", "1", "--cam.epochs", "1",
        "--evaluator.batch_size", "8", "--coarse.batch_size", "8", "--fine.batch_size", "8",
        "--cam.batch_size", "8", "--eval.batch_size", "5", "--eval.pictures", "4",
        "--fine.area.topk", "3", "--fine.area.skip", "1",
        "--runtime.progress", "false", "--runtime.num_threads", "0",
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    assert train_ornet.main(tiny_args(tiny_data, out, "--stage", "all")) == 0
    return out


def test_all_stages_write_checkpoints_metrics_and_pictures(
    trained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for stage in ("evaluator", "coarse", "fine", "cam"):
        state = checkpoint.load(trained / f"{stage}.pt")  # weights_only=True
        assert state["complete"] and state["epoch"] == state["epochs"] == 1
        assert {"model", "optimizer", "scheduler", "rng", "config", "classes"} <= set(state)
        assert state["config"]["data"]["crop"] == 32
    assert not list(trained.glob(".*.tmp"))
    results = json.loads((trained / "metrics.json").read_text())
    assert set(results) == {"coarse", "fine", "cam"}
    for result in results.values():
        ornet = result["ornet"]
        assert ornet["n"] == 12 and 0 <= ornet["gt_known"] <= 100
        assert ornet["top1_loc"] <= ornet["top5_loc"] <= ornet["gt_known"]
        assert 0.05 <= ornet["threshold"]["0.5"] <= 0.95
        assert set(result["maxboxacc_v2"]["threshold"]) == {"0.3", "0.5", "0.7"}
        assert result["maxboxacc"]["n"] == 12
    for name in ("coarse", "fine", "cam"):
        assert (trained / f"maps_{name}.png").stat().st_size > 0
    events = [json.loads(line)["event"] for line in (trained / "log.jsonl").read_text().splitlines()]
    assert {"evaluator/epoch", "coarse/epoch", "fine/epoch", "cam/epoch", "eval"} <= set(events)
    assert (trained / "config.yaml").is_file()


def test_eval_stage_prints_the_table(
    trained: Path, tiny_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = json.loads((trained / "metrics.json").read_text())
    assert train_ornet.main(tiny_args(tiny_data, trained, "--stage", "eval")) == 0
    printed = capsys.readouterr().out
    assert "GT-known Loc" in printed and "stage 2 map (ORNet)" in printed and "CAM baseline" in printed
    assert json.loads((trained / "metrics.json").read_text()) == before  # evaluation is deterministic


def _copy_prefix(trained: Path, target: Path) -> Path:
    target.mkdir()
    for stage in ("evaluator", "coarse"):
        shutil.copy(trained / f"{stage}.pt", target / f"{stage}.pt")
    return target


def test_resume_equals_unbroken_run(trained: Path, tiny_data: Path, tmp_path: Path) -> None:
    unbroken = _copy_prefix(trained, tmp_path / "unbroken")
    broken = _copy_prefix(trained, tmp_path / "broken")
    assert train_ornet.main(tiny_args(tiny_data, unbroken, "--stage", "fine", "--fine.epochs", "2")) == 0
    killed = tiny_args(
        tiny_data, broken, "--stage", "fine", "--fine.epochs", "2", "--runtime.stop_after_epoch", "1"
    )
    assert train_ornet.main(killed) == 3
    partial = checkpoint.load(broken / "fine.pt")
    assert partial["epoch"] == 1 and not partial["complete"]
    torch.manual_seed(12345)  # the resumed run must not depend on the state of the process
    assert (
        train_ornet.main(tiny_args(tiny_data, broken, "--stage", "fine", "--fine.epochs", "2", "--resume"))
        == 0
    )
    a, b = checkpoint.load(unbroken / "fine.pt"), checkpoint.load(broken / "fine.pt")
    assert a["epoch"] == b["epoch"] == 2 and b["complete"]
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert a["scheduler"] == b["scheduler"]
    for x, y in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert all(torch.equal(x[k], y[k]) for k in x)
    # a finished stage is skipped by --resume
    assert (
        train_ornet.main(tiny_args(tiny_data, broken, "--stage", "fine", "--fine.epochs", "2", "--resume"))
        == 0
    )
    assert checkpoint.load(broken / "fine.pt")["epoch"] == 2


def test_bf16_and_channels_last_switches(trained: Path, tiny_data: Path, tmp_path: Path) -> None:
    out = _copy_prefix(trained, tmp_path / "switches")
    switches = ("--runtime.bf16", "true", "--runtime.channels_last", "true", "--eval.pictures", "0")
    assert train_ornet.main(tiny_args(tiny_data, out, "--stage", "fine", *switches)) == 0
    assert train_ornet.main(tiny_args(tiny_data, out, "--stage", "eval", *switches)) == 0
    assert checkpoint.load(out / "fine.pt")["config"]["runtime"]["bf16"] is True
    assert json.loads((out / "metrics.json").read_text())["fine"]["ornet"]["n"] == 12


def test_bad_data_stops_before_training(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    lines = (data / "bounding_boxes.txt").read_text().splitlines()
    lines[4] = "5 1.0 2.0 oops 4.0"
    (data / "bounding_boxes.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    assert train_ornet.main(tiny_args(data, out, "--stage", "all")) == 2
    assert f"{data / 'bounding_boxes.txt'}:5: w must be a number" in capsys.readouterr().err
    assert not list(out.glob("*.pt"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_torchrun_two_gloo_processes_match_one_process(
    trained: Path, tiny_data: Path, tmp_path: Path
) -> None:
    out = _copy_prefix(trained, tmp_path / "ddp")
    shutil.copy(trained / "cam.pt", out / "cam.pt")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
        str(EXAMPLES / "train_ornet.py"), *tiny_args(tiny_data, out, "--stage", "all", "--resume"),
    ]  # fmt: skip
    # own process group, so that a hang cannot leave orphaned workers behind
    launcher = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        output, _ = launcher.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(launcher.pid, signal.SIGKILL)
        output, _ = launcher.communicate()
        pytest.fail("torchrun timed out:\n" + output[-3000:])
    assert launcher.returncode == 0, output[-3000:]
    state = checkpoint.load(out / "fine.pt")  # stage 2 trained by DistributedDataParallel over 2 processes
    assert state["complete"] and len(state["rng"]) == 2
    distributed = json.loads((out / "metrics.json").read_text())
    assert train_ornet.main(tiny_args(tiny_data, out, "--stage", "eval")) == 0
    single = json.loads((out / "metrics.json").read_text())
    assert distributed == single


def test_cam_with_lowcam_example(tiny_data: Path, tmp_path: Path) -> None:
    args = ["--data", str(tiny_data), "--out", str(tmp_path), "--resize", "36", "--crop", "32"]
    args += ["--epochs", "1", "--batch-size", "6", "--area-topk", "3", "--threads", "0", "--score-size", "32"]
    assert cam_with_lowcam.main(args) == 0
    results = json.loads((tmp_path / "metrics.json").read_text())
    assert set(results) == {"plain CAM", "CAM + lowcam losses"}
    for result in results.values():
        assert 0 <= result["gt_known"] <= 100 and 0 <= result["maxboxacc_v2"] <= 100
    assert results["plain CAM"]["history"][0]["ce"] != results["CAM + lowcam losses"]["history"][0]["ce"]
