"""The patching engine's position-start runs (``analysis/_position_start.py``) against
TransformerLens's ``get_act_patch_*`` and hand-written hooks.

A run patched at position ``p`` computes only positions ``p..`` with the base run's keys and
values before ``p``. Each test forces several block-by-block batches (``batch_size``), asserts
that the engine took that path (``stats["position_batches"] > 0``, no fallback), and that the
cells run from a later position move the metric far beyond the tolerance, so an engine that
returned the unpatched value there would fail.
"""

from __future__ import annotations

import functools

import pytest
import torch
import tqdm
from transformer_lens import patching as tlp

from lenswidget import models
from lenswidget.analysis import SITES, logit_diff_metric, patch_sweep
from lenswidget.analysis import _position_start as ps

ATOL = 1e-4
tlp.tqdm = functools.partial(tqdm.tqdm, disable=True)

BY_POS = ["resid_pre", "attn_out", "mlp_out", "attn_head_out_by_pos", "attn_head_q_by_pos",
          "attn_head_k_by_pos", "attn_head_pattern_by_pos"]


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def hf_model(request):
    """GPT-2 (learned positions, joint QKV) and Llama (rotary, grouped-query: 4 heads, 2 KV
    heads), random with wide weights so every site moves the metric."""
    return models.random_hf(request.param, seed=0, initializer_range=0.2)


def hf_pair(model, n_prompts: int = 2, length: int = 6, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    vocab = int(model.cfg.d_vocab)
    clean = torch.randint(4, vocab, (n_prompts, length), generator=gen)
    corrupted = torch.randint(4, vocab, (n_prompts, length), generator=gen)
    return clean, corrupted, logit_diff_metric([5, 6][:n_prompts], [7, 8][:n_prompts])


def toy_pair(model):
    clean = models.toy_repeated_tokens(4, batch=2, seed=0)  # [2, 9]
    other = models.toy_repeated_tokens(4, batch=2, seed=1)
    corrupted = clean.clone()
    corrupted[:, 1:5] = other[:, 1:5]
    return clean, corrupted, logit_diff_metric(clean[:, 1], corrupted[:, 1])


def tl_reference(model, clean, corrupted, metric, site):
    _, cache = model.run_with_cache(clean)
    spec = SITES[site]
    if spec.tl_function is None:  # resid_post: TransformerLens's generic patcher
        return tlp.generic_activation_patch(
            model, corrupted, cache, metric, patch_setter=tlp.layer_pos_patch_setter,
            activation_name=site, index_axis_names=("layer", "pos"),
        )
    return getattr(tlp, spec.tl_function)(model, corrupted, cache, metric)


def later_positions(res) -> torch.Tensor:
    """The values of the cells patched after position 0 (the ones run position-start)."""
    axis = next(i for i, d in enumerate(res.dims) if d in ("pos", "dest_pos"))
    return res.values.narrow(axis, 1, res.values.shape[axis] - 1)


def assert_position_start(res, ref) -> None:
    s = res.stats
    assert s["engine"] == "fast" and s["fallback_reason"] == "", s
    assert s["position_batches"] > 0 and s["position_fallback_reason"] == "", s
    torch.testing.assert_close(res.values, ref.float().cpu(), atol=ATOL, rtol=0)
    effect = (later_positions(res) - res.baseline_value).abs().max().item()
    assert effect > 100 * ATOL, (res.site, effect)


@pytest.mark.parametrize("site", BY_POS)
def test_hf_position_start_equals_transformer_lens(hf_model, site):
    model = hf_model
    clean, corrupted, metric = hf_pair(model)
    res = patch_sweep(model, clean, corrupted, metric, site, batch_size=3)
    assert_position_start(res, tl_reference(model, clean, corrupted, metric, site))


@pytest.mark.parametrize("site", ["attn_head_v_by_pos", "attn_head_pattern_dest_src_pos"])
def test_one_prompt_and_a_metric_reading_every_position(hf_model, site):
    """Batch of one (block inputs broadcast) and an opaque metric that reads every position:
    the logits before the run's start are the base run's, after it the patched run's."""
    model = hf_model
    clean, corrupted, _ = hf_pair(model, n_prompts=1, length=4, seed=1)

    def metric(logits):  # no `positions`: every position's logits are read
        return logits[:, :, 5].mean() - logits[:, :, 7].mean()

    res = patch_sweep(model, clean, corrupted, metric, site, batch_size=4)
    assert_position_start(res, tl_reference(model, clean, corrupted, metric, site))


@pytest.mark.parametrize("site", ["resid_post", "attn_head_out_by_pos", "attn_head_k_by_pos",
                                  "attn_head_pattern_dest_src_pos"])
def test_toy_position_start_equals_transformer_lens(toy_model, site):
    """The toy model's NativeAttention takes no cache: the engine's own forward with the prefix."""
    clean, corrupted, metric = toy_pair(toy_model)
    res = patch_sweep(toy_model, clean, corrupted, metric, site, batch_size=4)
    assert_position_start(res, tl_reference(toy_model, clean, corrupted, metric, site))


def test_resid_mid_position_start_equals_hand_written_hooks(hf_model):
    """resid_mid (residual between attention and MLP, both paths) against one hooked run per
    cell with the hand-written hooks of tests/test_patching_sites.py."""
    from tests.test_patching_sites import reference_hooks

    model = hf_model
    clean, corrupted, metric = hf_pair(model)
    res = patch_sweep(model, clean, corrupted, metric, "resid_mid", batch_size=3)
    _, src = model.run_with_cache(clean)
    _, base = model.run_with_cache(corrupted)
    ref = torch.zeros_like(res.values)
    with torch.no_grad():
        for layer in range(ref.shape[0]):
            for pos in range(ref.shape[1]):
                hooks = reference_hooks("resid_mid", layer, pos, src, base)
                ref[layer, pos] = metric(model.run_with_hooks(corrupted, fwd_hooks=hooks)).item()
    assert_position_start(res, ref)


def test_declared_positions_before_the_start_come_from_the_base_run(toy_model):
    """A metric declaring it reads position 3 and the last one: cells patched after position 3
    read the base run's logits at 3 and their own at the end; same values as the opaque metric."""
    clean, corrupted, _ = toy_pair(toy_model)

    class Two:
        positions = (3, -1)

        def __call__(self, logits):
            return logits[:, 3, 7].mean() + logits[:, -1, int(clean[0, 1])].mean()

    declared = patch_sweep(toy_model, clean, corrupted, Two(), "attn_head_out_by_pos", batch_size=4)
    opaque = patch_sweep(toy_model, clean, corrupted, lambda lg: Two()(lg), "attn_head_out_by_pos", batch_size=4)
    assert declared.stats["position_batches"] > 0 and opaque.stats["position_batches"] > 0
    torch.testing.assert_close(declared.values, opaque.values, atol=ATOL, rtol=0)
    assert declared.stats["unembed_tokens"] < opaque.stats["unembed_tokens"]
    assert not torch.isnan(declared.values).any()
    ref = tl_reference(toy_model, clean, corrupted, Two(), "attn_head_out_by_pos")
    torch.testing.assert_close(declared.values, ref.float(), atol=ATOL, rtol=0)


def test_every_run_of_a_declared_metric_sees_nan_where_it_does_not_read(toy_model):
    """The engine writes each run's logits into one frame kept for the sweep: across batches of
    different start positions, every call of a metric declaring (3, -1) still gets NaN at every
    other position and the read positions of its own run (equal to TransformerLens)."""
    clean, corrupted, _ = toy_pair(toy_model)
    p = clean.shape[1]
    others = [q for q in range(p) if q not in (3, p - 1)]
    seen = []

    class Two:
        positions = (3, -1)

        def __call__(self, logits):
            nan = torch.isnan(logits).all(-1).all(0)  # [pos]: NaN for every prompt and token
            seen.append("full" if not torch.isnan(logits).any() else nan.nonzero().flatten().tolist())
            return logits[:, 3, 7].mean() + logits[:, -1, int(clean[0, 1])].mean()

    res = patch_sweep(toy_model, clean, corrupted, Two(), "resid_pre", batch_size=3)
    assert res.stats["position_batches"] > 1, res.stats
    # a call is a full forward's logits, or a position-start run's: NaN at exactly the others
    assert all(c == "full" or c == others for c in seen), [c for c in seen if c != "full"][:3]
    assert sum(c == others for c in seen) >= res.stats["runs"] // 2, seen
    ref = tl_reference(toy_model, clean, corrupted, Two(), "resid_pre")
    torch.testing.assert_close(res.values, ref.float(), atol=ATOL, rtol=0)


def test_a_failed_position_check_falls_back_to_layer_start(toy_model, monkeypatch):
    """Wrong prefix keys make the unpatched position-start rows miss the base logits: the
    sweep says why, runs every cell from position 0, and still equals TransformerLens."""
    clean, corrupted, metric = toy_pair(toy_model)
    real = ps.PrefixKV._prefix

    def wrong(self, layer, start, rows):
        k, v = real(self, layer, start, rows)
        return k + 1.0, v

    monkeypatch.setattr(ps.PrefixKV, "_prefix", wrong)
    res = patch_sweep(toy_model, clean, corrupted, metric, "attn_head_out_by_pos", batch_size=4)
    s = res.stats
    assert s["engine"] == "fast" and s["position_batches"] == 0, s
    assert "differ" in s["position_fallback_reason"], s
    ref = tl_reference(toy_model, clean, corrupted, metric, "attn_head_out_by_pos")
    torch.testing.assert_close(res.values, ref.float(), atol=ATOL, rtol=0)


def test_position_start_computes_fewer_positions(toy_model):
    """The work: block tokens of a position-start sweep below a layer-start one's floor
    (every run at every position from its layer on)."""
    clean, corrupted, metric = toy_pair(toy_model)
    res = patch_sweep(toy_model, clean, corrupted, metric, "resid_pre", batch_size=2)
    n, p = clean.shape
    n_layers = toy_model.cfg.n_layers
    layer_start = sum(n * p * (n_layers - layer) for layer in range(n_layers) for _ in range(p))
    assert res.stats["position_batches"] > 0
    assert res.stats["block_tokens"] < layer_start, res.stats
