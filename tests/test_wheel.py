"""The built wheel, installed on its own, is the library: every public name, the version, py.typed.

The wheel is built from the working tree (or taken from ``$LOWCAM_WHEEL``) and installed with
``pip --no-deps`` into a fresh virtual environment that has no pip, no system site-packages and no access
to the source tree. Its dependencies are not downloaded again: the distributions lowcam *declares*
(``Requires-Dist`` of the built wheel, and their own requirements, transitively) are made visible through
a folder of symlinks to this environment's copies, named by a ``.pth`` file. Nothing else is visible, so
an undeclared import in lowcam fails here, and so does a file missing from the wheel. The interpreter runs
with ``-I`` (no ``PYTHONPATH``, no current directory on ``sys.path``) from a scratch folder.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import re
import subprocess
import sys
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import lowcam

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _build_wheel(out: Path) -> Path:
    wheel = os.environ.get("LOWCAM_WHEEL")
    if wheel:
        return Path(wheel).resolve()
    pytest.importorskip("build", reason="the 'build' package (extra 'dev') builds the wheel")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        text=True,
    )
    (found,) = out.glob("lowcam-*.whl")
    return found


def _declared_closure(requirements: list[str]) -> list[md.Distribution]:
    """The installed distributions that ``requirements`` name, and theirs, transitively (no extras)."""
    seen: dict[str, md.Distribution] = {}
    todo = list(requirements)
    while todo:
        req = Requirement(todo.pop())
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        key = re.sub(r"[-_.]+", "-", req.name).lower()
        if key in seen:
            continue
        try:
            dist = md.distribution(req.name)
        except md.PackageNotFoundError:
            continue  # an optional platform dependency absent here (e.g. a CUDA runtime on a CPU build)
        seen[key] = dist
        todo.extend(dist.requires or [])
    return list(seen.values())


def _link_distributions(dists: list[md.Distribution], folder: Path) -> None:
    """Symlink the top-level files and folders of ``dists`` (their code and dist-info) into ``folder``."""
    folder.mkdir()
    for dist in dists:
        base = Path(str(dist.locate_file("")))
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            source = base / top
            target = folder / top
            if source.exists() and not target.exists() and not top.endswith(".pth") and top != "__pycache__":
                target.symlink_to(source, target_is_directory=source.is_dir())


CHECK = textwrap.dedent(
    """
    import importlib, importlib.metadata as md, json, pathlib, sys
    import lowcam
    import torch
    pkg = pathlib.Path(lowcam.__file__).resolve().parent
    missing = [name for name in lowcam.__all__ if not hasattr(lowcam, name)]
    subpackages = {}
    for name in sys.argv[1:]:
        module = importlib.import_module(name)
        subpackages[name] = sorted(n for n in getattr(module, "__all__", []) if not hasattr(module, n))
    p = torch.full((2, 1, 4, 4), 0.5)
    print(json.dumps({
        "file": str(pathlib.Path(lowcam.__file__).resolve()),
        "prefix": str(pathlib.Path(sys.prefix).resolve()),
        "all": sorted(lowcam.__all__),
        "missing": missing,
        "subpackages": subpackages,
        "version": lowcam.__version__,
        "dist_version": md.version("lowcam"),
        "py_typed": (pkg / "py.typed").is_file(),
        "entropy": float(lowcam.weighted_entropy_loss(p)),
        "sys_path": sys.path,
    }))
    """
)


def _source_files() -> set[str]:
    files = set()
    for path in (ROOT / "lowcam").rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            files.add(path.relative_to(ROOT).as_posix())
    return files


def test_wheel_installs_and_exposes_the_public_api(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path / "dist")

    # The wheel holds the package and nothing else: every source file, py.typed, no tests or examples.
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    packaged = {n for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert packaged == _source_files(), "the wheel's files differ from lowcam/ in the source tree"
    assert "lowcam/py.typed" in packaged
    # PEP 639: a License-Expression with a "License ::" classifier is rejected by PyPI on upload.
    assert "License-Expression: MIT" in metadata
    assert "Classifier: License ::" not in metadata
    assert "Classifier: Typing :: Typed" in metadata
    requirements = [
        line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")
    ]

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False, system_site_packages=False, symlinks=os.name != "nt").create(env_dir)
    python = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    purelib = subprocess.run(
        [str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    deps = tmp_path / "declared-dependencies"
    _link_distributions(_declared_closure(requirements), deps)
    (Path(purelib) / "_declared_dependencies.pth").write_text(f"{deps}\n")

    subpackages = sorted(
        f"lowcam.{p.name}"
        for p in (ROOT / "lowcam").iterdir()
        if p.is_dir() and (p / "__init__.py").is_file() and not p.name.startswith("_") and p.name != "ops"
    )
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    result = subprocess.run(
        [str(python), "-I", "-c", CHECK, *subpackages],
        cwd=scratch,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])

    assert Path(report["file"]).is_relative_to(Path(report["prefix"])), report["file"]
    assert not Path(report["file"]).is_relative_to(ROOT.resolve() / "lowcam")
    assert not any(Path(p).resolve() == ROOT.resolve() for p in report["sys_path"] if p)
    assert report["all"] == sorted(lowcam.__all__)
    assert report["missing"] == []
    assert all(missing == [] for missing in report["subpackages"].values()), report["subpackages"]
    assert report["version"] == report["dist_version"] == lowcam.__version__
    assert report["py_typed"]
    assert report["entropy"] == pytest.approx(0.6931, abs=1e-4)

    # The console script is installed with the package and runs from the fresh environment.
    script = env_dir / ("Scripts/lowcam-eval.exe" if os.name == "nt" else "bin/lowcam-eval")
    assert script.is_file(), "the wheel installs no lowcam-eval script"
    help_run = subprocess.run(
        [str(script), "--help"], cwd=scratch, env=env, capture_output=True, text=True, timeout=120
    )
    assert help_run.returncode == 0, help_run.stderr[-3000:]
    assert "--multi_contour_eval" in help_run.stdout
