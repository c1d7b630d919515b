"""backend="auto" | "torch" | "triton" resolution."""

from __future__ import annotations

import pytest
import torch

import lowcam
from lowcam._backend import resolve_backend, triton_available


def test_auto_and_torch_on_cpu() -> None:
    x = torch.zeros(1, 1, 2, 2)
    assert resolve_backend("auto", x) == "torch"
    assert resolve_backend("torch", x) == "torch"


class _CudaLike:
    """Stands in for a CUDA tensor where no GPU is present: ``resolve_backend`` reads ``is_cuda``."""

    is_cuda = True
    device = torch.device("cuda")


def test_auto_on_cuda_stays_torch_until_a_gpu_run_validates_the_kernels() -> None:
    # "triton" is an explicit opt-in: "auto" picks the torch backend on CUDA too (docs/kernels.md).
    x = _CudaLike()
    assert resolve_backend("auto", x) == "torch"  # type: ignore[arg-type]
    if triton_available():
        assert resolve_backend("triton", x) == "triton"  # type: ignore[arg-type]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_auto_on_real_cuda_is_torch() -> None:
    x = torch.zeros(1, 1, 2, 2, device="cuda")
    assert resolve_backend("auto", x) == "torch"
    assert resolve_backend("auto", x, x.cpu()) == "torch"


def test_triton_on_cpu_needs_the_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    x = torch.zeros(1, 1, 2, 2)
    expected = "needs CUDA tensors" if triton_available() else "needs the 'triton' package"
    with pytest.raises(ValueError, match=expected):
        resolve_backend("triton", x)
    with pytest.raises(ValueError, match=expected):
        lowcam.weighted_entropy_loss(x, backend="triton")


def test_unknown_backend() -> None:
    with pytest.raises(ValueError, match=r"backend must be one of \('auto', 'torch', 'triton'\), got 'cuda'"):
        resolve_backend("cuda", torch.zeros(1))


@pytest.mark.parametrize(
    "make",
    [
        lambda: lowcam.AttentiveErasing(backend="bogus"),
        lambda: lowcam.AreaLoss(backend="bogus"),
        lambda: lowcam.WeightedEntropyLoss(backend="bogus"),
        lambda: lowcam.attentive_erasing(torch.rand(1, 1, 4, 4), training=False, backend="bogus"),
        lambda: lowcam.weighted_entropy_loss(torch.rand(1, 1, 4, 4), backend="bogus"),
        lambda: lowcam.area_loss(
            torch.rand(1, 1, 4, 4), torch.rand(1, 3, 4, 4), torch.rand(1, 3), topk=2, skip=1, backend="bogus"
        ),
    ],
    ids=[
        "AttentiveErasing",
        "AreaLoss",
        "WeightedEntropyLoss",
        "attentive_erasing",
        "weighted_entropy_loss",
        "area_loss",
    ],
)
def test_unknown_backend_fails_at_construction_or_call(make: object) -> None:
    with pytest.raises(
        ValueError, match=r"backend must be one of \('auto', 'torch', 'triton'\), got 'bogus'"
    ):
        make()  # type: ignore[operator]


def test_ops_is_a_leaf_and_erasing_has_no_import_cycle() -> None:
    # lowcam.ops imports nothing from the components (they pass what the kernels need), and the
    # components import lowcam.ops only lazily, inside the Triton branch.
    import ast
    from pathlib import Path

    package = Path(lowcam.__file__).parent
    for path in sorted((package / "ops").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lowcam"):
                assert node.module.startswith("lowcam.ops"), (path.name, node.module)
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("lowcam") or alias.name.startswith("lowcam.ops"), (
                        path.name
                    )
    for name in ("erasing.py", "losses/area.py", "losses/entropy.py"):
        tree = ast.parse((package / name).read_text())
        top_level = [n for n in tree.body if isinstance(n, ast.ImportFrom)]
        assert not any((n.module or "").startswith("lowcam.ops") for n in top_level), name
