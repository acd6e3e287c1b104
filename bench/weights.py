"""Weight-circuit speed on SmolLM2: lenswidget vs TransformerLens, measured in the same run.

    python bench/weights.py [--quick]

Targets (issue 9): all composition scores (Q, K and V) <= 3 s and no slower than TransformerLens's
``TransformerBridge.all_composition_scores``; copying scores of all 270 heads <= 3 s; an OV table
for 50 source tokens <= 0.5 s.

TransformerLens baselines: ``all_composition_scores(kind)`` for each kind (about a minute each on
a 2-core machine; ``--quick`` times only "K" and compares per kind); for copying scores the
framework demo's ``FactoredMatrix(W_E W_V, W_O W_U).eigenvalues``, timed on one layer's 9 heads
and scaled to 270 (running it on all heads needs [270, 64, 49152] products, ~3.4 GB).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import best_of, machine_line, matmul_gflops, print_table, timed  # noqa: E402
from transformer_lens.FactoredMatrix import FactoredMatrix  # noqa: E402

from lenswidget import models  # noqa: E402
from lenswidget.analysis import all_composition_scores, copying_scores, ov_circuit  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="time TransformerLens on the K kind only")
    args = ap.parse_args()
    print(machine_line(), f"matmul {matmul_gflops():.0f} GFLOP/s")
    model = models.smollm2()
    rows = []

    # composition scores, all three kinds
    ours_t, ours = best_of(lambda: all_composition_scores(model), repeat=2)
    kinds = ["k"] if args.quick else ["q", "k", "v"]
    tl_t, worst = 0.0, 0.0
    with torch.no_grad():
        for kind in kinds:
            dt, ref = timed(lambda: model.all_composition_scores(kind.upper()).scores)
            tl_t += dt
            worst = max(worst, float((ours[kind].scores - ref).abs().max()))
    per_kind = " (K only; ours per kind = total / 3)" if args.quick else ""
    ours_cmp = ours_t / 3 if args.quick else ours_t
    rows.append(["composition, 3 kinds" + per_kind, ours_t, tl_t, tl_t / ours_cmp, "<= 3 s, >= 1x", f"max |diff| {worst:.1e}"])

    # copying scores of all 270 heads
    cop_t, cop = best_of(lambda: copying_scores(model), repeat=2)
    W_V = model._expand_kv_heads(model.W_V)
    layer = 12

    def tl_copying_one_layer() -> torch.Tensor:
        with torch.no_grad():
            lam = FactoredMatrix(model.W_E @ W_V[layer], model.W_O[layer] @ model.W_U).eigenvalues
            return lam.sum(-1).real / lam.abs().sum(-1)

    tl_one, ref = timed(tl_copying_one_layer)
    diff = float((cop[layer] - ref.float()).abs().max())
    tl_all = tl_one * model.cfg.n_layers
    rows.append(["copying scores, 270 heads", cop_t, tl_all, tl_all / cop_t, "<= 3 s", f"TL est. from 1 layer; max |diff| {diff:.1e}"])

    # OV table of 50 source tokens
    ids = torch.arange(1000, 1050)
    ov_t, _ = best_of(lambda: ov_circuit(model, 9, 4, ids, k=10), repeat=3)

    def explicit() -> torch.Tensor:
        with torch.no_grad():
            return (model.W_E[ids] @ W_V[9, 4] @ model.W_O[9, 4] @ model.W_U).topk(10)

    ex_t, _ = best_of(explicit, repeat=3)
    rows.append(["OV table, 50 source tokens", ov_t, ex_t, ex_t / ov_t, "<= 0.5 s", "baseline: explicit rows + topk"])

    print_table(["what", "lenswidget s", "TransformerLens s", "ratio", "target", "note"], rows)


if __name__ == "__main__":
    main()
