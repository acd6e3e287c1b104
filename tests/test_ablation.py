"""Head ablation vs a plain run_with_hooks written here."""

from __future__ import annotations

import pytest
import torch

from lenswidget.analysis import ablate_heads, head_means
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


def test_dataset_means(toy_model):
    batch = toy_model.to_tokens(["the cat sat", "a dog ran"])
    means = head_means(toy_model, batch)
    assert means.shape == (toy_model.cfg.n_layers, toy_model.cfg.n_heads, toy_model.cfg.d_head)
    tokens = toy_model.to_tokens(PROMPT)
    r = ablate_heads(toy_model, tokens, (1, 0), mode="mean", means=means)
    assert torch.isfinite(r.delta_logprob).all()


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
