"""The residual-stream sites patch the residual stream, on every architecture, against hooked runs
written here (not against TransformerLens, which patches ``resid_mid`` on the MLP's input only).

For each of ``resid_pre``, ``resid_mid``, ``resid_post``, ``attn_out``, ``mlp_out`` and each cell:

* a reference run written in the test, with its own hooks (``resid_mid``: the MLP's input *and* a
  correction of the skip path at ``hook_resid_post`` -- not the hooks the library uses), gives the
  metric, and the sweep (both engines) and ``patch_one`` must equal it;
* in the library's own patched run (``patch_one`` under recording hooks), what every reader of the
  stream sees -- the attention's and MLP's inputs (``ln1`` / ``ln2.hook_in``), the skip path
  (``resid_post - mlp_out``, ``resid_post - attn_out - mlp_out``), the next block's input -- must
  equal the patched value on the cell's slice: ``resid_post = resid_mid + mlp_out`` with the
  patched ``resid_mid``;
* every site moves the metric by far more than the tolerance.
"""

from __future__ import annotations

import functools

import pytest
import torch
import tqdm
from transformer_lens import patching as tlp

from lenswidget.analysis import SITES, logit_diff_metric, patch_one, patch_sweep
from lenswidget.analysis.hooks import act_name
from lenswidget.errors import InputError

ATOL = 1e-4
RESID_SITES = ["resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out"]
tlp.tqdm = functools.partial(tqdm.tqdm, disable=True)


def has_mlp(model) -> bool:
    return act_name("mlp_out", 0) in model.hook_dict


def sequential(model) -> bool:
    return act_name("resid_mid", 0) in model.hook_dict


def pair(model, n: int = 2, length: int = 5):
    """Prompts that differ at every position (so no cell is a no-op by construction)."""
    gen = torch.Generator().manual_seed(0)
    vocab = int(model.cfg.d_vocab)
    clean = torch.randint(4, vocab, (n, length), generator=gen)
    corrupted = torch.randint(4, vocab, (n, length), generator=gen)
    assert bool((clean != corrupted).all())
    return clean, corrupted, logit_diff_metric([5, 6][:n], [7, 8][:n])


def reference_hooks(site: str, layer: int, pos: int, src: dict, base: dict):
    """Hand-written hooks patching ``site`` at ``(layer, pos)`` with the clean values ``src``."""
    def setter(value):
        def hook(x, hook):
            x = x.clone()
            x[:, pos] = value[:, pos]
            return x
        return hook

    name = act_name(site, layer)
    if site != "resid_mid":
        return [(name, setter(src[name]))]
    # The MLP reads hook_resid_mid; the skip path carries the unpatched resid_mid (nothing
    # upstream changed), so resid_post gets (clean - corrupted) resid_mid added at the position.
    delta = src[name] - base[name]

    def fix_skip(x, hook):
        x = x.clone()
        x[:, pos] += delta[:, pos]
        return x

    return [(name, setter(src[name])), (act_name("resid_post", layer), fix_skip)]


def recorders(model, layer: int, store: dict):
    names = [act_name(a, layer) for a in RESID_SITES] + [f"blocks.{layer}.ln1.hook_in", f"blocks.{layer}.ln2.hook_in"]
    names.append(f"blocks.{layer + 1}.ln1.hook_in" if layer + 1 < model.cfg.n_layers else "ln_final.hook_in")
    names = [n for n in names if n in model.hook_dict]

    def rec(name):
        def hook(x, hook):
            store[name] = x.detach().clone()
            return x
        return hook

    return [(n, rec(n)) for n in names]


def readers(model, site: str, layer: int, rec: dict) -> dict[str, torch.Tensor]:
    """What each computation downstream of ``site`` at ``layer`` read of it, from recorded
    activations: each must equal the patched value."""
    g = lambda a: rec[act_name(a, layer)]  # noqa: E731
    mlp = g("mlp_out") if has_mlp(model) else 0.0
    nxt = rec[f"blocks.{layer + 1}.ln1.hook_in" if layer + 1 < model.cfg.n_layers else "ln_final.hook_in"]
    out: dict[str, torch.Tensor] = {}
    if site == "resid_pre":
        out["attention input (ln1)"] = rec[f"blocks.{layer}.ln1.hook_in"]
        out["skip: resid_post - attn_out - mlp_out"] = g("resid_post") - g("attn_out") - mlp
        if has_mlp(model):
            out["MLP input (ln2)"] = rec[f"blocks.{layer}.ln2.hook_in"] - (g("attn_out") if sequential(model) else 0)
    elif site == "resid_mid":
        out["MLP input (ln2)"] = rec[f"blocks.{layer}.ln2.hook_in"]
        out["skip: resid_post - mlp_out"] = g("resid_post") - g("mlp_out")
    elif site == "resid_post":
        out["next block / final norm input"] = nxt
    elif site == "attn_out":
        out["resid_post - resid_pre - mlp_out"] = g("resid_post") - g("resid_pre") - mlp
        if sequential(model):
            out["MLP input (ln2) - resid_pre"] = rec[f"blocks.{layer}.ln2.hook_in"] - g("resid_pre")
    elif site == "mlp_out":
        out["resid_post - resid_pre - attn_out"] = g("resid_post") - g("resid_pre") - g("attn_out")
        out["next block input - resid_pre - attn_out"] = nxt - g("resid_pre") - g("attn_out")
    return out


def check_residual_site(model, site: str) -> None:
    clean, corrupted, metric = pair(model)
    n_layers, n_pos = int(model.cfg.n_layers), clean.shape[1]
    _, src = model.run_with_cache(clean)
    _, base = model.run_with_cache(corrupted)
    auto = patch_sweep(model, clean, corrupted, metric, site)
    fast = patch_sweep(model, clean, corrupted, metric, site, batch_size=2)
    assert fast.stats["engine"] == "fast" and fast.stats["fallback_reason"] == "", fast.stats
    unpatched = metric(model(corrupted)).item()
    name_of = lambda layer: act_name(site, layer)  # noqa: E731
    for layer in range(n_layers):
        for pos in range(n_pos):
            with torch.no_grad():
                ref = metric(model.run_with_hooks(corrupted, fwd_hooks=reference_hooks(site, layer, pos, src, base))).item()
            assert auto.values[layer, pos].item() == pytest.approx(ref, abs=ATOL), (site, layer, pos)
            assert fast.values[layer, pos].item() == pytest.approx(ref, abs=ATOL), (site, layer, pos)
            rec: dict = {}
            with model.hooks(fwd_hooks=recorders(model, layer, rec)):
                one = patch_one(model, clean, corrupted, metric, site, (layer, pos), source_cache=src)
            assert one.value == pytest.approx(ref, abs=ATOL)
            wanted = src[name_of(layer)][:, pos]
            for what, seen in readers(model, site, layer, rec).items():
                torch.testing.assert_close(seen[:, pos], wanted, atol=ATOL, rtol=0, msg=f"{site} L{layer} p{pos}: {what}")
    # the test can fail: the patches move the metric by far more than the tolerance
    assert (auto.values - unpatched).abs().max().item() > 100 * ATOL, (site, auto.values, unpatched)
    if site in ("resid_mid", "resid_post"):
        # the whole residual of the last position after the last attention: the clean run's logits
        assert auto.values[-1, -1].item() == pytest.approx(auto.clean_value, abs=ATOL)
        assert abs(auto.clean_value - unpatched) > 100 * ATOL


@pytest.mark.parametrize("site", RESID_SITES)
def test_residual_sites_patch_the_residual_stream(strong_hf_model, site):
    model = strong_hf_model
    if site == "resid_mid" and not sequential(model):
        clean, corrupted, metric = pair(model)
        with pytest.raises(InputError, match="parallel"):  # pythia: no residual between the two
            patch_sweep(model, clean, corrupted, metric, site)
        return
    check_residual_site(model, site)


@pytest.mark.parametrize("site", ["resid_pre", "resid_post", "attn_out"])
def test_residual_sites_on_the_attention_only_toy_model(toy_model, site):
    check_residual_site(toy_model, site)


def test_transformer_lens_resid_mid_is_the_mlp_out_sweep_and_ours_is_not(strong_hf_model):
    """What TransformerLens 4.x does with resid_mid on the bridge (documented in the README and
    ``analysis.patching``): it patches the MLP's input only, so its sweep is the ``mlp_out`` sweep
    -- and the library's differs from it by far more than the tolerance."""
    model = strong_hf_model
    if not sequential(model):
        pytest.skip("parallel attention + MLP: no resid_mid")
    clean, corrupted, metric = pair(model)
    _, cache = model.run_with_cache(clean)
    tl_mid = tlp.get_act_patch_resid_mid(model, corrupted, cache, metric)
    tl_mlp = tlp.get_act_patch_mlp_out(model, corrupted, cache, metric)
    torch.testing.assert_close(tl_mid, tl_mlp, atol=ATOL, rtol=0)
    ours = patch_sweep(model, clean, corrupted, metric, "resid_mid")
    assert (ours.values - tl_mid.float()).abs().max().item() > 100 * ATOL
    assert SITES["resid_mid"].tl_function == "get_act_patch_resid_mid"


@pytest.mark.parametrize("name", [s for s in SITES if not SITES[s].is_composite])
def test_cell_mask_marks_each_cells_region(name):
    """``cell_mask`` (one indexed store for every cell) is True exactly on :func:`region` of
    each cell, as TransformerLens's patch setter slices it."""
    from lenswidget.analysis._patching_sites import _ACT_AXES, cell_mask, region

    site = SITES[name]
    sizes = {"pos": 5, "dest_pos": 5, "src_pos": 5, "head": 3, None: 2}
    act_shape = tuple(sizes[a] for a in _ACT_AXES[site.act])
    dim_sizes = {"layer": 2, "pos": 5, "dest_pos": 5, "src_pos": 5, "head": 3}
    gen = torch.Generator().manual_seed(0)
    cells = [tuple(int(torch.randint(dim_sizes[d], (1,), generator=gen)) for d in site.dims) for _ in range(7)]
    got = cell_mask(site, cells, act_shape)
    for i, cell in enumerate(cells):
        want = torch.zeros(act_shape, dtype=torch.bool)
        want[region(site, cell)] = True
        assert torch.equal(got[i], want), (name, cell)
