"""Weight circuits against TransformerLens and explicit matrix products written here."""

from __future__ import annotations

import types

import pytest
import torch
from transformer_lens.FactoredMatrix import FactoredMatrix
from transformer_lens.utilities import composition_scores as tl_composition_scores

from lenswidget import InputError
from lenswidget.analysis import (
    all_composition_scores,
    composition_scores,
    copying_scores,
    direct_path,
    ov_circuit,
    ov_eigenvalues,
    qk_circuit,
    random_baseline,
)

ATOL = 1e-5


def _tl(model, kind):
    return model.all_composition_scores(kind.upper()).scores.detach()


# ---------------------------------------------------------------------------------- composition
@pytest.mark.parametrize("kind", ["q", "k", "v"])
def test_composition_equals_transformerlens_on_toy(toy_model, kind):
    ours = composition_scores(toy_model, kind)
    ref = _tl(toy_model, kind).detach()
    assert ours.scores.shape == (2, 4, 2, 4)
    torch.testing.assert_close(ours.scores, ref.float(), atol=ATOL, rtol=0)
    assert float(ref.max()) > 0.1  # not trivially zero


def test_composition_equals_transformerlens_on_random_architectures(tiny_hf_model):
    model = tiny_hf_model
    scores = all_composition_scores(model)
    for kind in "qkv":
        ref = _tl(model, kind)
        torch.testing.assert_close(scores[kind].scores, ref.float(), atol=ATOL, rtol=0)
        assert float(ref.max()) > 0.05


def test_toy_previous_token_head_k_composes_into_induction_heads(toy_model):
    comp = composition_scores(toy_model, "k")
    top = comp.top(4)
    assert {src for src, _, _ in top} == {"L0H3"}
    assert {dst for _, dst, _ in top} == {"L1H0", "L1H1", "L1H2", "L1H3"}
    # it stands out against random matrices of the same shapes by many standard deviations
    assert top[0][2] > comp.baseline_mean + 10 * comp.baseline_std
    assert comp.score("L0H3", "L1H1") == pytest.approx(top[0][2])
    # only earlier -> later pairs exist
    assert comp.scores[1].abs().max() == 0 and comp.scores[:, :, 0].abs().max() == 0
    edges = comp.edges()
    assert len(edges) == 16 and next(iter(edges)) == f"{top[0][0]}->{top[0][1]}.k"
    assert all(k.endswith(".k") for k in edges)
    z = comp.zscore()
    assert float(z[0, 3, 1, 1]) == pytest.approx((top[0][2] - comp.baseline_mean) / comp.baseline_std, rel=1e-5)


def test_random_baseline_matches_transformerlens_on_random_matrices(toy_model):
    mean, std = random_baseline(toy_model)
    d_model, d_head, n = 64, 16, 400
    gen = torch.Generator().manual_seed(123)
    mats = [torch.randn(n, *shape, generator=gen) for shape in [(d_model, d_head), (d_head, d_model)] * 2]
    ref = tl_composition_scores(FactoredMatrix(mats[0], mats[1]), FactoredMatrix(mats[2], mats[3]), broadcast_dims=False)
    assert mean == pytest.approx(float(ref.mean()), abs=4 * float(ref.std()) / n**0.5)
    assert std == pytest.approx(float(ref.std()), rel=0.25)
    assert random_baseline(toy_model) == (mean, std)  # deterministic


@pytest.mark.smollm2
def test_smollm2_composition_equals_transformerlens_subset(smollm2_model):
    """TransformerLens's all_composition_scores takes about a minute a kind on SmolLM2; here its
    own ``composition_scores`` runs on four layers' weights (GQA expanded by TL's own helper)."""
    model = smollm2_model
    ours = all_composition_scores(model)
    layers = [0, 5, 17, 29]
    W_Q, W_O = model.W_Q[layers], model.W_O[layers]
    W_K, W_V = (model._expand_kv_heads(w)[layers] for w in (model.W_K, model.W_V))
    left = FactoredMatrix(W_V, W_O)
    rights = {"q": FactoredMatrix(W_Q, W_K.transpose(-2, -1)), "v": left}
    rights["k"] = rights["q"].T
    idx = torch.tensor(layers)
    for kind, right in rights.items():
        ref = tl_composition_scores(left, right, broadcast_dims=True)  # [4, 9, 4, 9]
        got = ours[kind].scores[idx][:, :, idx]
        mask = ours[kind].mask()[idx][:, :, idx]
        torch.testing.assert_close(got[mask], ref[mask].float(), atol=ATOL, rtol=0)
        assert float(ref[mask].detach().max()) > 0.05
    assert ours["k"].scores.shape == (30, 9, 30, 9)


# ---------------------------------------------------------------------------------- copying
def _explicit_copying(model) -> torch.Tensor:
    """Σλ/Σ|λ| from the eigenvalues of the full [d_vocab, d_vocab] OV circuit, head by head."""
    W_E, W_U = model.W_E.double(), model.W_U.double()
    W_V = model.W_V.double()
    n_layers, n_heads = model.W_Q.shape[:2]
    group = n_heads // W_V.shape[1]
    out = torch.zeros(n_layers, n_heads)
    for l in range(n_layers):
        for h in range(n_heads):
            full = W_E @ W_V[l, h // group] @ model.W_O[l, h].double() @ W_U  # [d_vocab, d_vocab]
            lam = torch.linalg.eigvals(full)
            out[l, h] = float(lam.sum().real / lam.abs().sum())
    return out


def test_copying_scores_equal_explicit_eigenvalues_on_toy(toy_model):
    ours = copying_scores(toy_model)
    torch.testing.assert_close(ours, _explicit_copying(toy_model), atol=1e-4, rtol=0)
    assert (ours[1] > 0.99).all()  # the induction heads copy
    assert (ours[0] < 0).all()


def test_copying_scores_equal_explicit_eigenvalues_on_random_gqa_model():
    from lenswidget import models

    model = models.random_hf("llama", n_heads=4, n_kv_heads=2)
    ours = copying_scores(model)
    ref = _explicit_copying(model)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)
    assert ref.abs().max() > 0.01 and ref.std() > 0.01


def test_ov_eigenvalues_are_the_nonzero_eigenvalues_of_the_full_circuit(toy_model):
    lam = ov_eigenvalues(toy_model)[1, 2]
    full = toy_model.W_E.double() @ toy_model.W_V[1, 2].double() @ toy_model.W_O[1, 2].double() @ toy_model.W_U.double()
    big = torch.linalg.eigvals(full)
    big = big[big.abs().argsort(descending=True)][: lam.numel()]
    ours = lam[lam.abs().argsort(descending=True)]
    torch.testing.assert_close(ours.abs(), big.abs(), atol=1e-6, rtol=1e-6)


@pytest.mark.smollm2
def test_smollm2_copying_scores_equal_transformerlens_factored_eigenvalues(smollm2_model):
    model = smollm2_model
    ours = copying_scores(model)
    assert ours.shape == (30, 9)
    W_V = model._expand_kv_heads(model.W_V)
    for l, h in [(0, 0), (12, 4), (29, 8)]:
        lam = FactoredMatrix(model.W_E @ W_V[l, h], model.W_O[l, h] @ model.W_U).eigenvalues
        assert float(ours[l, h]) == pytest.approx(float(lam.sum().real / lam.abs().sum()), abs=1e-4)
    assert ours.max() > 0.5 and ours.min() < 0.0


# ---------------------------------------------------------------------------------- OV, QK, direct path
def test_ov_circuit_rows_equal_explicit_matmul(toy_model, toy_lens):
    ids = toy_lens.tokenize("red fish blue tree")[0, 1:]
    table = ov_circuit(toy_model, 1, 2, ids, k=5)
    full_rows = toy_model.W_E[ids] @ toy_model.W_V[1, 2] @ toy_model.W_O[1, 2] @ toy_model.W_U  # [S, d_vocab]
    top = full_rows.topk(5, dim=-1)
    assert torch.equal(table.top_ids, top.indices)
    torch.testing.assert_close(table.top_values, top.values, atol=1e-5, rtol=1e-5)
    bottom = full_rows.topk(5, dim=-1, largest=False)
    assert torch.equal(table.bottom_ids, bottom.indices)
    own = full_rows[torch.arange(len(ids)), ids]
    torch.testing.assert_close(table.self_values, own, atol=1e-5, rtol=1e-5)
    assert torch.equal(table.self_ranks, (full_rows > own[:, None]).sum(-1))
    js = table.to_json(toy_model)
    assert js["label"] == "L1H2" and js["rows"][0]["source"] == "red"
    assert [c["id"] for c in js["rows"][1]["top"]] == top.indices[1].tolist()
    # over the whole vocabulary an induction head copies (most tokens promote themselves most);
    # the previous-token head L0H3 does not
    every = torch.arange(toy_model.cfg.d_vocab)
    assert (ov_circuit(toy_model, 1, 2, every).self_ranks == 0).float().mean() > 0.8
    assert (ov_circuit(toy_model, 0, 3, every).self_ranks == 0).float().mean() < 0.01


@pytest.mark.smollm2
def test_ov_circuit_on_smollm2_uses_the_heads_kv_group(smollm2_model, smollm2_lens):
    model = smollm2_model
    ids = smollm2_lens.tokenize("The capital of France is Paris")[0]
    table = ov_circuit(model, 7, 5, ids, k=3)
    row = model.W_E[ids[2]] @ model.W_V[7, 5 // 3] @ model.W_O[7, 5] @ model.W_U
    assert torch.equal(table.top_ids[2], row.topk(3).indices)
    torch.testing.assert_close(table.top_values[2], row.topk(3).values, atol=1e-4, rtol=1e-5)


def test_qk_circuit_equals_explicit_bilinear_form(toy_model, toy_lens):
    ids = toy_lens.tokenize("red fish blue tree")[0]
    qk = qk_circuit(toy_model, 1, 1, ids)
    x = toy_model.W_E[ids]
    i, j = 3, 1
    expected = float(x[i] @ toy_model.W_Q[1, 1] @ toy_model.W_K[1, 1].T @ x[j])
    assert qk.shape == (5, 5) and float(qk[i, j]) == pytest.approx(expected, rel=1e-5, abs=1e-5)
    assert qk.std() > 0.1


def test_qk_circuit_adds_learned_positions_on_gpt2():
    from lenswidget import models

    model = models.random_hf("gpt2")
    ids = torch.tensor([5, 9, 11, 5])
    with_pos, content = qk_circuit(model, 1, 0, ids), qk_circuit(model, 1, 0, ids, positional=False)
    x = model.W_E[ids] + model.W_pos[:4]
    expected = float(x[2] @ model.W_Q[1, 0] @ model.W_K[1, 0].T @ x[0])
    assert float(with_pos[2, 0]) == pytest.approx(expected, rel=1e-4, abs=1e-10)
    c = model.W_E[ids]
    assert float(content[2, 0]) == pytest.approx(float(c[2] @ model.W_Q[1, 0] @ model.W_K[1, 0].T @ c[0]), rel=1e-4, abs=1e-10)
    assert not torch.allclose(with_pos, content, rtol=0.1, atol=0)  # the positions matter


def test_direct_path_rows_equal_w_e_w_u(toy_model, toy_lens):
    ids = toy_lens.tokenize("red fish red")[0]
    table = direct_path(toy_model, ids, k=4)
    rows = toy_model.W_E[ids] @ toy_model.W_U
    assert torch.equal(table.top_ids, rows.topk(4).indices)
    torch.testing.assert_close(table.top_values, rows.topk(4).values, atol=1e-5, rtol=1e-5)
    assert torch.equal(table.source_ids, ids) and table.label == "embed->logits"


# ---------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "call, fragment",
    [
        (lambda m: composition_scores(m, "x"), "Unknown composition kind"),
        (lambda m: all_composition_scores(m, []), "No composition kinds"),
        (lambda m: ov_circuit(m, 2, 0, [1]), "Layer 2 is out of range"),
        (lambda m: ov_circuit(m, 0, 4, [1]), "Head 4 is out of range"),
        (lambda m: ov_circuit(m, 0, 0, []), "empty"),
        (lambda m: ov_circuit(m, 0, 0, [10**6]), "outside the vocabulary"),
        (lambda m: ov_circuit(m, 0, 0, "red"), "tensor or a list of ints"),
        (lambda m: ov_circuit(m, 0, 0, [1], k=0), "k must be"),
        (lambda m: qk_circuit(m, -1, 0, [1, 2]), "out of range"),
        (lambda m: direct_path(m, torch.tensor([])), "empty"),
    ],
)
def test_bad_input_raises_input_error(toy_model, call, fragment):
    with pytest.raises(InputError, match=fragment):
        call(toy_model)


def test_encoder_decoder_and_one_layer_models_are_refused(toy_model):
    enc_dec = types.SimpleNamespace(encoder_blocks=[], decoder_blocks=[], cfg=toy_model.cfg)
    for fn in (lambda: composition_scores(enc_dec, "q"), lambda: copying_scores(enc_dec)):
        with pytest.raises(InputError, match="encoder-decoder"):
            fn()
    from lenswidget import models

    with pytest.raises(InputError, match="two layers"):
        composition_scores(models.random_hf("gpt2", n_layers=1), "k")


def test_layer_weight_equals_the_stacked_weights(tiny_hf_model):
    from lenswidget.analysis.weights import head_weights, layer_weight

    stacked = head_weights(tiny_hf_model)
    for name in ("W_Q", "W_K", "W_V", "W_O"):
        assert torch.equal(layer_weight(tiny_hf_model, name, 1), stacked[name][1])


def test_group_edges_take_the_largest_query_head_of_each_kv_group():
    from lenswidget import models

    model = models.random_hf("llama", n_heads=4, n_kv_heads=2)
    comp = composition_scores(model, "k")
    edges = comp.group_edges(2)
    assert len(edges) == 4 * 2
    assert edges["L0H1->L1KV1.k"] == pytest.approx(max(comp.score("L0H1", "L1H2"), comp.score("L0H1", "L1H3")))
    assert comp.score("L0H1", "L1H2") != pytest.approx(comp.score("L0H1", "L1H3"))
    with pytest.raises(InputError):
        composition_scores(model, "q").group_edges(2)
