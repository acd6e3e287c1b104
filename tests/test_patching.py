"""Activation patching sweeps against TransformerLens's own ``get_act_patch_*`` functions."""

from __future__ import annotations

import functools

import pandas as pd
import pytest
import torch
import tqdm
from transformer_lens import patching as tlp

from lenswidget import models
from lenswidget.analysis import SITES, PatchResult, logit_diff_metric, patch_one, patch_sweep
from lenswidget.analysis.hooks import act_name
from lenswidget.errors import InputError

ATOL = 1e-4
tlp.tqdm = functools.partial(tqdm.tqdm, disable=True)  # TransformerLens draws a bar per sweep


def tl_reference(model, clean, corrupted, metric, site: str, index_df=None) -> torch.Tensor:
    """TransformerLens's result for ``site`` (denoising: clean cache into the corrupted run)."""
    _, cache = model.run_with_cache(clean)
    spec = SITES[site]
    if index_df is not None or spec.tl_function is None:
        fn = getattr(tlp, spec.tl_function) if spec.tl_function else None
        setter = fn.keywords["patch_setter"] if fn is not None else tlp.layer_pos_patch_setter
        kwargs = {"index_df": index_df} if index_df is not None else {"index_axis_names": ("layer", "pos")}
        return tlp.generic_activation_patch(
            model, corrupted, cache, metric, patch_setter=setter, activation_name=spec.act, **kwargs
        )
    return getattr(tlp, spec.tl_function)(model, corrupted, cache, metric)


def assert_matches(ours: PatchResult, ref: torch.Tensor) -> None:
    assert tuple(ours.values.shape) == tuple(ref.shape)
    torch.testing.assert_close(ours.values, ref.float().cpu(), atol=ATOL, rtol=0)
    assert not ours.partial and bool(ours.done_mask.all())


# ------------------------------------------------------------------ inputs
@pytest.fixture(scope="module")
def toy_pair(toy_model):
    """Two induction prompts (batch of 2): the clean ones repeat their words; the corrupted ones
    have other words in the first half, so the last token has no earlier copy."""
    clean = models.toy_repeated_tokens(3, batch=2, seed=0)  # [2, 7]
    other = models.toy_repeated_tokens(3, batch=2, seed=1)
    corrupted = clean.clone()
    corrupted[:, 1:4] = other[:, 1:4]
    metric = logit_diff_metric(clean[:, 1], corrupted[:, 1])
    return toy_model, clean, corrupted, metric


def hf_pair(model, n_prompts: int = 2, length: int = 5, seed: int = 0):
    """Prompts that differ at every position: on ``strong_hf_model`` every site then moves the
    metric by > 0.1, three orders of magnitude above ATOL."""
    gen = torch.Generator().manual_seed(seed)
    vocab = int(model.cfg.d_vocab)
    clean = torch.randint(4, vocab, (n_prompts, length), generator=gen)
    corrupted = torch.randint(4, vocab, (n_prompts, length), generator=gen)
    return clean, corrupted, logit_diff_metric([5, 6][:n_prompts], [7, 8][:n_prompts])


def assert_moves(ours: PatchResult, min_effect: float = 100 * ATOL) -> None:
    """The test can fail: some cell of the sweep is far (> 100 x ATOL) from the unpatched run,
    so returning the unpatched value everywhere would not pass."""
    effect = (ours.values - ours.baseline_value).abs().amax().item()
    assert effect > min_effect, (ours.site, effect)


TOY_SITES = [s for s, spec in SITES.items() if not spec.is_composite and s not in ("resid_mid", "mlp_out")]


# ------------------------------------------------------------------ equality with TransformerLens
@pytest.mark.parametrize("site", TOY_SITES)
def test_every_site_matches_transformer_lens_on_the_toy_model(toy_pair, site):
    model, clean, corrupted, metric = toy_pair
    ours = patch_sweep(model, clean, corrupted, metric, site)
    assert_matches(ours, tl_reference(model, clean, corrupted, metric, site))
    assert ours.values.std() > 0  # the patches do something
    assert ours.dims == SITES[site].dims and ours.site == site and ours.hook == SITES[site].hook


@pytest.mark.parametrize("site", ["attn_head_all_pos_every", "attn_head_by_pos_every"])
def test_stacked_sites_match_transformer_lens(toy_pair, site):
    model, clean, corrupted, metric = toy_pair
    _, cache = model.run_with_cache(clean)
    ref = getattr(tlp, f"get_act_patch_{site}")(model, corrupted, cache, metric)
    ours = patch_sweep(model, clean, corrupted, metric, site)
    assert_matches(ours, ref)
    assert ours.patch_types == SITES[site].parts and ours.dims[0] == "patch_type"


def test_batches_and_engines_give_the_same_values(toy_pair):
    model, clean, corrupted, metric = toy_pair
    one = patch_sweep(model, clean, corrupted, metric, "attn_head_out_by_pos")
    assert one.stats["batches"] == 1  # a toy sweep is one forward
    many = patch_sweep(model, clean, corrupted, metric, "attn_head_out_by_pos", batch_size=5)
    assert many.stats["batches"] > 2 and many.stats["engine"] == "fast", many.stats
    assert many.stats["fallback_reason"] == ""
    full = patch_sweep(model, clean, corrupted, metric, "attn_head_out_by_pos", batch_size=5, engine="full")
    assert full.stats["engine"] == "full"
    torch.testing.assert_close(many.values, one.values, atol=ATOL, rtol=0)
    torch.testing.assert_close(full.values, one.values, atol=ATOL, rtol=0)


def test_metrics_that_declare_their_positions_get_only_those_logits(toy_pair):
    model, clean, corrupted, metric = toy_pair
    assert metric.positions == (-1,)
    declared = patch_sweep(model, clean, corrupted, metric, "attn_head_q_by_pos", batch_size=4)
    opaque = patch_sweep(model, clean, corrupted, lambda lg: metric(lg), "attn_head_q_by_pos", batch_size=4)
    torch.testing.assert_close(declared.values, opaque.values, atol=ATOL, rtol=0)
    assert declared.stats["unembed_tokens"] < opaque.stats["unembed_tokens"]

    class Liar:  # reads the first position but declares the last: it sees NaN, not wrong numbers
        positions = (-1,)

        def __call__(self, logits):
            return logits[:, 0, 0].mean()

    res = patch_sweep(model, clean, corrupted, Liar(), "resid_pre", batch_size=2)
    k = res.stats["shared_prefix"]  # cells patched in the shared prefix need no run
    assert torch.isnan(res.values[1, k:]).all() and not torch.isnan(res.values[1, :k]).any()


def test_a_failed_self_check_falls_back_to_full_forwards(toy_pair, monkeypatch):
    from lenswidget.analysis import _patching_engine as engine

    model, clean, corrupted, metric = toy_pair
    good = patch_sweep(model, clean, corrupted, metric, "attn_out", batch_size=3)
    real = engine._unembed
    monkeypatch.setattr(engine, "_unembed", lambda m, h: real(m, h) + 1.0)  # an unknown final step
    res = patch_sweep(model, clean, corrupted, metric, "attn_out", batch_size=3)
    assert res.stats["engine"] == "full" and "differ" in res.stats["fallback_reason"]
    torch.testing.assert_close(res.values, good.values, atol=ATOL, rtol=0)


def test_later_batches_skip_the_blocks_before_the_patch(toy_pair):
    model, clean, corrupted, metric = toy_pair
    res = patch_sweep(model, clean, corrupted, metric, "resid_pre", batch_size=2)
    n_runs, tokens = res.values.numel(), clean.numel()
    full_cost = (n_runs + 2) * tokens * model.cfg.n_layers
    assert res.stats["block_tokens"] < full_cost


HF_SITES = ["resid_pre", "mlp_out", "attn_head_k_by_pos", "attn_head_q_by_pos"]


@pytest.mark.parametrize("site", HF_SITES)
def test_hf_architectures_match_transformer_lens(strong_hf_model, site):
    model = strong_hf_model
    clean, corrupted, metric = hf_pair(model)
    ours = patch_sweep(model, clean, corrupted, metric, site, batch_size=3)
    assert_matches(ours, tl_reference(model, clean, corrupted, metric, site))
    assert_moves(ours)
    assert ours.stats["engine"] == "fast" and ours.stats["fallback_reason"] == "", ours.stats


def test_resid_mid_is_refused_on_parallel_blocks(strong_hf_model):
    """resid_mid against hand-written hooks (it differs from TransformerLens's on purpose):
    tests/test_patching_sites.py. Pythia's attention and MLP read the same residual."""
    model = strong_hf_model
    clean, corrupted, metric = hf_pair(model)
    if not model.cfg.parallel_attn_mlp:
        pytest.skip("sequential blocks: see test_patching_sites.py")
    with pytest.raises(InputError, match="resid_mid.*parallel"):
        patch_sweep(model, clean, corrupted, metric, "resid_mid")


def test_grouped_query_heads_follow_transformer_lens(strong_hf_model):
    model = strong_hf_model
    clean, corrupted, metric = hf_pair(model, n_prompts=1)
    ours = patch_sweep(model, clean, corrupted, metric, "attn_head_all_pos_every")
    _, cache = model.run_with_cache(clean)
    assert_matches(ours, tlp.get_act_patch_attn_head_all_pos_every(model, corrupted, cache, metric))
    for part in range(len(ours.patch_types)):  # each of out, q, k, v, pattern moves the metric
        effect = (ours.values[part] - ours.corrupted_value).abs().max().item()
        assert effect > 100 * ATOL, (ours.patch_types[part], effect)
    kv = model.cfg.n_key_value_heads or model.cfg.n_heads
    k = patch_sweep(model, clean, corrupted, metric, "attn_head_k_all_pos")
    assert k.values.shape == (model.cfg.n_layers, kv)
    if kv != model.cfg.n_heads:
        assert k.head_labels[0][0] == "L0KV0"
        with pytest.raises(InputError, match="padding"):  # a zero-padded cell of the stacked site
            patch_one(model, clean, corrupted, metric, "attn_head_all_pos_every", (2, 0, kv))


# ------------------------------------------------------------------ direction
def test_noise_direction_matches_a_hand_written_hook(toy_pair):
    model, clean, corrupted, metric = toy_pair
    _, corrupted_cache = model.run_with_cache(corrupted)
    for site in ("resid_pre", "attn_head_out_all_pos"):
        res = patch_sweep(model, clean, corrupted, metric, site, direction="noise")
        assert res.direction == "noise"
        act = SITES[site].act
        for cell in [(0, 1), (1, 2), (1, 3)]:
            layer, i = cell
            name = act_name(act, layer)
            src = corrupted_cache[name]

            def hook(x, hook, i=i, src=src):
                x = x.clone()
                if act == "resid_pre":
                    x[:, i] = src[:, i]
                else:
                    x[:, :, i] = src[:, :, i]
                return x

            expected = metric(model.run_with_hooks(clean, fwd_hooks=[(name, hook)])).item()
            assert res.values[cell].item() == pytest.approx(expected, abs=ATOL)
    # the clean and corrupted values are the unpatched runs, whatever the direction
    clean_run, corrupted_run = metric(model(clean)).item(), metric(model(corrupted)).item()
    assert abs(clean_run - corrupted_run) > 100 * ATOL
    assert res.clean_value == pytest.approx(clean_run, abs=ATOL)
    assert res.corrupted_value == pytest.approx(corrupted_run, abs=ATOL)
    assert res.baseline_value == pytest.approx(clean_run, abs=ATOL)  # noising patches the clean run


def test_noise_direction_is_transformer_lens_with_the_roles_swapped(toy_pair):
    model, clean, corrupted, metric = toy_pair
    res = patch_sweep(model, clean, corrupted, metric, "attn_head_v_by_pos", direction="noise", batch_size=4)
    assert_matches(res, tl_reference(model, corrupted, clean, metric, "attn_head_v_by_pos"))


# ------------------------------------------------------------------ progress and cancel
def test_cancel_returns_a_partial_result(toy_pair):
    model, clean, corrupted, metric = toy_pair
    full = patch_sweep(model, clean, corrupted, metric, "resid_pre")
    polls = []

    def cancel():
        polls.append(1)
        return len(polls) > 2  # let two batches run

    seen = []
    res = patch_sweep(
        model, clean, corrupted, metric, "resid_pre", batch_size=3, cancel=cancel,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert res.partial
    done = res.done_mask
    assert 0 < int(done.sum()) < done.numel()
    assert torch.isnan(res.values[~done]).all()
    torch.testing.assert_close(res.values[done], full.values[done], atol=ATOL, rtol=0)
    assert seen[-1] == (int(done.sum()), full.values.numel())
    assert res.clean_value == pytest.approx(full.clean_value)


def test_cancel_before_the_first_batch(toy_pair):
    model, clean, corrupted, metric = toy_pair
    res = patch_sweep(model, clean, corrupted, metric, "attn_head_out_all_pos", cancel=lambda: True)
    assert res.partial and not res.done_mask.any() and torch.isnan(res.values).all()


def test_progress_counts_up_to_the_total(toy_pair):
    model, clean, corrupted, metric = toy_pair
    seen = []
    res = patch_sweep(model, clean, corrupted, metric, "attn_head_out_by_pos", batch_size=10,
                      progress=lambda d, t: seen.append((d, t)))
    total = res.values.numel()
    assert seen[0] == (0, total) and seen[-1] == (total, total)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


# ------------------------------------------------------------------ one cell
@pytest.mark.parametrize(
    "site, index, direction",
    [
        ("resid_pre", (1, 4), "denoise"),
        ("attn_head_out_all_pos", (1, 2), "denoise"),
        ("attn_head_pattern_by_pos", (1, 3, 6), "noise"),
        ("attn_head_by_pos_every", (4, 1, 6, 0), "denoise"),  # the pattern part, reordered
    ],
)
def test_patch_one_is_the_sweeps_cell(toy_pair, site, index, direction):
    model, clean, corrupted, metric = toy_pair
    sweep = patch_sweep(model, clean, corrupted, metric, site, direction=direction)
    one = patch_one(model, clean, corrupted, metric, site, index, direction=direction)
    assert float(one) == pytest.approx(sweep.values[index].item(), abs=ATOL)
    assert one.logits.shape == (*clean.shape, model.cfg.d_vocab)
    assert one.hook == sweep.cell_hook(index)


def test_patch_one_uses_a_given_cache(toy_pair):
    model, clean, corrupted, metric = toy_pair
    _, cache = model.run_with_cache(clean)
    a = patch_one(model, clean, corrupted, metric, "attn_out", (0, 5), source_cache=cache)
    b = patch_one(model, clean, corrupted, metric, "attn_out", (0, 5))
    assert a.value == pytest.approx(b.value, abs=1e-6)
    with pytest.raises(InputError, match="outside"):
        patch_one(model, clean, corrupted, metric, "attn_out", (2, 0))
    with pytest.raises(InputError, match="outside"):
        patch_one(model, clean, corrupted, metric, "attn_out", (0,))


# ------------------------------------------------------------------ results
def test_result_labels(toy_pair):
    model, clean, corrupted, metric = toy_pair
    res = patch_sweep(model, clean, corrupted, metric, "attn_head_out_by_pos")
    assert res.dims == ("layer", "pos", "head")
    assert res.layer_labels == ["L0", "L1"]
    assert res.pos_labels == model.to_str_tokens(clean[0])
    assert res.corrupted_pos_labels == model.to_str_tokens(corrupted[0])
    assert res.head_labels[1][3] == "L1H3"
    assert res.hook == "blocks.{layer}.attn.hook_z"
    assert res.cell_hook((1, 2, 3)) == "blocks.1.attn.hook_z"
    assert "head 3" in res.cell_label((1, 2, 3))
    # normalized() against a hand computation: one cell's hooked run and the two unpatched runs
    _, cache = model.run_with_cache(clean)
    name = act_name("z", 1)

    def hook(z, hook):
        z = z.clone()
        z[:, 6, 3] = cache[name][:, 6, 3]
        return z

    patched = metric(model.run_with_hooks(corrupted, fwd_hooks=[(name, hook)])).item()
    lo, hi = metric(model(corrupted)).item(), metric(model(clean)).item()
    assert abs(patched - lo) > 100 * ATOL and abs(hi - lo) > 100 * ATOL
    norm = res.normalized()
    assert norm.shape == res.values.shape
    assert norm[1, 6, 3].item() == pytest.approx((patched - lo) / (hi - lo), abs=ATOL)


def test_text_prompts_are_tokenized(toy_model):
    metric = logit_diff_metric(toy_model.to_single_token("cat"), toy_model.to_single_token("dog"))
    res = patch_sweep(toy_model, "the cat sat on the", "the dog sat on the", metric, "resid_pre")
    assert res.values.shape == (2, 6)
    with pytest.raises(InputError, match="no range"):
        patch_sweep(toy_model, "the cat sat", "the cat sat", metric, "resid_pre").normalized()


# ------------------------------------------------------------------ input errors
def test_prompts_of_different_lengths(toy_model):
    metric = logit_diff_metric(1, 2)
    with pytest.raises(InputError) as err:
        patch_sweep(toy_model, "the cat sat on the mat", "the dog sat", metric)
    msg = str(err.value)
    assert "different token counts" in msg and "7 tokens" in msg and "has 4" in msg
    assert err.value.details["clean_length"] == 7 and err.value.details["corrupted_length"] == 4
    assert err.value.details["clean_tokens"] == toy_model.to_str_tokens("the cat sat on the mat")


def test_other_bad_inputs(toy_pair, toy_model):
    model, clean, corrupted, metric = toy_pair
    with pytest.raises(InputError, match="batches differ in size"):
        patch_sweep(model, clean, corrupted[:1], metric)
    with pytest.raises(InputError, match="unknown patching site"):
        patch_sweep(model, clean, corrupted, metric, "resid_everywhere")
    with pytest.raises(InputError, match="direction"):
        patch_sweep(model, clean, corrupted, metric, direction="sideways")
    with pytest.raises(InputError, match="integer token ids"):
        patch_sweep(model, clean.float(), corrupted, metric)
    with pytest.raises(InputError, match="scalar"):
        patch_sweep(model, clean, corrupted, lambda logits: logits[:, -1, 0], "resid_pre")
    for site in ("mlp_out", "resid_mid", "block_every"):
        with pytest.raises(InputError, match="attention-only"):
            patch_sweep(model, clean, corrupted, metric, site)
    model.train()
    try:
        with pytest.raises(InputError, match="training mode"):
            patch_sweep(model, clean, corrupted, metric)
    finally:
        model.eval()


def test_the_tl_function_name_is_accepted_as_a_site(toy_pair):
    model, clean, corrupted, metric = toy_pair
    res = patch_sweep(model, clean, corrupted, metric, "get_act_patch_attn_head_q_all_pos")
    assert res.site == "attn_head_q_all_pos"


# ------------------------------------------------------------------ SmolLM2
@pytest.mark.smollm2
def test_smollm2_matches_transformer_lens(smollm2_model):
    model = smollm2_model
    clean = model.to_tokens("Paris is in")
    corrupted = model.to_tokens("Rome is in")
    assert clean.shape == corrupted.shape == (1, 4)
    metric = logit_diff_metric(model.to_single_token(" France"), model.to_single_token(" Italy"))
    layers = [0, 13, 29]  # TransformerLens's rows for a subset (its full sweeps take minutes)
    for site, axes in (("resid_pre", ("layer", "pos")), ("attn_head_out_all_pos", ("layer", "head"))):
        ours = patch_sweep(model, clean, corrupted, metric, site)
        assert ours.stats["engine"] == "fast", ours.stats
        second = 4 if site == "resid_pre" else 9
        df = pd.DataFrame([(l, i) for l in layers for i in range(second)], columns=list(axes))
        ref = tl_reference(model, clean, corrupted, metric, site, index_df=df)
        mine = ours.values[torch.tensor(df.iloc[:, 0].values), torch.tensor(df.iloc[:, 1].values)]
        torch.testing.assert_close(mine, ref.float(), atol=ATOL, rtol=0)


SMOL_SITES = [name for name, s in SITES.items() if not s.is_composite]


@pytest.mark.smollm2
@pytest.mark.parametrize("site", SMOL_SITES)
def test_smollm2_every_site_matches_transformer_lens(smollm2_model, site):
    """Every site on SmolLM2 (short prompts): all cells of the first and last layer, each checked
    against TransformerLens's own patch setter for that site (``generic_activation_patch`` with an
    ``index_df``; its full 30-layer sweeps would take minutes per site)."""
    import itertools

    from lenswidget.analysis.patching import require_site_hooks

    model = smollm2_model
    spec = SITES[site]
    try:
        require_site_hooks(model, spec)
    except InputError:
        pytest.skip(f"SmolLM2 has no hook for {site}")
    clean = model.to_tokens("Paris is in")
    corrupted = model.to_tokens("Rome is in")
    metric = logit_diff_metric(model.to_single_token(" France"), model.to_single_token(" Italy"))
    ours = patch_sweep(model, clean, corrupted, metric, site)
    sizes = list(ours.values.shape)
    axes = [[0, sizes[0] - 1]] + [list(range(n)) for n in sizes[1:]]
    if len(sizes) == 4:  # [layer, head, dest, src]: two heads keep TransformerLens's loop short
        axes[1] = [0, sizes[1] - 1]
    df = pd.DataFrame(list(itertools.product(*axes)), columns=[f"a{i}" for i in range(len(sizes))])
    if site == "resid_mid":  # TransformerLens patches only the MLP input here: a hand-written reference
        ref = smollm2_resid_mid_reference(model, clean, corrupted, metric, df)
    else:
        ref = tl_reference(model, clean, corrupted, metric, site, index_df=df)
    mine = ours.values[tuple(torch.tensor(df[c].values) for c in df.columns)]
    torch.testing.assert_close(mine, ref.float().reshape(-1), atol=ATOL, rtol=0)


def smollm2_resid_mid_reference(model, clean, corrupted, metric, df):
    """resid_mid patched on the MLP input *and* the skip path, one hooked run per cell
    (the hooks of tests/test_patching_sites.py, written independently of the library)."""
    from tests.test_patching_sites import reference_hooks

    _, src = model.run_with_cache(clean)
    _, base = model.run_with_cache(corrupted)
    out = []
    with torch.no_grad():
        for layer, pos in df.itertuples(index=False):
            hooks = reference_hooks("resid_mid", int(layer), int(pos), src, base)
            out.append(metric(model.run_with_hooks(corrupted, fwd_hooks=hooks)).item())
    unpatched = metric(model(corrupted)).item()
    assert max(abs(v - unpatched) for v in out) > 100 * ATOL  # the patch moves the metric
    return torch.tensor(out)
