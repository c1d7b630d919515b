"""``CountingMetric``: the base of metrics whose state is integer counts summed over batches and processes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from typing_extensions import Self

__all__ = ["CountingMetric"]


class CountingMetric:
    """A metric accumulated as a fixed set of int64 count tensors (its *state*), summed batch by batch.

    The state never grows with the number of images, and a sum of states is the state of the union of the
    data: that is what makes :meth:`sync` (an all-reduce) exact. A subclass defines ``_empty_state()``
    (the state after :meth:`reset`), adds to ``self._state[name]`` in its ``update`` (after
    ``_prepare_update(device)``), and reads ``_global_state()`` in its ``compute``. It behaves as a
    ``torchmetrics`` user expects:

    - ``compute()`` sums the state over the processes of ``process_group`` when ``torch.distributed`` is
      initialised (``sync_on_compute=True``, the default). Every rank must then call it, and every rank
      gets the same numbers, including a rank that saw no image. :meth:`sync` does the same explicitly; it
      always sums the local states, so calling it again, or before ``compute()``, never double counts.
    - :meth:`to` moves the state; ``update`` also moves it to the device of its inputs.
    - :meth:`state_dict` / :meth:`load_state_dict` save and restore the local state (e.g. to resume an
      evaluation). The saved state holds the metric's configuration too (``config/...`` entries: its kind
      and thresholds); loading checks it, the names, the shapes and dtypes, and that the counts are
      possible (non-negative, no more correct images than images).
    - ``higher_is_better`` (a class attribute, as in torchmetrics) says which way the value improves.

    Args:
        process_group: the ``torch.distributed`` group to sum over; ``None`` for the default group.
        sync_on_compute: sum over the processes inside ``compute()`` when ``torch.distributed`` is
            initialised. Turn it off to compute on one rank only (the numbers are then that rank's, unless
            :meth:`sync` was called on every rank since the last update).
    """

    higher_is_better: bool | None = None

    def __init__(self, *, process_group: Any = None, sync_on_compute: bool = True) -> None:
        if not isinstance(sync_on_compute, bool):
            raise TypeError(f"sync_on_compute must be a bool, got {type(sync_on_compute).__name__}")
        self.process_group = process_group
        self.sync_on_compute = sync_on_compute
        self._device = torch.device("cpu")
        self.reset()

    # -- the subclass's part -------------------------------------------------------------------------------

    def _empty_state(self) -> dict[str, Tensor]:
        """The state after :meth:`reset`: named int64 tensors (on the CPU; they are moved afterwards)."""
        raise NotImplementedError

    def _config(self) -> dict[str, Tensor]:
        """The settings that give the counts their meaning (saved with them): names to CPU tensors."""
        return {}

    def _check_counts(self, state: Mapping[str, Tensor]) -> str | None:
        """Why the (shape-checked, int64, CPU) counts ``state`` are impossible, or None when they are fine."""
        return None

    # -- state ---------------------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every image seen (the device is kept)."""
        self._state: dict[str, Tensor] = {k: v.to(self._device) for k, v in self._empty_state().items()}
        self._synced: dict[str, Tensor] | None = None

    @property
    def device(self) -> torch.device:
        """The device the state lives on."""
        return self._device

    def to(self, device: torch.device | str) -> Self:
        """Move the state to ``device``; returns ``self``."""
        self._device = torch.device(device)
        self._state = {k: v.to(self._device) for k, v in self._state.items()}
        if self._synced is not None:
            self._synced = {k: v.to(self._device) for k, v in self._synced.items()}
        return self

    def _prepare_update(self, device: torch.device) -> None:
        """Move the state to the device of an update's inputs and drop the last synchronised state."""
        if device != self._device:
            self.to(device)
        self._synced = None

    def state_dict(self) -> dict[str, Tensor]:
        """A copy of the local (not synchronised) state: the int64 counts, and the configuration under
        ``config/<name>`` (on the CPU)."""
        out = {k: v.detach().clone() for k, v in self._state.items()}
        out.update({f"config/{k}": v.clone() for k, v in self._config().items()})
        return out

    def load_state_dict(self, state_dict: Mapping[str, Tensor]) -> None:
        """Restore a state saved by :meth:`state_dict` of a metric with the same settings.

        Raises:
            ValueError: a missing or unexpected name, a tensor of another shape, a configuration that differs
                from this metric's (its kind, thresholds or IoU thresholds), or impossible counts (negative,
                or more correct images than images).
            TypeError: a count that is not an integer tensor (bool included).
        """
        name = type(self).__name__
        config = {f"config/{k}": v for k, v in self._config().items()}
        expected = self._empty_state()
        missing = sorted((set(expected) | set(config)) - set(state_dict))
        unexpected = sorted(set(state_dict) - set(expected) - set(config))
        if missing or unexpected:
            raise ValueError(
                f"state_dict of {name}: missing keys {missing}, unexpected keys {unexpected}; "
                f"expected exactly {sorted(expected) + sorted(config)}"
            )
        for key, want in config.items():
            got = state_dict[key]
            same = isinstance(got, Tensor) and got.shape == want.shape and got.dtype == want.dtype
            if not (same and torch.equal(got.detach().cpu(), want)):
                shown = got.tolist() if isinstance(got, Tensor) and got.numel() <= 8 else f"{got!r:.80}"
                raise ValueError(
                    f"state_dict[{key!r}] is {shown}, but this {self._describe()} has {want.tolist()!r:.80}: "
                    "the state was saved by a metric with other settings"
                )
        for key, want in expected.items():
            got = state_dict[key]
            if (
                not isinstance(got, Tensor)
                or got.is_floating_point()
                or got.is_complex()
                or got.dtype == torch.bool
            ):
                raise TypeError(f"state_dict[{key!r}] must be an integer tensor, got {got!r:.60}")
            if got.shape != want.shape:
                raise ValueError(
                    f"state_dict[{key!r}] has shape {tuple(got.shape)}, expected {tuple(want.shape)} "
                    "(was it saved by a metric with other thresholds?)"
                )
        counts = {k: state_dict[k].detach().to(device="cpu", dtype=torch.int64) for k in expected}
        negative = [k for k, v in counts.items() if bool((v < 0).any())]
        problem = (
            f"state_dict[{negative[0]!r}] holds a negative count" if negative else self._check_counts(counts)
        )
        if problem is not None:
            raise ValueError(f"{problem}; expected the counts that {name}.state_dict() saves")
        self._state = {k: v.to(self._device).clone() for k, v in counts.items()}
        self._synced = None
        self._after_load()

    def _describe(self) -> str:
        """How messages name this metric (e.g. ``MaxBoxAcc(version=2)``)."""
        return type(self).__name__

    def _after_load(self) -> None:
        """Hook for subclasses that derive Python attributes from the state."""

    # -- synchronisation -----------------------------------------------------------------------------------

    def sync(self) -> None:
        """Sum the local states over all processes of ``process_group`` (no-op without ``torch.distributed``).

        Collective: every rank must call it. The sum is kept until the next ``update`` or ``reset``; the local
        state is not changed, so a second call gives the same sum.
        """
        if not (dist.is_available() and dist.is_initialized()):
            return
        names = list(self._state)
        flat = torch.cat([self._state[k].reshape(-1) for k in names])
        if dist.get_backend(self.process_group) == "nccl" and flat.device.type != "cuda":
            flat = flat.to(torch.device("cuda", torch.cuda.current_device()))
        dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=self.process_group)
        flat = flat.to(self._device)
        synced: dict[str, Tensor] = {}
        start = 0
        for k in names:
            size = self._state[k].numel()
            synced[k] = flat[start : start + size].view_as(self._state[k])
            start += size
        self._synced = synced

    def _global_state(self) -> dict[str, Tensor]:
        """The state ``compute()`` reads: summed over the processes (see ``sync_on_compute``), on the CPU."""
        if self.sync_on_compute:
            self.sync()
        state = self._synced if self._synced is not None else self._state
        return {k: v.cpu() for k, v in state.items()}


def _valid_mask(name: str, valid: object, batch: int, device: torch.device) -> Tensor | None:
    """Check an ``update``'s ``valid`` argument: ``None`` or a ``(B,)`` bool tensor; returned on ``device``."""
    if valid is None:
        return None
    if not isinstance(valid, Tensor) or valid.dtype != torch.bool or valid.shape != (batch,):
        got = (
            f"shape {tuple(valid.shape)}, {valid.dtype}"
            if isinstance(valid, Tensor)
            else type(valid).__name__
        )
        raise ValueError(f"{name} must be a bool tensor of shape ({batch},), one flag per image, got {got}")
    return valid.to(device)


@contextlib.contextmanager
def _cpu_threads(threads: int | None, device: torch.device) -> Iterator[None]:
    """Run the block with at most ``threads`` torch intra-op threads when ``device`` is the CPU.

    The contour engine runs thousands of small ops; on a busy machine, spreading each over several threads
    costs more in waiting than it gains (benchmarks/results/metrics_threads.md). The setting is restored.
    """
    before = torch.get_num_threads()
    if threads is None or device.type != "cpu" or threads >= before:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
