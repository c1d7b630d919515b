"""User-facing text is clean: no control characters (a ``\\r`` where ``\\rfloor`` was meant breaks a formula),
no internal issue numbers and no "earlier versions" of a package that was never released — in the README,
the changelog, the docs (and the benchmark results they include) and every docstring of lowcam."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import lowcam

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

# C0 controls but newline and tab, DEL and the C1 controls
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_INTERNAL = [
    re.compile(r"\bissues?\s*#?\s*\d+", re.I),  # "issue 10", "issues #3"
    re.compile(r"(?<![\w&/#])#\d{1,5}\b"),  # "#12" (not "&#12;", a URL fragment or a colour)
    re.compile(r"\b(?:earlier|previous|older|prior)\s+(?:lowcam\s+)?versions?\b", re.I),
]


def _pages() -> list[Path]:
    pages = [ROOT / "README.md", ROOT / "CHANGELOG.md"]
    if DOCS.is_dir():
        pages += sorted(DOCS.rglob("*.md"))
        for page in list(pages):  # what the pages include is on the site too
            for name in re.findall(r'--8<--\s+"([^":]+)', page.read_text(encoding="utf-8")):
                if (ROOT / name).suffix == ".md":
                    pages.append(ROOT / name)
    return [p for p in dict.fromkeys(pages) if p.is_file()]


def _docstrings() -> Iterator[tuple[str, str]]:
    """``(qualified name, docstring)`` of every module, class, function and method of lowcam."""
    names = [lowcam.__name__] + [
        m.name for m in pkgutil.walk_packages(lowcam.__path__, prefix="lowcam.") if ".ops" not in m.name
    ]
    seen: set[int] = set()
    for module_name in names:
        module = importlib.import_module(module_name)
        yield module_name, module.__doc__ or ""
        for attr, obj in vars(module).items():
            if getattr(obj, "__module__", None) != module_name or id(obj) in seen:
                continue
            seen.add(id(obj))
            if inspect.isclass(obj) or inspect.isfunction(obj):
                yield f"{module_name}.{attr}", obj.__doc__ or ""
            if inspect.isclass(obj):
                for member, value in vars(obj).items():
                    target = value.fget if isinstance(value, property) else value
                    doc = getattr(target, "__doc__", None)
                    if doc and (inspect.isfunction(target) or isinstance(value, property)):
                        yield f"{module_name}.{attr}.{member}", doc


def _problems(where: str, text: str) -> list[str]:
    out = []
    for number, line in enumerate(text.split("\n"), start=1):
        control = _CONTROL.search(line)
        if control:
            out.append(f"{where}:{number}: control character {control.group()!r} in {line.strip()[:80]!r}")
    flat = " ".join(text.split())  # phrases broken over lines
    for pattern in _INTERNAL:
        for match in pattern.finditer(flat):
            context = flat[max(0, match.start() - 40) : match.end() + 40]
            out.append(f"{where}: {match.group()!r} in ...{context}...")
    return out


def test_pages_have_no_control_characters_issue_numbers_or_earlier_versions() -> None:
    pages = _pages()
    assert ROOT / "README.md" in pages
    problems = [
        p for page in pages for p in _problems(str(page.relative_to(ROOT)), page.read_text(encoding="utf-8"))
    ]
    assert not problems, "\n".join(problems)


def test_docstrings_have_no_control_characters_issue_numbers_or_earlier_versions() -> None:
    found = list(_docstrings())
    assert len(found) > 100, "the walk found the package's docstrings"
    problems = [p for name, doc in found for p in _problems(name, doc)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ok: $\\lfloor x \\rfloor$", 0),
        ("bad: $\\lfloor x \rfloor$", 1),  # the carriage return this test exists for
        ("see issue 10 for the target", 1),
        ("fixed in #12", 1),
        ("the dict of earlier\n versions", 1),
        ("colour #fff, entity &#12; and https://x.org/#12 are fine", 0),
    ],
)
def test_the_checks_catch_what_they_should(text: str, expected: int) -> None:
    assert len(_problems("t", text)) == expected
