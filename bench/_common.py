"""Shared benchmark helpers: timing, the machine's dense matmul throughput, FLOP counts, tables.

Every benchmark measures lenswidget and TransformerLens in the same process on the same inputs,
prints the ratio, and relates its speed to what this machine's matmul reaches in the same run
(the 2-core CI machines are shared, so absolute times drift between runs; ratios drift less).

    from _common import matmul_gflops, timed, model_flops, print_table, machine_line
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Any, Callable, Sequence

import torch


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Run ``fn`` once; return (seconds, its result)."""
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def best_of(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    """The fastest of ``repeat`` runs of ``fn`` (seconds) and the last result."""
    best, out = float("inf"), None
    for _ in range(max(1, repeat)):
        dt, out = timed(fn)
        best = min(best, dt)
    return best, out


def median_ms(fn: Callable[[], Any], repeat: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn`` in milliseconds, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def matmul_gflops(n: int = 2048, repeat: int = 5, dtype: torch.dtype = torch.float32) -> float:
    """Dense matmul throughput of this machine now: GFLOP/s of an ``n x n`` @ ``n x n`` product
    (median of ``repeat`` runs after a warm-up), with torch's current thread settings."""
    a = torch.randn(n, n, dtype=dtype)
    b = torch.randn(n, n, dtype=dtype)
    a @ b
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9


def model_flops(model: Any) -> dict[str, float]:
    """FLOPs per token of a TransformerBridge, as 2 x parameters (attention scores ignored):
    ``block`` for one block, ``unembed`` for the unembedding, ``forward`` for a whole forward."""
    blocks = getattr(model, "blocks", [])
    per_block = [2.0 * sum(p.numel() for p in b.parameters()) for b in blocks]
    block = statistics.mean(per_block) if per_block else 0.0
    cfg = model.cfg
    d, d_head = int(cfg.d_model), int(cfg.d_head)
    kv_heads = int(getattr(cfg, "n_key_value_heads", None) or cfg.n_heads)
    unembed = 2.0 * d * int(cfg.d_vocab)
    return {
        "block": block, "unembed": unembed, "forward": sum(per_block) + unembed,
        # one token's key and value projections; its query and output projections
        "kv": 2.0 * 2 * d * kv_heads * d_head, "qo": 2.0 * 2 * d * int(cfg.n_heads) * d_head,
    }


def machine_line() -> str:
    """One line about where the benchmark runs."""
    try:
        load = "load %.1f %.1f %.1f" % os.getloadavg()
    except OSError:  # pragma: no cover - not on every platform
        load = "load n/a"
    return (
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs, {platform.machine()}, {load}"
    )


def fmt(x: Any, digits: int = 3) -> str:
    if isinstance(x, float):
        if x != x:
            return "nan"
        if x == 0:
            return "0"
        if abs(x) >= 100:
            return f"{x:.0f}"
        if abs(x) >= 0.01:
            return f"{x:.{digits}g}"
        return f"{x:.1e}"
    return str(x)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain fixed-width table on stdout."""
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h)) for i, h in enumerate(headers)]
    line = "  ".join(str(h).rjust(w) for h, w in zip(headers, widths))
    print(line)
    print("-" * len(line))
    for r in cells:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths)))
