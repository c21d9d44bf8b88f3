"""Which floating-point precision a model runs in here: one rule for every engine and for training.

`auto` takes bfloat16 on CUDA, and on a CPU only where it computes bf16 natively and only for the
stages in BF16_HOLDS; float32 everywhere else, the reference the tests hold. docs/measurement.md
says what bf16 changes; `make bench-precision` measures it.
"""

from __future__ import annotations

import functools
import os
import platform
import sys
from pathlib import Path
from typing import Literal

Precision = Literal["float32", "bfloat16"]


def native_bf16_feature() -> str | None:
    """The CPU feature that computes bf16 natively ("AMX" or "AVX512-BF16"), or None."""
    import torch

    if torch.cpu._is_amx_tile_supported():
        return "AMX"
    if torch.cpu._is_avx512_bf16_supported():
        return "AVX512-BF16"
    return None


# Stages whose headlines moved by at most a tenth of their intervals in bf16 on the tour
# (benchmarks/bench_precision.py): only these take native bf16 on a CPU under `auto`.
BF16_HOLDS: frozenset[str] = frozenset()


def stage_dtype(asked: str, stage: str) -> str:
    """The dtype a stage's run asks for: the model file's, except `auto` on a CPU with native bf16
    for a stage in BF16_HOLDS, which asks for bfloat16 (resolve keeps `auto` float32 on a CPU)."""
    import torch

    if asked == "auto" and stage in BF16_HOLDS and not torch.cuda.is_available() and native_bf16_feature():
        return "bfloat16"
    return asked


def resolve(asked: str, device: str) -> Precision:
    """The precision a model file's `dtype` means on `device` ("cuda", "cpu", or a server's):
    `auto` is bf16 on CUDA and float32 on a CPU (said once, with why)."""
    if asked in ("float32", "bfloat16"):
        return asked  # type: ignore[return-value]
    if asked != "auto":
        raise ValueError(f"dtype {asked!r}: use one of auto, float32, bfloat16")
    if device == "cuda":
        return "bfloat16"
    announce(native_bf16_feature())
    return "float32"


@functools.cache
def announce(feature: str | None) -> None:
    """Say once per process what `auto` chose on this CPU and why."""
    if feature:
        why = (
            f"this CPU computes bf16 natively ({feature}), but bf16 moved headline numbers by more than a tenth of "
            "their intervals on the tour (docs/benchmarks.md); DTYPE=bfloat16 asks for it"
        )
    else:
        why = "this CPU has no native bf16 (AMX or AVX512-BF16)"
    print(f"precision: float32 (dtype auto: {why})", file=sys.stderr)


def cpu_model() -> str:
    """This machine's CPU model, cores and native bf16 feature (from /proc/cpuinfo; the platform's
    processor string elsewhere): printed beside every timing and recorded in every manifest."""
    name = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    return f"{name}, {os.cpu_count()} cores, native bf16: {native_bf16_feature() or 'none'}"
