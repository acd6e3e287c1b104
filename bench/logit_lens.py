"""Logit lens and DLA on a 512-token SmolLM2 prompt: time and peak memory vs TransformerLens.

    .venv/bin/python bench/logit_lens.py [--tokens 512] [--naive]

Compares, from one cached run:
  * ``lenswidget.analysis.logit_lens`` (top-10 and a target's prob/logit/rank in one chunked pass)
  * TL's ``tools.analysis.logit_lens`` (chunked too, but one selector per call: top-k and targets
    take two passes)
  * with ``--naive``: TL's recipe ``accumulated_resid(apply_ln=True) @ W_U + b_U`` -> softmax ->
    topk, which materialises [31, pos, 49152] (3.1 GB of float32 at 512 tokens, several copies)
  * DLA of the last position: ours vs TL's ``stack_head_results`` + ``decompose_resid`` +
    ``logit_attrs`` (which compute head results for every position).
Peak memory is the process's resident set sampled every 2 ms, minus what it was before the step.
CPU time is summed over threads (torch uses one per core); on a shared machine wall time inflates.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from contextlib import contextmanager
from typing import Iterator

import torch


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextmanager
def measure(name: str, rows: dict) -> Iterator[None]:
    base, peak, done = rss(), [rss()], threading.Event()

    def poll() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.002)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    start, cpu = time.perf_counter(), time.process_time()
    try:
        yield
    finally:
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        done.set()
        thread.join()
        rows[name] = (seconds, (peak[0] - base) / 2**20)
        print(f"{name:<52} {seconds:7.2f} s wall {cpu:7.2f} s cpu  peak +{rows[name][1]:6.0f} MiB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--naive", action="store_true", help="also run TL's materialising recipe (~10 GB)")
    args = parser.parse_args()

    from transformer_lens.tools.analysis.logit_lens import logit_lens as tl_logit_lens

    from lenswidget import models
    from lenswidget.analysis import direct_logit_attribution, logit_lens

    model = models.smollm2()
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, model.cfg.d_vocab, (1, args.tokens), generator=gen)
    tokens[0, 0] = model.tokenizer.bos_token_id or 0
    target = model.to_single_token(" Paris")
    print(f"SmolLM2-135M, load average {os.getloadavg()[0]:.1f},  {args.tokens} tokens, {model.cfg.n_layers + 1} rows, vocab {model.cfg.d_vocab}, "
          f"torch threads {torch.get_num_threads()}")
    rows: dict[str, tuple[float, float]] = {}

    with measure("forward (run_with_cache, all hooks)", rows):
        with torch.inference_mode():
            _, cache = model.run_with_cache(tokens)

    with measure("lenswidget logit_lens (top-10 + target)", rows):
        ours = logit_lens(model, tokens, k=10, target=target, cache=cache)
    with measure("lenswidget with_target (another target)", rows):
        ours.with_target(target + 1)
    with measure("TL tools logit_lens top_k=10", rows):
        ref = tl_logit_lens(model, cache=cache, positions=None, top_k=10)
    with measure("TL tools logit_lens targets (probs)", rows):
        ref_t = tl_logit_lens(model, cache=cache, positions=None, targets=target, return_type="probs")
    assert torch.equal(ref.readout.top_ids[:, 0], ours.top_ids)
    assert torch.equal(ref_t.readout.target_ranks[:, 0, :, 0], ours.target_rank)
    if args.naive:
        with measure("TL accumulated_resid(apply_ln) @ W_U, softmax, topk", rows):
            with torch.no_grad():
                acc = cache.accumulated_resid(apply_ln=True)
                probs = (acc @ model.W_U + model.b_U).softmax(-1)
                probs.topk(10, dim=-1)
                del acc, probs

    with measure("lenswidget direct_logit_attribution (last pos)", rows):
        dla = direct_logit_attribution(model, tokens, target, cache=cache)
    with measure("TL stack_head_results+decompose_resid+logit_attrs", rows), torch.no_grad():
        # (a cache made under inference_mode needs no_grad here: W_O requires grad)
        heads = cache.stack_head_results(pos_slice=-1)
        dec = cache.decompose_resid(pos_slice=-1)
        cache.logit_attrs(torch.cat([heads, dec]), target, pos_slice=-1)

    ours_t = rows["lenswidget logit_lens (top-10 + target)"][0]
    tl_t = rows["TL tools logit_lens top_k=10"][0] + rows["TL tools logit_lens targets (probs)"][0]
    print(f"\nlogit lens: TL (top-k + targets) / lenswidget = {tl_t / ours_t:.2f}x time; "
          f"full [rows, pos, vocab] float32 would be {(model.cfg.n_layers + 1) * args.tokens * model.cfg.d_vocab * 4 / 2**30:.1f} GiB, "
          f"chunk {ours.chunk_rows} cells")
    print(f"DLA: TL / lenswidget = {rows['TL stack_head_results+decompose_resid+logit_attrs'][0] / rows['lenswidget direct_logit_attribution (last pos)'][0]:.1f}x time; "
          f"{len(dla)} components, top: {dla.top(3)}")


if __name__ == "__main__":
    main()
