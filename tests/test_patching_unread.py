"""Cells whose patch cannot reach what the metric reads, and the last block computed only at the
read positions (``_patching_engine._unread``, ``_read_queries``).

A metric that declares its positions (here one in the middle of the prompt) cannot see a patch at
a later position (causal attention), nor, in the last block, a patch of an activation that only
feeds its own position's output (``resid_mid``/``resid_post``/``attn_out``/``mlp_out``, a head's
``z``/``q``, a row of its pattern) at a position it does not read: those cells are the base run's
value without a run. Keys, values and the residual entering the last block do reach the read
position from earlier positions, and must run. On the toy model (TransformerLens's
``NativeAttention``) the last block of every position-start batch also computes queries, attention
and output only at the read positions.

References are TransformerLens's ``get_act_patch_*`` (one full forward per cell, nothing skipped);
the cells that must run move the metric by far more than the tolerance (asserted), so a rule that
skipped one of them would fail.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from lenswidget import models
from lenswidget.analysis import _position_start as ps
from lenswidget.analysis import logit_diff_metric, patch_sweep
from lenswidget.analysis._patching_sites import SITES

from tests.test_patching_engine import ATOL, tl_reference

READ = 5  # the position the metric reads, of 9
PER_POSITION = {"resid_mid", "resid_post", "attn_out", "mlp_out", "z", "q", "pattern"}


def pair(model, length: int = 9, seed: int = 0):
    """Two prompts per batch that agree at position 0 only; a metric at position ``READ``."""
    gen = torch.Generator().manual_seed(seed)
    vocab = int(model.cfg.d_vocab)
    clean = torch.randint(4, vocab, (2, length), generator=gen)
    corrupted = clean.clone()
    corrupted[:, 1:] = torch.randint(4, vocab, (2, length - 1), generator=gen)
    return clean, corrupted, logit_diff_metric([5, 6], [7, 8], pos=READ)


def expected_unread(model, site: str, shape) -> set:
    """The cells the metric at ``READ`` cannot see, written out from the rule above."""
    spec = SITES[site]
    axis = next(i for i, d in enumerate(spec.dims) if d in ("pos", "dest_pos"))
    last = int(model.cfg.n_layers) - 1
    out = set()
    for cell in itertools.product(*[range(k) for k in shape]):
        q = cell[axis]
        if q == 0:
            continue  # the shared prefix (test_patching_shared_prefix.py)
        if q > READ or (spec.act in PER_POSITION and cell[0] == last and q != READ):
            out.add(cell)
    return out


def check(model, site: str, res, ref) -> None:
    torch.testing.assert_close(res.values, ref.float().cpu(), atol=ATOL, rtol=0)
    unread = expected_unread(model, site, tuple(res.values.shape))
    s = res.stats
    assert s["unread_cells"] == len(unread) > 0, s
    for cell in unread:  # TransformerLens's runs of them are the base value too
        assert abs(float(ref[cell]) - res.baseline_value) <= ATOL, cell
    # every other cell after the shared prefix ran, and the metric can tell
    axis = next(i for i, d in enumerate(res.dims) if d in ("pos", "dest_pos"))
    ran = [c for c in itertools.product(*[range(k) for k in res.values.shape])
           if c not in unread and c[axis] > 0]
    assert s["runs"] == len(ran), s
    moved = torch.tensor([float(res.values[c]) for c in ran]) - res.baseline_value
    assert moved.abs().max().item() > 100 * ATOL, site


@pytest.mark.parametrize("site", ["attn_head_out_by_pos", "resid_post", "attn_out",
                                  "attn_head_q_by_pos", "attn_head_pattern_by_pos",
                                  "resid_pre", "attn_head_k_by_pos", "attn_head_v_by_pos"])
def test_toy_unread_cells_equal_transformer_lens(toy_model, site):
    clean, corrupted, metric = pair(toy_model)
    res = patch_sweep(toy_model, clean, corrupted, metric, site, batch_size=4)
    check(toy_model, site, res, tl_reference(toy_model, clean, corrupted, metric, site))
    if site in ("resid_pre", "attn_head_k_by_pos", "attn_head_v_by_pos"):
        # the last block's keys/values/input at earlier positions reach the read one: they ran
        last = int(toy_model.cfg.n_layers) - 1
        assert (res.values[last, 1:READ] - res.baseline_value).abs().max() > 100 * ATOL


@pytest.mark.parametrize("site", ["mlp_out", "attn_out", "resid_pre"])
def test_hf_unread_cells_equal_transformer_lens(site):
    """A model with MLPs (GPT-2 layout, Hugging Face attention: every position is computed)."""
    model = models.random_hf("gpt2", seed=0, initializer_range=0.2)
    clean, corrupted, metric = pair(model)
    res = patch_sweep(model, clean, corrupted, metric, site, batch_size=3)
    check(model, site, res, tl_reference(model, clean, corrupted, metric, site))
    assert res.stats["query_skipped_tokens"] == 0  # not NativeAttention: no read-only last block


def test_the_last_block_runs_only_the_read_positions(toy_model):
    clean, corrupted, metric = pair(toy_model)
    res = patch_sweep(toy_model, clean, corrupted, metric, "resid_pre", batch_size=4)
    s = res.stats
    assert s["query_skipped_tokens"] > 0 and s["query_fallback_reason"] == "", s
    # the same metric, undeclared: every cell runs at every position, and the values agree
    def undeclared(logits):
        at = logits[:, READ]
        return (at[[0, 1], [5, 6]] - at[[0, 1], [7, 8]]).mean()

    res_all = patch_sweep(toy_model, clean, corrupted, undeclared, "resid_pre", batch_size=4)
    assert res_all.stats["query_skipped_tokens"] == 0 and res_all.stats["unread_cells"] == 0
    torch.testing.assert_close(res.values, res_all.values, atol=ATOL, rtol=0)


def test_a_wrong_read_only_block_is_caught_and_turned_off(toy_model, monkeypatch):
    """The first read-only batch carries unpatched rows checked against the model's logits; a
    broken read-only forward (here: no causal mask) fails it, and the sweep computes every
    position instead, still equal to TransformerLens."""
    real = ps._causal_bias

    def no_mask(attn, seq, kv, like, rows=None):
        bias = real(attn, seq, kv, like, rows)
        return torch.zeros_like(bias) if rows is not None else bias

    monkeypatch.setattr(ps, "_causal_bias", no_mask)
    clean, corrupted, metric = pair(toy_model)
    res = patch_sweep(toy_model, clean, corrupted, metric, "resid_pre", batch_size=4)
    assert "differ" in res.stats["query_fallback_reason"], res.stats
    ref = tl_reference(toy_model, clean, corrupted, metric, "resid_pre")
    torch.testing.assert_close(res.values, ref.float(), atol=ATOL, rtol=0)
