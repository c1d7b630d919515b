"""``examples/train_ornet.py`` end to end on a tiny synthetic set: every stage, checkpoints, metrics,
pictures, ``--resume`` equal to an unbroken run, bad data stopped before training, DistributedDataParallel
with two gloo processes equal to one process (``examples/cam_with_lowcam.py``: tests/test_examples_cam.py).

Networks are built with ``weights=None``: nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch
from _pipeline import EXAMPLES, EXTRA_CAM, copy_run, tiny_args, torchrun

sys.path.insert(0, str(EXAMPLES))  # before the examples' modules (_pipeline does it too)

import train_ornet
from ornet import checkpoint

pytestmark = pytest.mark.slow


def test_all_stages_write_checkpoints_metrics_and_pictures(
    trained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for stage in ("evaluator", "coarse", "fine", "cam", "cam_s32"):
        state = checkpoint.load(trained / f"{stage}.pt")  # weights_only=True
        assert state["complete"] and state["epoch"] == state["epochs"] == 1
        assert {"model", "optimizer", "scheduler", "rng", "config", "classes"} <= set(state)
        assert state["config"]["data"]["crop"] == 32
    assert not list(trained.glob(".*.tmp"))
    results = json.loads((trained / "metrics.json").read_text())
    assert set(results) == {"coarse", "fine", "cam", "cam_s32", "center_gaussian"}
    # the data-free baseline: one Gaussian at the crop's resolution, classified by the evaluator
    gauss = results["center_gaussian"]
    assert gauss["map_size"] == [32, 32] and gauss["label"] == "centre Gaussian (no learning, 32×32)"
    assert gauss["classification_top1"] == results["fine"]["classification_top1"]
    for result in results.values():
        ornet = result["ornet"]
        assert ornet["n"] == 12 and 0 <= ornet["gt_known"] <= 100
        assert ornet["top1_loc"] <= ornet["top5_loc"] <= ornet["gt_known"]
        assert 0.05 <= ornet["threshold"]["0.5"] <= 0.95
        assert set(result["maxboxacc_v2"]["threshold"]) == {"0.3", "0.5", "0.7"}
        assert result["maxboxacc"]["n"] == 12
        assert "wsoleval" not in result  # one name per number: no grouped copy of the two above
    # cam.output_stride null: the CAM's map has the generator's side (32-pixel crops: 8×8, stride 4)
    assert results["fine"]["map_size"] == results["coarse"]["map_size"] == [8, 8]
    assert results["cam"]["map_size"] == results["fine"]["map_size"] and results["cam"]["output_stride"] == 4
    assert results["cam_s32"]["map_size"] == [1, 1] and results["cam_s32"]["output_stride"] == 32
    assert results["cam"]["label"] == "CAM baseline (stride 4, 8×8)"
    assert results["fine"]["label"] == "stage 2 map (ORNet, 8×8)" and "output_stride" not in results["fine"]
    for name in ("coarse", "fine", "cam", "cam_s32", "center_gaussian"):
        assert (trained / f"maps_{name}.png").stat().st_size > 0
    assert (trained / "maps.png").stat().st_size > 0  # every map side by side
    events = [json.loads(line)["event"] for line in (trained / "log.jsonl").read_text().splitlines()]
    assert {"evaluator/epoch", "coarse/epoch", "fine/epoch", "cam/epoch", "cam_s32/epoch", "eval"} <= set(
        events
    )
    assert events.count("coarse/eval_mode") == 1  # the generator's accuracy on the running statistics
    assert (trained / "config.yaml").is_file()


def test_eval_stage_prints_the_table(
    trained: Path, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = copy_run(trained, tmp_path / "run")  # the session's run stays as trained
    assert train_ornet.main(tiny_args(tiny_data, out, "--stage", "eval", *EXTRA_CAM)) == 0
    printed = capsys.readouterr().out
    assert "GT-known Loc" in printed and "stage 2 map (ORNet, 8×8)" in printed
    assert "CAM baseline (stride 4, 8×8)" in printed and "CAM baseline (stride 32, 1×1)" in printed
    before = json.loads((trained / "metrics.json").read_text())
    assert json.loads((out / "metrics.json").read_text()) == before  # evaluation is deterministic


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
    assert partial["optimizer"]["state"]  # the unfinished file keeps the moments resume needs ...
    assert a["optimizer"] is None and b["optimizer"] is None  # ... a finished one drops them
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


def test_torchrun_two_gloo_processes_match_one_process(
    trained: Path, tiny_data: Path, tmp_path: Path
) -> None:
    out = _copy_prefix(trained, tmp_path / "ddp")
    shutil.copy(trained / "cam.pt", out / "cam.pt")
    recalibrate = ("--fine.recalibrate_bn", "true")  # its statistics averaged over the two processes
    returncode, output = torchrun(
        tiny_args(tiny_data, out, "--stage", "all", "--resume", *recalibrate), timeout=240
    )
    assert returncode == 0, output[-3000:]
    assert "[fine] running statistics of 5 generator BatchNorm layers recalibrated" in output
    state = checkpoint.load(out / "fine.pt")  # stage 2 trained by DistributedDataParallel over 2 processes
    assert state["complete"] and len(state["rng"]) == 2
    distributed = json.loads((out / "metrics.json").read_text())
    assert train_ornet.main(tiny_args(tiny_data, out, "--stage", "eval", *recalibrate)) == 0
    single = json.loads((out / "metrics.json").read_text())
    assert distributed == single


# --------------------------------------------------------------------------- reliability (issue 12)


def test_resume_refuses_a_changed_config_and_restart_from_retrains(
    trained: Path, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = copy_run(trained, tmp_path / "run")
    saved_yaml = (out / "config.yaml").read_text()
    before = checkpoint.load(out / "fine.pt")
    changed = ("--coarse.epochs", "6", "--fine.optim.lr", "0.5")
    assert train_ornet.main(tiny_args(tiny_data, out, "--stage", "all", "--resume", *changed)) == 2
    err = capsys.readouterr().err
    assert "coarse.pt: coarse.epochs: 1 → 6" in err and "fine.optim.lr: 0.001 → 0.5" in err
    assert "--restart-from coarse" in err
    assert (out / "config.yaml").read_text() == saved_yaml  # nothing overwritten
    assert checkpoint.load(out / "fine.pt")["epoch"] == before["epoch"]
    # retrain stage 2 (and the later stages) with the new lr; stages 0 and 1 are kept
    restart = tiny_args(tiny_data, out, "--stage", "fine", "--restart-from", "fine", "--fine.optim.lr", "0.5")
    assert train_ornet.main(restart) == 0
    after = checkpoint.load(out / "fine.pt")
    assert after["complete"] and after["config"]["fine"]["optim"]["lr"] == 0.5
    assert any(not torch.equal(after["model"][k], before["model"][k]) for k in before["model"])
    assert torch.equal(checkpoint.load(out / "coarse.pt")["model"]["generator.map_head.0.weight"],
                       checkpoint.load(trained / "coarse.pt")["model"]["generator.map_head.0.weight"])  # fmt: skip
    resumed = tiny_args(tiny_data, out, "--stage", "fine", "--resume", "--fine.optim.lr", "0.5")
    assert train_ornet.main(resumed) == 0  # now consistent: skipped
    assert "[fine] finished earlier, skipped" in capsys.readouterr().out


def test_eval_compares_fine_pt_with_the_config_it_was_trained_with(
    trained: Path, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = copy_run(trained, tmp_path / "run")
    changed = ("--fine.loss_weights.area", "0.5")
    assert train_ornet.main(tiny_args(tiny_data, out, "--stage", "eval", *EXTRA_CAM, *changed)) == 0
    printed = capsys.readouterr().out
    assert (
        f"warning: {out / 'fine.pt'} was trained with other settings: fine.loss_weights.area: 0.02 → 0.5"
        in printed
    )
    assert "coarse.pt was trained" not in printed and "evaluator.pt was trained" not in printed


@pytest.mark.parametrize(("stage", "layers"), [("coarse", 13), ("fine", 5)])
def test_recalibrate_bn_changes_only_the_generators_running_statistics(
    trained: Path,
    tiny_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    stage: str,
    layers: int,
) -> None:
    """``<stage>.recalibrate_bn``: the same training (same weights, bit for bit), then the running mean and
    variance of the generator's BatchNorm layers in train mode (stage 2 without ``follow_parent_mode``: the
    map head, ``up2`` and ``up3``) recomputed; nothing else in the checkpoint moves."""
    plain, out = tmp_path / "plain", tmp_path / "recalibrated"
    copy_run(trained, plain)
    copy_run(trained, out)
    common = ["--stage", stage, f"--{stage}.epochs", "2", "--quirks.follow_parent_mode", "false"]
    assert train_ornet.main(tiny_args(tiny_data, plain, *common)) == 0
    args = tiny_args(tiny_data, out, *common, f"--{stage}.recalibrate_bn", "true")
    assert train_ornet.main(args) == 0
    printed = capsys.readouterr().out
    assert f"[{stage}] running statistics of {layers} generator BatchNorm layers recalibrated" in printed
    old, new = checkpoint.load(plain / f"{stage}.pt")["model"], checkpoint.load(out / f"{stage}.pt")["model"]
    moved = {k for k in old if not torch.equal(old[k], new[k])}
    assert {k.rsplit(".", 1)[0] for k in moved} == {
        k.rsplit(".", 1)[0] for k in old if k.startswith("generator.") and k.endswith("running_var")
    } - ({"generator.down1.1", "generator.down1.4", "generator.down2.1", "generator.down2.4",
          "generator.down3.1", "generator.down3.4", "generator.up1.block.1", "generator.up1.block.4"}
         if stage == "fine" else set())  # fmt: skip
    assert all(k.endswith(("running_mean", "running_var")) for k in moved)
    assert train_ornet.main([*args, "--resume"]) == 0  # finished: not trained or recalibrated again
    again = checkpoint.load(out / f"{stage}.pt")["model"]
    assert all(torch.equal(again[k], new[k]) for k in new)
    events = [json.loads(line)["event"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert events.count(f"{stage}/epoch") == 2 and events.count("coarse/eval_mode") == 1


def test_a_cam_checkpoint_without_its_config_is_refused(
    trained: Path, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CAM's output stride is read from the config saved in ``cam.pt``; none is an error, not a guess."""
    out = copy_run(trained, tmp_path / "run")
    payload = checkpoint.load(out / "cam.pt")
    del payload["config"]
    torch.save(payload, out / "cam.pt")
    assert train_ornet.main(tiny_args(tiny_data, out, "--stage", "eval", *EXTRA_CAM)) == 2
    assert f"{out / 'cam.pt'}: holds no saved config" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_an_output_folder_that_cannot_be_written_is_an_error(
    tiny_data: Path, tmp_path: Path, where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("not a folder\n")
    out = blocker if where == "a file" else blocker / "run"
    assert train_ornet.main(tiny_args(tiny_data, out, "--stage", "eval")) == 2
    err = capsys.readouterr().err
    assert f"error: could not write {out} (" in err and "Traceback" not in err
    assert blocker.read_text() == "not a folder\n"


@pytest.mark.parametrize("flag", ["1", "0"])
def test_zero_training_or_evaluation_images_stop_before_training(
    tiny_data: Path, tmp_path: Path, flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    lines = (data / "train_test_split.txt").read_text().split()
    (data / "train_test_split.txt").write_text(
        "".join(f"{image} {flag}\n" for image in lines[::2])  # every image in one split
    )
    out = tmp_path / "out"
    assert train_ornet.main(tiny_args(data, out, "--stage", "all")) == 2
    what = "evaluation" if flag == "1" else "training"
    assert f"the {what} split holds no image" in capsys.readouterr().err
    assert not list(out.glob("*.pt"))


def test_invalid_stage_two_settings_stop_before_stage_zero(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    bad = ("--fine.area.topk", "10", "--fine.erasing.erase_prob", "2.0", "--quirks.upsample", "linear")
    assert train_ornet.main(tiny_args(tiny_data, out, "--stage", "all", *bad)) == 2
    err = capsys.readouterr().err
    assert "fine.area.topk: got 10, expected in [0, 3]" in err and "erase_prob" in err and "linear" in err
    assert not list(out.glob("*.pt")) and not (out / "log.jsonl").exists()
    assert train_ornet.main(tiny_args(tiny_data, out, "--stage", "all", "--runtime.device", "gpu")) == 2
    assert "runtime.device must be auto, cpu, cuda or cuda:N, got 'gpu'" in capsys.readouterr().err


def test_outputs_are_replaced_atomically_and_orphans_removed(
    trained: Path, tiny_data: Path, tmp_path: Path
) -> None:
    out = copy_run(trained, tmp_path / "run")
    # a hard link sees in-place writes; an atomic replace leaves it with the old content
    for name in ("metrics.json", "config.yaml"):
        os.link(out / name, tmp_path / f"old-{name}")
        (out / name).write_text("stale\n")
    orphan = out / ".fine.pt.k3j2l1.tmp"
    orphan.write_bytes(b"half a checkpoint")
    assert train_ornet.main(tiny_args(tiny_data, out, "--stage", "eval")) == 0
    for name in ("metrics.json", "config.yaml"):
        assert (tmp_path / f"old-{name}").read_text() == "stale\n"
        assert (out / name).read_text() != "stale\n"
    assert not orphan.exists() and not list(out.glob(".*.tmp"))


def test_an_epoch_is_logged_once_when_a_save_is_interrupted(
    trained: Path, tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = _copy_prefix(trained, tmp_path / "run")
    real = checkpoint.atomic_save
    calls = []

    def killed_on_second_save(payload: dict, path: Path) -> None:
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed while writing epoch 2's checkpoint
        real(payload, path)

    monkeypatch.setattr(checkpoint, "atomic_save", killed_on_second_save)
    args = tiny_args(tiny_data, out, "--stage", "fine", "--fine.epochs", "3")
    with pytest.raises(KeyboardInterrupt):
        train_ornet.main(args)
    monkeypatch.setattr(checkpoint, "atomic_save", real)
    assert checkpoint.load(out / "fine.pt")["epoch"] == 1
    assert train_ornet.main([*args, "--resume"]) == 0
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["event"] == "fine/epoch"] == [1, 2, 3]


def test_torchrun_with_an_empty_evaluation_shard(trained: Path, tiny_data: Path, tmp_path: Path) -> None:
    out = copy_run(trained, tmp_path / "ddp")
    (out / "metrics.json").unlink()
    returncode, output = torchrun(tiny_args(tiny_data, out, "--stage", "eval", "--data.limit", "1"))
    assert returncode == 0, output[-3000:]  # rank 1 evaluated nothing and did not crash
    assert "Traceback" not in output and output.count("GT-known Loc") == 1  # rank 0 alone prints
    results = json.loads((out / "metrics.json").read_text())
    assert results["fine"]["ornet"]["n"] == 1 and results["fine"]["ornet"]["top1_loc"] is not None


# ----------------------------------------------------------------- reference defaults (issue 11)


@pytest.mark.parametrize(
    ("select", "steps_per_epoch"),
    [("last", 3), ("test_top1", 3), ("holdout", 2)],  # 18 images, batch 8, drop_last false; holdout: 16
)
def test_evaluator_epoch_selection_and_drop_last(
    tiny_data: Path, tmp_path: Path, select: str, steps_per_epoch: int
) -> None:
    out = tmp_path / select
    args = tiny_args(tiny_data, out, "--stage", "evaluator", "--evaluator.epochs", "2")
    assert train_ornet.main([*args, "--evaluator.select", select]) == 0
    state = checkpoint.load(out / "evaluator.pt")
    assert state["scheduler"]["last_epoch"] == 2 * steps_per_epoch  # the last, smaller batch is kept
    if select == "last":
        assert "selected_model" not in state
        return
    assert state["selected_epoch"] in (1, 2) and 0 <= state["selected_score"] <= 100
    scores = [
        json.loads(line)["select_score"]
        for line in (out / "log.jsonl").read_text().splitlines()
        if json.loads(line)["event"] == "evaluator/epoch"
    ]
    assert state["selected_score"] == max(scores) and scores.index(max(scores)) + 1 == state["selected_epoch"]
