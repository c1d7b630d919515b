"""lowcam.metrics.tm: the metrics as torchmetrics metrics, numerically the native ones (per batch, accumulated,
in a MetricCollection, merged, reloaded, over two gloo processes), and the Lightning snippet of the docs."""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from test_metrics_distributed import _data, _free_port
from torch import nn

pytest.importorskip("torchmetrics")
from torchmetrics import MetricCollection

from lowcam import metrics
from lowcam.metrics.tm import TMLocalizationAccuracy, TMMaxBoxAcc, TMPxAP

ROOT = Path(__file__).resolve().parent.parent
SPLITS = [(0, 5), (5, 6), (6, 12)]  # uneven batches over the 12 images of _data()


def _classes(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    logits = torch.from_numpy(np.random.default_rng(1).random((n, 7)))
    return logits, torch.arange(n) % 7


def _floats(values: dict[str, torch.Tensor]) -> dict[str, float]:
    assert all(
        isinstance(v, torch.Tensor) and v.dim() == 0 and v.dtype == torch.float64 for v in values.values()
    )
    return {k: float(v) for k, v in values.items()}


def _cases() -> list[tuple[str, Any, Any, Any]]:
    """(name, torchmetrics metric factory, native metric factory, batch -> update args and kwargs)."""
    maps, gts, scores, masks = _data()
    logits, targets = _classes(len(gts))

    def ornet(lo: int, hi: int) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (maps[lo:hi], gts[lo:hi]), {"logits": logits[lo:hi], "targets": targets[lo:hi]}

    def boxes(lo: int, hi: int) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (maps[lo:hi], gts[lo:hi]), {}

    def pixels(lo: int, hi: int) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (scores[lo:hi], masks[lo:hi]), {}

    return [
        ("ornet", lambda: TMLocalizationAccuracy(image_size=16), lambda: metrics.LocalizationAccuracy(image_size=16), ornet),
        ("maxboxacc", lambda: TMMaxBoxAcc(version=1), lambda: metrics.MaxBoxAcc(version=1), boxes),
        ("maxboxacc_v2", lambda: TMMaxBoxAcc(version=2), lambda: metrics.MaxBoxAcc(version=2), boxes),
        ("pxap", TMPxAP, metrics.PxAP, pixels),
    ]  # fmt: skip


CASES = _cases()


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_forward_per_batch_and_accumulated_equal_the_native_metric(case: tuple[str, Any, Any, Any]) -> None:
    _, make_tm, make_native, batch = case
    tm = make_tm()
    everything = make_native()
    for lo, hi in SPLITS:
        args, kwargs = batch(lo, hi)
        alone = make_native().update(*args, **kwargs).compute()  # this batch only
        assert _floats(tm(*args, **kwargs)) == alone.scalars()
        everything.update(*args, **kwargs)
    expected = everything.compute()
    assert _floats(tm.compute()) == expected.scalars()
    assert tm.result().to_dict() == expected.to_dict()
    json.dumps(tm.result().to_dict())
    # update() without forward counts the same
    again = make_tm()
    for lo, hi in SPLITS:
        args, kwargs = batch(lo, hi)
        assert again.update(*args, **kwargs) is None
    assert _floats(again.compute()) == expected.scalars()


def test_the_metric_describes_itself_as_torchmetrics_expects() -> None:
    for metric in (TMLocalizationAccuracy(), TMMaxBoxAcc(), TMPxAP()):
        assert isinstance(metric, nn.Module)
        assert metric.higher_is_better is True
        assert metric.is_differentiable is False
        assert metric.full_state_update is False
    assert sorted(TMMaxBoxAcc().metric_state) == ["correct", "n", "n_classes", "top1", "top5"]
    assert sorted(TMPxAP().metric_state) == ["below", "hist", "n"]
    assert "version=1" in repr(TMMaxBoxAcc(version=1))
    maps, gts, _, _ = _data()
    metric = TMMaxBoxAcc()
    metric.update(maps[:5], gts[:5])
    for copied in (pickle.loads(pickle.dumps(metric)), metric.clone()):  # DDP spawn pickles, collections copy
        copied.update(maps[5:], gts[5:])
        assert _floats(copied.compute()) == metrics.MaxBoxAcc().update(maps, gts).compute().scalars()
    assert int(metric.n) == 5


def test_settings_are_checked_by_the_native_metric() -> None:
    pairs = [
        (lambda: TMMaxBoxAcc(version=3), lambda: metrics.MaxBoxAcc(version=3)),  # type: ignore[arg-type]
        (
            lambda: TMMaxBoxAcc(iou_thresholds=(0.5, 0.5)),
            lambda: metrics.MaxBoxAcc(iou_thresholds=(0.5, 0.5)),
        ),
        (lambda: TMPxAP(thresholds=[0.5, 0.2]), lambda: metrics.PxAP(thresholds=[0.5, 0.2])),
        (lambda: TMLocalizationAccuracy(image_size=0), lambda: metrics.LocalizationAccuracy(image_size=0)),
    ]
    for make_tm, make_native in pairs:
        with pytest.raises(ValueError) as native_error:
            make_native()
        with pytest.raises(ValueError, match=re.escape(str(native_error.value))):
            make_tm()
    maps, gts, _, _ = _data()
    with pytest.raises(ValueError, match="gt_boxes has 1 entries for a batch of 2"):
        TMMaxBoxAcc().update(maps[:2], gts[:1])
    with pytest.raises(ValueError, match=r"outside \[0, 1\]|\[0, 1\]"):
        TMMaxBoxAcc().update(maps[:2] + 2.0, gts[:2])


def test_mixing_updates_with_and_without_logits_is_an_error() -> None:
    maps, gts, _, _ = _data()
    logits, targets = _classes(len(gts))
    metric = TMLocalizationAccuracy(image_size=16)
    metric.update(maps[:2], gts[:2], logits=logits[:2], targets=targets[:2])
    with pytest.raises(ValueError, match="give them to every update"):
        metric.update(maps[2:4], gts[2:4])
    metric.reset()  # forgets that logits were given
    metric.update(maps[2:4], gts[2:4])
    assert "top1_loc" not in metric.compute()
    # over forward calls (each counted alone first), compute() reports it from the counts
    metric = TMLocalizationAccuracy(image_size=16)
    metric(maps[:2], gts[:2], logits=logits[:2], targets=targets[:2])
    metric(maps[2:4], gts[2:4])
    with pytest.raises(ValueError, match="logits and targets were given for 2 of 4 images"):
        metric.compute()


def test_metric_collection_with_compute_groups_equals_the_native_metrics() -> None:
    maps, gts, _, _ = _data()
    collection = MetricCollection(
        {"v2": TMMaxBoxAcc(version=2), "v2_copy": TMMaxBoxAcc(version=2), "v1": TMMaxBoxAcc(version=1)},
        compute_groups=True,
    )
    for lo, hi in SPLITS:
        collection.update(maps[lo:hi], gts[lo:hi])
    assert sorted(sorted(g) for g in collection.compute_groups.values()) == [["v1"], ["v2", "v2_copy"]]
    out = _floats(collection.compute())
    for name, version in (("v2", 2), ("v2_copy", 2), ("v1", 1)):
        native = metrics.MaxBoxAcc(version=version).update(maps, gts).compute().scalars()
        assert {k: out[f"{name}_{k}"] for k in native} == native
    assert len(out) == 8 + 8 + 4


def test_merge_state_equals_one_metric_over_all_the_data() -> None:
    maps, gts, scores, masks = _data()
    first, second = TMMaxBoxAcc(), TMMaxBoxAcc()
    first.update(maps[:7], gts[:7])
    second.update(maps[7:], gts[7:])
    first.merge_state(second)
    expected = metrics.MaxBoxAcc().update(maps, gts).compute()
    assert _floats(first.compute()) == expected.scalars()
    px = TMPxAP()
    px.update(scores[:3], masks[:3])
    px.merge_state({"hist": TMPxAP().hist, "below": torch.zeros(2, dtype=torch.int64), "n": torch.tensor(0)})
    other = TMPxAP()
    other.update(scores[3:], masks[3:])
    px.merge_state(other.metric_state)
    assert _floats(px.compute()) == metrics.PxAP().update(scores, masks).compute().scalars()


class _Model(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)
        self.v2 = TMMaxBoxAcc()
        self.loc = TMLocalizationAccuracy(image_size=16)


def test_counts_move_with_the_model_and_live_in_its_state_dict() -> None:
    maps, gts, _, _ = _data()
    logits, targets = _classes(len(gts))
    model = _Model()
    model.v2.update(maps[:7], gts[:7])
    model.loc.update(maps, gts, logits=logits, targets=targets)
    model.to(torch.float64).to("cpu")  # counts stay int64
    assert model.v2.correct.dtype == torch.int64 and model.v2.device.type == "cpu"
    state = model.state_dict()
    assert {"v2.correct", "v2.n", "loc.top1", "loc.n_classes"} <= set(state)
    reloaded = _Model()
    reloaded.load_state_dict(state)
    assert torch.equal(reloaded.v2.correct, model.v2.correct)
    reloaded.v2.update(maps[7:], gts[7:])  # resume
    expected = metrics.MaxBoxAcc().update(maps, gts).compute().scalars()
    assert _floats(reloaded.v2.compute()) == expected
    native_loc = metrics.LocalizationAccuracy(image_size=16).update(maps, gts, logits=logits, targets=targets)
    with pytest.warns(UserWarning, match="called before the ``update``"):  # torchmetrics counts updates
        assert _floats(reloaded.loc.compute()) == native_loc.compute().scalars()
    model.v2.persistent(False)
    assert "v2.correct" not in model.state_dict()
    if torch.device("meta").type == "meta":  # .to() moves the states (the meta device needs no hardware)
        moved = TMMaxBoxAcc().to("meta")
        assert moved.correct.device.type == "meta"


def test_on_the_device_of_the_model_and_of_the_inputs(device: str) -> None:
    """A metric moved with its model counts inputs on that device; inputs on another device move the counts
    there, as the native metric does. Either way the numbers are the native ones on the CPU."""
    maps, gts, scores, masks = _data()
    expected = metrics.MaxBoxAcc().update(maps, gts).compute().scalars()
    model = _Model().to(device)
    assert model.v2.correct.device.type == device
    model.v2.update(maps[:5].to(device), gts[:5])
    model.v2.update(maps[5:].to(device), [g.to(device) for g in gts[5:]])
    assert model.v2.correct.device.type == device
    assert _floats(model.v2.compute()) == expected
    assert model.v2.compute()["value"].device.type == device
    stays = TMPxAP()  # on the CPU; the inputs are on the device
    stays.update(scores[:4].to(device), masks[:4].to(device))
    stays.update(scores[4:].to(device), masks[4:])
    assert stays.hist.device.type == device
    assert _floats(stays.compute()) == metrics.PxAP().update(scores, masks).compute().scalars()


def test_reset_forgets_every_image() -> None:
    maps, gts, scores, masks = _data()
    metric = TMMaxBoxAcc(version=1)
    metric.update(maps[:6], gts[:6])
    metric.reset()
    assert int(metric.n) == 0 and int(metric.correct.sum()) == 0
    metric.update(maps[6:], gts[6:])
    assert _floats(metric.compute()) == metrics.max_box_acc(maps[6:], gts[6:], version=1).scalars()
    px = TMPxAP()
    px.update(scores, masks)
    px.reset()
    with pytest.raises(RuntimeError, match="no image was evaluated"), pytest.warns(UserWarning):
        px.compute()


def test_all_invalid_batch_counts_nothing_and_forward_raises_like_compute() -> None:
    maps, gts, _, _ = _data()
    metric = TMMaxBoxAcc()
    metric.update(maps[:3], gts[:3], valid=torch.zeros(3, dtype=torch.bool))
    assert int(metric.n) == 0
    with pytest.raises(RuntimeError, match="no image was evaluated"):
        metric(maps[:3], gts[:3], valid=torch.zeros(3, dtype=torch.bool))


def test_plot_draws_the_curve_or_the_values() -> None:
    pytest.importorskip("matplotlib")
    maps, gts, _, _ = _data()
    metric = TMMaxBoxAcc()
    values = [metric(maps[lo:hi], gts[lo:hi]) for lo, hi in SPLITS]
    fig, ax = metric.plot()
    assert ax.figure is fig and len(ax.lines) == 6  # 3 curves and 3 chosen thresholds
    fig, ax = metric.plot([{"value": v["value"]} for v in values])
    assert fig is not None


def test_lowcam_never_imports_torchmetrics_and_the_missing_extra_is_named() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = "import sys, lowcam, lowcam.metrics; print('torchmetrics' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    code = "import sys; sys.modules['torchmetrics'] = None; import lowcam.metrics.tm"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode != 0
    assert 'pip install "lowcam[torchmetrics]"' in out.stderr


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        maps, gts, scores, masks = _data()
        logits, targets = _classes(len(gts))
        mine = slice(rank, None, world)
        v2 = TMMaxBoxAcc()
        v2.update(maps[mine], gts[mine])
        px = TMPxAP()
        px.update(scores[mine], masks[mine])
        ornet = TMLocalizationAccuracy(image_size=16)  # rank 1 sees no image
        if rank == 0:
            ornet.update(maps, gts, logits=logits, targets=targets)
        local_n = int(v2.n)
        out = {
            "v2": _floats(v2.compute()),
            "v2_counts": v2.result().to_dict()["counts"],
            "px": _floats(px.compute()),
            "ornet": _floats(ornet.compute()),
            "local_n": local_n,
            "local_after": int(v2.n),  # compute() leaves the local counts as they were
        }
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump(out, f)
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_equal_one_process() -> None:
    maps, gts, scores, masks = _data()
    logits, targets = _classes(len(gts))
    single = metrics.MaxBoxAcc().update(maps, gts).compute()
    single_px = metrics.PxAP().update(scores, masks).compute().scalars()
    single_ornet = (
        metrics.LocalizationAccuracy(image_size=16)
        .update(maps, gts, logits=logits, targets=targets)
        .compute()
    )
    with tempfile.TemporaryDirectory() as out_dir:
        mp.start_processes(
            _worker, args=(2, _free_port(), out_dir), nprocs=2, join=True, start_method="spawn"
        )
        results = [json.loads(Path(out_dir, f"rank{r}.json").read_text()) for r in range(2)]
    for res in results:
        assert res["v2"] == single.scalars()
        assert res["v2_counts"] == single.to_dict()["counts"]
        assert res["px"] == single_px
        assert res["ornet"] == single_ornet.scalars()
        assert res["local_n"] == res["local_after"] == len(gts) // 2
    assert "top1_loc" in results[1]["ornet"]


def _lightning() -> Any:
    try:
        import lightning.pytorch as pl
    except ImportError:
        pl = pytest.importorskip(
            "pytorch_lightning", reason="neither lightning nor pytorch_lightning installs here"
        )
    return pl


def test_the_docs_lightning_module_logs_the_native_values(tmp_path: Path) -> None:
    pl = _lightning()
    page = ROOT / "docs" / "torchmetrics.md"
    if not page.is_file():
        pytest.skip("docs/ is not shipped in the sdist")
    blocks = [
        b for b in re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S) if "LightningModule" in b
    ]
    assert len(blocks) == 1
    namespace: dict[str, Any] = {"__name__": "docs_torchmetrics"}
    exec(compile(blocks[0], str(page), "exec"), namespace)

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 1, 3, stride=4, padding=1), nn.Flatten(0, 1)
    )  # (B, 3, 28, 28) -> (B, 7, 7)
    images = torch.rand(6, 3, 28, 28)
    boxes = (
        torch.tensor([[20, 30, 120, 150], [0, 0, 223, 223], [60, 60, 200, 100]]).repeat(2, 1).view(6, 1, 4)
    )
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, boxes), batch_size=4)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    lit = namespace["LitWSOL"](model)
    with torch.no_grad():
        expected = metrics.max_box_acc(metrics.prepare_scoremap(model(images), size=224), boxes).scalars()
    for _ in range(2):  # the second epoch starts from the reset of the first one's end
        (logged,) = trainer.validate(lit, loader, verbose=False)
        assert {k: logged[f"val/maxboxacc_v2/{k}"] for k in expected} == pytest.approx(expected, rel=1e-6)
    assert expected["n"] == 6.0 and 0.0 < expected["value"] < 100.0


def test_a_state_saved_with_other_settings_is_refused() -> None:
    # before: the counts of MaxBoxAccV2 loaded into a MaxBoxAcc (row 0, delta 0.3, read as delta 0.5: 100 %),
    # and other thresholds gave a raw IndexError
    maps, gts, _, _ = _data()
    v2 = TMMaxBoxAcc(version=2)
    v2.update(maps, gts)
    state = v2.state_dict()
    assert {"config/protocol", "config/thresholds", "correct", "n"} <= set(state)
    with pytest.raises(ValueError, match="other settings"):
        TMMaxBoxAcc(version=1).load_state_dict(state)
    with pytest.raises(ValueError, match="other settings|shape"):
        TMMaxBoxAcc(version=2, thresholds=[0.1, 0.5]).load_state_dict(state)
    bad = dict(state)
    bad["n"] = torch.tensor(-1)
    with pytest.raises(ValueError, match="negative"):
        TMMaxBoxAcc(version=2).load_state_dict(bad)
    same = TMMaxBoxAcc(version=2)
    same.load_state_dict(state)
    assert _floats(same.compute()) == metrics.MaxBoxAcc(version=2).update(maps, gts).compute().scalars()
