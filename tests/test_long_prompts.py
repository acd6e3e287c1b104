"""What each view does with a prompt too long for it: the attention grid streams (bounded bytes,
tested in test_attention_widget.py) up to 4,096 tokens; the logit-lens table and the patching
heatmap, which need a run's full activation cache, refuse one that would not fit
``Lens.max_cache_bytes`` before running anything; a prompt longer than the model's context is
refused by tokenization. Each refusal is an InputError, the view keeps its state and works next."""

from __future__ import annotations

import time

import pytest

from lenswidget import InputError, Lens

WORDS = "the cat sat on the mat and the dog ran to the door".split()


def words(n: int) -> str:
    return " ".join(WORDS[i % len(WORDS)] for i in range(n))


@pytest.fixture()
def lens(toy_model):
    return Lens(toy_model)


def test_logit_lens_and_patching_refuse_an_oversized_cache_and_recover(lens):
    table = lens.logit_lens("the cat sat on the mat")
    hm = lens.patching("the cat sat on the mat", "the dog sat on the mat", " the", " mat")
    long = words(60)
    need = lens.cache_bytes(1, len(lens.tokenize(long)[0]))
    lens.max_cache_bytes = need - 1
    with pytest.raises(InputError, match="activation cache would take"):
        table.run(long)
    assert table.prompt == "the cat sat on the mat" and "Lens.max_cache_bytes" in table.error["message"]
    with pytest.raises(InputError, match="activation cache"):
        hm.set_inputs(long, long.replace("cat", "dog", 1), " the", " mat")
    assert hm.clean_prompt == "the cat sat on the mat" and "activation cache" in hm.error["message"]
    grid = lens.attention(long)  # the grid streams: no full cache, not refused
    assert len(grid.tokens) == len(lens.tokenize(long)[0])
    lens.max_cache_bytes = need
    table.run(long)
    assert table.prompt == long and table.error == {}


@pytest.mark.smollm2
def test_smollm2_at_4000_and_10000_tokens_refuses_fast(smollm2_lens):
    from lenswidget.widgets import AttentionGrid
    from lenswidget.widgets.attention import MAX_TOKENS

    lens = smollm2_lens
    assert lens.n_ctx == 8192
    text = " ".join(["The quick brown fox jumps over the lazy dog."] * 500)
    ids = lens.model.to_tokens(text)[0]
    p4000 = lens.model.to_string(ids[1:4000])
    n = len(lens.tokenize(p4000)[0])
    assert 3900 <= n <= MAX_TOKENS
    # logit lens / patching at ~4,000 tokens: a full cache of ~35 GB, refused before any forward
    assert lens.cache_bytes(1, n) > 30 * 1024**3
    t0 = time.perf_counter()
    with pytest.raises(InputError, match="activation cache"):
        lens.logit_lens(p4000)
    with pytest.raises(InputError, match="activation cache"):
        lens.patching(p4000, p4000.replace("quick", "slow", 1), " the", " a")
    # 10,000 tokens: past the context, refused by tokenization; the grid stays usable
    grid = AttentionGrid(lens, "The capital of France is")
    p10k = lens.model.tokenizer.decode(lens.model.tokenizer(" ".join([text] * 3))["input_ids"][:10_000])
    assert len(lens.model.to_tokens(p10k, truncate=False)[0]) > 9_000
    with pytest.raises(InputError, match="context of 8192"):
        grid.run(p10k)
    p5000 = lens.model.to_string(ids[1:5000])
    with pytest.raises(InputError, match="at most 4096"):
        grid.run(p5000)
    assert time.perf_counter() - t0 < 30  # refusals, not runs
    assert grid.prompt == "The capital of France is"
    assert grid.run("The capital of France is Paris") is not None
