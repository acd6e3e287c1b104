"""Logit lens vs TransformerLens's ``accumulated_resid(apply_ln=True)`` + unembedding, on native
bridges (LayerNorm with MLPs, RMSNorm attention-only), the toy model, SmolLM2 and HF architectures."""

from __future__ import annotations

import os
import threading
import time

import pytest
import torch
from transformer_lens.config import TransformerBridgeConfig
from transformer_lens.model_bridge import TransformerBridge

from lenswidget.analysis import LogitLensResult, logit_lens
from lenswidget.analysis.readout import CHUNK_ELEMENTS, target_stats
from lenswidget.errors import InputError


def native(attn_only: bool, norm: str, pos: str, seed: int = 0) -> TransformerBridge:
    """A small random native bridge with non-trivial norm weights and biases."""
    cfg = TransformerBridgeConfig(
        d_model=32, d_head=8, n_layers=3, n_ctx=64, n_heads=4, d_vocab=101, d_mlp=64, act_fn="gelu",
        attn_only=attn_only, normalization_type=norm, positional_embedding_type=pos, seed=seed,
    )
    model = TransformerBridge.boot_native(cfg).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if any(s in name for s in ("ln", "norm", "bias", ".b_")):
                p.add_(0.3 * torch.randn(p.shape, generator=gen))
    return model


@pytest.fixture(scope="module", params=["ln_mlp", "rms_attn_only"])
def native_model(request):
    if request.param == "ln_mlp":
        return native(attn_only=False, norm="LN", pos="standard")
    return native(attn_only=True, norm="RMS", pos="rotary")


def random_tokens(model, n: int = 12, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, int(model.cfg.d_vocab), (1, n), generator=gen)


def reference(model, tokens, k, target):
    """TL: accumulated_resid(apply_ln=True) @ W_U + b_U, the adapter's output transform, softmax."""
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens)
        acc, labels = cache.accumulated_resid(apply_ln=True, return_labels=True)
        ref = acc[:, 0] @ model.W_U + model.b_U
        ref = model.adapter.apply_output_logits_transform(ref).float()
    probs = ref.softmax(-1)
    top_p, top_i = probs.topk(k, dim=-1)
    t_logit = ref[..., target]
    return {
        "logits": logits,
        "cache": cache,
        "labels": labels,
        "top_p": top_p,
        "top_i": top_i,
        "t_prob": probs[..., target],
        "t_logit": t_logit,
        "t_rank": (ref > t_logit[..., None]).sum(-1),
        "final": ref[-1],
    }


def assert_matches(result: LogitLensResult, ref: dict, atol: float = 1e-4) -> None:
    torch.testing.assert_close(result.top_probs, ref["top_p"], atol=atol, rtol=0)
    same = result.top_ids == ref["top_i"]
    # ids may differ only where two tokens are tied
    assert torch.all(same | ((result.top_probs - ref["top_p"]).abs() < 1e-6)), "top ids differ beyond ties"
    torch.testing.assert_close(result.target_prob, ref["t_prob"], atol=atol, rtol=0)
    torch.testing.assert_close(result.target_logit, ref["t_logit"], atol=10 * atol, rtol=1e-5)
    torch.testing.assert_close(result.target_rank, ref["t_rank"], atol=0, rtol=0)
    assert result.labels == ref["labels"]


def check_model(model, k: int = 5, n: int = 12) -> LogitLensResult:
    tokens = random_tokens(model, n)
    target = 7
    ref = reference(model, tokens, k, target)
    result = logit_lens(model, tokens, k=k, target=target, cache=ref["cache"])
    n_layers = model.cfg.n_layers
    assert result.top_ids.shape == (n_layers + 1, n, k) and result.top_ids.dtype == torch.long
    assert result.top_probs.shape == (n_layers + 1, n, k)
    assert result.target_rank.shape == (n_layers + 1, n)
    assert result.hooks[0] == "blocks.0.hook_resid_pre"
    assert result.hooks[-1] == f"blocks.{n_layers - 1}.hook_resid_post"
    assert_matches(result, ref)
    # the final row is the model itself
    torch.testing.assert_close(result.top_ids[-1, :, 0], ref["logits"][0].argmax(-1))
    return result


def test_native_models_equal_tl(native_model):
    check_model(native_model)


def test_toy_model_equals_tl(toy_model):
    check_model(toy_model)


def test_hf_architectures_equal_tl(tiny_hf_model):
    check_model(tiny_hf_model)


def test_without_cache_runs_the_model(native_model):
    tokens = random_tokens(native_model)
    ref = reference(native_model, tokens, 3, 5)
    assert_matches(logit_lens(native_model, tokens[0], k=3, target=5), ref)
    assert_matches(logit_lens(native_model, tokens[0].tolist(), k=3, target=5), ref)


def test_compatibility_mode_model_equals_tl():
    model = native(attn_only=False, norm="LN", pos="standard", seed=1)
    model.enable_compatibility_mode(disable_warnings=True)
    check_model(model)


def test_chunking_gives_identical_results(native_model):
    tokens = random_tokens(native_model, 10)
    _, cache = native_model.run_with_cache(tokens)
    results = [logit_lens(native_model, tokens, k=4, target=3, cache=cache, chunk_rows=c) for c in (1, 7, 40, None)]
    base = results[-1]
    assert results[0].chunk_rows == 1 and base.chunk_rows == CHUNK_ELEMENTS // native_model.cfg.d_vocab
    for r in results[:-1]:
        assert torch.equal(r.top_ids, base.top_ids)
        assert torch.equal(r.target_rank, base.target_rank)
        torch.testing.assert_close(r.top_probs, base.top_probs, atol=1e-6, rtol=0)
        torch.testing.assert_close(r.target_prob, base.target_prob, atol=1e-6, rtol=0)
        torch.testing.assert_close(r.log_norm, base.log_norm, atol=1e-5, rtol=0)


def test_with_target_equals_a_fresh_run(native_model):
    tokens = random_tokens(native_model)
    _, cache = native_model.run_with_cache(tokens)
    first = logit_lens(native_model, tokens, k=3, cache=cache, chunk_rows=5)
    assert first.target is None and first.target_prob is None
    fresh = logit_lens(native_model, tokens, k=3, target=11, cache=cache)
    again = first.with_target(11)
    assert again.target == 11 and torch.equal(again.top_ids, first.top_ids)
    torch.testing.assert_close(again.target_prob, fresh.target_prob, atol=1e-6, rtol=0)
    torch.testing.assert_close(again.target_logit, fresh.target_logit, atol=1e-5, rtol=0)
    assert torch.equal(again.target_rank, fresh.target_rank)
    quick = first.with_target(11, rank=False)
    assert quick.target_rank is None
    torch.testing.assert_close(quick.target_prob, fresh.target_prob, atol=1e-6, rtol=0)
    stats = target_stats(first, 11)
    assert torch.equal(stats["rank"], fresh.target_rank)
    # the last row's top probabilities are the model's own softmax, computed here
    probs = torch.softmax(native_model(tokens).float(), dim=-1)  # [batch, pos, vocab]
    top = probs.topk(first.top_probs.shape[-1], dim=-1).values
    torch.testing.assert_close(first.top_probs[-1].reshape(top.shape), top, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"k": 0}, "k must be"),
        ({"k": 102}, "k must be"),
        ({"k": True}, "k must be"),
        ({"target": 101}, "outside the vocabulary"),
        ({"target": -1}, "outside the vocabulary"),
        ({"target": 1.5}, "token id"),
        ({"chunk_rows": 0}, "chunk_rows"),
    ],
)
def test_bad_arguments(kwargs, match):
    model = native(attn_only=True, norm="RMS", pos="rotary")
    with pytest.raises(InputError, match=match):
        logit_lens(model, random_tokens(model), **kwargs)


@pytest.mark.parametrize(
    "tokens, match",
    [
        (torch.zeros(1, 0, dtype=torch.long), "empty"),
        (torch.zeros(2, 4, dtype=torch.long), "One prompt"),
        (torch.zeros(1, 4), "integer ids"),
        (torch.tensor([[1, 2, 101]]), "outside the vocabulary"),
        (torch.zeros(1, 65, dtype=torch.long), "context"),
        ("some text", "not text"),
    ],
)
def test_bad_tokens(tokens, match):
    model = native(attn_only=True, norm="RMS", pos="rotary")
    with pytest.raises(InputError, match=match):
        logit_lens(model, tokens)


def test_mismatched_cache_and_training_mode():
    model = native(attn_only=True, norm="RMS", pos="rotary")
    _, cache = model.run_with_cache(random_tokens(model, 8))
    with pytest.raises(InputError, match="cache"):
        logit_lens(model, random_tokens(model, 9), cache=cache)
    model.train()
    with pytest.raises(InputError, match="training mode"):
        logit_lens(model, random_tokens(model))
    model.eval()
    result = logit_lens(model, random_tokens(model))
    with pytest.raises(InputError, match="outside the vocabulary"):
        result.with_target(1000)


# --------------------------------------------------------------------------- SmolLM2
@pytest.mark.smollm2
def test_smollm2_factual_prompt(smollm2_model):
    model = smollm2_model
    tokens = model.to_tokens("The capital of France is")
    paris = model.to_single_token(" Paris")
    ref = reference(model, tokens, 10, paris)
    result = logit_lens(model, tokens, k=10, target=paris, cache=ref["cache"])
    assert_matches(result, ref)
    assert result.top_ids.shape == (31, tokens.shape[1], 10)
    # the answer is the model's top prediction at the last position, and emerges late
    assert int(result.top_ids[-1, -1, 0]) == paris
    assert result.target_prob[-1, -1] > 0.5
    assert int(result.target_rank[-1, -1]) == 0
    assert int(result.target_rank[len(result.labels) // 3, -1]) > 0


@pytest.mark.smollm2
@pytest.mark.slow
def test_smollm2_512_tokens_memory(smollm2_model):
    """Peak memory of a 512-token lens stays far below [31, 512, 49152] float32 (3.1 GB)."""
    model = smollm2_model
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, model.cfg.d_vocab, (1, 512), generator=gen)
    with torch.inference_mode():
        logits, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith(("hook_resid_pre", "hook_resid_post")))
    full_bytes = 31 * 512 * model.cfg.d_vocab * 4

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    base, peak, done = rss(), [0], threading.Event()

    def poll() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.002)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        result = logit_lens(model, tokens, k=5, target=42, cache=cache)
    finally:
        done.set()
        thread.join()
    assert result.chunk_rows * model.cfg.d_vocab <= CHUNK_ELEMENTS
    assert peak[0] - base < full_bytes / 8, f"peak {peak[0] - base:,} bytes"
    assert torch.equal(result.top_ids[-1, :, 0], logits[0].argmax(-1))


def test_package_exports_the_function():
    import lenswidget.analysis as analysis
    import lenswidget.analysis.readout as module

    model = native(attn_only=True, norm="RMS", pos="rotary")
    tokens = random_tokens(model)
    assert analysis.logit_lens is module.logit_lens
    assert isinstance(analysis.logit_lens(model, tokens, k=2), LogitLensResult)
