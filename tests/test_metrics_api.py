"""The metric objects as torchmetrics users expect them: state dicts, devices, valid masks, results, plots."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from metrics_reference import stress_gt, stress_maps

from lowcam import metrics


def _data(n: int = 12, size: int = 16) -> tuple[torch.Tensor, list[torch.Tensor]]:
    rng = np.random.default_rng(0)
    maps = np.stack(stress_maps(rng, size, size))[:n]
    gts = [torch.from_numpy(g) for g in stress_gt(rng, size, size, len(maps))]
    return torch.from_numpy(maps), gts


@pytest.mark.parametrize("protocol", ["ornet", "maxboxacc", "maxboxacc_v2"])
def test_state_dict_round_trip_resumes_the_count(protocol: str) -> None:
    maps, gts = _data()
    kwargs = {"image_size": 16} if protocol == "ornet" else {}
    whole = metrics.BoxAccuracy(protocol, **kwargs).update(maps, gts).compute()  # type: ignore[arg-type]
    first = metrics.BoxAccuracy(protocol, **kwargs).update(maps[:5], gts[:5])  # type: ignore[arg-type]
    saved = first.state_dict()
    assert all(v.dtype == torch.int64 for k, v in saved.items() if not k.startswith("config/"))
    resumed = metrics.BoxAccuracy(protocol, **kwargs)  # type: ignore[arg-type]
    resumed.load_state_dict(saved)
    resumed.update(maps[5:], gts[5:])
    out = resumed.compute()
    assert out.scalars() == whole.scalars()
    assert all(torch.equal(out.counts[d], whole.counts[d]) for d in whole.iou_thresholds)
    saved["n"] += 100  # the saved dict is a copy
    assert first.state_dict()["n"] == 5


def test_load_state_dict_checks_names_and_shapes() -> None:
    v2 = metrics.BoxAccuracy("maxboxacc_v2")
    one_row = {**v2.state_dict(), "correct": torch.zeros(1, 1000, dtype=torch.int64)}
    with pytest.raises(
        ValueError, match=r"state_dict\['correct'\] has shape \(1, 1000\), expected \(3, 1000\)"
    ):
        v2.load_state_dict(one_row)
    with pytest.raises(ValueError, match=r"missing keys \['n'\], unexpected keys \['extra'\]"):
        v2.load_state_dict(
            {**{k: v for k, v in v2.state_dict().items() if k != "n"}, "extra": torch.zeros(1)}
        )
    px = metrics.PxAP()
    px_state = px.state_dict()
    px_state["hist"] = px_state["hist"].double()
    with pytest.raises(TypeError, match=r"state_dict\['hist'\] must be an integer tensor"):
        px.load_state_dict(px_state)


def test_pxap_state_dict_round_trip() -> None:
    rng = np.random.default_rng(4)
    maps = torch.from_numpy(rng.random((4, 10, 10)))
    masks = torch.from_numpy(rng.random((4, 10, 10)) < 0.3)
    whole = metrics.PxAP().update(maps, masks).compute()
    part = metrics.PxAP().update(maps[:1], masks[:1])
    resumed = metrics.PxAP()
    resumed.load_state_dict(part.state_dict())
    assert resumed.update(maps[1:], masks[1:]).compute().value == whole.value


def test_to_moves_the_state_and_returns_self() -> None:
    metric = metrics.BoxAccuracy("maxboxacc")
    assert metric.to("cpu") is metric and metric.device == torch.device("cpu")
    assert all(v.device.type == "cpu" for v in metric.state_dict().values())
    if torch.cuda.is_available():
        metric.to("cuda")
        assert all(v.device.type == "cuda" for v in metric.state_dict().values())
        metric.reset()
        assert metric.device.type == "cuda"


@pytest.mark.parametrize("protocol", ["ornet", "maxboxacc_v2"])
def test_valid_mask_leaves_out_padded_duplicates(protocol: str) -> None:
    maps, gts = _data()
    kwargs = {"image_size": 16} if protocol == "ornet" else {}
    logits = torch.from_numpy(np.random.default_rng(3).random((12, 6)))
    targets = torch.arange(12) % 6
    extra = {"logits": logits, "targets": targets} if protocol == "ornet" else {}
    want = metrics.BoxAccuracy(protocol, **kwargs).update(maps, gts, **extra).compute()  # type: ignore[arg-type]
    # the sampler pads with images 0 and 1 again: marked invalid, they are not counted
    idx = [*range(12), 0, 1]
    valid = torch.tensor([True] * 12 + [False, False])
    extra_p = {"logits": logits[idx], "targets": targets[idx]} if protocol == "ornet" else {}
    metric = metrics.BoxAccuracy(protocol, **kwargs)  # type: ignore[arg-type]
    metric.update(maps[idx], [gts[i] for i in idx], valid=valid, **extra_p)  # type: ignore[arg-type]
    assert metric.compute().scalars() == want.scalars()
    with pytest.raises(ValueError, match=r"valid must be a bool tensor of shape \(14,\)"):
        metric.update(maps[idx], [gts[i] for i in idx], valid=torch.ones(14), **extra_p)  # type: ignore[arg-type]


def test_pxap_valid_mask() -> None:
    rng = np.random.default_rng(6)
    maps = torch.from_numpy(rng.random((3, 10, 10)))
    masks = torch.from_numpy(rng.random((3, 10, 10)) < 0.3)
    want = metrics.PxAP().update(maps[:2], masks[:2]).compute()
    got = metrics.PxAP().update(maps, masks, valid=torch.tensor([True, True, False])).compute()
    assert got.value == want.value and got.n == 2


def test_result_attributes_scalars_and_to_dict() -> None:
    maps, gts = _data()
    v2 = metrics.BoxAccuracy("maxboxacc_v2").update(maps, gts).compute()
    assert isinstance(v2, metrics.BoxAccuracyResult) and not isinstance(v2, dict)
    assert v2.curve.shape == (3, 1000) and v2.thresholds.shape == (1000,)
    for i, d in enumerate((0.3, 0.5, 0.7)):
        assert v2.acc[d] == float(v2.curve[i].max()) == v2.to_dict()["acc"][f"{d:g}"]
        assert v2.threshold[d] == float(v2.thresholds[v2.curve[i].argmax()])
        assert torch.equal(v2.curve[i], v2.counts[d].double() * 100 / v2.n)
    flat = v2.scalars()
    assert list(flat) == ["value", "n", "acc@0.3", "acc@0.5", "acc@0.7", "threshold@0.3", "threshold@0.5",
                          "threshold@0.7"]  # fmt: skip
    assert all(type(v) is float for v in flat.values())
    assert flat["value"] == v2.value and v2.gt_known is None
    plain = json.loads(json.dumps(v2.to_dict()))
    assert plain["value"] == v2.value and plain["n"] == v2.n and len(plain["curve"]) == 3
    assert set(plain) == {"protocol", "value", "n", "acc", "threshold", "counts", "thresholds", "iou_thresholds",
                          "curve"}  # fmt: skip
    logits = torch.from_numpy(np.random.default_rng(3).random((12, 6)))
    ornet = metrics.BoxAccuracy("ornet", image_size=16)
    ornet.update(maps, gts, logits=logits, targets=torch.arange(12) % 6)
    out = ornet.compute()
    assert set(out.scalars(prefix="val/")) == {
        "val/value", "val/n", "val/acc@0.5", "val/threshold@0.5", "val/gt_known", "val/top1_loc", "val/top5_loc"
    }  # fmt: skip
    assert out.gt_known == out.to_dict()["gt_known"] == out.value
    assert out.top1_loc == out.to_dict()["top1_loc"] is not None
    json.dumps(out.to_dict())
    no_classes = metrics.BoxAccuracy("ornet", image_size=16).update(maps, gts).compute()
    assert no_classes.top1_loc is None and "top1_loc" not in no_classes.scalars()


def test_pxap_result() -> None:
    maps = torch.tensor([[[0.9, 0.8], [0.2, 0.1]]], dtype=torch.float64)
    out = metrics.PxAP().update(maps, torch.tensor([[[1, 1], [0, 0]]])).compute()
    assert isinstance(out, metrics.PxAPResult) and out.value == out.to_dict()["value"] == 100.0
    assert out.scalars(prefix="px/") == {"px/value": 100.0, "px/n": 1.0}
    assert out.to_dict()["precision"] == out.precision.tolist() and out.recall.shape == (1002,)
    json.dumps(out.to_dict())


def test_plot_writes_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    maps, gts = _data()
    v2 = metrics.BoxAccuracy("maxboxacc_v2").update(maps, gts).compute()
    ax = v2.plot()
    assert len(ax.get_lines()) == 6  # a curve and its chosen point per δ
    ax.figure.savefig(tmp_path / "acc.png")
    rng = np.random.default_rng(4)
    px = metrics.PxAP().update(
        torch.from_numpy(rng.random((2, 8, 8))), torch.from_numpy(rng.random((2, 8, 8)) < 0.5)
    )
    px.compute().plot().figure.savefig(tmp_path / "pr.png")
    for name in ("acc.png", "pr.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_threads_are_restored_and_compute_does_not_mutate() -> None:
    maps, gts = _data()
    before = torch.get_num_threads()
    metric = metrics.BoxAccuracy("maxboxacc_v2")
    metric.update(maps, gts)
    assert torch.get_num_threads() == before
    first = metric.compute()
    metric.sync()  # a no-op without torch.distributed
    assert metric.compute().scalars() == first.scalars()
    with pytest.raises(ValueError, match="cpu_threads must be a positive int or None"):
        metrics.BoxAccuracy(cpu_threads=0)


def test_removed_protocol_alias_is_gone() -> None:
    with pytest.raises(AttributeError):
        metrics.Protocol  # type: ignore[attr-defined]  # noqa: B018
    with pytest.raises(AttributeError):
        metrics.NoSuchName  # type: ignore[attr-defined]  # noqa: B018


@pytest.mark.parametrize("shuffle", [False, True])
def test_documented_valid_mask_marks_exactly_the_sampler_padding(shuffle: bool) -> None:
    """The docs/metrics.md recipe: position ``rank + j * world_size`` is padding iff ``>= len(dataset)``."""
    from torch.utils.data import DistributedSampler

    dataset = list(range(10))
    world = 4  # 10 samples over 4 ranks: 12 slots, 2 padded
    counted: list[int] = []
    for rank in range(world):
        sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=shuffle, seed=3)
        indices = list(sampler)
        position = rank + torch.arange(len(indices)) * world
        valid = position < len(dataset)
        counted += [i for i, v in zip(indices, valid.tolist()) if v]
    assert sorted(counted) == dataset


def test_transposed_maps_in_ornet_and_pxap() -> None:
    rng = np.random.default_rng(8)
    maps = torch.from_numpy(rng.random((3, 9, 9)))
    gts = [torch.tensor([[1.0, 2.0, 7.0, 8.0]])] * 3
    a = metrics.BoxAccuracy("ornet", image_size=9).update(maps.mT, gts).compute()
    b = metrics.BoxAccuracy("ornet", image_size=9).update(maps.mT.contiguous(), gts).compute()
    assert a.scalars() == b.scalars() and torch.equal(a.curve, b.curve)
    masks = torch.from_numpy(rng.random((3, 9, 9)) < 0.4)
    p = metrics.PxAP().update(maps.mT, masks).compute()
    q = metrics.PxAP().update(maps.mT.contiguous(), masks).compute()
    assert p.value == q.value


def test_bench_threads_under_load_smoke(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    args = ["--threads-under-load", "--n", "2", "--before-n", "1", "--quick", "--out", str(tmp_path)]
    env = {"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}  # torch's own default thread count
    default = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
        env=env, check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    threads = int(default.stdout)  # not this process's: OMP_NUM_THREADS may be set here
    subprocess.run(
        [sys.executable, str(root / "benchmarks" / "bench_metrics.py"), *args],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        timeout=600,
    )
    rows = json.loads((tmp_path / "metrics_threads.json").read_text())["rows"]
    assert [(r["competing_process"], r["torch_threads"]) for r in rows] == [
        (False, threads),
        (False, threads),
        (False, 1),
        (True, threads),
        (True, threads),
        (True, 1),
    ]
    assert all(r["median_s"] > 0 for r in rows)
    assert "vs one thread" in (tmp_path / "metrics_threads.md").read_text()
