"""compute() / sync() over two gloo processes on the CPU give the counts of one process over all the data."""

from __future__ import annotations

import os
import socket
import tempfile

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from metrics_reference import stress_gt, stress_maps

from lowcam import metrics


def _data() -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(0)
    maps = stress_maps(rng, 16, 16)
    gts = [torch.from_numpy(g) for g in stress_gt(rng, 16, 16, len(maps))]
    return (
        torch.from_numpy(np.stack(maps)),
        gts,
        torch.from_numpy(rng.random((len(maps), 16, 16))),
        torch.from_numpy((rng.random((len(maps), 16, 16)) < 0.3).astype(np.uint8)),
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        maps, gts, scores, masks = _data()
        mine = slice(rank, None, world)  # uneven shares: 12 images over 2 ranks, interleaved
        v2 = metrics.BoxAccuracy("maxboxacc_v2").update(maps[mine], gts[mine])
        px = metrics.PxAP().update(scores[mine], masks[mine])
        local_n = int(v2.state_dict()["n"])  # compute() itself sums over the processes now
        v2.sync()
        v2.sync()  # idempotent
        px.sync()
        out = v2.compute()  # sums again, from the local counts: no double counting
        # a rank that sees no image reports the same numbers as the others ("ornet", Top-1 included)
        ornet = metrics.BoxAccuracy("ornet", image_size=16)
        logits = torch.from_numpy(np.random.default_rng(1).random((len(gts), 7)))
        targets = torch.arange(len(gts)) % 7
        if rank == 0:
            ornet.update(maps, gts, logits=logits, targets=targets)
        # a DistributedSampler pads rank 1's share with a duplicate of image 0, marked invalid
        padded = metrics.BoxAccuracy("maxboxacc_v2")
        share = list(range(rank, len(gts), world)) + ([0] if rank == 1 else [])
        valid = torch.tensor([True] * len(range(rank, len(gts), world)) + ([False] if rank == 1 else []))
        padded.update(maps[share], [gts[i] for i in share], valid=valid)
        torch.save(
            {
                "counts": out.counts,
                "n": out.n,
                "local_n": local_n,
                "pxap": px.compute().value,
                "ornet": ornet.compute().scalars(),
                "padded": padded.compute().counts,
                "padded_n": padded.compute().n,
            },
            os.path.join(out_dir, f"rank{rank}.pt"),
        )
    finally:
        dist.destroy_process_group()


def test_sync_over_two_gloo_processes_equals_one_process() -> None:
    maps, gts, scores, masks = _data()
    single = metrics.BoxAccuracy("maxboxacc_v2").update(maps, gts).compute()
    single_px = metrics.PxAP().update(scores, masks).compute().value
    logits = torch.from_numpy(np.random.default_rng(1).random((len(gts), 7)))
    targets = torch.arange(len(gts)) % 7
    single_ornet = (
        metrics.BoxAccuracy("ornet", image_size=16)
        .update(maps, gts, logits=logits, targets=targets)
        .compute()
    )
    with tempfile.TemporaryDirectory() as out_dir:
        mp.start_processes(
            _worker, args=(2, _free_port(), out_dir), nprocs=2, join=True, start_method="spawn"
        )
        results = [torch.load(os.path.join(out_dir, f"rank{r}.pt")) for r in range(2)]
    for res in results:
        assert res["n"] == single.n == len(gts)
        assert res["local_n"] == len(gts) // 2
        for d in (0.3, 0.5, 0.7):
            assert torch.equal(res["counts"][d], single.counts[d])
        assert res["pxap"] == single_px
        assert res["ornet"] == single_ornet.scalars()
        assert res["ornet"]["top1_loc"] is not None
        assert res["padded_n"] == len(gts)
        for d in (0.3, 0.5, 0.7):
            assert torch.equal(res["padded"][d], single.counts[d])
