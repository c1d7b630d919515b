"""Fixtures only; shared constants and helpers live in ``tests/_helpers.py``."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _helpers import DEVICES


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic CUB-format set (3 classes, 6 + 4 images each) for the pipeline's tests."""
    import _pipeline

    return _pipeline.tiny_dataset(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture(scope="session")
def trained(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every stage of ``examples/train_ornet.py`` on ``tiny_data`` (``_pipeline.tiny_args``), trained once;
    a test that changes the run works on a copy (``_pipeline.copy_run``)."""
    import _pipeline
    import train_ornet

    out = tmp_path_factory.mktemp("run")
    assert train_ornet.main(_pipeline.tiny_args(tiny_data, out, "--stage", "all", *_pipeline.EXTRA_CAM)) == 0
    return out


@pytest.fixture(scope="module")
def authors_files(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The ORNet authors' three checkpoint files, 5 classes (``tests/_authors_files.py``)."""
    from _authors_files import AuthorsFiles

    return AuthorsFiles(tmp_path_factory.mktemp("authors"), num_classes=5)


@pytest.fixture(scope="module")
def authors_imported(authors_files: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``authors_files`` imported by ``examples/import_original.py`` into a pipeline output folder."""
    import import_original  # on the path once _authors_files is imported

    out = tmp_path_factory.mktemp("imported")
    assert import_original.main(authors_files.argv(out)) == 0
    return out


# The sdist ships tests/ but not examples/, benchmarks/ or docs/ (pyproject's sdist "include"): there, a test
# module that imports from those folders is skipped with the reason, not an error at collection.
_ROOT = Path(__file__).resolve().parents[1]
_CHECKOUT_ONLY = tuple(name for name in ("examples", "benchmarks", "docs") if not (_ROOT / name).is_dir())


class _CheckoutOnlyModule(pytest.Module):
    def collect(self) -> Iterable[pytest.Item | pytest.Collector]:
        try:
            return super().collect()
        except self.CollectError as error:
            if "ModuleNotFoundError" not in str(error) and "No module named" not in str(error):
                raise
            pytest.skip(
                "needs "
                + ", ".join(f"{name}/" for name in _CHECKOUT_ONLY)
                + f" of a git checkout (the sdist ships without them): {str(error).splitlines()[-1].strip()}"
            )


def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    if not _CHECKOUT_ONLY:
        return None
    return _CheckoutOnlyModule.from_parent(parent, path=module_path)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In the sdist, skip a test whose own source names a folder the sdist lacks in a string literal
    (``"benchmarks"``, ``"docs/..."``)."""
    if not _CHECKOUT_ONLY:
        return
    for item in items:
        function = getattr(item, "function", None)
        try:
            source = inspect.getsource(function) if function is not None else ""
        except (OSError, TypeError):
            continue
        needed = [n for n in _CHECKOUT_ONLY if re.search(rf"[\"']{n}(/|[\"'])", source)]
        if needed:
            reason = (
                "needs "
                + ", ".join(f"{n}/" for n in needed)
                + " of a git checkout (the sdist ships without it)"
            )
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """In the sdist, a test that opens a file under a folder the sdist lacks is skipped, not failed."""
    try:
        return (yield)
    except FileNotFoundError as error:
        missing = [n for n in _CHECKOUT_ONLY if str(error.filename or "").startswith(str(_ROOT / n))]
        if not missing:
            raise
        pytest.skip(f"needs {missing[0]}/ of a git checkout (the sdist ships without it): {error.filename}")
