"""Head scores vs TransformerLens's head_detector, on the toy model, SmolLM2 and HF architectures."""

from __future__ import annotations

import pytest
import torch
from transformer_lens.head_detector import detect_head

from lenswidget.analysis import detection_patterns, head_scores, induction_probe, repeated_random_tokens
from lenswidget.analysis.hooks import act_name

TOY_PROMPT = "the cat sat on the mat and the dog ran to the cat sat on the mat"


def _check_against_tl(model, prompt: str, atol: float = 1e-5) -> None:
    tokens = model.to_tokens(prompt)
    scores = head_scores(model, tokens)
    for name in ("previous_token", "duplicate_token", "induction"):
        ref = detect_head(model, prompt, f"{name}_head")
        torch.testing.assert_close(scores[name], ref.float(), atol=atol, rtol=0, msg=name)
    # first-token: detect_head with a custom 0/1 pattern marking key 0
    ref_first = detect_head(model, prompt, detection_patterns(tokens)["first_token"])
    torch.testing.assert_close(scores["first_token"], ref_first.float(), atol=atol, rtol=0)
    # entropy: mean over queries of -sum p log p, from TL's own cache
    _, cache = model.run_with_cache(tokens)
    for layer in range(model.cfg.n_layers):
        p = cache[act_name("pattern", layer)][0].double()
        ent = -(p * torch.log(p.clamp_min(1e-30))).sum(-1).mean(-1)
        torch.testing.assert_close(scores["entropy"][layer].double(), ent, atol=1e-4, rtol=0)


def test_toy_scores_equal_head_detector(toy_model):
    _check_against_tl(toy_model, TOY_PROMPT)


@pytest.mark.smollm2
def test_smollm2_scores_equal_head_detector(smollm2_model):
    _check_against_tl(smollm2_model, "The cat sat on the mat. The cat sat on the mat.", atol=1e-4)


def test_hf_architectures_scores_equal_head_detector(tiny_hf_model):
    _check_against_tl(tiny_hf_model, TOY_PROMPT)


def test_scores_shape_and_ranges(toy_model):
    tokens = toy_model.to_tokens(TOY_PROMPT)
    s = head_scores(toy_model, tokens)
    L, H = toy_model.cfg.n_layers, toy_model.cfg.n_heads
    assert s.values.shape == (5, L, H)
    assert s.patterns.shape == (L, H, tokens.shape[1], tokens.shape[1])
    fractions = s.values[:4]
    assert (fractions >= -1e-6).all() and (fractions <= 1 + 1e-6).all()
    assert (s["entropy"] >= 0).all()
    top = s.top("induction", 3)
    assert len(top) == 3 and top[0][1] >= top[1][1] >= top[2][1]
    with pytest.raises(KeyError):
        s["nonsense"]


def test_induction_probe_finds_toy_circuit(toy_model):
    probe = induction_probe(toy_model, n_repeat=10, batch=4)
    assert probe.shape == (toy_model.cfg.n_layers, toy_model.cfg.n_heads)
    assert probe[1].max() >= 0.7
    # the probe is the mean of the induction stripe: check against a hand computation
    toks = repeated_random_tokens(toy_model, 10, batch=4)
    _, cache = toy_model.run_with_cache(toks)
    pat = cache[act_name("pattern", 1)]
    n = 10
    manual = torch.stack([pat[:, :, q, q - n + 1] for q in range(1 + n, 1 + 2 * n)], -1).mean(dim=(0, -1))
    torch.testing.assert_close(probe[1], manual.float(), atol=1e-5, rtol=0)


def test_repeated_random_tokens_shape(toy_model):
    t = repeated_random_tokens(toy_model, 7, batch=3, seed=1)
    assert t.shape == (3, 15)
    assert torch.equal(t[:, 1:8], t[:, 8:])
