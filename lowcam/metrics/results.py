"""The results of ``compute()``: typed attributes, flat float scalars for loggers, and plots.

Each result is also a ``dict`` (``result["acc"][0.5]``); the typed way to read it is its attributes
(``result.acc[0.5]``) or :meth:`~BoxAccuracyResult.scalars`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["BoxAccuracyResult", "PxAPResult"]


def _axes(ax: Any) -> Any:
    """``ax``, or the axes of a new matplotlib figure (matplotlib is imported only here)."""
    if ax is not None:
        return ax
    try:
        from matplotlib.figure import Figure
    except ImportError as error:  # pragma: no cover - the extra is installed in the test environment
        raise ImportError("plot() needs matplotlib: pip install 'lowcam[plot]'") from error
    return Figure(figsize=(5.0, 4.0), layout="constrained").subplots()


class BoxAccuracyResult(dict[str, Any]):
    """What :meth:`~lowcam.metrics.BoxAccuracy.compute` returns.

    Built from the correct counts; every number is in percent of the ``n`` images. The accuracy at IoU
    threshold ``δ`` is the best over the map thresholds τ (the first τ reaching it); the value is the mean
    over ``δ``.

    As a ``dict`` it holds ``"value"``, ``"acc"`` (``{δ: %}``), ``"threshold"`` (``{δ: τ}``), ``"counts"``
    (``{δ: (T,) int64}``), ``"n"`` and, for protocol "ornet", ``"gt_known"``, ``"top1_loc"``, ``"top5_loc"``
    (at the first δ's best τ; the Top entries are None without logits), ``"top1_counts"`` and
    ``"top5_counts"``.

    Example:
        >>> import torch
        >>> r = BoxAccuracyResult.from_counts(
        ...     "maxboxacc", torch.tensor([0.0, 0.5]), (0.5,), torch.tensor([[1, 2]]), 4
        ... )
        >>> r.value, r.acc, r.threshold, r.curve.tolist()
        (50.0, {0.5: 50.0}, {0.5: 0.5}, [[25.0, 50.0]])
        >>> r.scalars(prefix="val/")
        {'val/value': 50.0, 'val/n': 4.0, 'val/acc@0.5': 50.0, 'val/threshold@0.5': 0.5}
        >>> r["acc"][0.5] == r.acc[0.5]
        True
    """

    protocol: str
    thresholds: Tensor
    iou_thresholds: tuple[float, ...]
    curve: Tensor

    @classmethod
    def from_counts(
        cls,
        protocol: str,
        thresholds: Tensor,
        iou_thresholds: tuple[float, ...],
        counts: Tensor,
        n: int,
        *,
        top1_counts: Tensor | None = None,
        top5_counts: Tensor | None = None,
    ) -> BoxAccuracyResult:
        """The result of ``(D, T)`` correct counts over ``n > 0`` images.

        Args:
            protocol: ``"ornet"``, ``"maxboxacc"`` or ``"maxboxacc_v2"``.
            thresholds: ``(T,)`` map thresholds τ.
            iou_thresholds: the ``D`` IoU thresholds δ.
            counts: ``(D, T)`` int64, images correct at ``(δ, τ)``.
            n: the number of images.
            top1_counts: ``(D, T)`` images also correct in Top-1 class ("ornet" with logits), or None.
            top5_counts: the same for Top-5.
        """
        counts = counts.cpu()
        curve = counts.to(torch.float64) * 100.0 / n  # (D, T)
        best = curve.argmax(1)  # the first maximum
        taus = thresholds.cpu().to(torch.float64)
        out = cls()
        out.protocol = protocol
        out.thresholds = taus
        out.iou_thresholds = tuple(iou_thresholds)
        out.curve = curve
        out["acc"] = {d: float(curve[i, best[i]]) for i, d in enumerate(iou_thresholds)}
        out["threshold"] = {d: float(taus[best[i]]) for i, d in enumerate(iou_thresholds)}
        out["counts"] = {d: counts[i].clone() for i, d in enumerate(iou_thresholds)}
        out["n"] = int(n)
        out["value"] = sum(out["acc"].values()) / len(iou_thresholds)
        if protocol == "ornet":
            j = int(best[0])
            out["gt_known"] = float(curve[0, j])
            both = top1_counts is not None and top5_counts is not None
            zeros = torch.zeros_like(counts)
            top1 = top1_counts.cpu() if top1_counts is not None else zeros
            top5 = top5_counts.cpu() if top5_counts is not None else zeros
            out["top1_loc"] = float(top1[0, j]) * 100.0 / n if both else None
            out["top5_loc"] = float(top5[0, j]) * 100.0 / n if both else None
            out["top1_counts"] = {d: top1[i].clone() for i, d in enumerate(iou_thresholds)}
            out["top5_counts"] = {d: top5[i].clone() for i, d in enumerate(iou_thresholds)}
        return out

    @property
    def value(self) -> float:
        """The headline number: the mean over δ of ``acc[δ]`` (MaxBoxAcc, MaxBoxAccV2; GT-known for "ornet")."""
        return float(self["value"])

    @property
    def n(self) -> int:
        """The number of images counted."""
        return int(self["n"])

    @property
    def acc(self) -> dict[float, float]:
        """``{δ: accuracy at the best τ}``, percent."""
        return dict(self["acc"])

    @property
    def threshold(self) -> dict[float, float]:
        """``{δ: the chosen τ}`` (the first τ with the best accuracy)."""
        return dict(self["threshold"])

    @property
    def counts(self) -> dict[float, Tensor]:
        """``{δ: (T,) int64 correct counts per τ}``."""
        return dict(self["counts"])

    @property
    def gt_known(self) -> float | None:
        """Protocol "ornet": GT-known Loc, percent; None for the other protocols."""
        return self.get("gt_known")

    @property
    def top1_loc(self) -> float | None:
        """Protocol "ornet" with logits: Top-1 Loc at the chosen τ, percent; else None."""
        return self.get("top1_loc")

    @property
    def top5_loc(self) -> float | None:
        """Protocol "ornet" with logits: Top-5 Loc at the chosen τ, percent; else None."""
        return self.get("top5_loc")

    def scalars(self, prefix: str = "") -> dict[str, float]:
        """Flat ``{name: float}`` for loggers: ``value``, ``n``, ``acc@δ`` and ``threshold@δ`` for every δ,
        and for "ornet" ``gt_known`` (and ``top1_loc``, ``top5_loc`` when known), each name after ``prefix``."""
        out = {"value": self.value, "n": float(self.n)}
        for d in self.iou_thresholds:
            out[f"acc@{d:g}"] = self["acc"][d]
        for d in self.iou_thresholds:
            out[f"threshold@{d:g}"] = self["threshold"][d]
        for key in ("gt_known", "top1_loc", "top5_loc"):
            if self.get(key) is not None:
                out[key] = float(self[key])
        return {prefix + k: v for k, v in out.items()}

    def plot(self, ax: Any = None) -> Any:
        """Accuracy against the map threshold τ, one curve per δ, the chosen τ marked (needs matplotlib).

        Args:
            ax: matplotlib axes to draw in; None for a new figure (``ax.figure.savefig(path)`` saves it).

        Returns:
            The axes.
        """
        ax = _axes(ax)
        taus = self.thresholds.tolist()
        strict = ">" if self.protocol == "ornet" else "≥"
        for i, d in enumerate(self.iou_thresholds):
            (line,) = ax.plot(taus, self.curve[i].tolist(), label=f"IoU {strict} {d:g}")
            ax.plot([self["threshold"][d]], [self["acc"][d]], "o", color=line.get_color())
        ax.set_xlabel("map threshold τ")
        ax.set_ylabel("box accuracy (%)")
        ax.set_title(f"{self.protocol}: {self.value:.2f} % over {self.n} images")
        ax.set_ylim(0, 100)
        ax.legend()
        return ax


class PxAPResult(dict[str, Any]):
    """What :meth:`~lowcam.metrics.PxAP.compute` returns.

    As a ``dict`` it holds ``"value"`` (PxAP, percent), ``"precision"`` and ``"recall"`` (``(T + 2,)`` float64,
    from the top bin down) and ``"n"`` (images).

    Example:
        >>> import torch
        >>> r = PxAPResult.from_curves(100.0, torch.ones(3), torch.tensor([0.5, 1.0, 1.0]), 1)
        >>> r.value, r.scalars()
        (100.0, {'value': 100.0, 'n': 1.0})
    """

    @classmethod
    def from_curves(cls, value: float, precision: Tensor, recall: Tensor, n: int) -> PxAPResult:
        """The result of a PxAP ``value`` with its precision and recall curves over ``n`` images."""
        out = cls()
        out["value"] = float(value)
        out["precision"] = precision
        out["recall"] = recall
        out["n"] = int(n)
        return out

    @property
    def value(self) -> float:
        """PxAP, percent."""
        return float(self["value"])

    @property
    def n(self) -> int:
        """The number of images counted."""
        return int(self["n"])

    @property
    def precision(self) -> Tensor:
        """``(T + 2,)`` float64 precision at each bin, from the top bin down."""
        return torch.as_tensor(self["precision"])

    @property
    def recall(self) -> Tensor:
        """``(T + 2,)`` float64 recall at each bin, from the top bin down."""
        return torch.as_tensor(self["recall"])

    def scalars(self, prefix: str = "") -> dict[str, float]:
        """Flat ``{name: float}`` for loggers: ``value`` and ``n``, each name after ``prefix``."""
        return {prefix + "value": self.value, prefix + "n": float(self.n)}

    def plot(self, ax: Any = None) -> Any:
        """The precision–recall curve whose area is PxAP (needs matplotlib).

        Args:
            ax: matplotlib axes to draw in; None for a new figure (``ax.figure.savefig(path)`` saves it).

        Returns:
            The axes.
        """
        ax = _axes(ax)
        ax.step(self.recall.tolist(), self.precision.tolist(), where="post", label=f"PxAP {self.value:.2f} %")
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_title(f"PxAP over {self.n} images")
        ax.legend()
        return ax
