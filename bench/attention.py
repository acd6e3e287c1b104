"""Attention grid speed: lenswidget vs TransformerLens, measured in the same run.

    python bench/attention.py [--quick]

Targets (issue 2): toy model ablate-click to new result in Python <= 50 ms; SmolLM2 with a 30-token
prompt: the grid of all 270 heads ready <= 2 s after the cell runs (model loaded), ablate <= 1.5 s;
<= 2 bytes per attention weight sent. The browser round trips are in bench/browser.py.

The TransformerLens baseline does the same work with TransformerLens's own API: `run_with_cache`
plus `head_detector.detect_head` for each score (one call per score, as a user would), and
`run_with_hooks` with a hook on `hook_z` for the ablation.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_line, median_ms  # noqa: E402
from transformer_lens.head_detector import detect_head  # noqa: E402

import lenswidget  # noqa: E402
from lenswidget import models  # noqa: E402
from lenswidget.analysis import detection_patterns  # noqa: E402


def tl_grid(model, prompt: str) -> None:
    tokens = model.to_tokens(prompt)
    _, cache = model.run_with_cache(tokens, remove_batch_dim=True)
    for name in ("previous_token_head", "duplicate_token_head", "induction_head"):
        detect_head(model, prompt, name, cache=cache)
    detect_head(model, prompt, detection_patterns(tokens)["first_token"], cache=cache)


def tl_ablate(model, tokens, layer: int, head: int) -> None:
    def hook(z, hook):
        z = z.clone()
        z[:, :, head] = 0
        return z

    with torch.inference_mode():
        model(tokens)
        model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", hook)])


def widget_click(grid, kind: str, args: dict) -> dict:
    """One front-end request through the widget's own message handler (what a click does)."""
    replies = []

    def send(content, buffers=None):
        replies.append(dict(content, bytes=sum(len(b) for b in buffers or [])))

    grid.send = send
    grid._on_msg(grid, {"type": "request", "id": "bench", "kind": kind, "args": args}, [])
    assert replies and replies[-1]["ok"], replies
    return replies[-1]


def bench(name: str, lens, prompt: str, layer: int, head: int, repeat: int, targets: dict) -> list[tuple]:
    rows = []
    model = lens.model
    n_tokens = lens.tokenize(prompt).shape[1]

    def make_grid():
        lens.clear_cache()
        return lens.attention(prompt)

    grid_ms = median_ms(make_grid, repeat)
    tl_grid_ms = median_ms(lambda: tl_grid(model, prompt), repeat)
    rows.append((name, f"grid of {lens.n_layers * lens.n_heads} heads, {n_tokens} tokens", grid_ms, tl_grid_ms, targets.get("grid")))

    grid = lens.attention(prompt)
    ablate_ms = median_ms(lambda: widget_click(grid, "ablate", {"layer": layer, "head": head, "mode": "zero"}), repeat)
    tokens = lens.tokenize(prompt)
    tl_ablate_ms = median_ms(lambda: tl_ablate(model, tokens, layer, head), repeat)
    rows.append((name, f"ablate L{layer}H{head} click -> result", ablate_ms, tl_ablate_ms, targets.get("ablate")))

    n_weights = lens.n_layers * lens.n_heads * n_tokens * n_tokens
    print(f"{name}: {len(grid.patterns)} pattern bytes for {n_weights} weights = "
          f"{len(grid.patterns) / n_weights:.2f} bytes/weight (target <= 2), "
          f"+ {len(grid.scores)} score bytes")
    return rows


def display_bytes(grid) -> int:
    """Bytes one display of ``grid`` sends: every synced trait (buffers + JSON)."""
    import json

    total = 0
    for name in grid.keys:
        value = getattr(grid, name)
        total += len(value) if isinstance(value, bytes) else len(json.dumps(value, default=str))
    return total


def long_prompts(lens, name: str, lengths: list[int]) -> None:
    """The grid on long prompts: build time, bytes per display, focus request time, peak memory."""
    import resource

    words = ("the cat sat on the mat while a dog ran to the door and the bird sang in the tree " * 600).split()
    for n in lengths:
        prompt = " ".join(words[: n * 2])
        tokens = lens.model.to_tokens(prompt)[0][: n]
        prompt = lens.model.to_string(tokens[1:])
        t0 = time.perf_counter()
        grid = lens.attention(prompt)
        build = time.perf_counter() - t0
        T = len(grid.tokens)
        layer = lens.n_layers // 2
        timed = {}
        for what, kind, args in [
            ("overview", "overview", {"layer": layer, "head": 1}),
            ("first window", "window", {"layer": layer, "head": 1, "q0": 0, "q1": 64, "k0": 0, "k1": 64}),
            ("moved window (block rerun)", "window", {"layer": layer, "head": 1, "q0": T - 64, "q1": T, "k0": T // 2, "k1": T // 2 + 64}),
            ("moved again (slice)", "window", {"layer": layer, "head": 1, "q0": T - 128, "q1": T - 64, "k0": 0, "k1": 64}),
        ]:
            t0 = time.perf_counter()
            reply = widget_click(grid, kind, args)
            timed[what] = (time.perf_counter() - t0, reply["bytes"])
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        focus = ", ".join(f"{w} {t * 1000:.0f} ms ({b / 1e6:.2f} MB)" for w, (t, b) in timed.items())
        print(f"{name} long: {T} tokens, {lens.n_layers}x{lens.n_heads} heads: grid built in {build:.1f} s, "
              f"display sends {display_bytes(grid) / 1e6:.2f} MB (bound 8 MB; thumbnails "
              f"{grid.patterns_meta['size']}² {grid.patterns_meta['dtype']}); focus: {focus}; peak RSS {rss:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--no-smollm2", action="store_true")
    parser.add_argument("--long", type=int, nargs="*", help="SmolLM2 grid on prompts of these token lengths only")
    parser.add_argument("--llama32", type=int, default=0, help="a random 32x32 Llama-shaped model on this many tokens")
    args = parser.parse_args()
    if args.llama32:
        lens = lenswidget.Lens(models.random_hf("llama", n_layers=32, n_heads=32, n_kv_heads=8, d_model=256,
                                                n_ctx=args.llama32 + 8))
        long_prompts(lens, "llama32x32", [args.llama32])
    if args.long:
        long_prompts(lenswidget.Lens(models.smollm2()), "smollm2", args.long)
    if args.long or args.llama32:
        return
    repeat = 3 if args.quick else 10
    torch.manual_seed(0)
    print(machine_line())
    rows = []
    toy = lenswidget.Lens(models.toy())
    rows += bench("toy", toy, "the cat sat on the mat and the dog ran home . the cat sat on the mat and the dog ran home",
                  1, 0, repeat, {"ablate": 50})
    if not args.no_smollm2:
        smol = lenswidget.Lens(models.smollm2())
        prompt = ("The Eiffel Tower is located in the city of Paris, and the Colosseum is located in the "
                  "city of Rome, which is the capital")
        n = smol.tokenize(prompt).shape[1]
        rows += bench("smollm2", smol, prompt, 10, 3, max(3, repeat // 3), {"grid": 2000, "ablate": 1500})
        print(f"smollm2 prompt: {n} tokens")
    print()
    print(f"{'model':8} {'what':44} {'lenswidget ms':>14} {'TL ms':>10} {'TL/ours':>8} {'target ms':>10} ok")
    for model, what, ours, tl, target in rows:
        ok = "" if target is None else ("yes" if ours <= target else "NO")
        print(f"{model:8} {what:44} {ours:14.1f} {tl:10.1f} {tl / ours:8.2f} {target or '':>10} {ok}")


if __name__ == "__main__":
    main()
