"""A griffe extension that renders the reST bits of lowcam's Google-style docstrings as Markdown.

lowcam's docstrings are Google-style (sections ``Args:``, ``Returns:``, ``Example:``) but use Sphinx roles
and directives in their prose, which read well in ``help()`` and in an editor. For the site:

- an ``Example:`` heading is read as griffe's ``Examples:`` section, so that doctests render as code;
- ``:math:`x``` becomes inline math and a ``.. math::`` block becomes display math (pymdownx.arithmatex);
- ``:func:`name``` (``:class:``, ``:mod:``, ``:meth:``, ``:attr:``, ``:data:``, ``:exc:``) becomes an
  autorefs cross-reference when it names lowcam's documented API, so that a reference to a name that is not
  documented fails ``mkdocs build --strict``; a name outside lowcam (torch, ...) or inside the kernel
  modules ``lowcam.ops`` (documented on the kernels page, not in the API reference) becomes inline code.
  A leading ``~`` shows only the last component, as in Sphinx.

Loaded by mkdocstrings through ``mkdocs.yml`` (``extensions: [docs/griffe_rst.py:RstRoles]``).
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

import griffe

_EXAMPLE_HEADING = re.compile(r"^([ \t]*)Example:[ \t]*$", re.M)
_ROLE = re.compile(r":(?:py:)?(math|func|class|mod|meth|attr|data|exc|obj):`([^`]+)`")
_MATH_BLOCK = re.compile(
    r"^(?P<indent>[ \t]*)\.\. math::[ \t]*\n(?P<body>(?:(?:[ \t]*\n)|(?:(?P=indent)[ \t]+.*\n))+)", re.M
)
#: Targets rendered as code rather than linked: outside the API reference by design.
_UNLINKED_PREFIXES = ("lowcam.ops", "lowcam._")


def _resolve(target: str, obj: griffe.Object) -> str:
    """Qualify a bare or relative name the way Sphinx would: the object's class, then its module."""
    if "." in target and target.split(".")[0] in ("lowcam", "torch", "numpy", "typing"):
        return target
    scopes: list[griffe.Object] = []
    if obj.is_class:
        scopes.append(obj)
    parent = obj.parent
    while parent is not None:
        scopes.append(parent)
        parent = parent.parent
    head = target.split(".")[0]
    for scope in scopes:
        if head in scope.members:
            return f"{scope.path}.{target}"
    if "." not in target:  # a bare name that lowcam does not define: link it anyway, so that --strict fails
        return f"{obj.module.path}.{target}"
    return target


def _public_path(path: str, package: griffe.Object) -> str:
    """Prefer the re-exported name (``lowcam.area_loss``) to the defining module's path."""
    name = path.rsplit(".", 1)[-1]
    exports = getattr(package, "exports", None) or ()
    if name in exports and not path.startswith("lowcam.metrics"):
        return f"lowcam.{name}"
    return path


def convert(text: str, obj: griffe.Object) -> str:
    """Return ``text`` with reST math and roles turned into Markdown."""

    def block(match: re.Match[str]) -> str:
        body = textwrap.dedent(match.group("body")).strip("\n")
        indent = match.group("indent")
        lines = [r"\[", *body.splitlines(), r"\]"]
        return "\n".join(indent + line if line else line for line in lines) + "\n\n"

    text = _MATH_BLOCK.sub(block, text + "\n").rstrip("\n")
    # griffe reads only "Examples:" as a section of doctests (rendered as code); "Example:" would be an
    # admonition whose ">>>" lines Markdown turns into nested block quotes.
    text = _EXAMPLE_HEADING.sub(r"\1Examples:", text)
    package = obj.package

    def role(match: re.Match[str]) -> str:
        kind, content = match.group(1), match.group(2)
        if kind == "math":
            return rf"\({content}\)"
        short = content.startswith("~")
        target = content.lstrip("~").rstrip("()")
        path = _resolve(target, obj)
        shown = target.rsplit(".", 1)[-1] if short else target
        if kind in ("func", "meth"):
            shown += "()"
        if path.startswith("lowcam") and not path.startswith(_UNLINKED_PREFIXES):
            return f"[`{shown}`][{_public_path(path, package)}]"
        return f"`{shown}`"

    return _ROLE.sub(role, text)


class RstRoles(griffe.Extension):
    """Rewrite every docstring once the object tree is complete."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = convert(obj.docstring.value, obj)
