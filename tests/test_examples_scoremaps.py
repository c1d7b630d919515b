"""``examples/train_ornet.py``'s score maps on disk (``eval.scoremap_root``): the wsolevaluation layout, a folder
replaced as a unit, a killed evaluation or a refused root, and one folder from two torchrun processes."""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import pytest
import torch
from _pipeline import EXAMPLES, copy_run, free_port, tiny_args, torchrun

sys.path.insert(0, str(EXAMPLES))  # before the examples' modules (_pipeline does it too)

import train_ornet

pytestmark = pytest.mark.slow


def test_scoremaps_on_disk_in_the_wsoleval_layout(trained: Path, tiny_data: Path, tmp_path: Path) -> None:
    import numpy as np

    from lowcam import metrics
    from lowcam.data import SampleDataset, collate_samples, read_cub, wsol_test_transform

    out = copy_run(trained, tmp_path / "run")
    root = tmp_path / "scoremaps"
    assert (
        train_ornet.main(tiny_args(tiny_data, out, "--stage", "eval", "--eval.scoremap_root", str(root))) == 0
    )
    test = read_cub(tiny_data, "test")
    maps = []
    for sample in test.samples:
        assert "/" in sample.image_id
        array = np.load(root / f"{sample.image_id}.npy")  # <scoremap_root>/<image_id>.npy
        assert array.shape == (32, 32) and array.dtype == np.float32  # data.score_size 32 in the tiny run
        assert array.min() >= 0 and array.max() <= 1
        maps.append(torch.from_numpy(array))
    # the files alone reproduce the pipeline's MaxBoxAccV2 of the stage-2 map
    dataset = SampleDataset(test.samples, wsol_test_transform(32, (0.5,) * 3, (0.5,) * 3), wsol_score_size=32)
    _, _, boxes, _ = collate_samples([dataset[k] for k in range(len(dataset))])
    v2 = metrics.BoxAccuracy("maxboxacc_v2")
    v2.update(torch.stack(maps).double(), boxes)
    expected = json.loads((out / "metrics.json").read_text())["fine"]["maxboxacc_v2"]["value"]
    assert v2.compute().value == pytest.approx(expected)


def _scoremap_folder(root: Path) -> dict[str, bytes]:
    """Every file under a score-map folder (manifest included), by relative path."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _write_cub_metadata(data: Path, target: Path) -> Path:
    """wsolevaluation metadata (``<target>/CUB/test/*.txt``) of the tiny set's test split."""
    from PIL import Image

    from lowcam.data import read_cub

    meta = target / "CUB" / "test"
    meta.mkdir(parents=True)
    samples = read_cub(data, "test").samples
    ids, labels, sizes, boxes = [], [], [], []
    for sample in samples:
        with Image.open(sample.path) as image:
            width, height = image.size
        ids.append(f"{sample.image_id}\n")
        labels.append(f"{sample.image_id},{sample.label}\n")
        sizes.append(f"{sample.image_id},{width},{height}\n")
        boxes.extend(f"{sample.image_id},{','.join(str(round(v)) for v in box)}\n" for box in sample.boxes)
    for name, lines in (("image_ids", ids), ("class_labels", labels), ("image_sizes", sizes)):
        (meta / f"{name}.txt").write_text("".join(lines))
    (meta / "localization.txt").write_text("".join(boxes))
    return target


def test_a_killed_evaluation_keeps_the_previous_scoremap_folder(
    trained: Path,
    tiny_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from lowcam import metrics
    from lowcam.metrics.evaluate import main as lowcam_eval

    out = copy_run(trained, tmp_path / "run")
    root = tmp_path / "scoremaps"
    args = ("--stage", "eval", "--eval.pictures", "0", "--eval.scoremap_root", str(root))
    assert train_ornet.main(tiny_args(tiny_data, out, *args)) == 0  # stage 2's maps
    before = _scoremap_folder(root)
    manifest = json.loads(before.pop("lowcam_scoremaps.json"))
    assert manifest["count"] == 12 and sorted(manifest["image_ids"]) == manifest["image_ids"]
    assert sorted(f"{i}.npy" for i in manifest["image_ids"]) == sorted(before)

    prepare, calls = metrics.prepare_scoremap, []

    def killed(*a: object, **k: object) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 9:  # batch 3 of 3, 4 maps per batch: two batches of maps already written
            raise RuntimeError("killed mid-way")
        return prepare(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(metrics, "prepare_scoremap", killed)
    with pytest.raises(RuntimeError, match="killed mid-way"):
        train_ornet.main(tiny_args(tiny_data, out, *args, "--eval.scoremap_source", "coarse"))
    monkeypatch.undo()
    after = _scoremap_folder(root)
    assert after.pop("lowcam_scoremaps.json") and after == before  # no map of the other model in it
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("scoremaps")] == ["scoremaps"]
    assert not list(root.rglob("*.tmp"))

    assert train_ornet.main(tiny_args(tiny_data, out, *args, "--eval.scoremap_source", "coarse")) == 0
    coarse = _scoremap_folder(root)
    assert json.loads(coarse.pop("lowcam_scoremaps.json")) == manifest
    assert set(coarse) == set(before) and coarse != before  # the whole folder is stage 1's now
    # lowcam-eval reads the new folder and checks it against its manifest
    meta = _write_cub_metadata(tiny_data, tmp_path / "metadata")
    cli = ["--scoremap_root", str(root), "--metadata_root", str(meta), "--dataset_name", "CUB"]
    cli += ["--split", "test", "--prepare_scoremaps", "--no_progress", "--json"]
    capsys.readouterr()
    assert lowcam_eval(cli) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 12
    listed = {**manifest, "image_ids": manifest["image_ids"][1:], "count": 11}
    (root / "lowcam_scoremaps.json").write_text(json.dumps(listed))
    assert lowcam_eval(cli) == 1  # an image the manifest does not list is refused
    assert manifest["image_ids"][0] in capsys.readouterr().err


def test_a_scoremap_root_holding_other_files_is_an_error(
    trained: Path, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = copy_run(trained, tmp_path / "run")
    root = tmp_path / "mine"
    root.mkdir()
    (root / "notes.txt").write_text("keep me")
    args = tiny_args(tiny_data, out, "--stage", "eval", "--eval.scoremap_root", str(root))
    assert train_ornet.main(args) == 2
    assert "could not write eval.scoremap_root" in capsys.readouterr().err
    assert [p.name for p in root.iterdir()] == ["notes.txt"]


def test_torchrun_stops_every_rank_when_rank_0_refuses_the_scoremap_root(
    trained: Path, tiny_data: Path, tmp_path: Path
) -> None:
    """Rank 0 alone opens ``eval.scoremap_root``; when it refuses the root, rank 1 stops too, with the same
    message, instead of meeting a dead peer in the next collective (gloo: a connection error and a
    traceback; NCCL: a wait until its timeout)."""
    out = copy_run(trained, tmp_path / "ddp")
    root = tmp_path / "mine"
    root.mkdir()
    (root / "notes.txt").write_text("keep me")
    returncode, output = torchrun(
        tiny_args(tiny_data, out, "--stage", "eval", "--eval.scoremap_root", str(root))
    )
    assert returncode != 0
    assert output.count("could not write eval.scoremap_root") >= 2, output[-3000:]  # both ranks say why
    assert "Connection closed" not in output and "RuntimeError" not in output, output[-3000:]  # no crash
    assert [p.name for p in root.iterdir()] == ["notes.txt"]


def _evaluate_on_rank(rank: int, args: list[str], port: int, folder: str) -> None:
    """One gloo process of :func:`test_every_rank_returns_the_same_metrics`."""
    os.environ.update(
        {"RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank), "MASTER_ADDR": "127.0.0.1",
         "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
    )  # fmt: skip
    from ornet.config import load_config
    from ornet.distributed import setup, teardown
    from ornet.evaluation import evaluate
    from ornet.logs import RunLog
    from ornet.runtime import Context, load_data

    parsed = train_ornet.parse_args(args)
    cfg = load_config(parsed.config, train_ornet.overrides_from(parsed))
    info = setup("cpu")
    try:
        train, test = load_data(cfg)
        results = evaluate(Context(cfg, info, train, test, RunLog(cfg.output_dir, enabled=False)))
        Path(folder, f"rank{rank}.json").write_text(json.dumps(results, sort_keys=True))
    finally:
        teardown()


def test_every_rank_returns_the_same_metrics(trained: Path, tiny_data: Path, tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    out = copy_run(trained, tmp_path / "run")
    args = tiny_args(tiny_data, out, "--stage", "eval", "--data.limit", "1", "--eval.pictures", "0")
    mp.spawn(_evaluate_on_rank, args=(args, free_port(), str(tmp_path)), nprocs=2, join=True)
    rank0, rank1 = ((tmp_path / f"rank{r}.json").read_text() for r in (0, 1))
    assert rank0 == rank1  # rank 1's shard was empty; before, it reported top1_loc None
    assert json.loads(rank1)["fine"]["ornet"]["top1_loc"] is not None


def test_two_processes_write_one_scoremap_folder(trained: Path, tiny_data: Path, tmp_path: Path) -> None:
    import numpy as np
    import torch.multiprocessing as mp

    out = copy_run(trained, tmp_path / "run")
    # 5 images, batches of 2: rank 0 evaluates 3 images (2 batches), rank 1 2 images (1 batch)
    shared = ("--stage", "eval", "--data.limit", "5", "--eval.batch_size", "2", "--eval.pictures", "0")
    args = tiny_args(tiny_data, out, *shared, "--eval.scoremap_root", str(tmp_path / "ddp"))
    mp.spawn(_evaluate_on_rank, args=(args, free_port(), str(tmp_path)), nprocs=2, join=True)
    assert (
        train_ornet.main(tiny_args(tiny_data, out, *shared, "--eval.scoremap_root", str(tmp_path / "one")))
        == 0
    )
    ddp, one = _scoremap_folder(tmp_path / "ddp"), _scoremap_folder(tmp_path / "one")
    assert json.loads(ddp.pop("lowcam_scoremaps.json"))["count"] == 5
    assert ddp.keys() == one.keys() - {"lowcam_scoremaps.json"}
    for name, content in ddp.items():
        np.testing.assert_allclose(np.load(io.BytesIO(content)), np.load(io.BytesIO(one[name])), atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("ddp", "one"))) == ["ddp", "one"]
