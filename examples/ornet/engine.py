"""Compatibility names for code written against the single-module pipeline of lowcam 0.1.

The pipeline now lives in focused modules: :mod:`ornet.recipe` (the method), :mod:`ornet.stages`,
:mod:`ornet.training`, :mod:`ornet.runtime`, :mod:`ornet.evaluation` and :mod:`ornet.report`.
"""

from __future__ import annotations

from ornet.evaluation import evaluate, map_sources
from ornet.report import format_table
from ornet.runtime import Context, load_data, seed_everything
from ornet.stages import (
    STAGES,
    build_evaluator,
    load_fine_parts,
    stage_cam,
    stage_coarse,
    stage_evaluator,
    stage_fine,
)
from ornet.training import StageStopped, load_model, stage_done, train_epochs

__all__ = [
    "STAGES",
    "Context",
    "StageStopped",
    "build_evaluator",
    "evaluate",
    "format_table",
    "load_data",
    "load_fine_parts",
    "load_model",
    "map_sources",
    "seed_everything",
    "stage_cam",
    "stage_coarse",
    "stage_done",
    "stage_evaluator",
    "stage_fine",
    "train_epochs",
]
