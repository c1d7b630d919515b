"""The Markdown report of ``compare_original.py``: the columns each stage reports and the tables."""

from __future__ import annotations

from typing import Any

from benchmarks._timing import markdown_table

__all__ = ["STAGE_COLUMNS", "report"]


STAGE_COLUMNS = {
    "evaluator": ["loss", "logits"],
    "coarse": ["loss", "ce_generator", "ce_main", "map", "generator_logits", "logits"],
    "fine (no erasing)": ["loss", "ce", "area", "entropy", "map", "class_maps", "erased_map", "logits"],
    "fine (erasing, matched draws)": [
        "loss", "ce", "area", "entropy", "map", "erased_map", "dropped_pixels", "dropped_pixels_differ", "differ_off_row0_col0", "logits",
    ],
}  # fmt: skip


def report(payload: dict[str, Any], num_classes: int, generator_width: int) -> str:
    """The Markdown of ``payload`` (what ``compare_original.main`` writes as JSON)."""
    env = payload["environment"]
    lines = [
        "## End-to-end faithfulness: the authors' ORNet against lowcam's pipeline",
        "",
        f"{env['device']}; torch {env['torch']}, python {env['python']}; commit {env['commit']}; {env['date']}.",
        "",
        f"Command: `{payload['command']}` ({payload['seconds']:.0f} s). Batch {payload['batch']}×3×224×224, "
        f"{num_classes} classes, generator width {generator_width}, {payload['dtype']}, same random weights and batch on "
        "both sides"
        + (
            "; the authors' losses and erasing get float32 inputs, as the pipeline's recipe casts them "
            "(`--recipe-casts`)"
            if payload.get("recipe_casts")
            else ""
        )
        + ". Each cell is the largest absolute difference after that step (losses, maps and logits "
        "of the step's forward; parameters and buffers after its update, the worst tensor named).",
        "",
    ]
    for stage, rows in payload["stages"].items():
        columns = STAGE_COLUMNS[stage]
        header = ["step", *columns, "params (worst)", "buffers (worst)"]
        body = []
        for r in rows:
            cells = [str(r["step"])]
            for c in columns:
                v = r[c]
                cells.append(str(v) if isinstance(v, int) else f"{v:.2e}")
            cells.append(f"{r['params']:.2e} ({r['params_worst']})")
            cells.append(f"{r['buffers']:.2e} ({r['buffers_worst']})")
            body.append(cells)
        lines += [f"### {stage}", "", markdown_table(header, body), ""]
    e = payload["erasing_alone"]
    lines += [
        "### attentive erasing alone, draws matched",
        "",
        f"{e['maps']} smooth random 56×56 maps ({e['erased_maps']} erased by the authors' code): "
        f"{e['region_differ']} of {e['region_pixels']} region pixels differ, "
        f"{e['region_differ_off_row0_col0']} of them off row 0 and column 0; "
        f"{e['maps_with_a_difference']} maps differ; on the others the outputs differ by at most "
        f"{e['output_where_regions_agree']:.1e}.",
        "",
    ]
    return "\n".join(lines)
