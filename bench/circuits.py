"""Circuit discovery speed and memory on SmolLM2-135M, as ratios to one forward of the same batch.

    python bench/circuits.py [--quick]

Targets (issue 8), measured in the same run:
- EAP of all 70,651 edges <= 5x one forward (two forwards and one backward are ~4);
- EAP-IG (5 steps) <= 18x;
- the exact faithfulness curve (10 MIB sizes + 10 random sets of the same sizes) <= 12x;
- edges/s of ``method="exact"`` (each edge patched alone; timed on a sample of edges);
- peak extra memory of EAP-IG on the 8 x 100-token batch, against EAP-IG's own buffer
  (batch x pos x n_upstream x d_model floats: the clean-minus-corrupted outputs of every writer).

Cases: the factual pair ("The Eiffel Tower is located in the city of" -> " Paris" vs "The
Colosseum ..." -> " Rome", 11 tokens); a batch of 8 prompts of 100 tokens (different 89-token
lead-ins before the same pair), where each clean prompt and its corrupted prompt share the first
91 positions: the engines compute only the positions after that shared prefix (attending to the
corrupted run's keys and values before it, ``_edge_prefix``), which is where this case's speed
comes from; and the same batch with the first two words of each corrupted lead-in swapped
("batch, early difference": the prompts share only ``<bos>``, every position is computed), the
figure for prompts without a long shared prefix. Each case prints its shared prefix and the
position the runs started at. "One forward" is ``model(tokens)`` without gradients
(full logits), median of three, timed again just before each item (the shared machine's load
drifts; it is printed per item), in wall time and in process CPU time (which another
process's turns on the cores do not count); each item one run, after a warm-up call of EAP.
Memory is the process's peak resident set above its level before the call (sampled every 2
ms; on CUDA ``max_memory_allocated``). ``--quick``: the pair only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_line, print_table, timed  # noqa: E402

import torch  # noqa: E402

from lenswidget import models  # noqa: E402
from lenswidget.analysis import _edge_patching as ep  # noqa: E402
from lenswidget.analysis import component_graph, edge_attribution, faithfulness_curve, logit_diff_metric  # noqa: E402
from lenswidget.errors import ModelLoadError  # noqa: E402

CLEAN = "The Eiffel Tower is located in the city of"
CORRUPTED = "The Colosseum is located in the city of"
LEAD_INS = [
    "Rivers carry water from the mountains to the sea, shaping valleys over thousands of years.",
    "A good recipe lists its ingredients first and then explains each step in a clear order.",
    "The library opened early on Saturday so that students could prepare for their exams.",
    "Old maps often showed sea monsters in the places that sailors had never explored.",
    "Engineers test every bridge with heavy loads before it is opened to the public.",
    "In spring the garden fills with tulips, and the bees return to the apple trees.",
    "The orchestra tuned their instruments while the audience found their seats.",
    "Mountain trails are marked with painted stripes so that walkers do not get lost.",
]


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def peak_extra_bytes(fn):
    """(seconds, result, peak bytes above the starting level) of ``fn()``."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
        dt, out = timed(fn)
        return dt, out, torch.cuda.max_memory_allocated() - start
    start, peak, stop = _rss(), [0], [False]

    def sample() -> None:
        while not stop[0]:
            peak[0] = max(peak[0], _rss())
            time.sleep(0.002)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        dt, out = timed(fn)
    finally:
        stop[0] = True
        t.join()
    return dt, out, max(peak[0], _rss()) - start


def _ig_with_memory(model, clean, corrupted, metric):
    dt, ig, mem = peak_extra_bytes(lambda: edge_attribution(model, clean, corrupted, metric, method="eap-ig", steps=5))
    return dt, (ig, mem)


def pair(model):
    clean, corrupted = model.to_tokens(CLEAN), model.to_tokens(CORRUPTED)
    assert clean.shape == corrupted.shape, (clean.shape, corrupted.shape)
    return clean, corrupted


def batch(model, n: int = 8, length: int = 100):
    clean, corrupted = pair(model)
    q = clean.shape[1] - 1
    rows_c, rows_r = [], []
    for text in LEAD_INS[:n]:
        lead = model.to_tokens(" ".join([text] * 12), prepend_bos=False)[0, : length - 1 - q]
        rows_c.append(torch.cat([clean[0, :1], lead, clean[0, 1:]]))
        rows_r.append(torch.cat([corrupted[0, :1], lead, corrupted[0, 1:]]))
    return torch.stack(rows_c), torch.stack(rows_r)


def batch_early(model, n: int = 8, length: int = 100):
    """:func:`batch` with the corrupted prompts' first two lead-in tokens swapped (positions 1, 2):
    clean and corrupted then share only position 0."""
    clean, corrupted = batch(model, n, length)
    corrupted = corrupted.clone()
    corrupted[:, [1, 2]] = corrupted[:, [2, 1]]
    assert bool((corrupted[:, 1] != clean[:, 1]).all())
    return clean, corrupted


def forward_seconds(model, tokens) -> tuple[float, float]:
    """(wall, process CPU) seconds of one forward without gradients, medians of three."""
    with torch.no_grad():
        model(tokens)
        wall, cpu = [], []
        for _ in range(3):
            dt, (dc, _) = timed(lambda: cpu_timed(lambda: model(tokens)))
            wall.append(dt)
            cpu.append(dc)
    return statistics.median(wall), statistics.median(cpu)


def cpu_timed(fn):
    """(process CPU seconds, result) of ``fn()``: less moved by other processes on the cores
    than wall time (on a loaded 2-core machine wall time counts their turns too)."""
    c0 = time.process_time()
    out = fn()
    return time.process_time() - c0, out


def run_case(name, model, clean, corrupted, metric, exact_sample: int):
    # the CI machines are shared and their load drifts within a run: each item is divided by a
    # forward timed just before it (its median of three), and the load is printed beside it
    edge_attribution(model, clean, corrupted, metric, method="eap")  # warm-up (first hooked runs)
    rows, fwds = [], []

    def item(what, target, fn, edges=0):
        fwd, fwd_cpu = forward_seconds(model, clean)
        fwds.append(fwd)
        c0 = time.process_time()
        dt, out = fn()
        cpu = time.process_time() - c0
        rows.append([what, dt, dt / fwd, cpu / fwd_cpu, target if not edges else f"{edges / dt:.1f} edges/s",
                     f"{os.getloadavg()[0]:.1f}"])
        return out

    item("EAP (all edges)", "<= 5", lambda: timed(lambda: edge_attribution(model, clean, corrupted, metric, method="eap")))
    t_mem = item("EAP-IG, 5 steps", "<= 18", lambda: _ig_with_memory(model, clean, corrupted, metric))
    ig, mem = t_mem
    curve = item("faithfulness curve (20 circuits)", "<= 12", lambda: timed(lambda: faithfulness_curve(model, clean, corrupted, metric, ig)))
    graph = ig.graph
    gen = torch.Generator().manual_seed(0)
    edges = torch.randperm(graph.n_edges, generator=gen)[:exact_sample].sort().values
    masks = torch.zeros(len(edges), graph.n_edges, dtype=torch.bool)
    masks[torch.arange(len(edges)), edges] = True
    runs = ig._runs
    item(f"exact, {len(edges)} sampled edges", "", lambda: timed(lambda: ep.evaluate(runs, masks, "patch", metric)), edges=len(edges))
    n, p = clean.shape
    buffer = n * p * len(graph.writers) * int(model.cfg.d_model) * 4
    print(f"\n{name}: batch {n} x {p} tokens, {graph.n_edges} edges, one forward {min(fwds) * 1000:.0f}-{max(fwds) * 1000:.0f} ms")
    print_table(["what", "seconds", "x forward", "x forward (CPU)", "target", "load"], rows)
    print(f"EAP-IG peak extra memory {mem / 2**20:.0f} MiB; its buffer (batch x pos x {len(graph.writers)} "
          f"writers x d_model floats) {buffer / 2**20:.0f} MiB; ratio {mem / buffer:.2f}")
    print(f"shared prefix {ig.stats['shared_prefix']} of {p} positions; gradient runs started at {ig.stats['start']}"
          f"{' (' + ig.stats['fallback'] + ')' if ig.stats['fallback'] else ''}, patched runs at {curve.stats['start']}"
          f"{' (' + curve.stats['fallback'] + ')' if curve.stats['fallback'] else ''}")
    print("faithfulness (top):   ", " ".join(f"{v:.2f}" for v in curve.faithfulness.tolist()))
    print("faithfulness (random):", " ".join(f"{v:.2f}" for v in curve.random.tolist()))
    print(f"AUC {curve.auc:.3f} (random {curve.auc_random:.3f}); top edges: {ig.top(5)}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    print(machine_line())
    try:
        model = models.smollm2()
    except ModelLoadError as err:
        print(f"SmolLM2 unavailable, nothing to measure: {err}")
        return
    tok = model.tokenizer
    answer = tok.encode(" Paris", add_special_tokens=False)[0]
    wrong = tok.encode(" Rome", add_special_tokens=False)[0]
    metric = logit_diff_metric(answer, wrong)
    print(f"graph: {component_graph(model)}")
    clean, corrupted = pair(model)
    run_case("factual pair", model, clean, corrupted, metric, exact_sample=64)
    if not args.quick:
        clean, corrupted = batch(model)
        run_case("batch (shared prefix)", model, clean, corrupted, metric, exact_sample=8)
        clean, corrupted = batch_early(model)
        run_case("batch, early difference", model, clean, corrupted, metric, exact_sample=8)


if __name__ == "__main__":
    main()
