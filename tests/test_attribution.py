"""Attribution patching: shapes like the exact sweep, close to it on the toy model, exact where the
metric is linear in the activation."""

from __future__ import annotations

import pytest
import torch

from lenswidget import models
from lenswidget.analysis import SITES, attribution_patching, logit_diff_metric, patch_sweep
from lenswidget.analysis._patching_sites import value_shape
from lenswidget.errors import InputError


@pytest.fixture(scope="module")
def toy_pair(toy_model):
    clean = models.toy_repeated_tokens(3, batch=2, seed=0)
    other = models.toy_repeated_tokens(3, batch=2, seed=1)
    corrupted = clean.clone()
    corrupted[:, 1:4] = other[:, 1:4]
    return toy_model, clean, corrupted, logit_diff_metric(clean[:, 1], corrupted[:, 1])


def corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1].item()


@pytest.mark.parametrize("site", [s for s in SITES if s not in ("resid_mid", "mlp_out", "block_every")])
def test_shape_and_labels_match_patch_sweep_on_the_toy_model(toy_pair, site):
    model, clean, corrupted, metric = toy_pair
    attr = attribution_patching(model, clean, corrupted, metric, site)
    assert attr.values.shape == value_shape(model, SITES[site], clean.shape[1])
    assert attr.dims == SITES[site].dims and attr.method == "attribution"
    assert torch.isfinite(attr.values).all() and attr.done_mask.all() and not attr.partial
    if site in ("resid_pre", "attn_head_q_all_pos", "attn_head_pattern_dest_src_pos"):
        exact = patch_sweep(model, clean, corrupted, metric, site)
        assert exact.values.shape == attr.values.shape
        assert exact.head_labels == attr.head_labels and exact.pos_labels == attr.pos_labels
        assert attr.clean_value == pytest.approx(exact.clean_value, abs=1e-4)
        assert attr.corrupted_value == pytest.approx(exact.corrupted_value, abs=1e-4)


@pytest.mark.parametrize("site", ["resid_mid", "mlp_out", "block_every", "attn_head_k_by_pos"])
def test_shape_matches_patch_sweep_on_a_model_with_mlps(site):
    model = models.random_hf("llama", seed=0)
    clean = torch.randint(4, 200, (1, 5), generator=torch.Generator().manual_seed(0))
    corrupted = clean.clone()
    corrupted[0, 2] = 7
    metric = logit_diff_metric(5, 6)
    attr = attribution_patching(model, clean, corrupted, metric, site)
    exact = patch_sweep(model, clean, corrupted, metric, site)
    assert attr.values.shape == exact.values.shape and attr.dims == exact.dims


def test_residual_attribution_correlates_with_the_exact_values(toy_pair):
    model, clean, corrupted, metric = toy_pair
    exact = patch_sweep(model, clean, corrupted, metric, "resid_pre")
    attr = attribution_patching(model, clean, corrupted, metric, "resid_pre")
    assert corr(attr.values, exact.values) > 0.9
    # layer 0, position 0 (<bos>) is the same in both prompts: nothing to patch, exactly
    assert attr.values[0, 0].item() == pytest.approx(attr.corrupted_value, abs=1e-6)


@pytest.fixture(scope="module")
def linear_model():
    """Attention-only, no LayerNorm anywhere: the logits are linear in everything the last layer
    writes (its attention output, the residual after it, each head's z and v)."""
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    cfg = TransformerBridgeConfig(
        d_model=32, d_head=8, n_layers=2, n_ctx=16, n_heads=4, d_vocab=50, attn_only=True,
        normalization_type=None, positional_embedding_type="rotary", seed=3,
    )
    return TransformerBridge.boot_native(cfg).eval()


@pytest.mark.parametrize(
    "site",
    ["attn_out", "resid_post", "attn_head_out_all_pos", "attn_head_out_by_pos", "attn_head_v_all_pos",
     "attn_head_v_by_pos"],
)
@pytest.mark.parametrize("direction", ["denoise", "noise"])
def test_exact_where_the_metric_is_linear(linear_model, site, direction):
    gen = torch.Generator().manual_seed(1)
    clean = torch.randint(0, 50, (2, 6), generator=gen)
    corrupted = torch.randint(0, 50, (2, 6), generator=gen)
    metric = logit_diff_metric([1, 2], [3, 4])
    exact = patch_sweep(linear_model, clean, corrupted, metric, site, direction=direction)
    attr = attribution_patching(linear_model, clean, corrupted, metric, site, direction=direction)
    last = linear_model.cfg.n_layers - 1
    torch.testing.assert_close(attr.values[last], exact.values[last], atol=1e-4, rtol=1e-4)
    assert attr.baseline_value == pytest.approx(exact.baseline_value, abs=1e-5)


def test_frozen_weights_still_give_gradients(toy_pair):
    model, clean, corrupted, metric = toy_pair
    before = attribution_patching(model, clean, corrupted, metric, "attn_head_v_by_pos")
    flags = [p.requires_grad for p in model.parameters()]
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        frozen = attribution_patching(model, clean, corrupted, metric, "attn_head_v_by_pos")
    finally:
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)
    torch.testing.assert_close(frozen.values, before.values)
    assert all(p.grad is None for p in model.parameters())  # no gradient left on the weights


def test_metric_without_gradient_is_an_input_error(toy_pair):
    model, clean, corrupted, metric = toy_pair
    with pytest.raises(InputError, match="differentiable"):
        attribution_patching(model, clean, corrupted, lambda logits: metric(logits).detach())


def test_progress_and_cancel(toy_pair):
    model, clean, corrupted, metric = toy_pair
    seen = []
    attribution_patching(model, clean, corrupted, metric, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(0, 1), (1, 1)]
    res = attribution_patching(model, clean, corrupted, metric, "attn_head_all_pos_every", cancel=lambda: True)
    assert res.partial and torch.isnan(res.values).all() and res.values.shape[0] == 5


def _leaf_gradient(model, tokens, metric, name: str) -> tuple[float, torch.Tensor, torch.Tensor]:
    """(metric, activation, d metric / d activation) at hook ``name``, by plain autograd: the
    hook swaps the activation for a leaf tensor, so its gradient is everything downstream."""
    seen = {}

    def hook(x, hook):
        seen["a"] = x.detach().clone().requires_grad_(True)
        return seen["a"]

    with torch.enable_grad():
        value = metric(model.run_with_hooks(tokens, fwd_hooks=[(name, hook)]))
        (grad,) = torch.autograd.grad(value, seen["a"])
    return value.item(), seen["a"].detach(), grad


@pytest.mark.parametrize("site", ["resid_pre", "resid_mid", "attn_head_out_by_pos"])
def test_attribution_is_an_independent_gradient_times_difference(site):
    """On a nonlinear model (random Llama: RMSNorm, gated MLP, softmax attention, wide init),
    each value is metric(corrupted) + sum over the batch and the cell's slice of
    (clean - corrupted activation) x gradient, the gradient computed here with autograd on leaf
    tensors. resid_mid's gradient is the MLP path (a leaf at hook_resid_mid) plus the skip path
    (a leaf at hook_resid_post): the bridge's resid_mid hook alone would miss the latter."""
    from lenswidget.analysis.hooks import act_name

    model = models.random_hf("llama", seed=0, initializer_range=0.2)
    gen = torch.Generator().manual_seed(0)
    clean = torch.randint(4, int(model.cfg.d_vocab), (2, 5), generator=gen)
    corrupted = torch.randint(4, int(model.cfg.d_vocab), (2, 5), generator=gen)
    metric = logit_diff_metric([5, 6], [7, 8])
    attr = attribution_patching(model, clean, corrupted, metric, site)
    exact = patch_sweep(model, clean, corrupted, metric, site)
    act = SITES[site].act
    _, src = model.run_with_cache(clean)
    for layer in range(model.cfg.n_layers):
        name = act_name(act, layer)
        base_value, base_act, grad = _leaf_gradient(model, corrupted, metric, name)
        if site == "resid_mid":  # + the skip path: resid_post = resid_mid + mlp_out
            grad = grad + _leaf_gradient(model, corrupted, metric, act_name("resid_post", layer))[2]
        contrib = (src[name] - base_act) * grad  # [batch, pos, d] or [batch, pos, head, d_head]
        per_cell = contrib.sum(dim=(0, -1))  # [pos] or [pos, head]
        torch.testing.assert_close(attr.values[layer], base_value + per_cell, atol=1e-4, rtol=1e-4)
    assert (attr.values - attr.corrupted_value).abs().max() > 1e-2  # the estimate is not the baseline
    assert (attr.values - exact.values).abs().max() > 1e-2  # and not exact: the model is nonlinear
