"""Direct logit attribution vs TransformerLens (``get_full_resid_decomposition`` /
``decompose_resid`` / ``stack_head_results`` + ``logit_attrs``) and the identity
``sum(values) + remainder == logit``, with and without compatibility mode."""

from __future__ import annotations

import pytest
import torch

from lenswidget.analysis import DLAResult, direct_logit_attribution
from lenswidget.analysis import logit_lens
from lenswidget.errors import InputError

from .test_logit_lens import native, random_tokens

TARGET, WRONG, POS = 7, 3, -2


@pytest.fixture(scope="module", params=["ln_mlp", "rms_attn_only"])
def native_kind(request):
    return request.param


def make_native(kind: str, seed: int = 0):
    if kind == "ln_mlp":
        return native(attn_only=False, norm="LN", pos="standard", seed=seed)
    return native(attn_only=True, norm="RMS", pos="rotary", seed=seed)


def effective_gamma(model) -> torch.Tensor:
    """ln_final's weight as the model applies it (Gemma stores 1 + weight)."""
    ln = model.ln_final
    w = ln.weight.detach().float()
    return 1.0 + w if ln.uses_weight_offset else w


def check_identity(model, tokens, cache, logits, *, layer=None, atol=1e-4) -> list[DLAResult]:
    """sum(values) + remainder == logit, and logit is the model's (or the lens cell's) own logit."""
    out = []
    lens = logit_lens(model, tokens, k=1, target=TARGET, cache=cache) if layer is not None else None
    for center in (False, True):
        for wrong in (None, WRONG):
            r = direct_logit_attribution(model, tokens, TARGET, pos=POS, wrong=wrong, layer=layer, cache=cache, center=center)
            assert abs(r.unexplained) < atol, r.unexplained
            if layer is None:
                row = logits[0, POS].float()
            else:
                normalized = lens.normalized[layer, POS]
                row = normalized @ model.W_U.detach().float() + model.b_U.detach().float()
            truth = row[TARGET] - (row[WRONG] if wrong is not None else (row.mean() if center else 0.0))
            assert r.logit == pytest.approx(float(truth), abs=atol)
            # the parts alone (unexplained is defined as what they miss) sum to the hand-computed logit
            assert r.total + r.remainder == pytest.approx(float(truth), abs=atol)
            if layer is not None and wrong is None and not center:
                assert r.logit == pytest.approx(float(lens.target_logit[layer, POS]), abs=atol)
            out.append(r)
    return out


def check_raw_model(model, n: int = 10) -> None:
    """Raw bridge: identity, and the values equal TL's stacks through apply_ln_to_stack dotted with
    the ln_final-weighted unembedding direction (TL's logit_attrs leaves the weight out)."""
    tokens = random_tokens(model, n)
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens)
    check_identity(model, tokens, cache, logits)
    check_identity(model, tokens, cache, logits, layer=1)
    r = direct_logit_attribution(model, tokens, TARGET, pos=POS, wrong=WRONG, cache=cache)
    u = effective_gamma(model) * (model.W_U[:, TARGET] - model.W_U[:, WRONG]).float()
    heads, head_labels = cache.stack_head_results(pos_slice=POS, return_labels=True)
    heads = cache.apply_ln_to_stack(heads, -1, pos_slice=POS)[:, 0] @ u
    if "attn" in r.kinds:
        pytest.skip("a layer's attn_out is not the sum of its heads (post-attention norm): TL's "
                    "stack_head_results is no decomposition here; the identity was checked above")
    for label, value in zip(head_labels, heads.tolist()):
        assert r.component(label) == pytest.approx(value, abs=1e-5)
    dec, dec_labels = cache.decompose_resid(pos_slice=POS, return_labels=True)
    dec = cache.apply_ln_to_stack(dec, -1, pos_slice=POS)[:, 0] @ u
    for label, value in zip(dec_labels, dec.tolist()):
        if label.endswith("_mlp_out"):
            assert r.component("mlp" + label.split("_")[0]) == pytest.approx(value, abs=1e-5)
        elif label in ("embed", "pos_embed"):
            assert r.component(label) == pytest.approx(value, abs=1e-5)


def check_compat_model(model, n: int = 10) -> None:
    """Compatibility mode: values equal TL's logit_attrs of get_full_resid_decomposition
    (expand_neurons=False), remainder is b_U[target], logit is the model's output logit."""
    tokens = random_tokens(model, n)
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens)
    for wrong in (None, WRONG):
        r = direct_logit_attribution(model, tokens, TARGET, pos=POS, wrong=wrong, cache=cache)
        stack, labels = cache.get_full_resid_decomposition(expand_neurons=False, pos_slice=POS, return_labels=True)
        tl = cache.logit_attrs(stack, TARGET, incorrect_tokens=wrong, pos_slice=POS).reshape(-1)
        ref = dict(zip(labels, tl.tolist()))
        if "attn" in r.kinds:
            pytest.skip("post-attention norm: TL's per-head decomposition does not add up to attn_out")
        for label, value in ref.items():
            ours = "mlp" + label.split("_")[0] if label.endswith("_mlp_out") else label
            got = r.component(ours) if ours in r.labels else 0.0  # a zero bias row is left out
            assert got == pytest.approx(value, abs=1e-5), label
        b_U = model.b_U[TARGET] - (model.b_U[WRONG] if wrong is not None else 0.0)
        assert r.remainder == pytest.approx(float(b_U), abs=1e-5)
        truth = logits[0, POS, TARGET] - (logits[0, POS, WRONG] if wrong is not None else 0.0)
        assert r.logit == pytest.approx(float(truth), abs=1e-4)
        assert sum(ref.values()) + float(b_U) == pytest.approx(float(truth), abs=1e-4)
    # decompose_resid + logit_attrs: per-layer sums of our heads (+ that layer's b_O)
    dec, dec_labels = cache.decompose_resid(pos_slice=POS, return_labels=True)
    tl = cache.logit_attrs(dec, TARGET, pos_slice=POS).reshape(-1)
    assert_per_layer(direct_logit_attribution(model, tokens, TARGET, pos=POS, cache=cache), dec_labels, tl.tolist())


def per_layer_values(r: DLAResult) -> dict[str, float]:
    """Our values summed into decompose_resid's components. The ``bias`` row (all layers' b_O)
    goes into ``attn_total``, the sum over every layer's attn_out."""
    out: dict[str, float] = {"attn_total": 0.0}
    for label, kind, layer, value in zip(r.labels, r.kinds, r.layer_index, r.values.tolist()):
        if kind == "embed":
            out[label] = value
        elif kind in ("head", "attn"):
            out[f"{layer}_attn_out"] = out.get(f"{layer}_attn_out", 0.0) + value
            out["attn_total"] += value
        elif kind == "mlp":
            out[f"{layer}_mlp_out"] = value
        elif kind == "bias":
            out["attn_total"] += value
    return out


def assert_per_layer(r: DLAResult, labels: list[str], values: list[float]) -> None:
    mine = per_layer_values(r)
    has_bias = "bias" in r.labels
    for label, value in zip(labels, values):
        if not (has_bias and label.endswith("_attn_out")):
            assert mine[label] == pytest.approx(value, abs=1e-5), label
    attn = sum(v for l, v in zip(labels, values) if l.endswith("_attn_out"))
    assert mine["attn_total"] == pytest.approx(attn, abs=1e-5)


# --------------------------------------------------------------------------- native models
def test_native_raw_identity_and_tl_stacks(native_kind):
    check_raw_model(make_native(native_kind))


def test_native_compatibility_mode_equals_tl(native_kind):
    model = make_native(native_kind, seed=2)
    model.enable_compatibility_mode(disable_warnings=True)
    check_compat_model(model)


def test_raw_centred_equals_compatibility_mode_per_layer(native_kind):
    """center=True on a raw bridge gives TL's compatibility-mode numbers per layer."""
    raw, compat = make_native(native_kind, seed=3), make_native(native_kind, seed=3)
    compat.enable_compatibility_mode(disable_warnings=True)
    tokens = random_tokens(raw)
    ours = direct_logit_attribution(raw, tokens, TARGET, pos=POS)
    _, cache = compat.run_with_cache(tokens)
    dec, labels = cache.decompose_resid(pos_slice=POS, return_labels=True)
    tl = cache.logit_attrs(dec, TARGET, pos_slice=POS).reshape(-1)
    assert_per_layer(ours, labels, tl.tolist())
    with torch.no_grad():
        compat_logit = compat(tokens)[0, POS, TARGET]
    assert ours.logit == pytest.approx(float(compat_logit), abs=1e-4)


def test_layer_drill_down_sums_to_the_lens_cell(native_kind):
    model = make_native(native_kind)
    tokens = random_tokens(model)
    logits, cache = model.run_with_cache(tokens)
    n = model.cfg.n_layers
    for layer in range(n + 1):
        for r in check_identity(model, tokens, cache, logits, layer=layer):
            assert r.layer == layer
            assert all(l is None or l < layer for l in r.layer_index)
            assert ("mlp" in r.kinds) == (layer > 0 and not model.cfg.attn_only)
    full = direct_logit_attribution(model, tokens, TARGET, cache=cache)
    assert full.layer == n and len(full) == len(direct_logit_attribution(model, tokens, TARGET, layer=n, cache=cache))
    # layer 0: only the embeddings
    r0 = direct_logit_attribution(model, tokens, TARGET, layer=0, cache=cache)
    assert set(r0.kinds) == {"embed"}


def test_result_fields_and_top(native_kind):
    model = make_native(native_kind)
    tokens = random_tokens(model)
    r = direct_logit_attribution(model, tokens, TARGET, pos=3, wrong=WRONG)
    n = model.cfg.n_layers
    assert r.pos == 3 and r.target == TARGET and r.wrong == WRONG and r.layer == n and not r.center
    assert len(r.labels) == len(r.hooks) == len(r.kinds) == len(r.layer_index) == len(r.head_index) == r.values.shape[0]
    heads = [i for i, k in enumerate(r.kinds) if k == "head"]
    assert len(heads) == n * model.cfg.n_heads
    for i in heads:
        l, h = r.layer_index[i], r.head_index[i]
        assert r.labels[i] == f"L{l}H{h}" and r.hooks[i] == f"blocks.{l}.attn.hook_z"
    for i, k in enumerate(r.kinds):
        if k == "mlp":
            assert r.hooks[i] == f"blocks.{r.layer_index[i]}.hook_mlp_out" and r.labels[i] == f"mlp{r.layer_index[i]}"
    assert r.labels[0] == "embed" and r.hooks[0] == "hook_embed"
    top = r.top(5)
    assert len(top) == 5
    mags = [abs(v) for _, v in r.top()]
    assert mags == sorted(mags, reverse=True) and len(mags) == len(r)
    assert top[0][1] == pytest.approx(float(r.values[r.order()[0]]))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"pos": 10}, "position 10 is out of range"),
        ({"pos": -11}, "out of range"),
        ({"pos": 1.0}, "position must be an integer"),
        ({"layer": 4}, "layer 4 is out of range"),
        ({"layer": -1}, "out of range"),
        ({"layer": True}, "layer must be"),
        ({"wrong": 101}, "outside the vocabulary"),
    ],
)
def test_bad_input(kwargs, match):
    model = make_native("rms_attn_only")
    with pytest.raises(InputError, match=match):
        direct_logit_attribution(model, random_tokens(model, 10), TARGET, **kwargs)
    with pytest.raises(InputError, match="outside the vocabulary"):
        direct_logit_attribution(model, random_tokens(model, 10), 101)


# --------------------------------------------------------------------------- toy, HF, SmolLM2
def test_toy_model_identity_and_tl(toy_model):
    check_raw_model(toy_model)


def test_hf_architectures_identity_and_tl(tiny_hf_model):
    check_raw_model(tiny_hf_model)


def test_hf_architectures_compatibility_mode(tiny_hf_model, request):
    from lenswidget import models

    name = request.node.callspec.params["tiny_hf_model"]
    fresh = models.random_hf(name, seed=0)  # compatibility mode rewrites weights: not the shared one
    fresh.enable_compatibility_mode(disable_warnings=True)
    check_compat_model(fresh)


@pytest.mark.smollm2
def test_smollm2_paris(smollm2_model):
    model = smollm2_model
    tokens = model.to_tokens("The capital of France is")
    paris, london = model.to_single_token(" Paris"), model.to_single_token(" London")
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens)
    r = direct_logit_attribution(model, tokens, paris, cache=cache, center=False)
    assert r.logit == pytest.approx(float(logits[0, -1, paris]), abs=1e-3)
    assert abs(r.unexplained) < 1e-3
    assert r.total + r.remainder == pytest.approx(r.logit, abs=1e-3)
    assert len(r) == 1 + 30 * 9 + 30  # embed, heads, MLPs (no positional embedding, no biases)
    # against TL's head and MLP stacks through the cached final-norm scale, gamma-weighted direction
    u = effective_gamma(model) * model.W_U[:, paris].float()
    heads, labels = cache.stack_head_results(pos_slice=-1, return_labels=True)
    heads = cache.apply_ln_to_stack(heads, -1, pos_slice=-1)[:, 0] @ u
    for label, value in zip(labels, heads.tolist()):
        assert r.component(label) == pytest.approx(value, abs=1e-4)
    diff = direct_logit_attribution(model, tokens, paris, wrong=london, cache=cache)
    assert diff.logit == pytest.approx(float(logits[0, -1, paris] - logits[0, -1, london]), abs=1e-3)
    assert diff.logit > 0
    # drill-down into a late layer equals that logit-lens cell
    lens = logit_lens(model, tokens, k=3, target=paris, cache=cache)
    cell = direct_logit_attribution(model, tokens, paris, layer=24, cache=cache, center=False)
    assert cell.logit == pytest.approx(float(lens.target_logit[24, -1]), abs=1e-3)
    assert cell.total + cell.remainder == pytest.approx(cell.logit, abs=1e-3)
