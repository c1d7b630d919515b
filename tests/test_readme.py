"""The README's Python example runs as written, and its results table is the benchmark's."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_examples_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README.md has no python example"
    namespace: dict[str, object] = {}
    for block in blocks:  # later blocks build on earlier ones, as a reader runs them
        exec(compile(block, str(README), "exec"), namespace)


def test_readme_starts_with_the_two_commands() -> None:
    first_block = re.search(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]


def test_readme_results_table_is_the_benchmarks() -> None:
    """The README's results table is the one ``benchmarks/bench_localization.py`` last wrote, with that
    run's commit: a stale table fails here."""
    import json
    import sys

    root = README.parent
    results = json.loads((root / "benchmarks" / "results" / "localization.json").read_text())
    sys.path.insert(0, str(root / "examples"))
    sys.path.insert(0, str(root))
    from benchmarks.bench_localization import readme_table

    text = README.read_text()
    assert readme_table(results) in text
    assert results["environment"]["commit"] in text
    assert not results["quick"]
