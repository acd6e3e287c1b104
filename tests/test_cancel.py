"""Cancel provably stops work: a sweep long enough to cancel stops after fewer cells than its
total, returns what it did (equal to an uncancelled sweep there), and leaves the session free for
the next request at once."""

from __future__ import annotations

import threading
import time

import torch

from lenswidget.analysis import logit_diff_metric, patch_sweep

WORDS = "the cat sat on the mat and the dog ran home".split()


def long_pair(lens, n_words: int = 60):
    words = (WORDS * 10)[:n_words]
    clean = " ".join(words)
    corrupted = " ".join(["bird" if w == "cat" else w for w in words])
    return clean, corrupted


def test_cancel_from_another_thread_stops_the_sweep_and_frees_the_session(toy_lens):
    lens = toy_lens
    clean, corrupted = long_pair(lens)
    hm = lens.patching(clean, corrupted, "mat", "dog", sites=["attn_head_out_by_pos"])
    started = threading.Event()
    seen: list[tuple[int, int]] = []

    def progress(done, total, site):
        seen.append((done, total))
        if done > 0:
            started.set()

    out: dict = {}
    worker = threading.Thread(target=lambda: out.setdefault("r", hm.sweep(progress=progress)))
    worker.start()
    assert started.wait(60), "the sweep never reported progress"
    hm.cancel()
    t0 = time.perf_counter()
    worker.join(60)
    assert not worker.is_alive()
    stopped_after = time.perf_counter() - t0
    res = out["r"]["attn_head_out_by_pos"]
    total = res.values.numel()
    done = int(res.done_mask.sum())
    assert res.partial and 0 < done < total, (done, total)
    # runs actually made, not only results hidden (cells patched in the prompts' shared prefix
    # are the unpatched value and need no run)
    assert res.stats["runs"] > 0 and res.stats["runs"] + res.stats["unchanged_cells"] == done < total
    assert torch.isnan(res.values[~res.done_mask]).all()
    assert seen[-1][0] == done < seen[-1][1] == total
    # the session is free at once: the next request runs without waiting
    assert lens.running == "" and stopped_after < 30
    t1 = time.perf_counter()
    cell = hm.patch("attn_head_out_by_pos", [1, res.values.shape[1] - 1, 0])
    assert time.perf_counter() - t1 < 10 and cell["value"] == cell["value"]
    # the cells it did compute are the uncancelled sweep's (the widget shows recovery by default)
    metric = logit_diff_metric(lens.token_id("mat"), lens.token_id("dog"))
    full = patch_sweep(lens.model, lens.tokenize(clean), lens.tokenize(corrupted), metric, "attn_head_out_by_pos")
    assert hm.metric == "normalized"
    expected = full.normalized()[res.done_mask]
    torch.testing.assert_close(res.values[res.done_mask], expected, atol=1e-4, rtol=0)
