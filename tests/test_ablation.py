"""Head and component ablation (zero, mean, resample) vs plain run_with_hooks written here."""

from __future__ import annotations

import pytest
import torch

from lenswidget import models
from lenswidget.analysis import ablate_heads, component_ablation_hooks, head_means
from lenswidget.errors import InputError

PROMPT = "the cat sat on the mat and the dog ran to the cat sat on the mat"


def _manual(model, tokens, heads, mode):
    _, cache = model.run_with_cache(tokens)
    hooks = []
    for layer, head in heads:
        mean = cache[f"blocks.{layer}.attn.hook_z"][:, :, head, :].mean(dim=(0, 1))

        def fn(z, hook, head=head, mean=mean):
            z = z.clone()
            z[:, :, head, :] = 0.0 if mode == "zero" else mean
            return z

        hooks.append((f"blocks.{layer}.attn.hook_z", fn))
    clean = model(tokens)
    ablated = model.run_with_hooks(tokens, fwd_hooks=hooks)
    lp = lambda logits: torch.log_softmax(logits[0, :-1].double(), -1).gather(-1, tokens[0, 1:, None])[:, 0]
    return clean[0], ablated[0], lp(ablated) - lp(clean)


@pytest.mark.parametrize("mode", ["zero", "mean"])
@pytest.mark.parametrize("heads", [[(1, 0)], [(0, 1), (1, 2)]])
def test_toy_ablation_matches_hooks(toy_model, mode, heads):
    tokens = toy_model.to_tokens(PROMPT)
    result = ablate_heads(toy_model, tokens, heads, mode=mode)
    clean, ablated, delta = _manual(toy_model, tokens, heads, mode)
    torch.testing.assert_close(result.logits_before, clean.float(), atol=1e-5, rtol=0)
    torch.testing.assert_close(result.logits_after, ablated.float(), atol=1e-5, rtol=0)
    torch.testing.assert_close(result.delta_logprob.double(), delta, atol=1e-5, rtol=0)
    assert result.delta_logprob.shape == (tokens.shape[1] - 1,)
    js = result.to_json(toy_model)
    assert js["delta_logprob"] == pytest.approx(result.delta_logprob.tolist(), abs=1e-6)
    assert len(js["top_after"]) == 10 and js["label"].startswith(f"L{heads[0][0]}H")


@pytest.mark.smollm2
def test_smollm2_ablation_matches_hooks(smollm2_model):
    tokens = smollm2_model.to_tokens("The capital of France is")
    result = ablate_heads(smollm2_model, tokens, [(3, 4)], mode="zero")
    _, ablated, delta = _manual(smollm2_model, tokens, [(3, 4)], "zero")
    torch.testing.assert_close(result.logits_after, ablated.float(), atol=1e-4, rtol=0)
    torch.testing.assert_close(result.delta_logprob.double(), delta, atol=1e-4, rtol=0)


def test_hf_architectures_ablation(tiny_hf_model):
    tokens = tiny_hf_model.to_tokens(PROMPT)
    for mode in ("zero", "mean"):
        result = ablate_heads(tiny_hf_model, tokens, [(1, 1)], mode=mode)
        _, ablated, delta = _manual(tiny_hf_model, tokens, [(1, 1)], mode)
        torch.testing.assert_close(result.logits_after, ablated.float(), atol=1e-5, rtol=0)


def _lp(logits, tokens):
    """log p(actual next token) at each position of one prompt: [pos - 1], float64."""
    return torch.log_softmax(logits[:-1].double(), -1).gather(-1, tokens[1:, None])[:, 0]


def _sources(model, n_src, n_pos, seed=1):
    """n_src random prompts of n_pos tokens (BOS first): resample sources of the right length."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(9, int(model.cfg.d_vocab), (n_src, n_pos), generator=g)
    ids[:, 0] = int(model.to_tokens("x")[0, 0])
    return ids


def test_dataset_means(toy_model):
    batch = toy_model.to_tokens(["the cat sat on the mat", "a dog ran to the house"])
    means = head_means(toy_model, batch)
    # by hand: hook_z of each prompt, mean over both prompts and all their positions
    _, cache = toy_model.run_with_cache(batch)
    for layer in range(toy_model.cfg.n_layers):
        z = cache[f"blocks.{layer}.attn.hook_z"]  # [2, pos, head, d_head]
        by_hand = torch.stack([z[b, p] for b in range(z.shape[0]) for p in range(z.shape[1])]).sum(0) / (z.shape[0] * z.shape[1])
        torch.testing.assert_close(means[layer], by_hand, atol=1e-6, rtol=0)
    tokens = toy_model.to_tokens(PROMPT)
    r = ablate_heads(toy_model, tokens, (1, 0), mode="mean", means=means)

    def fn(z, hook):
        z = z.clone()
        z[:, :, 0, :] = means[1, 0]
        return z

    ablated = toy_model.run_with_hooks(tokens, fwd_hooks=[("blocks.1.attn.hook_z", fn)])[0]
    torch.testing.assert_close(r.logits_after, ablated.float(), atol=1e-5, rtol=0)
    # the dataset mean is not this prompt's mean: the two ablations differ by far more than the tolerance
    own = ablate_heads(toy_model, tokens, (1, 0), mode="mean")
    assert (own.logits_after - r.logits_after).abs().max() > 0.1
    assert r.delta_logprob.abs().max() > 0.1


def _resample_by_hand(model, tokens, heads, sources):
    """One hooked rerun per source prompt (z of each head replaced by that prompt's z), then the
    mean over sources of the log-probs and of the logits."""
    lps, logits = [], []
    for s in range(sources.shape[0]):
        _, cache = model.run_with_cache(sources[s : s + 1])
        hooks = []
        for layer, head in heads:
            src = cache[f"blocks.{layer}.attn.hook_z"][0, :, head, :]

            def fn(z, hook, head=head, src=src):
                z = z.clone()
                z[0, :, head, :] = src
                return z

            hooks.append((f"blocks.{layer}.attn.hook_z", fn))
        out = model.run_with_hooks(tokens, fwd_hooks=hooks)[0]
        logits.append(out.double())
        lps.append(_lp(out, tokens[0]))
    return torch.stack(logits).mean(0), torch.stack(lps)


@pytest.mark.parametrize("heads", [[(1, 0)], [(0, 1), (1, 2)]])
def test_resample_matches_hooks(toy_model, heads):
    tokens = toy_model.to_tokens(PROMPT)
    sources = _sources(toy_model, 3, tokens.shape[1])
    result = ablate_heads(toy_model, tokens, heads, mode="resample", source_tokens=sources)
    logits, lps = _resample_by_hand(toy_model, tokens, heads, sources)
    clean_lp = _lp(toy_model(tokens)[0], tokens[0])
    torch.testing.assert_close(result.logits_after.double(), logits, atol=1e-4, rtol=0)
    torch.testing.assert_close(result.logprob_after_each.double(), lps, atol=1e-4, rtol=0)
    torch.testing.assert_close(result.logprob_after.double(), lps.mean(0), atol=1e-4, rtol=0)
    torch.testing.assert_close(result.delta_logprob.double(), lps.mean(0) - clean_lp, atol=1e-4, rtol=0)
    assert result.n_sources == 3 and result.to_json(toy_model)["n_sources"] == 3
    # far from the unablated run, from zero ablation, and the sources really differ from each other
    assert result.delta_logprob.abs().max() > 0.5
    zero = ablate_heads(toy_model, tokens, heads, mode="zero")
    assert (zero.logprob_after - result.logprob_after).abs().max() > 0.1
    assert (lps[0] - lps[1]).abs().max() > 0.1


def test_resample_on_itself_changes_nothing(toy_model):
    tokens = toy_model.to_tokens(PROMPT)
    result = ablate_heads(toy_model, tokens, [(1, 0), (0, 2)], mode="resample", source_tokens=tokens[0])
    torch.testing.assert_close(result.delta_logprob, torch.zeros_like(result.delta_logprob), atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def llama():
    return models.random_hf("llama", seed=0)


@pytest.mark.parametrize("mode", ["zero", "mean", "resample"])
def test_component_hooks_match_hand_hooks(llama, mode):
    """mlp{l} / attn{l} / L{l}H{h} ablated through component_ablation_hooks vs hooks written here."""
    tokens = llama.to_tokens(PROMPT)
    sources = _sources(llama, 2, tokens.shape[1])
    names = {"mlp0": "blocks.0.hook_mlp_out", "attn1": "blocks.1.hook_attn_out"}
    hooks = component_ablation_hooks(llama, ["mlp0", "attn1", "L1H3"], mode=mode, tokens=tokens, source_tokens=sources)
    batch = tokens.expand(sources.shape[0], -1) if mode == "resample" else tokens
    got = llama.run_with_hooks(batch, fwd_hooks=hooks)

    _, clean_cache = llama.run_with_cache(tokens)
    _, src_cache = llama.run_with_cache(sources)
    by_hand = []
    for name in list(names.values()) + ["blocks.1.attn.hook_z"]:
        if mode == "zero":
            value = torch.zeros_like(clean_cache[name])
        elif mode == "mean":
            value = clean_cache[name].mean(dim=1, keepdim=True).expand_as(clean_cache[name])
        else:
            value = src_cache[name]
        if name.endswith("hook_z"):

            def fn(z, hook, value=value):
                z = z.clone()
                z[:, :, 3, :] = value[:, :, 3, :]
                return z

        else:

            def fn(x, hook, value=value):
                return value.clone()

        by_hand.append((name, fn))
    want = llama.run_with_hooks(batch, fwd_hooks=by_hand)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert (want - llama(batch)).abs().max() > 0.05


@pytest.mark.parametrize(
    "sources, match",
    [
        (None, "needs source prompts"),
        ("short", "tokens long but the prompt is 18"),
        ("float", "LongTensor"),
        ("empty", "n_src >= 1"),
    ],
)
def test_bad_resample_sources(toy_model, sources, match):
    tokens = toy_model.to_tokens(PROMPT)
    arg = {
        None: None,
        "short": toy_model.to_tokens("the cat sat on the mat"),
        "float": torch.zeros(1, 18),
        "empty": torch.zeros(0, 18, dtype=torch.long),
    }[sources]
    with pytest.raises(InputError, match=match):
        ablate_heads(toy_model, tokens, [(1, 0)], mode="resample", source_tokens=arg)
    with pytest.raises(InputError, match=match):
        component_ablation_hooks(toy_model, ["L1H0"], mode="resample", tokens=tokens, source_tokens=arg)


@pytest.mark.parametrize(
    "heads, mode, match",
    [
        ([(99, 0)], "zero", "Layer 99 is out of range"),
        ([(0, 99)], "zero", "Head 99 is out of range"),
        ([(0, 0)], "half", "Unknown ablation mode"),
        ([], "zero", "No heads"),
        ([("a", 0)], "zero", "integers"),
    ],
)
def test_bad_input(toy_model, heads, mode, match):
    tokens = toy_model.to_tokens(PROMPT)
    with pytest.raises(InputError, match=match):
        ablate_heads(toy_model, tokens, heads, mode=mode)
