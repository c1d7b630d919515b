"""Compile every Triton kernel of lowcam.ops ahead of time for real NVIDIA GPUs, without a GPU.

The interpreter (``TRITON_INTERPRET=1``) checks what the kernels compute but never runs Triton's compiler,
so a kernel can pass every CPU test and still fail to compile on a GPU. This script closes that gap:

1. it imports :mod:`lowcam.ops` in compiled mode (``TRITON_INTERPRET`` must be unset) and replaces each
   kernel's launch with a recorder;
2. it calls the Triton launchers forward and backward on CPU tensors (no kernel runs; the outputs are
   left uninitialised), over every dtype and every constexpr branch the launchers can pick;
3. for each distinct launch (argument types and constexpr values) it builds the kernel's signature as
   Triton's launcher would and compiles it with :func:`triton.compile` for each target
   (``cuda:80``, ``cuda:90``): Triton IR, LLVM, PTX and, through the bundled ``ptxas``, a cubin.

It prints one line per compilation and exits with status 1 if any failed. Usage::

    python tests/triton_aot.py --targets 80 90

``tests/test_ops_aot.py`` runs it in a subprocess during ``make test``.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

if os.environ.get("TRITON_INTERPRET", "0") == "1":
    raise SystemExit("triton_aot.py compiles kernels: run it with TRITON_INTERPRET unset")

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

import lowcam.ops.area as area_ops
import lowcam.ops.entropy as entropy_ops
import lowcam.ops.erasing as erasing_ops
from lowcam.erasing import ErasingParams
from lowcam.losses.area import _ranked_classes as ranked_classes
from lowcam.losses.entropy import ENTROPY_EPS as EPS

_POINTER_TYPES = {
    torch.float16: "fp16",
    torch.bfloat16: "bf16",
    torch.float32: "fp32",
    torch.float64: "fp64",
    torch.bool: "i1",
    torch.uint8: "u8",
    torch.int8: "i8",
    torch.int32: "i32",
    torch.int64: "i64",
}
_LAUNCH_OPTIONS = ("num_warps", "num_stages", "num_ctas", "enable_fp_fusion")

Launch = tuple[str, tuple[tuple[str, str], ...], tuple[tuple[int, Any], ...], tuple[tuple[str, Any], ...]]


def _scalar_type(value: object) -> str:
    if isinstance(value, bool):
        return "i1"
    if isinstance(value, int):
        if -(2**31) <= value < 2**31:
            return "i32"
        return "u64" if value >= 2**63 else "i64"
    if isinstance(value, float):
        return "fp32"
    raise TypeError(f"no Triton type for a {type(value).__name__} argument")


class _Recorder:
    """Stands in for a kernel's ``run``: records the launch, launches nothing."""

    def __init__(self, kernel: Any, launches: dict[Launch, Any]) -> None:
        self.kernel = kernel
        self.launches = launches

    def __call__(self, *args: Any, grid: Any = None, warmup: bool = False, **kwargs: Any) -> None:
        params = self.kernel.params
        values = list(args) + [kwargs[p.name] for p in params[len(args) :] if p.name in kwargs]
        signature: list[tuple[str, str]] = []
        constexprs: list[tuple[int, Any]] = []
        for index, (param, value) in enumerate(zip(params, values, strict=True)):
            if param.is_constexpr:
                signature.append((param.name, "constexpr"))
                constexprs.append((index, value))
            elif isinstance(value, torch.Tensor):
                signature.append((param.name, "*" + _POINTER_TYPES[value.dtype]))
            elif type(value) is int and value == 1 and not param.do_not_specialize:
                signature.append((param.name, "constexpr"))  # Triton specializes integer 1 like this
                constexprs.append((index, 1))
            else:
                signature.append((param.name, _scalar_type(value)))
        options = tuple((k, kwargs[k]) for k in _LAUNCH_OPTIONS if k in kwargs)
        key: Launch = (self.kernel.fn.__name__, tuple(signature), tuple(constexprs), options)
        self.launches.setdefault(key, self.kernel)


def record_launches() -> dict[Launch, Any]:
    """Run the launchers over their branches on CPU tensors and return the distinct kernel launches."""
    launches: dict[Launch, Any] = {}
    kernels = [
        entropy_ops._entropy_fwd_kernel,
        entropy_ops._entropy_bwd_kernel,
        area_ops._area_fwd_kernel,
        area_ops._area_bwd_kernel,
        erasing_ops._erasing_kernel,
    ]
    for kernel in kernels:
        kernel.run = _Recorder(kernel, launches)
    try:
        _drive_launchers()
    finally:
        for kernel in kernels:
            del kernel.run
    return launches


def _backward(out: torch.Tensor, *leaves: torch.Tensor) -> None:
    grad = torch.ones_like(out)
    torch.autograd.grad(out, [leaf for leaf in leaves if leaf.requires_grad], grad, allow_unused=True)


def _drive_launchers() -> None:
    dtypes = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
    for dtype in dtypes:
        for per_element in (True, False):
            for detach_weight in (False, True):
                for contiguous in (True, False):
                    base = torch.rand(3, 1, 9, 14, dtype=dtype)
                    p = (base if contiguous else base.transpose(2, 3)).requires_grad_()
                    loss = entropy_ops.weighted_entropy_loss_triton(
                        p,
                        mu=0.5,
                        sigma=0.1,
                        beta=1.0,
                        eps=EPS,
                        detach_weight=detach_weight,
                        per_element=per_element,
                    )
                    _backward(loss, p)
            with torch.no_grad():  # the forward without gradient work (NEED_GRAD=False)
                entropy_ops.weighted_entropy_loss_triton(
                    torch.rand(2, 1, 5, 7, dtype=dtype),
                    mu=0.5,
                    sigma=0.1,
                    beta=1.0,
                    eps=EPS,
                    detach_weight=False,
                    per_element=False,
                )

        class_dtypes = (dtype, torch.float32) + (
            (torch.float16, torch.bfloat16) if dtype == torch.float64 else ()
        )
        for class_dtype in class_dtypes:
            for layout in ("contiguous", "channels_last", "transposed"):
                p = torch.rand(2, 1, 6, 7, dtype=dtype, requires_grad=True)
                maps = torch.rand(2, 5, 6, 7, dtype=class_dtype)
                if layout == "channels_last":
                    maps = maps.contiguous(memory_format=torch.channels_last)
                elif layout == "transposed":
                    maps = torch.rand(2, 5, 7, 6, dtype=class_dtype).transpose(2, 3)
                maps.requires_grad_()
                for topk, skip in ((3, 1), (0, 0)):
                    index = ranked_classes(torch.rand(2, 5), topk, skip)
                    loss = area_ops.area_loss_triton(p, maps if topk else maps.detach(), index)
                    _backward(loss, p, maps)

        for per_sample_factor in (False, True):
            for contiguous in (True, False):
                base = torch.rand(2, 1, 10, 12, dtype=dtype)
                a = (base if contiguous else base.transpose(2, 3)).requires_grad_()
                _erase(a, min_size=1, per_sample_factor=per_sample_factor)  # min_size 1: specialized

    for size in (56, 224):  # ORNet's map sizes pick the largest blocks
        for dtype in (torch.float32, torch.bfloat16):
            p = torch.empty(2, 1, size, size, dtype=dtype).uniform_().requires_grad_()
            for per_element in (True, False):
                loss = entropy_ops.weighted_entropy_loss_triton(
                    p, mu=0.5, sigma=0.1, beta=1.0, eps=EPS, detach_weight=False, per_element=per_element
                )
                _backward(loss, p)
            maps = torch.empty(2, 200, size, size, dtype=dtype).requires_grad_()
            loss = area_ops.area_loss_triton(p, maps, ranked_classes(torch.rand(2, 200), 3, 1))
            _backward(loss, p, maps)
            _erase(p, min_size=4, per_sample_factor=False)


def _erase(a: torch.Tensor, *, min_size: int, per_sample_factor: bool) -> None:
    """The erasing kernel with ORNet's other settings (its backward is plain torch, not a kernel)."""
    args = ErasingParams(min_size=min_size, per_sample_factor=per_sample_factor)._resolve(*a.shape[2:])
    erasing_ops.attentive_erasing_triton(a.detach(), erasing_ops.draw_seeds(a, None), *args)


def _compile(kernel: Any, launch: Launch, arch: int) -> Any:
    _, signature, constexprs, options = launch
    source = ASTSource(
        fn=kernel,
        signature=dict(signature),
        constexprs={(index,): value for index, value in constexprs},
    )
    return triton.compile(source, target=GPUTarget("cuda", arch, 32), options=dict(options))


def _describe(launch: Launch) -> str:
    name, signature, constexprs, _ = launch
    pointers = ",".join(t for _, t in signature if t.startswith("*"))
    flags = ",".join(f"{signature[i][0]}={v}" for i, v in constexprs)
    return f"{name}[{pointers}|{flags}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, nargs="+", default=[80, 90], help="CUDA compute capabilities")
    args = parser.parse_args(argv)
    launches = record_launches()
    print(f"triton {triton.__version__}, torch {torch.__version__}: {len(launches)} distinct launches")
    failures = 0
    compile_fn: Callable[[Any, Launch, int], Any] = _compile
    for launch, kernel in sorted(launches.items(), key=lambda item: repr(item[0])):
        for arch in args.targets:
            try:
                compiled = compile_fn(kernel, launch, arch)
                ok = "cubin" in compiled.asm and len(compiled.asm["cubin"]) > 0
                status = "ok" if ok else "no cubin"
                failures += not ok
            except Exception:  # report every failure, not just the first
                status = "FAILED\n" + traceback.format_exc()
                failures += 1
            print(f"sm_{arch} {_describe(launch)}: {status}")
    print(f"{failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
