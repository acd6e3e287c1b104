"""Sweeps over prompt pairs that share their first positions (``_patching_engine``): a cell patched
only where the two runs agree is the base run, and every other run starts at the first position
where some pair differs (``stats["shared_prefix"]``, ``stats["unchanged_cells"]``).

References are TransformerLens's ``get_act_patch_*`` (one full forward per cell, nothing skipped).
The pairs differ late (IOI-style: the prompts agree up to one name), every all-position cell and
every by-position cell after the prefix moves the metric far beyond the tolerance, so an engine
that skipped a cell it must run, or started a run too late, would fail.
"""

from __future__ import annotations

import pytest
import torch

from lenswidget import models
from lenswidget.analysis import _patching_engine as engine
from lenswidget.analysis import logit_diff_metric, patch_sweep

from tests.test_patching_engine import ATOL, tl_reference

SITES = ["resid_pre", "resid_post", "mlp_out", "attn_head_out_by_pos", "attn_head_out_all_pos",
         "attn_head_v_all_pos", "attn_head_pattern_all_pos", "attn_head_pattern_dest_src_pos"]


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def hf_model(request):
    return models.random_hf(request.param, seed=0, initializer_range=0.2)


def late_pair(model, differ_at=(5, 3), length: int = 8, seed: int = 0):
    """Pairs whose prompts agree before ``differ_at[i]`` (prompt i) and differ from there on;
    the batch's shared prefix is ``min(differ_at)``."""
    gen = torch.Generator().manual_seed(seed)
    vocab = int(model.cfg.d_vocab)
    clean = torch.randint(4, vocab, (len(differ_at), length), generator=gen)
    corrupted = clean.clone()
    for i, d in enumerate(differ_at):
        corrupted[i, d:] = torch.randint(4, vocab, (length - d,), generator=gen)
        corrupted[i, d] = (clean[i, d] + 1) % vocab  # differs at d for sure
    return clean, corrupted, logit_diff_metric([5, 6][: len(differ_at)], [7, 8][: len(differ_at)])


def pos_axis(res) -> int | None:
    return next((i for i, d in enumerate(res.dims) if d in ("pos", "dest_pos")), None)


def check(res, ref, shared: int) -> None:
    s = res.stats
    assert s["engine"] == "fast" and s["fallback_reason"] == "", s
    assert s["shared_prefix"] == shared and s["position_fallback_reason"] == "", s
    assert s["position_batches"] > 0, s
    torch.testing.assert_close(res.values, ref.float().cpu(), atol=ATOL, rtol=0)
    axis = pos_axis(res)
    if axis is None:  # all-position cells: each one runs (from the shared prefix on)
        assert s["unchanged_cells"] == 0
        moved = res.values
    else:
        before = res.values.narrow(axis, 0, shared)
        # plus, on the last block's per-position activations, the cells at positions the metric
        # does not read (test_patching_unread.py): they equal TransformerLens's runs above
        assert s["unchanged_cells"] == before.numel() + s["unread_cells"], s
        assert (before == res.baseline_value).all()
        moved = res.values.narrow(axis, shared, res.values.shape[axis] - shared)
    assert (moved - res.baseline_value).abs().max().item() > 100 * ATOL, res.site


@pytest.mark.parametrize("site", SITES)
def test_shared_prefix_equals_transformer_lens(hf_model, site):
    clean, corrupted, metric = late_pair(hf_model)
    # small batches: the first block-by-block batch starts at position 0 (it carries the
    # self-check) and takes what it can; the rest must run position-start
    res = patch_sweep(hf_model, clean, corrupted, metric, site, batch_size=2)
    check(res, tl_reference(hf_model, clean, corrupted, metric, site), shared=3)


@pytest.mark.parametrize("site", ["resid_pre", "attn_head_out_all_pos", "attn_head_k_by_pos"])
def test_toy_shared_prefix_equals_transformer_lens(toy_model, site):
    """The toy model (native attention, the engine's own prefix forward); the noising direction."""
    clean, corrupted, metric = late_pair(toy_model, differ_at=(4, 6), length=9)
    res = patch_sweep(toy_model, clean, corrupted, metric, site, batch_size=2, direction="noise")
    # noising patches corrupted activations into the clean run: TL with the prompts swapped
    check(res, tl_reference(toy_model, corrupted, clean, metric, site), shared=4)


def test_a_metric_reading_every_position(hf_model):
    """Positions before the shared prefix come from the base run, after it from the patched one."""
    clean, corrupted, _ = late_pair(hf_model)

    def metric(logits):  # no `positions`: every position is read
        return logits[:, :, 5].mean() - logits[:, :, 7].mean()

    res = patch_sweep(hf_model, clean, corrupted, metric, "attn_head_out_all_pos", batch_size=3)
    check(res, tl_reference(hf_model, clean, corrupted, metric, "attn_head_out_all_pos"), shared=3)


@pytest.mark.parametrize("site", ["resid_pre", "attn_head_out_by_pos"])
def test_a_failed_prefix_check_runs_every_cell(hf_model, monkeypatch, site):
    """If the unpatched runs disagreed at the shared positions the sweep would not trust them
    (nor that the model is causal): it says why, runs every cell (those the metric's position
    could not see on a causal model too), and still equals TransformerLens."""
    monkeypatch.setattr(engine, "_shared_prefix_reason", lambda st, shared: "forced for the test")
    clean, corrupted, metric = late_pair(hf_model)
    res = patch_sweep(hf_model, clean, corrupted, metric, site, batch_size=3)
    s = res.stats
    assert s["shared_prefix"] == 0 and s["unchanged_cells"] == 0 and s["unread_cells"] == 0, s
    assert s["position_fallback_reason"] == "forced for the test", s
    assert s["runs"] == res.values.numel()
    ref = tl_reference(hf_model, clean, corrupted, metric, site)
    torch.testing.assert_close(res.values, ref.float(), atol=ATOL, rtol=0)


def test_the_prefix_check_compares_the_unpatched_runs():
    """_shared_prefix_reason: "" where the logits agree at the shared positions, a reason where not."""
    st = engine.State(base_tokens=torch.zeros(1, 3, dtype=torch.long), source_tokens=torch.zeros(1, 3, dtype=torch.long))
    st.base_logits = torch.randn(1, 3, 5)
    st.source_logits = st.base_logits.clone()
    st.source_logits[0, 2] += 1.0
    assert engine._shared_prefix_reason(st, 2) == ""
    assert "differ" in engine._shared_prefix_reason(st, 3)


def test_equal_prompts_need_no_patched_run(toy_model):
    clean = models.toy_repeated_tokens(4, batch=2, seed=0)
    metric = logit_diff_metric(clean[:, 1], clean[:, 2])
    res = patch_sweep(toy_model, clean, clean.clone(), metric, "attn_head_out_all_pos")
    assert res.stats["runs"] == 0 and res.stats["unchanged_cells"] == res.values.numel()
    ref = tl_reference(toy_model, clean, clean.clone(), metric, "attn_head_out_all_pos")
    torch.testing.assert_close(res.values, ref.float(), atol=ATOL, rtol=0)


def test_fewer_positions_than_without_the_prefix(hf_model, monkeypatch):
    """The work: the sweep pushes fewer tokens through the blocks than with the prefix ignored."""
    clean, corrupted, metric = late_pair(hf_model, differ_at=(12, 10), length=16)
    on = patch_sweep(hf_model, clean, corrupted, metric, "attn_head_out_all_pos", batch_size=1)
    monkeypatch.setattr(engine.ps, "shared_prefix", lambda a, b: 0)
    off = patch_sweep(hf_model, clean, corrupted, metric, "attn_head_out_all_pos", batch_size=1)
    assert off.stats["shared_prefix"] == 0
    assert on.stats["block_tokens"] < 0.8 * off.stats["block_tokens"], (on.stats, off.stats)
    torch.testing.assert_close(on.values, off.values, atol=ATOL, rtol=0)
